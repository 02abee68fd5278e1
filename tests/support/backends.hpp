#pragma once
// The backends every kernel test runs on, assembled from the build's config macros:
//   TEST_CASE_TEMPLATE("...", B, DIFFEO_TEST_BACKENDS) { ... }

#include <diffeo/core.hpp>

#if defined(DIFFEO_ENABLE_TBB)
#  include <oneapi/tbb/global_control.h>
#  include <oneapi/tbb/task_arena.h>
#endif

#if defined(DIFFEO_ENABLE_TBB) && defined(DIFFEO_ENABLE_THRUST)
#  define DIFFEO_TEST_BACKENDS diffeo::backend::serial, diffeo::backend::tbb, diffeo::backend::thrust
#elif defined(DIFFEO_ENABLE_TBB)
#  define DIFFEO_TEST_BACKENDS diffeo::backend::serial, diffeo::backend::tbb
#elif defined(DIFFEO_ENABLE_THRUST)
#  define DIFFEO_TEST_BACKENDS diffeo::backend::serial, diffeo::backend::thrust
#else
#  define DIFFEO_TEST_BACKENDS diffeo::backend::serial
#endif

namespace diffeo::test {

/// Whether `B` must reproduce the serial result bit for bit (oneTBB does: same kernels,
/// same fixed reduction blocks); Thrust only within rounding (its own reduction tree, and
/// contracted multiply-adds on a GPU).
template <class B>
inline constexpr bool bitwise_like_serial = !std::is_same_v<B, diffeo::backend::thrust>;

#if defined(DIFFEO_ENABLE_TBB)
/// Runs `f` in an arena of `n` oneTBB threads, allowed past the machine's core count (more
/// bands than cores: bands thinner than a kernel).
template <class F>
void on_threads(int n, const F& f) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, std::size_t(n));
  tbb::task_arena arena(n);
  arena.execute(f);
}
#endif

}  // namespace diffeo::test
