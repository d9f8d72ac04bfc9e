// Security: every kind of authentication against a server configured for it, TLS with
// verification on by default, client certificates, and secrets that never appear anywhere.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <typeinfo>

#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::Task;
using namespace natbus::testing;

namespace {

/// Connects, publishes one message through JetStream and closes; throws what connect throws.
Task<void> connect_and_publish(NatsConfig cfg) {
  cfg.stream_create = true;
  cfg.stream_name = "SEC";
  cfg.stream_subjects = {"sec.*"};
  NatsBus bus{cfg};
  co_await bus.connect();
  auto msg = natbus::BusMessage::from_text("sec.a", "hello");
  const auto ack = co_await bus.publish(std::move(msg));
  EXPECT_EQ(ack.stream, "SEC");
  co_await bus.close();
}

template <class E>
std::string expect_connect_error(const NatsConfig& cfg) {
  std::string what;
  natbus::run([&]() -> Task<void> {
    try {
      co_await connect_and_publish(cfg);
      ADD_FAILURE() << "connected, expected " << typeid(E).name();
    } catch (const E& e) {
      what = e.what();
    }
  }());
  return what;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST(Security, UserPasswordWrongSecretIsAnAuthErrorQuicklyAndNeverLeaks) {
  NatsServer server(ServerOptions{.user = "app", .password = "Pa55-w0rd-app"});
  LogCapture logs;
  NatsConfig good = config_for(server);
  natbus::run(connect_and_publish(good));
  NatsConfig bad = good;
  bad.password = "Wr0ng-Secret-xyz";
  bad.max_reconnect_attempts = -1;  // must not turn a refused login into a retry storm
  const auto t0 = std::chrono::steady_clock::now();
  const std::string what = expect_connect_error<natbus::AuthError>(bad);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_NE(what.find("refused the credentials"), std::string::npos) << what;
  // The password in the URL instead of the fields: also never shown.
  NatsConfig in_url = good;
  in_url.username.clear();
  in_url.password.clear();
  in_url.server = fmt::format("nats://app:Wr0ng-Secret-xyz@127.0.0.1:{}", server.port());
  const std::string what2 = expect_connect_error<natbus::AuthError>(in_url);
  const std::string everything = logs.all() + what + what2 + natbus::to_string(good) + natbus::to_string(bad) + natbus::to_string(in_url) +
                                 fmt::format("{}", natbus::to_string(in_url));
  for (const char* secret : {"Pa55-w0rd-app", "Wr0ng-Secret-xyz"}) {
    EXPECT_EQ(everything.find(secret), std::string::npos) << secret << " leaked into:\n" << everything;
  }
}

TEST(Security, TokenAuth) {
  NatsServer server(ServerOptions{.token = "T0ken-s3cret-value"});
  LogCapture logs;
  natbus::run(connect_and_publish(config_for(server)));
  NatsConfig bad = config_for(server);
  bad.token = "n0t-the-t0ken";
  const std::string what = expect_connect_error<natbus::AuthError>(bad);
  const std::string everything = logs.all() + what + natbus::to_string(bad) + natbus::to_string(config_for(server));
  EXPECT_EQ(everything.find("T0ken-s3cret-value"), std::string::npos);
  EXPECT_EQ(everything.find("n0t-the-t0ken"), std::string::npos);
}

#ifdef NATBUS_GEN_CREDS
TEST(Security, CredentialsFile) {
  const std::string dir = make_temp_dir("creds");
  ASSERT_EQ(std::system((std::string(NATBUS_GEN_CREDS) + " " + dir).c_str()), 0);
  // Ready means: this user can log in and JetStream answers it.
  NatsServer server(ServerOptions{.extra_config = {slurp(dir + "/operator.conf")}, .ready_credentials = dir + "/user.creds"});
  LogCapture logs;
  NatsConfig cfg = config_for(server);
  cfg.credentials_file = dir + "/user.creds";
  natbus::run(connect_and_publish(cfg));
  // A user of an account the server does not trust.
  NatsConfig stranger = config_for(server);
  stranger.credentials_file = dir + "/stranger.creds";
  const std::string what = expect_connect_error<natbus::AuthError>(stranger);
  // No credentials at all.
  expect_connect_error<natbus::AuthError>(config_for(server));
  // A missing file is a ConfigError naming the field, before any connection.
  NatsConfig missing = config_for(server);
  missing.credentials_file = dir + "/nope.creds";
  try {
    NatsBus bus{missing};
    ADD_FAILURE() << "a missing credentials file was accepted";
  } catch (const natbus::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("credentials_file"), std::string::npos) << e.what();
  }
  // Neither the seed nor the JWT may show up in logs or errors.
  const std::string creds = slurp(dir + "/user.creds");
  const auto seed_at = creds.find("SUA");
  ASSERT_NE(seed_at, std::string::npos);
  const std::string seed = creds.substr(seed_at, 58);
  const std::string everything = logs.all() + what + natbus::to_string(cfg);
  EXPECT_EQ(everything.find(seed), std::string::npos);
  remove_tree(dir);
}
#endif

class Tls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ = std::make_unique<TestCerts>(TestCerts::make()); }
  static void TearDownTestSuite() { certs_.reset(); }
  static std::unique_ptr<TestCerts> certs_;
};
std::unique_ptr<TestCerts> Tls::certs_;

