// The flow of a stationary velocity field du/dt = v(p + u(p)) on every backend: exact for an
// affine velocity (bilinear interpolation reproduces it, so only the time discretization is
// left; the flow is exp(tA) from Eigen), agrees with scaling and squaring, integrates to
// t = -1 for the inverse, and its vector-Jacobian products match finite differences.
#include <diffeo/field/compose.hpp>
#include <diffeo/field/exp.hpp>
#include <diffeo/ode/dense_solution.hpp>
#include <diffeo/ode/dopri5.hpp>
#include <diffeo/ode/integrate.hpp>
#include <diffeo/ode/rk4.hpp>
#include <diffeo/ode/svf_flow.hpp>

#include <doctest/doctest.h>

#include <Eigen/Core>
#include <unsupported/Eigen/MatrixFunctions>

#include <cmath>

#include "support/backends.hpp"

using namespace diffeo;
using namespace diffeo::ode;

namespace {

template <int Dim>
using mat = Eigen::Matrix<double, Dim, Dim>;

/// A spiral (2D) or a rotation about a tilted axis with contraction (3D): v(p) = A (p - c).
template <int Dim>
mat<Dim> spiral() {
  mat<Dim> A;
  if constexpr (Dim == 2)
    A << -0.1, -0.5, 0.5, -0.1;
  else
    A << -0.05, -0.4, 0.1, 0.4, -0.05, -0.2, -0.1, 0.2, -0.05;
  return A;
}

template <class S, int Dim>
vector_field<S, Dim, backend::serial> affine_velocity(const extents<Dim>& e, const mat<Dim>& A) {
  vector_field<S, Dim, backend::serial> v(e);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    Eigen::Matrix<double, Dim, 1> x;
    for (int a = 0; a < Dim; ++a) x[a] = double(p[a]) - 0.5 * double(e[a] - 1);
    const Eigen::Matrix<double, Dim, 1> y = A * x;
    for (int a = 0; a < Dim; ++a) v[i][a] = S(y[a]);
  }
  return v;
}

/// A smooth velocity of amplitude `amp` voxels (the W-workload sinusoid pattern).
template <class S, int Dim>
vector_field<S, Dim, backend::serial> smooth_velocity(const extents<Dim>& e, double amp) {
  vector_field<S, Dim, backend::serial> v(e);
  const double n = double(e[0]);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    const double x = double(p[0]), y = double(p[1]), z = Dim == 3 ? double(p[Dim - 1]) : 0.0;
    for (int c = 0; c < Dim; ++c)
      v[i][c] = S(amp * (0.6 * std::sin(6.283 * x / (0.9 * n) + 1.3 * c) *
                             std::cos(6.283 * y / (0.7 * n) + 0.4 + 1.3 * c) *
                             std::cos(6.283 * z / (0.8 * n) + 0.2 * c) +
                         0.4 * std::sin(6.283 * (x + y + z) / (0.5 * n) + 0.8 + 1.3 * c)));
  }
  return v;
}

template <int Dim>
bool inside(const extents<Dim>& e, const index_vec<Dim>& p, index_t margin) {
  for (int a = 0; a < Dim; ++a)
    if (p[a] < margin || p[a] >= e[a] - margin) return false;
  return true;
}

/// RK4 flow of `v` from 0 to `t1` with `n` steps, on backend B.
template <class S, int Dim, class B>
vector_field<S, Dim, B> rk4_flow(const vector_field<S, Dim, B>& v, double t1, int n) {
  using F = vector_field<S, Dim, B>;
  F u(v.geometry());
  const auto st = integrate_const(rk4<F>{}, svf_flow<S, Dim, B>(v), u, 0.0, t1, t1 / n);
  CHECK(st.rhs_evals == std::size_t(4 * n));
  return u;
}

/// Max |u(p) - (exp(A) (p - c) + c - p)| over points whose exact path stays on the grid.
template <class S, int Dim, class B>
double affine_error(const extents<Dim>& e, double t1) {
  const mat<Dim> A = spiral<Dim>();
  const auto v = to_backend<B>(affine_velocity<S, Dim>(e, A));
  const auto u = to_host(rk4_flow<S, Dim, B>(v, t1, 32));
  const mat<Dim> E = (t1 * A).exp();
  double worst = 0, radius = 1e9;
  for (int a = 0; a < Dim; ++a) radius = std::min(radius, 0.5 * double(e[a] - 1));
  index_t checked = 0;
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    Eigen::Matrix<double, Dim, 1> x;
    for (int a = 0; a < Dim; ++a) x[a] = double(p[a]) - 0.5 * double(e[a] - 1);
    // The spiral contracts forward (|x| shrinks) and expands backward by at most
    // e^{0.1 |t|}: keep the points whose whole path stays inside the inscribed ball.
    if (x.norm() * (t1 < 0 ? std::exp(-0.1 * t1) : 1.0) > radius - 1) continue;
    const Eigen::Matrix<double, Dim, 1> y = E * x;
    for (int a = 0; a < Dim; ++a) worst = std::max(worst, std::fabs(double(u[i][a]) - (y[a] - x[a])));
    ++checked;
  }
  CHECK(checked > e.count() / 5);
  return worst;
}

}  // namespace

