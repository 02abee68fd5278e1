#pragma once
/// Regularizing penalties of a displacement field u (voxel units), each a scalar sum
/// accumulated in double, with its vector-Jacobian product:
///
///   negative_jacobian_penalty  Σ_p (|J(p)| - J(p)) = 2 Σ_p max(0, -J(p)), J = det(I + D_p u)
///                              (Warping NODE's JD; forward differences by default)
///   out_of_grid_penalty        Σ_p Σ_a max(0, -q_a) + max(0, q_a - (n_a - 1)), q = p + u(p)
///   diffusion_penalty          Σ_a Σ_p |u(p + e_a) - u(p)|², each neighbour pair once
///   bending_energy             Σ_a Σ_p |∂²_aa u|² + 2 Σ_{a<b} Σ_p |∂²_ab u|²
///
/// Bending energy uses `u(p+e_a) - 2u(p) + u(p-e_a)` at every p where it fits
/// (1 ≤ p_a ≤ n_a - 2) and the compact mixed difference
/// `u(p+e_a+e_b) - u(p+e_a) - u(p+e_b) + u(p)` at every p where it fits; it vanishes on
/// affine fields. All penalties are sums over the grid (divide by the point count for the
/// means that VoxelMorph reports) and ignore the spacing: derivatives are per voxel.
///
/// Each `*_vjp(be, u, grad_u, grad_out)` overwrites `grad_u` with grad_out · ∂P/∂u, the
/// exact gradient of the discrete sum. Where a penalty has a kink (J = 0, q_a on the grid
/// box), the gradient takes the value of the flat side (zero).

#include <cmath>
#include <string>
#include <type_traits>

#include "../core/backend.hpp"
#include "../core/field.hpp"
#include "jacobian.hpp"

