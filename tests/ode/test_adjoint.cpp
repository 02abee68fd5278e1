// The continuous adjoint method, fixed-step and adaptive: gradients with respect to the
// initial state and the parameters against central differences of accurate solves, on Eigen
// states with parameters and on the SVF flow's fields on every backend.
#include <diffeo/ode/adjoint.hpp>
#include <diffeo/ode/backprop.hpp>
#include <diffeo/ode/dopri5.hpp>
#include <diffeo/ode/integrate.hpp>
#include <diffeo/ode/rk4.hpp>
#include <diffeo/ode/svf_flow.hpp>

#include <doctest/doctest.h>

#include <cmath>

#include "gradient_systems.hpp"
#include "support/backends.hpp"

using namespace diffeo;
using namespace diffeo::ode;
using diffeo::test::central_difference;

namespace {

using V = Eigen::Vector2d;
const V cotangent(0.7, -1.3);

/// L(x0, θ) = cᵀ x(t1) from a tight adaptive solve: the gradient of the exact flow.
template <class Sys>
double exact_loss(Sys sys, const V& x0, double t1) {
  V y = x0;
  integrate_adaptive(make_controlled(1e-13, 1e-13, dopri5<V>{}), sys, y, 0.0, t1);
  return cotangent.dot(y);
}

template <class Sys>
void check_against_exact(const Sys& sys, const V& x0, double t1, const V& g_x0,
                         const typename Sys::parameter_type& g_theta, double rel) {
  for (int k = 0; k < 2; ++k)
    CHECK(g_x0[k] == doctest::Approx(central_difference(x0, k, 1e-5, [&](const V& y0) {
                                       return exact_loss(sys, y0, t1);
                                     })).epsilon(rel));
  for (int k = 0; k < int(g_theta.size()); ++k) {
    auto loss = [&](const typename Sys::parameter_type& th) {
      Sys s = sys;
      s.theta = th;
      return exact_loss(s, x0, t1);
    };
    CHECK(g_theta[k] == doctest::Approx(central_difference(sys.theta, k, 1e-5, loss)).epsilon(rel));
  }
}

}  // namespace

TEST_CASE("the fixed-step adjoint converges to the exact gradient at RK4's order") {
  const test::lotka_volterra_theta sys;
  const V x0(1.0, 1.0);
  const double t1 = 3.0;
  V x1 = x0;
  integrate_adaptive(make_controlled(1e-13, 1e-13, dopri5<V>{}), sys, x1, 0.0, t1);
  const double ref = central_difference(sys.theta, 1, 1e-5, [&](const Eigen::Vector4d& th) {
    test::lotka_volterra_theta s;
    s.theta = th;
    return exact_loss(s, x0, t1);
  });
  double prev = 0;
  for (double dt : {0.1, 0.05}) {
    V g_x0, x0_back;
    Eigen::Vector4d g_theta;
    const auto st = adjoint_const<rk4_tableau>(sys, x1, V(cotangent), 0.0, t1, dt, g_x0,
                                               &g_theta, &x0_back);
    CHECK(st.rhs_evals == 4 * st.accepted);
    CHECK(st.vjp_evals == st.rhs_evals);
    CHECK((x0_back - x0).norm() < 1e-4);  // the backward re-integration returns to x0
    const double err = std::fabs(g_theta[1] - ref);
    if (prev > 0) {
      MESSAGE("fixed-step adjoint error ratio at half the step: " << prev / err);
      CHECK(std::log2(prev / err) == doctest::Approx(4).epsilon(0.1));
    }
    prev = err;
    if (dt == 0.05) check_against_exact(sys, x0, t1, g_x0, g_theta, 1e-5);
  }
}

TEST_CASE("the adaptive adjoint matches the exact gradient to the solver's tolerance") {
  auto run = [](auto sys, V x0, double t1) {
    V x1 = x0;
    integrate_adaptive(make_controlled(1e-12, 1e-12, dopri5<V>{}), sys, x1, 0.0, t1);
    V g_x0;
    typename decltype(sys)::parameter_type g_theta;
    const auto st = adjoint_adaptive<dopri5_tableau>(sys, x1, V(cotangent), 0.0, t1,
                                                     tolerance{1e-10, 1e-10}, g_x0, &g_theta);
    MESSAGE("adaptive adjoint: " << st.accepted << " steps, " << st.rejected << " rejected, "
                                 << st.rhs_evals << " f evals, " << st.vjp_evals << " VJPs, "
                                 << st.workspace_bytes << " B of workspace");
    CHECK(st.vjp_evals == st.rhs_evals);
    check_against_exact(sys, x0, t1, g_x0, g_theta, 1e-6);
  };
  run(test::lotka_volterra_theta{}, V(1.0, 1.0), 5.0);
  run(test::rotating_theta{}, V(0.4, -0.8), 2.5);
  run(test::rotating_theta{}, V(0.4, -0.8), -2.5);  // a forward solve toward negative t
}

