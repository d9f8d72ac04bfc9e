// MessageStream's channel and handler (stream.hpp), and the MessageStream handle.
#include "jetstream/stream.hpp"

#include <deque>
#include <memory>
#include <utility>

#include <fmt/format.h>

#include "message/msg_impl.hpp"
#include "natbus/bus.hpp"
#include "runtime/wait.hpp"

namespace natbus {

namespace detail {

struct StreamChannel {
  Loop* loop = nullptr;
  std::size_t capacity = 0;
  std::deque<ReceivedMessage> buf;
  bool closed = false;
  WaitList readers;  // next() waiting for a message
  WaitList writers;  // handlers waiting for room

  void end() noexcept {
    if (closed) return;
    closed = true;
    // Buffered messages go back to the server at once rather than after ack_wait.
    for (auto& m : buf) {
      try {
        if (!m.acknowledged() && !impl_of(m)->no_ack) (void)m.nak();
      } catch (const std::exception&) {  // the connection is gone: the server redelivers after ack_wait
      }
    }
    buf.clear();
    if (loop != nullptr) {
      readers.wake_all(*loop);
      writers.wake_all(*loop);
    }
  }
};

/// What a MessageStream holds: a reference to its channel (the handler holds another).
struct StreamHold {
  std::shared_ptr<StreamChannel> ch;
};

MessageStream make_message_stream(StreamHold* hold, Subscription sub) noexcept { return MessageStream(hold, std::move(sub)); }

namespace {

class StreamHandler final : public HandlerBase {
 public:
  explicit StreamHandler(std::shared_ptr<StreamChannel> ch) : ch_(std::move(ch)) {}
  Task<void> invoke(ReceivedMessage& msg) override {
    // Holding the channel in the frame: the handler may outlive the stream object.
    const std::shared_ptr<StreamChannel> ch = ch_;
    while (!ch->closed && ch->buf.size() >= ch->capacity) co_await WaitOn(ch->writers);
    if (ch->closed) {
      try {
        if (!msg.acknowledged() && !impl_of(msg)->no_ack) (void)msg.nak();
      } catch (const std::exception&) {
      }
      co_return;
    }
    ch->buf.push_back(std::move(msg));
    ch->readers.wake_one(*ch->loop);
  }
  void on_stop() noexcept override { ch_->end(); }

 private:
  std::shared_ptr<StreamChannel> ch_;
};

Task<ReceivedMessage> next_impl(std::shared_ptr<StreamChannel> ch) {
  while (ch->buf.empty() && !ch->closed) co_await WaitOn(ch->readers);
  if (ch->buf.empty()) co_return ReceivedMessage{};
  ReceivedMessage m = std::move(ch->buf.front());
  ch->buf.pop_front();
  ch->writers.wake_one(*ch->loop);
  co_return m;
}

}  // namespace

Task<MessageStream> make_stream(Task<Subscription> subscribing, std::shared_ptr<StreamChannel> ch) {
  Subscription sub = co_await std::move(subscribing);
  auto* hold = new StreamHold{std::move(ch)};
  co_return make_message_stream(hold, std::move(sub));
}

HandlerPtr stream_handler(std::shared_ptr<StreamChannel> ch) { return HandlerPtr(new StreamHandler(std::move(ch))); }

std::shared_ptr<StreamChannel> new_channel(SubHost& core, std::string_view op, std::size_t buffer) {
  if (buffer == 0) throw InvalidArgument("buffer must be at least 1", ErrorContext{.operation = std::string(op)});
  core.ensure_open(op);
  auto ch = std::make_shared<StreamChannel>();
  ch->loop = core.loop();
  ch->capacity = buffer;
  return ch;
}

void require_manual_ack(std::optional<bool> manual_ack, std::string_view op) {
  if (manual_ack.has_value() && !*manual_ack) {
    throw InvalidArgument("manual_ack = false is not supported: the reader of a message stream acks each message",
                          ErrorContext{.operation = std::string(op)});
  }
}

}  // namespace detail

MessageStream::~MessageStream() {
  if (hold_ != nullptr) hold_->ch->end();
  delete hold_;
}

MessageStream& MessageStream::operator=(MessageStream&& other) noexcept {
  if (this != &other) {
    detail::StreamHold* old = std::exchange(hold_, std::exchange(other.hold_, nullptr));
    sub_ = std::move(other.sub_);  // stops the replaced subscription, which ends its channel
    delete old;
  }
  return *this;
}

Task<ReceivedMessage> MessageStream::next() {
  if (hold_ == nullptr) throw InvalidArgument("empty MessageStream (moved from?)", ErrorContext{.operation = "next"});
  return detail::next_impl(hold_->ch);
}

Task<void> MessageStream::close() {
  if (hold_ != nullptr) hold_->ch->end();
  return sub_.close();
}

std::size_t MessageStream::buffered() const noexcept { return hold_ != nullptr ? hold_->ch->buf.size() : 0; }

}  // namespace natbus
