#pragma once
// Smooth vector fields built in code, shared by the field/ tests.

#include <diffeo/core/field.hpp>

#include <cmath>

namespace diffeo::test {

/// A smooth field in the style of WORKLOADS.md: amplitude `amp` voxels, periods a fixed
/// fraction of the grid, so refining the grid samples the same shape more finely.
template <class S, int Dim>
vector_field<S, Dim, backend::serial> smooth_field(const extents<Dim>& e, double amp, int seed) {
  constexpr double two_pi = 6.283185307179586;
  vector_field<S, Dim, backend::serial> f(e);
  const double n = double(e[0]);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    const double x = p[0] / n, y = p[1] / n, z = Dim == 3 ? p[Dim - 1] / n : 0.0;
    for (int c = 0; c < Dim; ++c) {
      const double ph = 0.37 * (seed + 1) + 1.3 * c;
      const double zc = Dim == 3 ? std::cos(two_pi * z / 0.8 + ph + 0.4) : 1.0;
      f[i][c] = S(amp * (0.6 * std::sin(two_pi * x / 0.9 + ph) *
                             std::cos(two_pi * y / 0.7 + ph + 0.9) * zc +
                         0.4 * std::sin(two_pi * (x + y + z) / 0.5 + ph + 2.1)));
    }
  }
  return f;
}

/// `f` with its components converted to `T`.
template <class T, class S, int Dim>
vector_field<T, Dim, backend::serial> cast_field(const vector_field<S, Dim, backend::serial>& f) {
  vector_field<T, Dim, backend::serial> out(f.geometry());
  for (index_t i = 0; i < f.points(); ++i) out[i] = f[i].template cast<T>();
  return out;
}

}  // namespace diffeo::test
