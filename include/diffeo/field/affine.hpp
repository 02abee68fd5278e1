#pragma once
/// Affine maps as displacement fields, and least-squares affine fits of displacement
/// fields, with vector-Jacobian products of both.
///
///   affine_map<2> m;  m.A = rotation;  m.centre = {63.5, 63.5};
///   auto u = affine_field<float>(m, grid<2>{make_extents(128, 128)});  // u(p) = m(p) - p
///   auto fit = affine_fit(backend::tbb{}, u.view());                    // recovers m
///
/// Positions are in voxel units (x first). The map is x ↦ A (x - c) + c + t with an
/// optional centre c (the fixed point of A when t = 0); its displacement field is
/// u(p) = (A - I)(p - c) + t. The fit minimizes Σ_p w(p) |A (p - c) + c + t - (p + u(p))|²
/// over A and t for a given centre: the normal equations are accumulated in double in one
/// pass (coordinates relative to the grid centre, for conditioning) and solved on the host
/// (Cholesky).

#include <Eigen/Core>

#include <cmath>
#include <string>
#include <type_traits>

#include "../core/backend.hpp"
#include "../core/field.hpp"

namespace diffeo {

/// An affine map of positions in voxel units: x ↦ A (x - centre) + centre + t.
template <int Dim>
struct affine_map {
  using matrix_type = Eigen::Matrix<double, Dim, Dim>;
  using vector_type = Eigen::Matrix<double, Dim, 1>;
  using homogeneous_type = Eigen::Matrix<double, Dim + 1, Dim + 1>;

  matrix_type A = matrix_type::Identity();
  vector_type t = vector_type::Zero();
  vector_type centre = vector_type::Zero();