TEST_CASE_TEMPLATE("the flow of an affine velocity is exp(tA), in 2D and 3D", B,
                   DIFFEO_TEST_BACKENDS) {
  // RK4 with 32 steps: time error ~1e-9 voxel; then float rounding of positions ~1e-5.
  const double e2d = affine_error<double, 2, B>(make_extents(41, 37), 1.0);
  const double e3d = affine_error<double, 3, B>(make_extents(21, 19, 17), 1.0);
  const double e2f = affine_error<float, 2, B>(make_extents(41, 37), 1.0);
  const double e2b = affine_error<double, 2, B>(make_extents(41, 37), -1.0);
  MESSAGE("max error (voxels): 2D double " << e2d << ", 3D double " << e3d << ", 2D float "
                                           << e2f << ", 2D double backward " << e2b);
  CHECK(e2d < 1e-8);
  CHECK(e3d < 1e-8);
  CHECK(e2b < 1e-8);
  CHECK(e2f < 2e-5);
}

TEST_CASE_TEMPLATE("RK4 flow agrees with scaling and squaring, and t = -1 inverts it", B,
                   DIFFEO_TEST_BACKENDS) {
  auto check = [](auto e, double amp) {
    constexpr int Dim = decltype(e)::rank;
    using S = double;
    const auto v = to_backend<B>(smooth_velocity<S, Dim>(e, amp));
    const auto fwd = rk4_flow<S, Dim, B>(v, 1.0, 64);
    const auto bwd = rk4_flow<S, Dim, B>(v, -1.0, 64);
    exp_options opts;
    opts.squarings = 12;
    const auto ss = to_host(diffeo::exp(v, opts, boundary::zeros{}));
    // u_fwd(p) + u_bwd(p + u_fwd(p)): the displacement of φ_{-1} ∘ φ_1, zero for an inverse.
    const auto id = to_host(compose(bwd, fwd, boundary::zeros{}));
    const auto hf = to_host(fwd), hb = to_host(bwd);
    // Bilinear interpolation's error bound, Σ_axes |∂²u/∂x_a²| / 8, from second differences.
    auto curvature = [&](const auto& f, index_t i) {
      const auto p = e.unravel(i);
      double c = 0;
      for (int a = 0; a < Dim; ++a) {
        auto lo = p, hi = p;
        lo[a] -= 1;
        hi[a] += 1;
        c += max_abs(f[e.linear(lo)] + f[e.linear(hi)] - 2.0 * f[i]);
      }
      return c / 8;
    };
    double d_exp = 0, d_inv = 0, size = 0, interp_fwd = 0, interp_bwd = 0;
    const index_t margin = index_t(std::ceil(2 * amp)) + 2;
    for (index_t i = 0; i < e.count(); ++i) {
      if (!inside(e, e.unravel(i), margin)) continue;
      d_exp = std::max(d_exp, max_abs(hf[i] - ss[i]));
      d_inv = std::max(d_inv, max_abs(id[i]));
      size = std::max(size, max_abs(hf[i]));
      interp_fwd = std::max(interp_fwd, curvature(hf, i));
      interp_bwd = std::max(interp_bwd, curvature(hb, i));
    }
    MESSAGE(Dim << "D: max |u| " << size << ", |RK4 - exp| " << d_exp << ", |inverse check| "
                << d_inv << "; interpolation error bounds: u_fwd " << interp_fwd << ", u_bwd "
                << interp_bwd);
    CHECK(size > amp / 2);  // the flow moves points by voxels
    // Second differences under-estimate the curvature inside a cell: allow 25% on the bound.
    CHECK(d_exp < 1.25 * interp_fwd);
    CHECK(d_inv < 1.25 * interp_bwd);
    CHECK(interp_bwd < 0.1);  // the test means something only while that bound is small
  };
  // RK4 at 64 steps is exact to ~1e-8 for the bilinear velocity; scaling and squaring
  // differs from it by its compositions' interpolation error, the inverse check by that of
  // sampling u_bwd (measured: 2D 0.0088 and 0.0144 against bounds 0.0159 and 0.0151; 3D
  // 0.0154 and 0.054 against 0.087 and 0.086).
  check(make_extents(64, 64), 2.0);
  check(make_extents(24, 24, 24), 1.0);
}

