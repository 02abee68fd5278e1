#pragma once
/// The Thrust backend: one logical thread per element. Under nvcc it runs on the GPU (CUDA
/// device system); under g++ on Thrust's TBB or CPP device system, which is how it is
/// built and tested on machines without a GPU.

#include <thrust/copy.h>
#include <thrust/device_ptr.h>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/sort.h>
#include <thrust/system_error.h>
#include <thrust/transform_reduce.h>
#include <thrust/tuple.h>

#include <string>
#include <utility>

#include "backend_serial.hpp"
#include "error.hpp"
#include "extents.hpp"

namespace diffeo {

namespace detail {
/// Owned memory of Thrust's device system.
template <class T>
class thrust_buffer {
 public:
  thrust_buffer() = default;
  explicit thrust_buffer(index_t n) : m_vec(static_cast<std::size_t>(n)) {}
  T* data() { return ::thrust::raw_pointer_cast(m_vec.data()); }
  const T* data() const { return ::thrust::raw_pointer_cast(m_vec.data()); }
  index_t size() const { return static_cast<index_t>(m_vec.size()); }

 private:
  ::thrust::device_vector<T> m_vec;
};

/// Runs a Thrust call and turns its failure into `backend_error` quoting the call.
template <class F>
void thrust_checked(const char* call, F&& f) {
  try {
    f();
  } catch (const ::thrust::system_error& e) {
    throw backend_error(std::string("thrust backend: ") + call + " failed: " + e.what());
  }
}

/// Adapts a point kernel `f(i, p)` to Thrust's one-index-per-thread model.
template <int Dim, class F>
struct point_kernel {
  extents<Dim> ext;
  F f;
  DIFFEO_HD void operator()(index_t i) const { f(i, ext.unravel(i)); }
};

/// Orders (key, value) pairs lexicographically, so sorting is deterministic.
struct pair_less {
  template <class A, class B>
  DIFFEO_HD bool operator()(const A& a, const B& b) const {
    return ::thrust::get<0>(a) < ::thrust::get<0>(b) ||
           (!(::thrust::get<0>(b) < ::thrust::get<0>(a)) &&
            ::thrust::get<1>(a) < ::thrust::get<1>(b));
  }
};
}  // namespace detail

/// Storage of the Thrust backend: memory of Thrust's device system.
template <class T>
struct backend_storage<backend::thrust, T> {
  using type = detail::thrust_buffer<T>;
};

/// Calls `f(i)` for every `i` in `[0, n)`, one logical thread each.
template <class F>
void for_each_index(backend::thrust, index_t n, const F& f) {
  detail::thrust_checked("for_each_n", [&] {
    ::thrust::for_each_n(::thrust::device, ::thrust::counting_iterator<index_t>(0), n, f);
  });
}

/// Calls `f(i, p)` for every grid point, one logical thread each.
template <int Dim, class F>
void for_each_point(backend::thrust, const extents<Dim>& ext, const F& f) {
  for_each_index(backend::thrust{}, ext.count(), detail::point_kernel<Dim, F>{ext, f});
}

/// Folds `map(i)` with the associative `op` (Thrust's tree: equal to the CPU backends
/// within rounding).
template <class T, class Map, class Op>
T transform_reduce(backend::thrust, index_t n, T init, const Map& map, const Op& op) {
  T r = init;
  detail::thrust_checked("transform_reduce", [&] {
    r = ::thrust::transform_reduce(::thrust::device, ::thrust::counting_iterator<index_t>(0),
                                   ::thrust::counting_iterator<index_t>(n), map, init, op);
  });
  return r;
}

/// Sorts `keys` ascending, permuting `values` alike; ties broken by value. Both arrays
/// live in the backend's memory.
template <class K, class V>
void sort_by_key(backend::thrust, K* keys, V* values, index_t n) {
#if THRUST_DEVICE_SYSTEM != THRUST_DEVICE_SYSTEM_CUDA
  // The host device systems hold host memory; Thrust 1.17's host sort binds a reference to
  // null inside (UBSan; NVIDIA/cccl#1645), so sort with the serial backend instead.
  sort_by_key(backend::serial{}, keys, values, n);
#else
  detail::thrust_checked("sort", [&] {
    auto first = ::thrust::make_zip_iterator(::thrust::make_tuple(
        ::thrust::device_pointer_cast(keys), ::thrust::device_pointer_cast(values)));
    ::thrust::sort(::thrust::device, first, first + n, detail::pair_less{});
  });
#endif
}

/// Copies `n` elements within the backend's memory.
template <class T>
void copy_n(backend::thrust, const T* src, index_t n, T* dst) {
  detail::thrust_checked("copy_n", [&] {
    ::thrust::copy_n(::thrust::device, ::thrust::device_pointer_cast(src), n,
                     ::thrust::device_pointer_cast(dst));
  });
}

/// Waits until the device has finished all queued work.
inline void synchronize(backend::thrust) {
#if defined(__CUDACC__)
  if (const cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess)
    throw backend_error(std::string("thrust backend: cudaDeviceSynchronize failed: ") +
                        cudaGetErrorString(e));
#endif
}

namespace detail {
/// Host <-> device copies; on the host device systems both sides are host memory.
template <class T>
void copy_to_host(const T* device_src, index_t n, T* host_dst) {
  thrust_checked("copy to host", [&] {
    ::thrust::copy_n(::thrust::device_pointer_cast(device_src), n, host_dst);
  });
}
template <class T>
void copy_to_device(const T* host_src, index_t n, T* device_dst) {
  thrust_checked("copy to device", [&] {
    ::thrust::copy_n(host_src, n, ::thrust::device_pointer_cast(device_dst));
  });
}
}  // namespace detail

}  // namespace diffeo
