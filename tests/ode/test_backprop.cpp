// Backpropagation through the taken steps: the exact gradient of the computed solution,
// checked against central differences of the same discrete map (fixed and adaptive steps,
// every explicit method), on Eigen states with parameters and on the SVF flow's fields.
#include <diffeo/ode/backprop.hpp>
#include <diffeo/ode/dopri5.hpp>
#include <diffeo/ode/euler.hpp>
#include <diffeo/ode/integrate.hpp>
#include <diffeo/ode/midpoint.hpp>
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

const Eigen::Vector2d cotangent(0.7, -1.3);  // L = cᵀ x(t1)

/// Checks backprop through `Stepper`'s fixed steps against central differences of the
/// same fixed-step integration, for the initial state and the parameters.
template <class Stepper, class Sys>
void check_fixed(Sys sys, Eigen::Vector2d x0, double t1, double dt) {
  trajectory<Eigen::Vector2d> tape;
  Eigen::Vector2d x = x0;
  integrate_const(Stepper{}, sys, x, 0.0, t1, dt, tape);
  Eigen::Vector2d g_x0;
  typename Sys::parameter_type g_theta;
  const auto st = backprop(Stepper{}, sys, tape, Eigen::Vector2d(cotangent), g_x0, &g_theta);
  CHECK(st.accepted == tape.steps());
  auto loss_x0 = [&](const Eigen::Vector2d& y0) {
    Eigen::Vector2d y = y0;
    integrate_const(Stepper{}, sys, y, 0.0, t1, dt);
    return cotangent.dot(y);
  };
  auto loss_theta = [&](const typename Sys::parameter_type& th) {
    Sys s = sys;
    s.theta = th;
    Eigen::Vector2d y = x0;
    integrate_const(Stepper{}, s, y, 0.0, t1, dt);
    return cotangent.dot(y);
  };
  for (int k = 0; k < 2; ++k)
    CHECK(g_x0[k] == doctest::Approx(central_difference(x0, k, 1e-6, loss_x0)).epsilon(1e-7));
  for (int k = 0; k < int(g_theta.size()); ++k)
    CHECK(g_theta[k] ==
          doctest::Approx(central_difference(sys.theta, k, 1e-6, loss_theta)).epsilon(1e-7));
  // Without a parameter output the state gradient is the same.
  Eigen::Vector2d g_only;
  backprop(Stepper{}, sys, tape, Eigen::Vector2d(cotangent), g_only);
  CHECK(g_only == g_x0);
}

}  // namespace

TEST_CASE("backprop through fixed steps is the exact gradient of the discrete map") {
  using V = Eigen::Vector2d;
  check_fixed<rk4<V>>(test::lotka_volterra_theta{}, V(1.0, 1.0), 3.0, 0.1);
  check_fixed<euler<V>>(test::lotka_volterra_theta{}, V(1.0, 1.0), 3.0, 0.05);
  check_fixed<midpoint<V>>(test::rotating_theta{}, V(0.4, -0.8), 2.5, 0.1);
  check_fixed<rk4<V>>(test::rotating_theta{}, V(0.4, -0.8), 2.5, 0.3);  // short last step
  check_fixed<dopri5<V>>(test::rotating_theta{}, V(0.4, -0.8), -2.5, -0.2);  // backward
}

TEST_CASE("backprop through adaptive steps: exact for the taken steps, near the true gradient") {
  using V = Eigen::Vector2d;
  const test::lotka_volterra_theta sys;
  const V x0(1.0, 1.0);
  trajectory<V> tape;
  V x = x0;
  const auto fwd = integrate_adaptive(make_controlled(1e-6, 1e-6, dopri5<V>{}), sys, x, 0.0, 5.0,
                                      {}, tape);
  V g_x0;
  Eigen::Vector4d g_theta;
  const auto st = backprop(dopri5<V>{}, sys, tape, V(cotangent), g_x0, &g_theta);
  // Per step: 5 evaluations to rebuild stages 1-6 (the 7th has b = 0) and 6 VJPs.
  CHECK(st.rhs_evals == 5 * tape.steps());
  CHECK(st.vjp_evals == 6 * tape.steps());
  MESSAGE("adaptive DOPRI5: " << tape.steps() << " steps, forward " << fwd.rhs_evals
                              << " f evals; backprop " << st.rhs_evals << " f + " << st.vjp_evals
                              << " VJPs; tape " << tape.memory_bytes() << " B");
  // The same steps replayed with fixed sizes: the discrete map whose gradient backprop is.
  auto replay = [&](const test::lotka_volterra_theta& s, V y) {
    dopri5<V> stp;
    for (std::size_t n = 0; n < tape.steps(); ++n)
      stp.do_step(s, y, tape.time(n), tape.time(n + 1) - tape.time(n));
    return cotangent.dot(y);
  };
  for (int k = 0; k < 2; ++k)
    CHECK(g_x0[k] == doctest::Approx(central_difference(x0, k, 1e-6, [&](const V& y0) {
                                       return replay(sys, y0);
                                     })).epsilon(1e-7));
  for (int k = 0; k < 4; ++k) {
    auto loss = [&](const Eigen::Vector4d& th) {
      test::lotka_volterra_theta s;
      s.theta = th;
      return replay(s, x0);
    };
    CHECK(g_theta[k] == doctest::Approx(central_difference(sys.theta, k, 1e-6, loss)).epsilon(1e-7));
    // ... and the true gradient (tight tolerance) within the solver's accuracy.
    auto exact = [&](const Eigen::Vector4d& th) {
      test::lotka_volterra_theta s;
      s.theta = th;
      V y = x0;
      integrate_adaptive(make_controlled(1e-12, 1e-12, dopri5<V>{}), s, y, 0.0, 5.0);
      return cotangent.dot(y);
    };
    CHECK(g_theta[k] == doctest::Approx(central_difference(sys.theta, k, 1e-5, exact)).epsilon(1e-4));
  }
}