  /// The image of `x`.
  vector_type operator()(const vector_type& x) const { return A * (x - centre) + centre + t; }
  /// The (Dim+1)×(Dim+1) homogeneous matrix [A, b; 0, 1] with b = centre - A centre + t.
  homogeneous_type homogeneous() const {
    homogeneous_type h = homogeneous_type::Identity();
    h.template topLeftCorner<Dim, Dim>() = A;
    h.template topRightCorner<Dim, 1>() = centre - A * centre + t;
    return h;
  }
  /// The map of a homogeneous matrix (centre 0); throws `value_error` unless its last row
  /// is (0, …, 0, 1).
  static affine_map from_homogeneous(const homogeneous_type& h);
};

/// ∂L/∂A and ∂L/∂t of an affine map (the centre is held fixed).
template <int Dim>
struct affine_gradient {
  Eigen::Matrix<double, Dim, Dim> A = Eigen::Matrix<double, Dim, Dim>::Zero();
  Eigen::Matrix<double, Dim, 1> t = Eigen::Matrix<double, Dim, 1>::Zero();
};

/// Writes the displacement field u(p) = m(p) - p into `u` (computed in double).
template <class Backend, class S, int Dim>
void affine_field(Backend be, const affine_map<Dim>& m, vector_view<S, Dim> u);

/// The displacement field of `m` on grid `g`.
template <class S, class Backend = backend::default_t, int Dim>
vector_field<S, Dim, Backend> affine_field(const affine_map<Dim>& m, const grid<Dim>& g);

/// VJP of `affine_field`: ∂L/∂A = Σ_p g(p) (p - c)ᵀ and ∂L/∂t = Σ_p g(p) for
/// g = ∂L/∂u, with the map's centre c.
template <class Backend, class G, int Dim>
  requires is_vector_element<G, Dim>
affine_gradient<Dim> affine_field_vjp(Backend be, const affine_map<Dim>& m,
                                      field_view<G, Dim> grad_u);

/// The affine map (with the given centre) whose displacement field is closest to `u` in
/// least squares. Throws `value_error` if `u` has non-finite values, or if the points do
/// not determine an affine map (a grid of one point along some axis).
template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
affine_map<Dim> affine_fit(Backend be, field_view<U, Dim> u,
                           const Eigen::Matrix<double, Dim, 1>& centre =
                               Eigen::Matrix<double, Dim, 1>::Zero());

/// The weighted fit: point p counts with weight w(p) ≥ 0 (a 0/1 mask selects points).
/// Throws `value_error` for negative or non-finite weights, or when the weighted points do
/// not determine an affine map (all weights 0, or the points lie on a line or plane).
template <class Backend, class U, class W, int Dim>
  requires is_vector_element<U, Dim> && std::is_arithmetic_v<std::remove_const_t<W>>
affine_map<Dim> affine_fit(Backend be, field_view<U, Dim> u, field_view<W, Dim> weight,
                           const Eigen::Matrix<double, Dim, 1>& centre =
                               Eigen::Matrix<double, Dim, 1>::Zero());

/// VJP of the weighted fit: given ∂L/∂A and ∂L/∂t of the fitted map, writes ∂L/∂u into
/// `grad_u`. The fit is linear in u, so `u` itself is not needed.
template <class Backend, class W, class S, int Dim>
  requires std::is_arithmetic_v<std::remove_const_t<W>>
void affine_fit_vjp(Backend be, field_view<W, Dim> weight, const affine_gradient<Dim>& grad,
                    vector_view<S, Dim> grad_u,
                    const Eigen::Matrix<double, Dim, 1>& centre =
                        Eigen::Matrix<double, Dim, 1>::Zero());

/// VJP of the unweighted fit.
template <class Backend, class S, int Dim>
void affine_fit_vjp(Backend be, const affine_gradient<Dim>& grad, vector_view<S, Dim> grad_u,
                    const Eigen::Matrix<double, Dim, 1>& centre =
                        Eigen::Matrix<double, Dim, 1>::Zero()) {
  affine_fit_vjp(be, field_view<const float, Dim>{}, grad, grad_u, centre);
}

// ------------------------------------------------------------------------------------------

template <int Dim>
affine_map<Dim> affine_map<Dim>::from_homogeneous(const homogeneous_type& h) {
  for (int j = 0; j < Dim; ++j)
    if (h(Dim, j) != 0)
      throw value_error("affine_map::from_homogeneous(h): last row must be (0, ..., 0, 1)");
  if (h(Dim, Dim) != 1)
    throw value_error("affine_map::from_homogeneous(h): last row must be (0, ..., 0, 1)");
  affine_map m;
  m.A = h.template topLeftCorner<Dim, Dim>();
  m.t = h.template topRightCorner<Dim, 1>();
  return m;
}

namespace detail {

/// u(p) = D p + b with D = A - I and b = t - D c, in double.
template <class S, int Dim>
struct affine_field_kernel {
  double d[Dim][Dim];
  double b[Dim];
  vector_view<S, Dim> u;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    vec<S, Dim> r;
    for (int k = 0; k < Dim; ++k) {
      double s = b[k];
      for (int j = 0; j < Dim; ++j) s += d[k][j] * double(p[j]);
      r[k] = S(s);
    }
    u[i] = r;
  }
};

/// A fixed number of double sums, added entry by entry (the value type of the
/// reductions below).
template <int N>
struct double_sums {
  double v[N];
};
struct sums_plus {
  template <int N>
  DIFFEO_HD double_sums<N> operator()(const double_sums<N>& x, const double_sums<N>& y) const {
    double_sums<N> r;
    for (int i = 0; i < N; ++i) r.v[i] = x.v[i] + y.v[i];
    return r;
  }
};

/// Per point: g (p - c)ᵀ (row-major, Dim² entries), then g (Dim entries).
template <class G, int Dim>
struct affine_grad_map {
  field_view<G, Dim> g;
  double c[Dim];
  DIFFEO_HD double_sums<Dim * Dim + Dim> operator()(index_t i) const {
    const index_vec<Dim> p = g.ext.unravel(i);
    double_sums<Dim * Dim + Dim> s;
    for (int k = 0; k < Dim; ++k) {
      s.v[Dim * Dim + k] = double(g[i][k]);
      for (int j = 0; j < Dim; ++j) s.v[k * Dim + j] = double(g[i][k]) * (double(p[j]) - c[j]);
    }
    return s;
  }
};

/// Normal equations of the fit u(p) ≈ D z + e, z = p - (grid centre), per point: M = w z̃ z̃ᵀ
/// ((Dim+1)² entries, row-major), B = w z̃ uᵀ ((Dim+1)×Dim), and a count of bad points (a
/// non-finite value, or a negative or non-finite weight), with z̃ = (z, 1).
template <int Dim>
struct normal_layout {
  static constexpr int m = 0, b = (Dim + 1) * (Dim + 1), bad = b + (Dim + 1) * Dim,
                       size = bad + 1;
};
template <int Dim>
using normal_sums = double_sums<normal_layout<Dim>::size>;

template <class U, class W, int Dim>
struct normal_sums_map {
  field_view<U, Dim> u;  // data may be null: M only
  field_view<W, Dim> w;  // data may be null: unit weights
  double mid[Dim];
  DIFFEO_HD normal_sums<Dim> operator()(index_t i) const {
    using std::isfinite;
    using L = normal_layout<Dim>;
    normal_sums<Dim> s;
    for (int k = 0; k < L::size; ++k) s.v[k] = 0;
    const double wi = w.data ? double(w[i]) : 1.0;
    if (!(wi >= 0) || !isfinite(wi) || (u.data && !all_finite(u[i]))) {
      s.v[L::bad] = 1;
      return s;
    }
    if (wi == 0) return s;
    const index_vec<Dim> p = u.ext.unravel(i);
    double z[Dim + 1];
    for (int k = 0; k < Dim; ++k) z[k] = double(p[k]) - mid[k];
    z[Dim] = 1;
    for (int r = 0; r <= Dim; ++r) {
      for (int c = 0; c <= Dim; ++c) s.v[L::m + r * (Dim + 1) + c] = wi * z[r] * z[c];
      if (u.data)
        for (int k = 0; k < Dim; ++k) s.v[L::b + r * Dim + k] = wi * z[r] * double(u[i][k]);
    }
    return s;
  }
};

/// ∂L/∂u(p) = w(p) Hᵀ z̃(p) with H = ∂L/∂B.
template <class W, class S, int Dim>
struct affine_fit_vjp_kernel {
  field_view<W, Dim> w;
  vector_view<S, Dim> grad_u;
  double h[Dim + 1][Dim];
  double mid[Dim];
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    const double wi = w.data ? double(w[i]) : 1.0;
    double z[Dim + 1];
    for (int k = 0; k < Dim; ++k) z[k] = double(p[k]) - mid[k];
    z[Dim] = 1;
    vec<S, Dim> g;
    for (int k = 0; k < Dim; ++k) {
      double s = 0;
      for (int r = 0; r <= Dim; ++r) s += h[r][k] * z[r];
      g[k] = S(wi * s);
    }
    grad_u[i] = g;
  }
};

