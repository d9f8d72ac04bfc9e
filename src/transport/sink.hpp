// MsgSink: whatever drains a synchronous cnats subscription on the loop after each socket read.
#pragma once

namespace natbus::detail {

/// Something that takes messages off a cnats subscription after each read.
class MsgSink {
 public:
  virtual void pump() noexcept = 0;

 protected:
  MsgSink() = default;
  MsgSink(const MsgSink&) = default;
  MsgSink& operator=(const MsgSink&) = default;
  ~MsgSink() = default;
};

}  // namespace natbus::detail
