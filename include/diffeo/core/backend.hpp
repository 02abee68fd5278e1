#pragma once
/// Backend tags and their dispatch: `for_each_index`, `for_each_point`,
/// `transform_reduce`, `sort_by_key`, `copy_n`, `synchronize`, and each backend's storage.
/// Only the enabled backends' headers are included, so a serial build never sees oneTBB
/// or Thrust.

#include <type_traits>

#include "../config.hpp"

#include "backend_serial.hpp"
#if defined(DIFFEO_ENABLE_TBB)
#  include "backend_tbb.hpp"
#endif
#if defined(DIFFEO_ENABLE_THRUST)
#  include "backend_thrust.hpp"
#endif

namespace diffeo {

/// True for backends whose memory the host can read directly (serial, oneTBB).
template <class Backend>
inline constexpr bool is_host_backend = std::is_same_v<Backend, backend::serial> ||
                                        std::is_same_v<Backend, backend::tbb>;

/// Copies `n` elements from memory of backend `From` to memory of backend `To`.
template <class To, class From, class T>
void copy_between(From, const T* src, index_t n, To, T* dst) {
  if constexpr (is_host_backend<From> && is_host_backend<To>) {
    copy_n(To{}, src, n, dst);
  }
#if defined(DIFFEO_ENABLE_THRUST)
  else if constexpr (is_host_backend<From>) {
    detail::copy_to_device(src, n, dst);
  } else if constexpr (is_host_backend<To>) {
    detail::copy_to_host(src, n, dst);
  } else {
    copy_n(backend::thrust{}, src, n, dst);
  }
#endif
}

namespace detail {
template <class T>
struct fill_kernel {
  T* data;
  T value;
  DIFFEO_HD void operator()(index_t i) const { data[i] = value; }
};
}  // namespace detail

/// Sets `n` elements at `data` (in the backend's memory) to `value`.
template <class Backend, class T>
void fill_n(Backend be, T* data, index_t n, const T& value) {
  for_each_index(be, n, detail::fill_kernel<T>{data, value});
}

}  // namespace diffeo