template <class Backend, class U, class W, int Dim>
normal_sums<Dim> accumulate_normal_sums(Backend be, field_view<U, Dim> u, field_view<W, Dim> w,
                                        const extents<Dim>& ext) {
  normal_sums_map<U, W, Dim> map{u, w, {}};
  map.u.ext = ext;
  for (int k = 0; k < Dim; ++k) map.mid[k] = 0.5 * double(ext[k] - 1);
  return transform_reduce(be, ext.count(), normal_sums<Dim>{}, map, sums_plus{});
}

/// Cholesky factor of the normal matrix M (symmetric, positive semi-definite), checked for
/// rank: a pivot below 1e-12 of the largest diagonal entry means the weighted points do
/// not determine an affine map. Written out (N ≤ 4) rather than taken from Eigen's
/// decompositions, whose solvers nvcc flags as host code called from device functions.
template <int N>
struct normal_cholesky {
  Eigen::Matrix<double, N, N> l = Eigen::Matrix<double, N, N>::Zero();

  /// M⁻¹ b, by forward and back substitution.
  template <int C>
  Eigen::Matrix<double, N, C> solve(const Eigen::Matrix<double, N, C>& b) const {
    Eigen::Matrix<double, N, C> x = b;
    for (int c = 0; c < C; ++c) {
      for (int i = 0; i < N; ++i) {
        for (int k = 0; k < i; ++k) x(i, c) -= l(i, k) * x(k, c);
        x(i, c) /= l(i, i);
      }
      for (int i = N - 1; i >= 0; --i) {
        for (int k = i + 1; k < N; ++k) x(i, c) -= l(k, i) * x(k, c);
        x(i, c) /= l(i, i);
      }
    }
    return x;
  }
};

