#pragma once
/// Interop with Eigen's fixed-size vectors for positions and displacements.

#include <Eigen/Core>

#include "vec.hpp"

namespace diffeo {

/// `v` as an Eigen column vector.
template <class T, int N>
DIFFEO_HD Eigen::Matrix<T, N, 1> to_eigen(const vec<T, N>& v) {
  Eigen::Matrix<T, N, 1> r;
  for (int i = 0; i < N; ++i) r(i) = v[i];
  return r;
}

/// An Eigen fixed-size column vector as a `vec`.
template <class Derived>
DIFFEO_HD auto from_eigen(const Eigen::MatrixBase<Derived>& m) {
  using T = typename Derived::Scalar;
  constexpr int N = Derived::SizeAtCompileTime;
  static_assert(N == 2 || N == 3, "from_eigen: expected a fixed-size 2- or 3-vector");
  vec<T, N> r{};
  for (int i = 0; i < N; ++i) r[i] = m(i);
  return r;
}

}  // namespace diffeo
