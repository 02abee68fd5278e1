#pragma once
/// Boundary policies: what a sample reads where its interpolation taps fall off the grid.
/// Names and semantics are PyTorch's `padding_mode` with `align_corners=True` (voxel
/// centres at integer indices, the grid spans [0, n-1]); see docs/conventions.md.

#include <cmath>

#include "../config.hpp"

namespace diffeo::boundary {

/// Taps off the grid read 0, so values fade to 0 within one voxel outside [0, n-1].
struct zeros {};
/// Taps off the grid read the nearest edge voxel (edge replication).
struct border {};
/// The grid is mirrored about its first and last voxel centres (period 2(n-1)).
struct reflection {};

}  // namespace diffeo::boundary

namespace diffeo::detail {

/// Index `i` reflected into [0, n-1] about the centres of voxels 0 and n-1.
DIFFEO_HD inline index_t reflect_index(index_t i, index_t n) {
  if (i >= 0 && i < n) return i;
  if (n == 1) return 0;
  // One mirror suffices for taps near the grid (the usual case): no division.
  if (i < 0 && i >= 1 - n) return -i;
  if (i >= n && i <= 2 * (n - 1)) return 2 * (n - 1) - i;
  const index_t period = 2 * (n - 1);
  index_t m = i % period;
  if (m < 0) m += period;
  return m > n - 1 ? period - m : m;
}

/// Folds a coordinate into [0, n-1] by reflection; `slope` becomes d(folded)/dx (±1).
/// Folding first keeps huge coordinates from overflowing the integer tap indices.
template <class P>
DIFFEO_HD P reflect_coordinate(P x, index_t n, P& slope) {
  using std::fabs;
  using std::fmod;
  slope = x < P(0) ? P(-1) : P(1);
  if (x >= P(0) && x <= P(n - 1)) return x;  // the common case needs no fmod
  if (n == 1) {
    slope = 0;
    return 0;
  }
  const P span = P(n - 1);
  P m = fmod(fabs(x), 2 * span);
  if (m > span) {
    m = 2 * span - m;
    slope = -slope;
  }
  return m;
}

/// The index a tap at `i` reads under each policy; `valid` is false where it reads 0.
template <class Boundary>
struct boundary_map;

template <>
struct boundary_map<boundary::zeros> {
  DIFFEO_HD static index_t apply(index_t i, index_t n, bool& valid) {
    valid = i >= 0 && i < n;
    return valid ? i : 0;
  }
};
template <>
struct boundary_map<boundary::border> {
  DIFFEO_HD static index_t apply(index_t i, index_t n, bool& valid) {
    valid = true;
    return i < 0 ? 0 : (i >= n ? n - 1 : i);
  }
};
template <>
struct boundary_map<boundary::reflection> {
  DIFFEO_HD static index_t apply(index_t i, index_t n, bool& valid) {
    valid = true;
    return reflect_index(i, n);
  }
};

}  // namespace diffeo::detail