TEST_CASE_TEMPLATE("the SVF flow runs alike on every backend, fixed and adaptive", B,
                   DIFFEO_TEST_BACKENDS) {
  using F = vector_field<float, 2, B>;
  const auto vs = smooth_velocity<float, 2>(make_extents(48, 40), 3.0);
  const auto v = to_backend<B>(vs);
  const auto u = to_host(rk4_flow<float, 2, B>(v, 1.0, 8));
  const auto us = to_host(rk4_flow<float, 2, backend::serial>(vs, 1.0, 8));
  double d = 0;
  for (index_t i = 0; i < u.points(); ++i) d = std::max(d, double(max_abs(u[i] - us[i])));
  if constexpr (test::bitwise_like_serial<B>)
    CHECK(d == 0.0);
  else
    CHECK(d < 1e-5);
  // Dormand-Prince with dense output: its frames match RK4 at fine steps.
  const auto sol = integrate_dense(make_dense_output(1e-5, 1e-5, dopri5<F>{}),
                                   svf_flow<float, 2, B>(v), F(v.geometry()), 0.0, 1.0);
  const auto ref = to_host(rk4_flow<float, 2, B>(v, 0.5, 64));
  const auto mid = to_host(sol(0.5));
  double dm = 0;
  for (index_t i = 0; i < mid.points(); ++i) dm = std::max(dm, double(max_abs(mid[i] - ref[i])));
  MESSAGE("DOPRI5 at 1e-5: " << sol.steps() << " steps, " << sol.stats().rhs_evals
                             << " evaluations; |u(0.5) - RK4| = " << dm);
  CHECK(dm < 1e-3);
}

TEST_CASE_TEMPLATE("the SVF flow's vector-Jacobian products match central differences", B,
                   DIFFEO_TEST_BACKENDS) {
  using F = vector_field<double, 2, B>;
  const auto e = make_extents(13, 11);
  const auto v = to_backend<B>(smooth_velocity<double, 2>(e, 2.0));
  // A displacement that keeps p + u(p) off the grid lines (where bilinear is smooth).
  vector_field<double, 2, backend::serial> uh(e), wh(e);
  for (index_t i = 0; i < e.count(); ++i) {
    uh[i] = vec2d{{0.31 + 0.2 * std::sin(0.7 * double(i)), -0.27 + 0.1 * std::cos(0.3 * double(i))}};
    wh[i] = vec2d{{std::cos(0.9 * double(i)), std::sin(0.4 * double(i))}};
  }
  const F u = to_backend<B>(uh), w = to_backend<B>(wh);
  const svf_flow<double, 2, B> flow(v);
  F a_du, a_du2;
  auto a_dv = flow.parameter_like();
  flow.vjp(u, 0.0, w, a_du, a_dv);
  flow.vjp_state(u, 0.0, w, a_du2);
  // L(u, v) = <w, f(u; v)>
  auto loss = [&](const F& uu, const vector_field<double, 2, B>& vv) {
    F d;
    const svf_flow<double, 2, B> f(vv);
    f(uu, d, 0.0);
    return inner_product(w, d);
  };
  const auto g_u = to_host(a_du), g_u2 = to_host(a_du2), g_v = to_host(a_dv);
  const double h = 1e-6;
  for (index_t i : {index_t(0), index_t(17), index_t(70), index_t(142)}) {
    for (int c = 0; c < 2; ++c) {
      auto up = uh, um = uh;
      up[i][c] += h;
      um[i][c] -= h;
      const double fd = (loss(to_backend<B>(up), v) - loss(to_backend<B>(um), v)) / (2 * h);
      CHECK(g_u[i][c] == doctest::Approx(fd).epsilon(1e-6));
      CHECK(g_u2[i][c] == g_u[i][c]);
      auto vh = to_host(v);
      auto vp = vh, vm = vh;
      vp[i][c] += h;
      vm[i][c] -= h;
      const double fdv = (loss(u, to_backend<B>(vp)) - loss(u, to_backend<B>(vm))) / (2 * h);
      CHECK(g_v[i][c] == doctest::Approx(fdv).epsilon(1e-6));
    }
  }
}