template <int Dim>
normal_cholesky<Dim + 1> factor_normal_matrix(const normal_sums<Dim>& s,
                                              const std::string& where) {
  constexpr int N = Dim + 1;
  const auto m = [&](int r, int c) { return s.v[normal_layout<Dim>::m + r * N + c]; };
  double largest = 0;
  for (int i = 0; i < N; ++i) largest = m(i, i) > largest ? m(i, i) : largest;
  normal_cholesky<N> f;
  for (int j = 0; j < N; ++j) {
    double d = m(j, j);
    for (int k = 0; k < j; ++k) d -= f.l(j, k) * f.l(j, k);
    if (!(d > 1e-12 * largest))
      throw value_error(where + ": the (weighted) points do not determine an affine map: they "
                                "have no weight or lie on a line or plane");
    f.l(j, j) = std::sqrt(d);
    for (int i = j + 1; i < N; ++i) {
      double e = m(i, j);
      for (int k = 0; k < j; ++k) e -= f.l(i, k) * f.l(j, k);
      f.l(i, j) = e / f.l(j, j);
    }
  }
  return f;
}

template <class Backend, class U, class W, int Dim>
affine_map<Dim> affine_fit_impl(Backend be, field_view<U, Dim> u, field_view<W, Dim> w,
                                const Eigen::Matrix<double, Dim, 1>& centre) {
  const normal_sums<Dim> s = accumulate_normal_sums(be, u, w, u.ext);
  const double bad = s.v[normal_layout<Dim>::bad];
  if (bad > 0)
    throw value_error("affine_fit(" + std::string(w.data ? "u, weight" : "u") + "): " +
                      std::to_string(static_cast<long long>(bad)) +
                      " points with a non-finite value" +
                      (w.data ? " or a negative or non-finite weight" : ""));
  const auto chol = factor_normal_matrix<Dim>(s, w.data ? "affine_fit(weight)" : "affine_fit(u)");
  Eigen::Matrix<double, Dim + 1, Dim> b;
  for (int r = 0; r <= Dim; ++r)
    for (int k = 0; k < Dim; ++k) b(r, k) = s.v[normal_layout<Dim>::b + r * Dim + k];
  const Eigen::Matrix<double, Dim + 1, Dim> x = chol.solve(b);
  // u ≈ D z + e with z = p - mid; the map's form u = D (p - c) + t gives t = e + D (c - mid).
  const Eigen::Matrix<double, Dim, Dim> d = x.template topRows<Dim>().transpose();
  Eigen::Matrix<double, Dim, 1> mid;
  for (int k = 0; k < Dim; ++k) mid(k) = 0.5 * double(u.ext[k] - 1);
  affine_map<Dim> m;
  m.A = Eigen::Matrix<double, Dim, Dim>::Identity() + d;
  m.t = x.row(Dim).transpose() + d * (centre - mid);
  m.centre = centre;
  return m;
}

template <int Dim>
void require_finite(const Eigen::Matrix<double, Dim, Dim>& a,
                    const Eigen::Matrix<double, Dim, 1>& t,
                    const Eigen::Matrix<double, Dim, 1>& c, const std::string& where) {
  if (!a.allFinite() || !t.allFinite() || !c.allFinite())
    throw value_error(where + ": the affine map has non-finite entries");
}

}  // namespace detail

template <class Backend, class S, int Dim>
void affine_field(Backend be, const affine_map<Dim>& m, vector_view<S, Dim> u) {
  require_valid(u, "affine_field(u)");
  detail::require_finite<Dim>(m.A, m.t, m.centre, "affine_field(m)");
  const Eigen::Matrix<double, Dim, Dim> d = m.A - Eigen::Matrix<double, Dim, Dim>::Identity();
  const Eigen::Matrix<double, Dim, 1> b = m.t - d * m.centre;
  detail::affine_field_kernel<S, Dim> k{};
  for (int r = 0; r < Dim; ++r) {
    k.b[r] = b(r);
    for (int c = 0; c < Dim; ++c) k.d[r][c] = d(r, c);
  }
  k.u = u;
  for_each_point(be, u.ext, k);
}

template <class S, class Backend, int Dim>
vector_field<S, Dim, Backend> affine_field(const affine_map<Dim>& m, const grid<Dim>& g) {
  vector_field<S, Dim, Backend> u(g);
  affine_field(Backend{}, m, u.view());
  return u;
}

template <class Backend, class G, int Dim>
  requires is_vector_element<G, Dim>