TEST_F(Tls, VerifiedByDefaultAndTrustedWithTheCa) {
  NatsServer server(ServerOptions{.tls_cert = certs_->server_cert, .tls_key = certs_->server_key});
  NatsConfig cfg = config_for(server);
  EXPECT_EQ(cfg.server.rfind("tls://", 0), 0U);
  // The test CA is not among the system's: the server is refused.
  const std::string what = expect_connect_error<natbus::ConnectionError>(cfg);
  EXPECT_NE(what.find("TLS"), std::string::npos) << what;
  // Another CA: refused too.
  NatsConfig other = cfg;
  other.tls.ca_file = certs_->other_ca_cert;
  expect_connect_error<natbus::ConnectionError>(other);
  // The right CA: connected, JetStream works over TLS.
  NatsConfig trusted = cfg;
  trusted.tls.ca_file = certs_->ca_cert;
  natbus::run(connect_and_publish(trusted));
  // skip_verify (tests only) connects without a CA.
  NatsConfig skip = cfg;
  skip.tls.skip_verify = true;
  natbus::run(connect_and_publish(skip));
}

TEST_F(Tls, PlainUrlToATlsServerSaysTlsIsRequired) {
  NatsServer server(ServerOptions{.tls_cert = certs_->server_cert, .tls_key = certs_->server_key});
  NatsConfig cfg = config_for(server);
  cfg.server = fmt::format("nats://127.0.0.1:{}", server.port());
  const std::string what = expect_connect_error<natbus::ConnectionError>(cfg);
  EXPECT_NE(what.find("TLS"), std::string::npos) << what;
}

TEST_F(Tls, ClientCertificates) {
  NatsServer server(
      ServerOptions{.tls_cert = certs_->server_cert, .tls_key = certs_->server_key, .tls_ca = certs_->ca_cert, .tls_verify_clients = true});
  NatsConfig cfg = config_for(server);
  cfg.tls.ca_file = certs_->ca_cert;
  expect_connect_error<natbus::ConnectionError>(cfg);  // no client certificate
  cfg.tls.cert_file = certs_->client_cert;
  cfg.tls.key_file = certs_->client_key;
  natbus::run(connect_and_publish(cfg));
}

TEST_F(Tls, UnreadableCertificateFilesAreConfigErrors) {
  NatsConfig cfg;
  cfg.server = "tls://127.0.0.1:4443";
  cfg.tls.ca_file = "/nonexistent/ca.pem";
  EXPECT_THROW(NatsBus{cfg}, natbus::ConfigError);
  NatsConfig half;
  half.tls.cert_file = certs_->client_cert;  // no key
  EXPECT_THROW(NatsBus{half}, natbus::ConfigError);
}
