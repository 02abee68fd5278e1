#pragma once
// Smooth, non-symmetric images, displacements and metrics built in code, shared by the
// splatting tests.

#include <diffeo/core/field.hpp>

#include <cmath>

namespace diffeo::test {

/// Coordinate `a` of `p`, or 0 past the grid's dimension.
template <int Dim>
double coord(const index_vec<Dim>& p, int a) {
  return a < Dim ? double(p[a]) : 0.0;
}

/// A smooth, non-symmetric multi-channel image; `phase` gives another one of the same kind.
template <class T, int Dim>
image<T, Dim, backend::serial> make_image(const extents<Dim>& e, int channels, double phase = 0) {
  image<T, Dim, backend::serial> f(e, channels);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    for (int c = 0; c < channels; ++c)
      f[i * channels + c] = T(std::sin(0.7 * coord<Dim>(p, 0) + 1.3 * coord<Dim>(p, 1) +
                                       0.4 * coord<Dim>(p, 2) + 0.9 * c + phase) +
                              0.5 * std::cos(0.31 * double(i) + c - phase));
  }
  return f;
}

/// A smooth displacement of amplitude `amp` whose components differ.
template <class T, int Dim>
vector_field<T, Dim, backend::serial> make_flow(const extents<Dim>& e, double amp) {
  vector_field<T, Dim, backend::serial> u(e);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    for (int k = 0; k < Dim; ++k)
      u[i][k] = T(amp * std::sin(0.37 * (k + 1) * coord<Dim>(p, 0) + 0.53 * coord<Dim>(p, 1) -
                                 0.23 * coord<Dim>(p, 2) + 0.29 * k + 0.1));
  }
  return u;
}

/// A one-channel metric `offset + scale * (smooth pattern in [-1, 1])`.
template <class T, int Dim>
image<T, Dim, backend::serial> make_metric(const extents<Dim>& e, double offset, double scale) {
  image<T, Dim, backend::serial> z(e);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    z[i] = T(offset + scale * std::sin(1.1 * coord<Dim>(p, 0) - 0.7 * coord<Dim>(p, 1) +
                                       0.45 * coord<Dim>(p, 2) + 0.05 * double(i)));
  }
  return z;
}

}  // namespace diffeo::test