TEST_CASE_TEMPLATE("backprop through the SVF flow: gradients w.r.t. u0 and v on every backend", B,
                   DIFFEO_TEST_BACKENDS) {
  using F = vector_field<double, 2, B>;
  const auto e = make_extents(12, 10);
  vector_field<double, 2, backend::serial> vh(e), u0h(e), wh(e);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    vh[i] = vec2d{{1.5 * std::sin(0.5 * double(p[0]) + 0.3 * double(p[1])),
                   1.2 * std::cos(0.4 * double(p[1]) - 0.2 * double(p[0]))}};
    u0h[i] = vec2d{{0.13 + 0.05 * std::sin(double(i)), -0.21 + 0.04 * std::cos(double(i))}};
    wh[i] = vec2d{{std::sin(0.3 * double(i)), std::cos(0.7 * double(i))}};
  }
  const F v = to_backend<B>(vh), w = to_backend<B>(wh);
  auto solve = [&](const F& vv, const F& u0) {
    F u;
    assign(u, u0);
    integrate_const(rk4<F>{}, svf_flow<double, 2, B>(vv), u, 0.0, 1.0, 0.125);
    return u;
  };
  const svf_flow<double, 2, B> flow(v);
  trajectory<F> tape;
  F u = to_backend<B>(u0h);
  integrate_const(rk4<F>{}, flow, u, 0.0, 1.0, 0.125, tape);
  F g_u0;
  F g_v;
  const auto st = backprop(rk4<F>{}, flow, tape, w, g_u0, &g_v);
  CHECK(st.vjp_evals == 4 * 8);
  const auto gu = to_host(g_u0), gv = to_host(g_v);
  const double h = 1e-6;
  for (index_t i : {index_t(5), index_t(33), index_t(61), index_t(118)}) {
    for (int c = 0; c < 2; ++c) {
      auto up = u0h, um = u0h;
      up[i][c] += h;
      um[i][c] -= h;
      const double fd = (inner_product(w, solve(v, to_backend<B>(up))) -
                         inner_product(w, solve(v, to_backend<B>(um)))) /
                        (2 * h);
      CHECK(gu[i][c] == doctest::Approx(fd).epsilon(1e-6));
      auto vp = vh, vm = vh;
      vp[i][c] += h;
      vm[i][c] -= h;
      const F u0b = to_backend<B>(u0h);
      const double fdv = (inner_product(w, solve(to_backend<B>(vp), u0b)) -
                          inner_product(w, solve(to_backend<B>(vm), u0b))) /
                         (2 * h);
      CHECK(gv[i][c] == doctest::Approx(fdv).epsilon(1e-6));
    }
  }
}

TEST_CASE("backprop rejects an empty tape and mismatched cotangents") {
  using V = Eigen::Vector2d;
  trajectory<V> tape;
  V g;
  CHECK_THROWS_WITH_AS(backprop(rk4<V>{}, test::lotka_volterra_theta{}, tape, V(1, 1), g),
                       doctest::Contains("backprop(tape)"), value_error);
  V x(1, 1);
  integrate_const(rk4<V>{}, test::lotka_volterra_theta{}, x, 0.0, 1.0, 0.5, tape);
  CHECK_THROWS_WITH_AS(backprop(rk4<V>{}, test::lotka_volterra_theta{}, tape,
                                V(std::nan(""), 1.0), g),
                       doctest::Contains("backprop(a_end)"), value_error);
}
