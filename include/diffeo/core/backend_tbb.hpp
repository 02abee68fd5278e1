#pragma once
/// The oneTBB backend: rows of the grid (or blocks of indices) run on all cores.

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_sort.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "backend_serial.hpp"

namespace diffeo {

/// Storage of the oneTBB backend: host memory.
template <class T>
struct backend_storage<backend::tbb, T> {
  using type = detail::host_buffer<T>;
};

namespace detail {
// Enough work per task that scheduling costs stay small next to it.
inline constexpr index_t tbb_grain = 2048;
}

/// Calls `f(i)` for every `i` in `[0, n)`, on all cores.
template <class F>
void for_each_index(backend::tbb, index_t n, const F& f) {
  ::tbb::parallel_for(::tbb::blocked_range<index_t>(0, n, detail::tbb_grain),
                      [&](const ::tbb::blocked_range<index_t>& r) {
                        for (index_t i = r.begin(); i != r.end(); ++i) f(i);
                      });
}

/// Calls `f(i, p)` for every grid point; rows are distributed over cores.
template <int Dim, class F>
void for_each_point(backend::tbb, const extents<Dim>& ext, const F& f) {
  const index_t grain = std::max<index_t>(1, detail::tbb_grain / ext[0]);
  ::tbb::parallel_for(::tbb::blocked_range<index_t>(0, ext.rows(), grain),
                      [&](const ::tbb::blocked_range<index_t>& r) {
                        for (index_t row = r.begin(); row != r.end(); ++row)
                          detail::run_row(ext, row, f);
                      });
}

/// Calls `f(t)` for every task `t` in `[0, n)`, one task at a time per core (tasks are
/// coarse).
template <class F>
void for_each_task(backend::tbb, index_t n, const F& f) {
  ::tbb::parallel_for(index_t(0), n, [&](index_t t) { f(t); });
}

/// How many threads the backend's loops run on: the current arena's, within any
/// `global_control` limit.
inline int thread_count(backend::tbb) {
  const std::size_t limit =
      ::tbb::global_control::active_value(::tbb::global_control::max_allowed_parallelism);
  return static_cast<int>(
      std::min<std::size_t>(limit, static_cast<std::size_t>(::tbb::this_task_arena::max_concurrency())));
}

/// Folds `map(i)` with `op`; bitwise identical to the serial backend (same fixed blocks,
/// folded in the same order).
template <class T, class Map, class Op>
T transform_reduce(backend::tbb, index_t n, T init, const Map& map, const Op& op) {
  const index_t blocks = (n + detail::reduce_block - 1) / detail::reduce_block;
  std::vector<T> partial(static_cast<std::size_t>(blocks), init);
  ::tbb::parallel_for(index_t(0), blocks, [&](index_t b) {
    const index_t first = b * detail::reduce_block;
    partial[b] =
        detail::reduce_block_range(first, std::min(n, first + detail::reduce_block), init, map, op);
  });
  T acc = init;
  for (const T& p : partial) acc = op(acc, p);
  return acc;
}

/// Folds `row_map(i, p, n)` over the rows of `ext`; bitwise identical to the serial backend
/// (same blocks of rows, folded in the same order).
template <int Dim, class T, class RowMap, class Op>
T transform_reduce_rows(backend::tbb, const extents<Dim>& ext, T init, const RowMap& row_map,
                        const Op& op) {
  const index_t rows = ext.rows(), per_block = detail::rows_per_block(ext);
  const index_t blocks = (rows + per_block - 1) / per_block;
  std::vector<T> partial(static_cast<std::size_t>(blocks), init);
  ::tbb::parallel_for(index_t(0), blocks, [&](index_t b) {
    const index_t first = b * per_block;
    partial[b] = detail::reduce_row_range(ext, first, std::min(rows, first + per_block), init,
                                          row_map, op);
  });
  T acc = init;
  for (const T& p : partial) acc = op(acc, p);
  return acc;
}

/// Sorts `keys` ascending, permuting `values` alike; ties broken by value.
template <class K, class V>
void sort_by_key(backend::tbb, K* keys, V* values, index_t n) {
  std::vector<std::pair<K, V>> kv(static_cast<std::size_t>(n));
  for_each_index(backend::tbb{}, n, [&](index_t i) { kv[i] = {keys[i], values[i]}; });
  ::tbb::parallel_sort(kv.begin(), kv.end());
  for_each_index(backend::tbb{}, n, [&](index_t i) { std::tie(keys[i], values[i]) = kv[i]; });
}

/// Copies `n` elements between memory of the CPU backends.
template <class T>
void copy_n(backend::tbb, const T* src, index_t n, T* dst) {
  for_each_index(backend::tbb{}, n, [=](index_t i) { dst[i] = src[i]; });
}

/// Waits for queued work (oneTBB's calls return when done).
inline void synchronize(backend::tbb) {}

}  // namespace diffeo