affine_gradient<Dim> affine_field_vjp(Backend be, const affine_map<Dim>& m,
                                      field_view<G, Dim> grad_u) {
  require_valid(grad_u, "affine_field_vjp(grad_u)");
  detail::affine_grad_map<G, Dim> map{grad_u, {}};
  for (int k = 0; k < Dim; ++k) map.c[k] = m.centre(k);
  const auto s = transform_reduce(be, grad_u.points(), detail::double_sums<Dim * Dim + Dim>{},
                                  map, detail::sums_plus{});
  affine_gradient<Dim> r;
  for (int k = 0; k < Dim; ++k) {
    r.t(k) = s.v[Dim * Dim + k];
    for (int j = 0; j < Dim; ++j) r.A(k, j) = s.v[k * Dim + j];
  }
  return r;
}

template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
affine_map<Dim> affine_fit(Backend be, field_view<U, Dim> u,
                           const Eigen::Matrix<double, Dim, 1>& centre) {
  require_valid(u, "affine_fit(u)");
  if (!centre.allFinite()) throw value_error("affine_fit(centre): non-finite centre");
  return detail::affine_fit_impl(be, u, field_view<const float, Dim>{}, centre);
}

template <class Backend, class U, class W, int Dim>
  requires is_vector_element<U, Dim> && std::is_arithmetic_v<std::remove_const_t<W>>
affine_map<Dim> affine_fit(Backend be, field_view<U, Dim> u, field_view<W, Dim> weight,
                           const Eigen::Matrix<double, Dim, 1>& centre) {
  require_valid(u, "affine_fit(u)");
  require_valid(weight, "affine_fit(weight)");
  require_same_extents(u, weight, "affine_fit(u, weight)");
  if (!(u.spacing == weight.spacing))
    throw shape_error("affine_fit(u, weight): spacings differ");
  if (weight.channels != 1)
    throw shape_error("affine_fit(weight): expected one channel, got " +
                      std::to_string(weight.channels));
  if (!centre.allFinite()) throw value_error("affine_fit(centre): non-finite centre");
  return detail::affine_fit_impl(be, u, as_const(weight), centre);
}

template <class Backend, class W, class S, int Dim>
  requires std::is_arithmetic_v<std::remove_const_t<W>>
void affine_fit_vjp(Backend be, field_view<W, Dim> weight, const affine_gradient<Dim>& grad,
                    vector_view<S, Dim> grad_u, const Eigen::Matrix<double, Dim, 1>& centre) {
  require_valid(grad_u, "affine_fit_vjp(grad_u)");
  if (weight.data) {
    require_same_extents(grad_u, weight, "affine_fit_vjp(grad_u, weight)");
    if (weight.channels != 1)
      throw shape_error("affine_fit_vjp(weight): expected one channel, got " +
                        std::to_string(weight.channels));
  }
  detail::require_finite<Dim>(grad.A, grad.t, centre, "affine_fit_vjp(grad, centre)");
  const auto s = detail::accumulate_normal_sums(be, const_vector_view<S, Dim>{}, as_const(weight),
                                                grad_u.ext);
  if (s.v[detail::normal_layout<Dim>::bad] > 0)
    throw value_error("affine_fit_vjp(weight): negative or non-finite weights");
  const auto chol = detail::factor_normal_matrix<Dim>(s, "affine_fit_vjp(weight)");
  // Back through t = e + D (c - mid) and A = I + D to X = [Dᵀ; eᵀ], then through
  // X = M⁻¹ B (M symmetric): H = ∂L/∂B = M⁻¹ ∂L/∂X.
  Eigen::Matrix<double, Dim, 1> mid;
  for (int k = 0; k < Dim; ++k) mid(k) = 0.5 * double(grad_u.ext[k] - 1);
  const Eigen::Matrix<double, Dim, Dim> gd = grad.A + grad.t * (centre - mid).transpose();
  Eigen::Matrix<double, Dim + 1, Dim> gx;
  gx.template topRows<Dim>() = gd.transpose();
  gx.row(Dim) = grad.t.transpose();
  const Eigen::Matrix<double, Dim + 1, Dim> h = chol.solve(gx);
  detail::affine_fit_vjp_kernel<std::add_const_t<W>, S, Dim> k{as_const(weight), grad_u, {}, {}};
  for (int r = 0; r <= Dim; ++r)
    for (int c = 0; c < Dim; ++c) k.h[r][c] = h(r, c);
  for (int c = 0; c < Dim; ++c) k.mid[c] = mid(c);
  for_each_point(be, grad_u.ext, k);
}

}  // namespace diffeo
