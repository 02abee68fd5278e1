#pragma once
/// Small fixed-size vectors for positions, displacements and per-voxel math; usable in
/// device code and laid out exactly as `N` interleaved scalars, so a `(…, D)` array of
/// floats is an array of `vec<float, D>`.

#include <cmath>

#include "../config.hpp"

namespace diffeo {

/// `N` scalars of type `T`, component 0 along the fastest array axis (x, y[, z]).
template <class T, int N>
struct vec {
  T v[N];

  using value_type = T;
  static constexpr int size = N;

  DIFFEO_HD constexpr T& operator[](int i) { return v[i]; }
  DIFFEO_HD constexpr const T& operator[](int i) const { return v[i]; }

  /// All components equal to `s`.
  DIFFEO_HD static constexpr vec filled(T s) {
    vec r{};
    for (int i = 0; i < N; ++i) r.v[i] = s;
    return r;
  }
  DIFFEO_HD static constexpr vec zero() { return filled(T(0)); }

  /// Component-wise conversion to another scalar type.
  template <class U>
  DIFFEO_HD constexpr vec<U, N> cast() const {
    vec<U, N> r{};
    for (int i = 0; i < N; ++i) r.v[i] = static_cast<U>(v[i]);
    return r;
  }

  DIFFEO_HD constexpr vec& operator+=(const vec& o) {
    for (int i = 0; i < N; ++i) v[i] += o.v[i];
    return *this;
  }
  DIFFEO_HD constexpr vec& operator-=(const vec& o) {
    for (int i = 0; i < N; ++i) v[i] -= o.v[i];
    return *this;
  }
  DIFFEO_HD constexpr vec& operator*=(T s) {
    for (int i = 0; i < N; ++i) v[i] *= s;
    return *this;
  }
  DIFFEO_HD constexpr vec& operator/=(T s) {
    for (int i = 0; i < N; ++i) v[i] /= s;
    return *this;
  }
  DIFFEO_HD friend constexpr vec operator+(vec a, const vec& b) { return a += b; }
  DIFFEO_HD friend constexpr vec operator-(vec a, const vec& b) { return a -= b; }
  DIFFEO_HD friend constexpr vec operator-(vec a) {
    for (int i = 0; i < N; ++i) a.v[i] = -a.v[i];
    return a;
  }
  DIFFEO_HD friend constexpr vec operator*(vec a, T s) { return a *= s; }
  DIFFEO_HD friend constexpr vec operator*(T s, vec a) { return a *= s; }
  DIFFEO_HD friend constexpr vec operator/(vec a, T s) { return a /= s; }
  DIFFEO_HD friend constexpr bool operator==(const vec& a, const vec& b) {
    for (int i = 0; i < N; ++i)
      if (!(a.v[i] == b.v[i])) return false;
    return true;
  }
};

using vec2f = vec<float, 2>;
using vec3f = vec<float, 3>;
using vec2d = vec<double, 2>;
using vec3d = vec<double, 3>;

/// Dot product.
template <class T, int N>
DIFFEO_HD constexpr T dot(const vec<T, N>& a, const vec<T, N>& b) {
  T s = 0;
  for (int i = 0; i < N; ++i) s += a[i] * b[i];
  return s;
}

/// Euclidean length.
template <class T, int N>
DIFFEO_HD T norm(const vec<T, N>& a) {
  using std::sqrt;
  return sqrt(dot(a, a));
}

/// Largest absolute component.
template <class T, int N>
DIFFEO_HD T max_abs(const vec<T, N>& a) {
  using std::fabs;
  T m = 0;
  for (int i = 0; i < N; ++i) m = fabs(a[i]) > m ? fabs(a[i]) : m;
  return m;
}

/// True when every component is finite (neither NaN nor infinite).
template <class T, int N>
DIFFEO_HD bool all_finite(const vec<T, N>& a) {
  using std::isfinite;
  for (int i = 0; i < N; ++i)
    if (!isfinite(a[i])) return false;
  return true;
}

namespace detail {
/// Scalar view of an element: a scalar is its own single component; a vec has N.
template <class T>
struct components {
  using scalar = T;
  static constexpr int count = 1;
  DIFFEO_HD static constexpr T& get(T& x, int) { return x; }
  DIFFEO_HD static constexpr const T& get(const T& x, int) { return x; }
};
template <class T, int N>
struct components<vec<T, N>> {
  using scalar = T;
  static constexpr int count = N;
  DIFFEO_HD static constexpr T& get(vec<T, N>& x, int i) { return x[i]; }
  DIFFEO_HD static constexpr const T& get(const vec<T, N>& x, int i) { return x[i]; }
};
template <class T>
struct components<const T> : components<T> {};
}  // namespace detail

/// Scalar type of an element type: `float` for both `float` and `vec<float, 2>`.
template <class T>
using scalar_of = typename detail::components<T>::scalar;

}  // namespace diffeo
