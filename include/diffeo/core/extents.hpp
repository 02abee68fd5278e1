#pragma once
/// Extents (the number of points along each axis) and grids (extents with spacing) in 2D
/// and 3D. Axis 0 is x, the fastest in memory; see docs/conventions.md.

#include <string>

#include "../config.hpp"
#include "error.hpp"
#include "vec.hpp"

namespace diffeo {

/// Integer grid coordinates (x, y[, z]).
template <int Dim>
using index_vec = vec<index_t, Dim>;

/// Points per axis of a `Dim`-dimensional grid, x first: `n[0] = nx`, `n[1] = ny`, ...
template <int Dim>
struct extents {
  static_assert(Dim == 2 || Dim == 3, "diffeo grids are 2D or 3D");
  static constexpr int rank = Dim;
  index_t n[Dim];

  DIFFEO_HD constexpr index_t operator[](int axis) const { return n[axis]; }
  DIFFEO_HD constexpr index_t& operator[](int axis) { return n[axis]; }
  /// Number of grid points.
  DIFFEO_HD constexpr index_t count() const {
    index_t c = 1;
    for (int a = 0; a < Dim; ++a) c *= n[a];
    return c;
  }
  /// Number of rows (every axis but x): the unit of work of the CPU backends.
  DIFFEO_HD constexpr index_t rows() const { return count() / n[0]; }
  /// Linear index of a point, x fastest.
  DIFFEO_HD constexpr index_t linear(const index_vec<Dim>& p) const {
    index_t i = p[Dim - 1];
    for (int a = Dim - 2; a >= 0; --a) i = i * n[a] + p[a];
    return i;
  }
  /// Grid coordinates of a linear index in [0, count()).
  DIFFEO_HD constexpr index_vec<Dim> unravel(index_t i) const {
    index_vec<Dim> p{};
    for (int a = 0; a + 1 < Dim; ++a) {
      p[a] = i % n[a];
      i /= n[a];
    }
    p[Dim - 1] = i;  // i < count: no division left to do
    return p;
  }
  /// True when `p` lies on the grid.
  DIFFEO_HD constexpr bool contains(const index_vec<Dim>& p) const {
    for (int a = 0; a < Dim; ++a)
      if (p[a] < 0 || p[a] >= n[a]) return false;
    return true;
  }
  DIFFEO_HD friend constexpr bool operator==(const extents& a, const extents& b) {
    for (int i = 0; i < Dim; ++i)
      if (a.n[i] != b.n[i]) return false;
    return true;
  }
};

/// Extents of a 2D grid of `nx` by `ny` points.
inline constexpr extents<2> make_extents(index_t nx, index_t ny) { return {{nx, ny}}; }
/// Extents of a 3D grid of `nx` by `ny` by `nz` points.
inline constexpr extents<3> make_extents(index_t nx, index_t ny, index_t nz) {
  return {{nx, ny, nz}};
}

/// Extents as text, x first: "128x64" or "128x64x32".
template <int Dim>
std::string to_string(const extents<Dim>& e) {
  std::string s = std::to_string(e[0]);
  for (int a = 1; a < Dim; ++a) {
    s += 'x';  // not "x" + to_string(...): GCC 12 warns falsely (-Wrestrict) on that
    s += std::to_string(e[a]);
  }
  return s;
}

/// A regular grid: extents and the physical spacing between neighbouring points.
/// Spacing enters only where a quantity has physical units (Jacobians, smoothing widths).
template <int Dim>
struct grid {
  extents<Dim> ext;
  vec<double, Dim> spacing = vec<double, Dim>::filled(1.0);

  DIFFEO_HD constexpr index_t count() const { return ext.count(); }
  friend constexpr bool operator==(const grid& a, const grid& b) {
    return a.ext == b.ext && a.spacing == b.spacing;
  }
};

/// Throws `shape_error` unless every extent is positive, and `value_error` unless every
/// spacing is positive and finite; `where` names the function and argument.
template <int Dim>
void require_valid(const grid<Dim>& g, const std::string& where) {
  for (int a = 0; a < Dim; ++a)
    if (g.ext[a] <= 0)
      throw shape_error(where + ": empty grid (extents " + to_string(g.ext) + ")");
  for (int a = 0; a < Dim; ++a)
    if (!(g.spacing[a] > 0) || !std::isfinite(g.spacing[a]))
      throw value_error(where + ": spacing must be positive and finite, got " +
                        std::to_string(g.spacing[a]) + " along axis " + std::to_string(a));
}

}  // namespace diffeo
