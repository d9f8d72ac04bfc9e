// Intrusive reference counting for loop-thread objects (BusCore, SubCore, MsgImpl...).
// The count is not atomic: these objects are only touched on the loop's thread, and a
// per-message atomic increment is a cost the hot path does not need to pay.
#pragma once

#include <cstdint>
#include <utility>

namespace natbus::detail {

class RefCounted {
 public:
  void add_ref() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }
  [[nodiscard]] std::uint32_t ref_count() const noexcept { return refs_; }
  RefCounted(const RefCounted&) = delete;
  RefCounted& operator=(const RefCounted&) = delete;

 protected:
  RefCounted() = default;
  virtual ~RefCounted() = default;

 private:
  std::uint32_t refs_ = 1;  // the creator's reference
};

/// Owning pointer to a RefCounted. `Ref<T>::adopt(new T(...))` takes the creator's reference.
template <class T>
class Ref {
 public:
  Ref() noexcept = default;
  Ref(T* p) noexcept : p_(p) {  // NOLINT(google-explicit-constructor): shares a reference
    if (p_) p_->add_ref();
  }
  static Ref adopt(T* p) noexcept {
    Ref r;
    r.p_ = p;
    return r;
  }
  Ref(const Ref& o) noexcept : Ref(o.p_) {}
  Ref(Ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Ref& operator=(Ref o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~Ref() {
    if (p_) p_->release();
  }
  [[nodiscard]] T* get() const noexcept { return p_; }
  T* operator->() const noexcept { return p_; }
  T& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  /// Gives up the reference without releasing it.
  T* leak() noexcept { return std::exchange(p_, nullptr); }
  void reset() noexcept { Ref().swap(*this); }
  void swap(Ref& o) noexcept { std::swap(p_, o.p_); }

 private:
  T* p_ = nullptr;
};

}  // namespace natbus::detail
