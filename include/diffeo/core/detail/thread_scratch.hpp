#pragma once
/// Per-thread scratch arrays for the CPU backends' row code.

#include <cstddef>
#include <vector>

namespace diffeo::detail {

/// `n` elements of T owned by the calling thread and reused by its later calls: fresh
/// memory costs page faults, at about the price of a pass over it. `Tag` keeps the arrays of
/// different uses apart (one may be live while another is taken). An array over 16 MiB is
/// released when its scope ends, so no thread keeps more than that per use between calls.
/// The contents are unspecified at first (zeros when the array grows).
template <class T, class Tag>
class thread_scratch {
 public:
  explicit thread_scratch(std::size_t n) { storage().resize(n); }
  ~thread_scratch() {
    if (storage().size() * sizeof(T) > kept_bytes) std::vector<T>().swap(storage());
  }
  thread_scratch(const thread_scratch&) = delete;
  thread_scratch& operator=(const thread_scratch&) = delete;
  T* data() const { return storage().data(); }

 private:
  static constexpr std::size_t kept_bytes = std::size_t(16) << 20;
  static std::vector<T>& storage() {
    thread_local std::vector<T> array;
    return array;
  }
};

}  // namespace diffeo::detail