TEST_CASE_TEMPLATE("adjoint and backprop agree on the SVF flow on every backend", B,
                   DIFFEO_TEST_BACKENDS) {
  using F = vector_field<double, 2, B>;
  const auto e = make_extents(12, 10);
  vector_field<double, 2, backend::serial> vh(e), wh(e);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    vh[i] = vec2d{{1.5 * std::sin(0.5 * double(p[0]) + 0.3 * double(p[1])),
                   1.2 * std::cos(0.4 * double(p[1]) - 0.2 * double(p[0]))}};
    wh[i] = vec2d{{std::sin(0.3 * double(i)), std::cos(0.7 * double(i))}};
  }
  const F v = to_backend<B>(vh), w = to_backend<B>(wh);
  const svf_flow<double, 2, B> flow(v);
  F u(e);
  trajectory<F> tape;
  integrate_const(rk4<F>{}, flow, u, 0.0, 1.0, 1.0 / 32, tape);
  F gb_u0, gb_v, ga_u0, ga_v, u0_back;
  backprop(rk4<F>{}, flow, tape, w, gb_u0, &gb_v);
  const auto st = adjoint_const<rk4_tableau>(flow, u, w, 0.0, 1.0, 1.0 / 32, ga_u0, &ga_v, &u0_back);
  CHECK(st.accepted == 32);
  // Both approximate the exact gradient to O(dt^4); away from the grid lines' kinks they
  // agree closely. (The flow of a bilinear v has kinks where paths cross grid lines, so
  // compare sums, which average them out, and the bulk of the components.)
  const auto b_u = to_host(gb_u0), a_u = to_host(ga_u0), b_v = to_host(gb_v), a_v = to_host(ga_v);
  const auto back = to_host(u0_back);
  double du = 0, dv = 0, su = 0, sv = 0, drift = 0;
  for (index_t i = 0; i < e.count(); ++i) {
    du = std::max(du, double(max_abs(b_u[i] - a_u[i])));
    dv = std::max(dv, double(max_abs(b_v[i] - a_v[i])));
    su = std::max(su, double(max_abs(b_u[i])));
    sv = std::max(sv, double(max_abs(b_v[i])));
    drift = std::max(drift, double(max_abs(back[i])));
  }
  MESSAGE("SVF: |adjoint - backprop| " << du << " (u0, of " << su << "), " << dv << " (v, of "
                                       << sv << "); |u0 re-integrated| " << drift);
  CHECK(drift < 1e-3);
  CHECK(du < 0.05 * su);
  CHECK(dv < 0.05 * sv);
}

TEST_CASE("the adjoint functions reject bad input by name") {
  const test::lotka_volterra_theta sys;
  V g;
  CHECK_THROWS_WITH_AS(adjoint_const<rk4_tableau>(sys, V(1, 1), V(1, 0), 1.0, 1.0, 0.1, g),
                       doctest::Contains("adjoint_const(t0, t1): empty interval"), value_error);
  CHECK_THROWS_WITH_AS(adjoint_const<rk4_tableau>(sys, V(1, 1), V(1, 0), 0.0, 1.0, 0.0, g),
                       doctest::Contains("adjoint_const(dt)"), value_error);
  CHECK_THROWS_WITH_AS(adjoint_adaptive<dopri5_tableau>(sys, V(1, 1), V(1, 0), 0.0, 1.0,
                                                        tolerance{-1, 1e-6}, g),
                       doctest::Contains("adjoint_adaptive(tol): atol"), value_error);
  CHECK_THROWS_WITH_AS(adjoint_adaptive<dopri5_tableau>(sys, V(std::nan(""), 1), V(1, 0), 0.0,
                                                        1.0, tolerance{}, g),
                       doctest::Contains("adjoint_adaptive(x1)"), value_error);
}
