#pragma once
/// Build configuration shared by every diffeo header: the host/device marker, the index
/// type and the default backend. Kept light: it includes no backend library.

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#  define DIFFEO_HD __host__ __device__
#else
#  define DIFFEO_HD
#endif

// The CUDA build implies the Thrust backend; on the host the Thrust backend runs on one of
// Thrust's host device systems (TBB or CPP), chosen by THRUST_DEVICE_SYSTEM.
#if defined(DIFFEO_ENABLE_CUDA) && !defined(DIFFEO_ENABLE_THRUST)
#  define DIFFEO_ENABLE_THRUST 1
#endif

namespace diffeo {

/// Signed index of a grid point or array element; 64 bits so 2048^3 volumes index safely.
using index_t = std::int64_t;

namespace backend {
/// Runs kernels one after another on the calling thread.
struct serial {};
/// Runs kernels on all cores through oneTBB (rows of the grid are the unit of work).
struct tbb {};
/// Runs kernels through Thrust: CUDA under nvcc, Thrust's TBB or CPP system under g++.
struct thrust {};

#if defined(DIFFEO_ENABLE_CUDA)
using default_t = thrust;
#elif defined(DIFFEO_ENABLE_TBB)
using default_t = tbb;
#else
using default_t = serial;
#endif
}  // namespace backend

/// Owned memory that a backend's kernels can reach; specialized by each backend header.
template <class Backend, class T>
struct backend_storage;

}  // namespace diffeo
