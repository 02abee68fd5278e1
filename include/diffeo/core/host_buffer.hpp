#pragma once
/// Owned, 64-byte aligned host memory for the CPU backends.

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

#include "../config.hpp"

namespace diffeo::detail {

/// A fixed-size array of trivially copyable `T` on the host; its elements start
/// uninitialized (the owning field fills them on the backend, so pages are first touched
/// by the threads that use them).
template <class T>
class host_buffer {
  static_assert(std::is_trivially_copyable_v<T>, "field elements must be trivially copyable");

 public:
  host_buffer() = default;
  explicit host_buffer(index_t n) : m_size(n) {
    if (n > 0) {
      // Round up: aligned_alloc wants a multiple of the alignment.
      const std::size_t bytes = (std::size_t(n) * sizeof(T) + 63) / 64 * 64;
      m_data.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
      if (!m_data) throw std::bad_alloc();
    }
  }
  host_buffer(const host_buffer& o) : host_buffer(o.m_size) {
    std::copy(o.data(), o.data() + m_size, data());
  }
  host_buffer(host_buffer&&) noexcept = default;
  host_buffer& operator=(host_buffer o) noexcept {
    swap(o);
    return *this;
  }
  void swap(host_buffer& o) noexcept {
    std::swap(m_data, o.m_data);
    std::swap(m_size, o.m_size);
  }

  T* data() { return m_data.get(); }
  const T* data() const { return m_data.get(); }
  index_t size() const { return m_size; }

 private:
  struct deleter {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, deleter> m_data;
  index_t m_size = 0;
};

}  // namespace diffeo::detail