namespace diffeo {

/// Σ_p (|J(p)| - J(p)), J = det(I + D_p u): twice the total negative Jacobian determinant.
template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
double negative_jacobian_penalty(Backend be, field_view<U, Dim> u,
                                 difference d = difference::forward);

/// Writes grad_out · ∂(negative_jacobian_penalty)/∂u into `grad_u`.
template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void negative_jacobian_penalty_vjp(Backend be, field_view<U, Dim> u, vector_view<S, Dim> grad_u,
                                   double grad_out = 1, difference d = difference::forward);

/// Σ_p Σ_a of how far q = p + u(p) lies outside [0, n_a - 1] along axis a.
template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
double out_of_grid_penalty(Backend be, field_view<U, Dim> u);

/// Writes grad_out · ∂(out_of_grid_penalty)/∂u into `grad_u`.
template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void out_of_grid_penalty_vjp(Backend be, field_view<U, Dim> u, vector_view<S, Dim> grad_u,
                             double grad_out = 1);

/// Σ over neighbour pairs along every axis of |u(p + e_a) - u(p)|² (forward differences).
template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
double diffusion_penalty(Backend be, field_view<U, Dim> u);

/// Writes grad_out · ∂(diffusion_penalty)/∂u into `grad_u`.
template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void diffusion_penalty_vjp(Backend be, field_view<U, Dim> u, vector_view<S, Dim> grad_u,
                           double grad_out = 1);

/// Σ of squared second differences, mixed ones counted twice (thin-plate bending energy).
template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
double bending_energy(Backend be, field_view<U, Dim> u);

/// Writes grad_out · ∂(bending_energy)/∂u into `grad_u`.
template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void bending_energy_vjp(Backend be, field_view<U, Dim> u, vector_view<S, Dim> grad_u,
                        double grad_out = 1);

/// Field forms: the penalty of `u`, and its gradient as a new field on `u`'s grid.
template <class S, int Dim, class B>
double negative_jacobian_penalty(const vector_field<S, Dim, B>& u,
                                 difference d = difference::forward) {
  return negative_jacobian_penalty(B{}, u.view(), d);
}
template <class S, int Dim, class B>
vector_field<S, Dim, B> negative_jacobian_penalty_vjp(const vector_field<S, Dim, B>& u,
                                                      double grad_out = 1,
                                                      difference d = difference::forward) {
  vector_field<S, Dim, B> g(u.geometry());
  negative_jacobian_penalty_vjp(B{}, u.view(), g.view(), grad_out, d);
  return g;
}
template <class S, int Dim, class B>
double out_of_grid_penalty(const vector_field<S, Dim, B>& u) {
  return out_of_grid_penalty(B{}, u.view());
}
template <class S, int Dim, class B>
vector_field<S, Dim, B> out_of_grid_penalty_vjp(const vector_field<S, Dim, B>& u,
                                                double grad_out = 1) {
  vector_field<S, Dim, B> g(u.geometry());
  out_of_grid_penalty_vjp(B{}, u.view(), g.view(), grad_out);
  return g;
}
template <class S, int Dim, class B>
double diffusion_penalty(const vector_field<S, Dim, B>& u) {
  return diffusion_penalty(B{}, u.view());
}
template <class S, int Dim, class B>
vector_field<S, Dim, B> diffusion_penalty_vjp(const vector_field<S, Dim, B>& u,
                                              double grad_out = 1) {
  vector_field<S, Dim, B> g(u.geometry());
  diffusion_penalty_vjp(B{}, u.view(), g.view(), grad_out);
  return g;
}
template <class S, int Dim, class B>
double bending_energy(const vector_field<S, Dim, B>& u) {
  return bending_energy(B{}, u.view());
}
template <class S, int Dim, class B>
vector_field<S, Dim, B> bending_energy_vjp(const vector_field<S, Dim, B>& u,
                                           double grad_out = 1) {
  vector_field<S, Dim, B> g(u.geometry());
  bending_energy_vjp(B{}, u.view(), g.view(), grad_out);
  return g;
}

// ------------------------------------------------------------------------------------------

namespace detail {

struct sum_double {
  DIFFEO_HD double operator()(double a, double b) const { return a + b; }
};

template <class S, int Dim>
DIFFEO_HD double squared_norm(const vec<S, Dim>& a) {
  double s = 0;
  for (int k = 0; k < Dim; ++k) s += double(a[k]) * double(a[k]);
  return s;
}

template <class S, int Dim>
DIFFEO_HD jacobian_matrix<S, Dim> unit_scale() {
  jacobian_matrix<S, Dim> c;
  for (int i = 0; i < Dim; ++i)
    for (int j = 0; j < Dim; ++j) c.m[i][j] = S(1);
  return c;
}

/// A point's term of the negative-Jacobian penalty, |J| − J (NaN stays NaN).
DIFFEO_HD inline double negative_part(double j) {
  using std::fabs;
  return fabs(j) - j;
}

template <difference D, class S, int Dim>
struct negative_jacobian_map {
  const_vector_view<S, Dim> u;
  DIFFEO_HD double operator()(index_t i) const {
    return negative_part(
        double(determinant(jacobian_at<D>(u, i, u.ext.unravel(i), unit_scale<S, Dim>()))));
  }
};

template <class S, int Dim>
struct out_of_grid_map {
  const_vector_view<S, Dim> u;
  DIFFEO_HD double operator()(index_t i) const {
    const index_vec<Dim> p = u.ext.unravel(i);
    double s = 0;
    for (int a = 0; a < Dim; ++a) {
      const double q = double(p[a]) + double(u[i][a]), hi = double(u.ext[a] - 1);
      s += q < 0 ? -q : (q > hi ? q - hi : (q == q ? 0.0 : q));  // NaN stays NaN
    }
    return s;
  }
};

template <class S, int Dim>
struct out_of_grid_vjp_kernel {
  const_vector_view<S, Dim> u;
  vector_view<S, Dim> grad_u;
  S grad_out;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    vec<S, Dim> g;
    for (int a = 0; a < Dim; ++a) {
      const double q = double(p[a]) + double(u[i][a]), hi = double(u.ext[a] - 1);
      g[a] = q < 0 ? -grad_out : (q > hi ? grad_out : S(0));
    }
    grad_u[i] = g;
  }
};

template <class S, int Dim>
struct diffusion_map {
  const_vector_view<S, Dim> u;
  DIFFEO_HD double operator()(index_t i) const {
    const index_vec<Dim> p = u.ext.unravel(i);
    double s = 0;
    index_t stride = 1;
    for (int a = 0; a < Dim; ++a) {
      if (p[a] + 1 < u.ext[a]) s += squared_norm(u[i + stride] - u[i]);
      stride *= u.ext[a];
    }
    return s;
  }
};

template <class S, int Dim>
struct diffusion_vjp_kernel {
  const_vector_view<S, Dim> u;
  vector_view<S, Dim> grad_u;
  S grad_out;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    vec<S, Dim> g = vec<S, Dim>::zero();
    index_t stride = 1;
    for (int a = 0; a < Dim; ++a) {
      if (p[a] + 1 < u.ext[a]) g += u[i] - u[i + stride];
      if (p[a] > 0) g += u[i] - u[i - stride];
      stride *= u.ext[a];
    }
    grad_u[i] = g * (S(2) * grad_out);
  }
};

