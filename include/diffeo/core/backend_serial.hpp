#pragma once
/// The serial backend: kernels run in order on the calling thread.

#include <algorithm>
#include <utility>
#include <vector>

#include "extents.hpp"
#include "host_buffer.hpp"

namespace diffeo {

namespace detail {
/// Index blocks of fixed size make reductions bitwise identical on the serial and oneTBB
/// backends whatever the thread count: each block is folded in order, then the blocks.
inline constexpr index_t reduce_block = 4096;

template <class T, class Map, class Op>
T reduce_block_range(index_t first, index_t last, T init, const Map& map, const Op& op) {
  T acc = init;
  for (index_t i = first; i < last; ++i) acc = op(acc, map(i));
  return acc;
}

/// Rows per block of `transform_reduce_rows`: about `reduce_block` points.
template <int Dim>
index_t rows_per_block(const extents<Dim>& ext) {
  return std::max<index_t>(1, reduce_block / std::max<index_t>(1, ext[0]));
}

/// The coordinates of the first point of row `row` (all axes but x fixed).
template <int Dim>
index_vec<Dim> row_start(const extents<Dim>& ext, index_t row) {
  index_vec<Dim> p{};
  for (int a = 1; a < Dim; ++a) {
    p[a] = row % ext[a];
    row /= ext[a];
  }
  return p;
}

/// Rows [r0, r1) folded in order (see `transform_reduce_rows`).
template <int Dim, class T, class RowMap, class Op>
T reduce_row_range(const extents<Dim>& ext, index_t r0, index_t r1, T init,
                   const RowMap& row_map, const Op& op) {
  T acc = init;
  for (index_t r = r0; r < r1; ++r) acc = op(acc, row_map(r * ext[0], row_start(ext, r), ext[0]));
  return acc;
}

/// A point kernel that also offers a whole-row form `f.row(i, p, n)` (points `i .. i+n-1`,
/// starting at grid point `p` with `p[0] == 0`), e.g. to run SIMD across x.
template <class F, int Dim>
concept row_kernel = requires(const F& f, index_t i, const index_vec<Dim>& p) { f.row(i, p, i); };

/// Calls `f(i, p)` for every point of row `row` (all axes but x fixed): x runs fastest,
/// contiguous in memory, so the compiler sees a plain inner loop.
template <int Dim, class F>
inline void run_row(const extents<Dim>& ext, index_t row, const F& f) {
  index_vec<Dim> p = row_start(ext, row);
  const index_t nx = ext[0];
  index_t i = row * nx;
  if constexpr (row_kernel<F, Dim>) {
    f.row(i, p, nx);
  } else {
    for (index_t x = 0; x < nx; ++x, ++i) {
      p[0] = x;
      f(i, p);
    }
  }
}
}  // namespace detail

/// Storage of the serial backend: host memory.
template <class T>
struct backend_storage<backend::serial, T> {
  using type = detail::host_buffer<T>;
};

/// Calls `f(i)` for every `i` in `[0, n)`.
template <class F>
void for_each_index(backend::serial, index_t n, const F& f) {
  for (index_t i = 0; i < n; ++i) f(i);
}

/// Calls `f(i, p)` for every grid point `p` (linear index `i`), row by row.
template <int Dim, class F>
void for_each_point(backend::serial, const extents<Dim>& ext, const F& f) {
  const index_t rows = ext.rows();
  for (index_t r = 0; r < rows; ++r) detail::run_row(ext, r, f);
}

/// Calls `f(t)` for every task `t` in `[0, n)`: coarse pieces of work (many rows each)
/// that the parallel backends run concurrently, in any order.
template <class F>
void for_each_task(backend::serial, index_t n, const F& f) {
  for (index_t t = 0; t < n; ++t) f(t);
}

/// How many threads the backend's loops run on.
inline int thread_count(backend::serial) { return 1; }

/// Folds `map(i)` for `i` in `[0, n)` with the associative `op`, starting from its
/// identity `init`.
template <class T, class Map, class Op>
T transform_reduce(backend::serial, index_t n, T init, const Map& map, const Op& op) {
  T acc = init;
  for (index_t b = 0; b < n; b += detail::reduce_block)
    acc = op(acc, detail::reduce_block_range(b, std::min(n, b + detail::reduce_block), init,
                                             map, op));
  return acc;
}

/// Folds `row_map(i, p, n)` over the rows of `ext` with `op` (starting from its identity
/// `init`): the CPU backends' form of `transform_reduce` for maps cheaper a row at a time
/// (SIMD across x, row kernels). `row_map` gets a row's first point `i`, its coordinates
/// `p` (`p[0] == 0`) and length `n`, and returns the row's value folded in index order.
/// Rows are folded in blocks of about `detail::reduce_block` points, then the blocks, so the
/// result is bitwise the same on the serial and oneTBB backends whatever the thread count.
template <int Dim, class T, class RowMap, class Op>
T transform_reduce_rows(backend::serial, const extents<Dim>& ext, T init, const RowMap& row_map,
                        const Op& op) {
  const index_t rows = ext.rows(), per_block = detail::rows_per_block(ext);
  T acc = init;
  for (index_t r = 0; r < rows; r += per_block)
    acc = op(acc, detail::reduce_row_range(ext, r, std::min(rows, r + per_block), init,
                                           row_map, op));
  return acc;
}

/// Sorts `keys[0, n)` ascending and applies the same permutation to `values`; ties are
/// broken by value, so the result does not depend on the algorithm.
template <class K, class V>
void sort_by_key(backend::serial, K* keys, V* values, index_t n) {
  std::vector<std::pair<K, V>> kv(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) kv[i] = {keys[i], values[i]};
  std::sort(kv.begin(), kv.end());
  for (index_t i = 0; i < n; ++i) std::tie(keys[i], values[i]) = kv[i];
}

/// Copies `n` elements between memory of the CPU backends.
template <class T>
void copy_n(backend::serial, const T* src, index_t n, T* dst) {
  std::copy(src, src + n, dst);
}

/// Waits for the backend's queued work (nothing to wait for here).
inline void synchronize(backend::serial) {}

}  // namespace diffeo
