// Connecting: errors that tell what is wrong, stream bootstrap, closing.
#include <gtest/gtest.h>

#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::Task;
using namespace natbus::testing;

TEST(Connect, CreatesTheStreamAndLogsItsState) {
  NatsServer server;
  LogCapture logs;
  NatsConfig cfg = config_for(server);
  cfg.stream_create = true;
  cfg.stream_name = "ORDERS";
  cfg.stream_subjects = {"orders.>"};
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    EXPECT_TRUE(bus.connected());
    auto info = co_await bus.stream_info("ORDERS");
    EXPECT_EQ(info.subjects, std::vector<std::string>{"orders.>"});
    EXPECT_EQ(info.storage, natbus::StorageType::file);
    co_await bus.close();
    EXPECT_FALSE(bus.connected());
  }());
  EXPECT_TRUE(logs.has_event("js_stream_created")) << logs.all();
  EXPECT_TRUE(logs.has_event("js_stream_ready")) << logs.all();
  EXPECT_TRUE(logs.has_event("nats_connected")) << logs.all();
  // A second service with the same config tolerates "already exists".
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await bus.close();
  }());
}

TEST(Connect, ExistingStreamWithOtherSubjects) {
  NatsServer server;
  NatsConfig cfg = config_for(server);
  cfg.stream_create = true;
  cfg.stream_name = "S";
  cfg.stream_subjects = {"s.a"};
  natbus::run([&]() -> Task<void> {
    NatsBus first{cfg};
    co_await first.connect();
    co_await first.close();

    NatsConfig more = cfg;
    more.stream_subjects = {"s.a", "s.b"};
    NatsBus second{more};
    try {
      co_await second.connect();
      ADD_FAILURE() << "expected an error about the missing subject";
    } catch (const natbus::JetStreamError& e) {
      EXPECT_NE(std::string(e.what()).find("stream_update_subjects"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("s.b"), std::string::npos) << e.what();
    }
    more.stream_update_subjects = true;
    NatsBus third{more};
    co_await third.connect();
    auto info = co_await third.stream_info("S");
    EXPECT_EQ(info.subjects, (std::vector<std::string>{"s.a", "s.b"}));
    co_await third.close();
  }());
}

TEST(Connect, StreamOptionsAreApplied) {
  NatsServer server;
  NatsConfig cfg = config_for(server);
  cfg.stream_create = true;
  cfg.stream_name = "MEM";
  cfg.stream_subjects = {"mem.*"};
  cfg.stream.storage = natbus::StorageType::memory;
  cfg.stream.max_msgs = 100;
  cfg.stream.max_age = 1h;
  cfg.stream.duplicate_window = 30s;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    auto info = co_await bus.stream_info("MEM");
    EXPECT_EQ(info.storage, natbus::StorageType::memory);
    EXPECT_EQ(info.raw["config"]["max_msgs"], 100);
    EXPECT_EQ(info.raw["config"]["max_age"], std::chrono::nanoseconds(1h).count());
    EXPECT_EQ(info.raw["config"]["duplicate_window"], std::chrono::nanoseconds(30s).count());
    co_await bus.close();
  }());
}

TEST(Connect, UnreachableServerIsAConnectionError) {
  const int port = free_port();  // nothing listens there
  NatsConfig cfg;
  cfg.server = "127.0.0.1:" + std::to_string(port);
  cfg.connect_timeout = 500ms;
  const auto t0 = std::chrono::steady_clock::now();
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    try {
      co_await bus.connect();
      ADD_FAILURE() << "connected to nothing?";
    } catch (const natbus::ConnectionError& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(port)), std::string::npos) << e.what();
    }
  }());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

TEST(Connect, WrongPasswordIsAnAuthErrorWithoutThePassword) {
  NatsServer server(ServerOptions{.user = "app", .password = "right-pw"});
  LogCapture logs;
  NatsConfig cfg = config_for(server);
  cfg.password = "wrong-pw-123";
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    try {
      co_await bus.connect();
      ADD_FAILURE() << "connected with a wrong password";
    } catch (const natbus::AuthError& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find("refused the credentials"), std::string::npos) << w;
      EXPECT_NE(w.find("\"app\""), std::string::npos) << w;
      EXPECT_EQ(w.find("wrong-pw-123"), std::string::npos) << w;
    }
  }());
  EXPECT_EQ(logs.all().find("wrong-pw-123"), std::string::npos);
  cfg.password = "right-pw";
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await bus.close();
  }());
}

TEST(Connect, ServerWithoutJetStream) {
  NatsServer server(ServerOptions{.jetstream = false});
  NatsConfig cfg = config_for(server);
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    try {
      co_await bus.connect();
      ADD_FAILURE() << "expected JetStreamNotEnabledError";
    } catch (const natbus::JetStreamNotEnabledError& e) {
      EXPECT_NE(std::string(e.what()).find("JetStream"), std::string::npos) << e.what();
    }
    // Core NATS only: connecting works.
    NatsConfig core = cfg;
    core.jetstream = false;
    NatsBus plain{core};
    co_await plain.connect();
    EXPECT_TRUE(plain.connected());
    co_await plain.close();
  }());
}

TEST(Connect, UseBeforeConnectAndAfterCloseIsClosedError) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    auto msg = natbus::BusMessage::from_text("x.y", "hi");
    EXPECT_THROW(co_await bus.publish(std::move(msg)), natbus::ClosedError);
    co_await bus.connect();
    co_await bus.close();
    co_await bus.close();  // twice is fine
    auto again = natbus::BusMessage::from_text("x.y", "hi");
    EXPECT_THROW(co_await bus.publish(std::move(again)), natbus::ClosedError);
    EXPECT_THROW(co_await bus.connect(), natbus::ClosedError);
  }());
}

TEST(Connect, DestructorClosesWithoutAwaitingAndRunEndClosesTheRest) {
  NatsServer server;
  const auto t0 = std::chrono::steady_clock::now();
  natbus::run([&]() -> Task<void> {
    {
      NatsBus bus{config_for(server)};
      co_await bus.connect();
    }  // destroyed while open
    auto leftover = std::make_shared<NatsBus>(config_for(server));
    co_await leftover->connect();
    natbus::spawn([](std::shared_ptr<NatsBus> b) -> Task<void> {
      co_await natbus::sleep(std::chrono::hours(1));  // never returns: run() ends it
      (void)b;
    }(leftover));
  }());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

TEST(Connect, TokenAuth) {
  NatsServer server(ServerOptions{.token = "tok-123"});
  NatsConfig cfg = config_for(server);
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await bus.close();
    NatsConfig bad = cfg;
    bad.token = "nope";
    NatsBus wrong{bad};
    EXPECT_THROW(co_await wrong.connect(), natbus::AuthError);
  }());
}