/// Second differences of the bending energy at `p` (those that fit), handed to `visit`
/// as (difference, weight): weight 1 for u_aa, 2 for the mixed u_ab.
template <class S, int Dim, class Visit>
DIFFEO_HD void for_each_second_difference(const_vector_view<S, Dim> u, index_t i,
                                          const index_vec<Dim>& p, const Visit& visit) {
  index_t stride[Dim];
  stride[0] = 1;
  for (int a = 1; a < Dim; ++a) stride[a] = stride[a - 1] * u.ext[a - 1];
  for (int a = 0; a < Dim; ++a) {
    if (p[a] >= 1 && p[a] + 1 < u.ext[a])
      visit(u[i + stride[a]] - S(2) * u[i] + u[i - stride[a]], 1.0);
    for (int b = a + 1; b < Dim; ++b)
      if (p[a] + 1 < u.ext[a] && p[b] + 1 < u.ext[b])
        visit(u[i + stride[a] + stride[b]] - u[i + stride[a]] - u[i + stride[b]] + u[i], 2.0);
  }
}

template <class S, int Dim>
struct bending_map {
  const_vector_view<S, Dim> u;
  DIFFEO_HD double operator()(index_t i) const {
    double s = 0;
    for_each_second_difference(u, i, u.ext.unravel(i),
                               [&](const vec<S, Dim>& d, double w) { s += w * squared_norm(d); });
    return s;
  }
};

/// Gather form of the bending-energy gradient: every second difference that reads u(q),
/// times its coefficient on u(q).
template <class S, int Dim>
struct bending_vjp_kernel {
  const_vector_view<S, Dim> u;
  vector_view<S, Dim> grad_u;
  S grad_out;
  DIFFEO_HD void operator()(index_t q, const index_vec<Dim>& p) const {
    index_t stride[Dim];
    stride[0] = 1;
    for (int a = 1; a < Dim; ++a) stride[a] = stride[a - 1] * u.ext[a - 1];
    vec<S, Dim> g = vec<S, Dim>::zero();
    for (int a = 0; a < Dim; ++a) {
      const index_t n = u.ext[a];
      // u_aa at r = q + t e_a reads u(q) with coefficient 1 (t = ±1) or -2 (t = 0).
      for (int t = -1; t <= 1; ++t) {
        const index_t x = p[a] + t;
        if (x < 1 || x + 1 >= n) continue;
        const index_t r = q + t * stride[a];
        const vec<S, Dim> d = u[r + stride[a]] - S(2) * u[r] + u[r - stride[a]];
        g += d * S(t == 0 ? -2 : 1);
      }
      // u_ab at r = q - sa e_a - sb e_b reads u(q) with coefficient (-1)^(sa + sb); the
      // energy counts it twice.
      for (int b = a + 1; b < Dim; ++b)
        for (int sa = 0; sa <= 1; ++sa)
          for (int sb = 0; sb <= 1; ++sb) {
            const index_t xa = p[a] - sa, xb = p[b] - sb;
            if (xa < 0 || xb < 0 || xa + 1 >= n || xb + 1 >= u.ext[b]) continue;
            const index_t r = q - sa * stride[a] - sb * stride[b];
            const vec<S, Dim> d =
                u[r + stride[a] + stride[b]] - u[r + stride[a]] - u[r + stride[b]] + u[r];
            g += d * S((sa + sb) % 2 == 0 ? 2 : -2);
          }
    }
    grad_u[q] = g * (S(2) * grad_out);
  }
};

template <class U, class G>
void require_penalty_args(const U& u, const G& grad_u, const char* name) {
  const std::string f(name);
  require_valid(u, f + "(u)");
  require_same_extents(u, grad_u, f + "(u, grad_u)");
  if (grad_u.data == nullptr) throw value_error(f + "(grad_u): null data pointer");
}

}  // namespace detail

template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
double negative_jacobian_penalty(Backend be, field_view<U, Dim> u, difference d) {
  using S = scalar_of<U>;
  require_valid(u, "negative_jacobian_penalty(u)");
  return detail::with_difference(d, [&](auto D) {
    if constexpr (is_host_backend<Backend>)
      return detail::reduce_determinants<D.value>(
          be, as_const(u), detail::unit_scale<S, Dim>(), 0.0,
          [](S j) { return detail::negative_part(double(j)); }, detail::sum_double{});
    else
      return transform_reduce(be, u.points(), 0.0,
                              detail::negative_jacobian_map<D.value, S, Dim>{as_const(u)},
                              detail::sum_double{});
  });
}

template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void negative_jacobian_penalty_vjp(Backend be, field_view<U, Dim> u, vector_view<S, Dim> grad_u,
                                   double grad_out, difference d) {
  detail::require_penalty_args(u, grad_u, "negative_jacobian_penalty_vjp");
  const auto c = detail::unit_scale<S, Dim>();
  detail::with_difference(d, [&](auto D) {
    using cof =
        detail::jacobian_kernel<D.value, S, Dim, detail::jacobian_output::negative_det_adjoint>;
    detail::gather_cofactors<D.value>(be, cof{as_const(u), {}, c, {}, S(grad_out)}, grad_u, c);
  });
}

template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
double out_of_grid_penalty(Backend be, field_view<U, Dim> u) {
  using S = scalar_of<U>;
  require_valid(u, "out_of_grid_penalty(u)");
  return transform_reduce(be, u.points(), 0.0, detail::out_of_grid_map<S, Dim>{as_const(u)},
                          detail::sum_double{});
}

template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void out_of_grid_penalty_vjp(Backend be, field_view<U, Dim> u, vector_view<S, Dim> grad_u,
                             double grad_out) {
  detail::require_penalty_args(u, grad_u, "out_of_grid_penalty_vjp");
  for_each_point(be, u.ext,
                 detail::out_of_grid_vjp_kernel<S, Dim>{as_const(u), grad_u, S(grad_out)});
}

template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
double diffusion_penalty(Backend be, field_view<U, Dim> u) {
  using S = scalar_of<U>;
  require_valid(u, "diffusion_penalty(u)");
  return transform_reduce(be, u.points(), 0.0, detail::diffusion_map<S, Dim>{as_const(u)},
                          detail::sum_double{});
}

template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void diffusion_penalty_vjp(Backend be, field_view<U, Dim> u, vector_view<S, Dim> grad_u,
                           double grad_out) {
  detail::require_penalty_args(u, grad_u, "diffusion_penalty_vjp");
  for_each_point(be, u.ext,
                 detail::diffusion_vjp_kernel<S, Dim>{as_const(u), grad_u, S(grad_out)});
}

template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
double bending_energy(Backend be, field_view<U, Dim> u) {
  using S = scalar_of<U>;
  require_valid(u, "bending_energy(u)");
  return transform_reduce(be, u.points(), 0.0, detail::bending_map<S, Dim>{as_const(u)},
                          detail::sum_double{});
}

template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void bending_energy_vjp(Backend be, field_view<U, Dim> u, vector_view<S, Dim> grad_u,
                        double grad_out) {
  detail::require_penalty_args(u, grad_u, "bending_energy_vjp");
  for_each_point(be, u.ext,
                 detail::bending_vjp_kernel<S, Dim>{as_const(u), grad_u, S(grad_out)});
}

}  // namespace diffeo
