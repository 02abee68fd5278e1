// Euler, midpoint, Heun and RK4 (all explicit_rk over a tableau): nominal convergence
// orders measured on problems with closed forms, a method given only as data, and field
// states on every backend.
#include <diffeo/ode/euler.hpp>
#include <diffeo/ode/heun.hpp>
#include <diffeo/ode/integrate.hpp>
#include <diffeo/ode/midpoint.hpp>
#include <diffeo/ode/rk4.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <vector>

#include "support/backends.hpp"

using namespace diffeo;
using namespace diffeo::ode;

namespace {

using state2 = std::array<double, 2>;

/// x'' = -x as a first-order system; x(0) = 0, x'(0) = 1 gives x(t) = sin t.
struct oscillator {
  void operator()(const state2& x, state2& d, double) const {
    d[0] = x[1];
    d[1] = -x[0];
  }
};

/// y' = y cos t (non-autonomous: exercises the stage times c_i); y(0) = 1 gives exp(sin t).
struct cos_growth {
  void operator()(const std::array<double, 1>& y, std::array<double, 1>& d, double t) const {
    d[0] = y[0] * std::cos(t);
  }
};

/// Least-squares slope of log(err) against log(h).
double fitted_order(const std::vector<int>& steps, const std::vector<double>& err) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  const double n = double(steps.size());
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const double x = std::log(1.0 / steps[i]), y = std::log(err[i]);
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

template <class Tab>
double measured_order(const std::vector<int>& steps) {
  std::vector<double> e_osc, e_cos;
  for (int n : steps) {
    state2 x{0, 1};
    integrate_n_steps(explicit_rk<Tab, state2>{}, oscillator{}, x, 0.0, 1.0 / n, n);
    e_osc.push_back(std::hypot(x[0] - std::sin(1.0), x[1] - std::cos(1.0)));
    std::array<double, 1> y{1};
    integrate_const(explicit_rk<Tab, std::array<double, 1>>{}, cos_growth{}, y, 0.0, 2.0,
                    2.0 / n);
    e_cos.push_back(std::fabs(y[0] - std::exp(std::sin(2.0))));
  }
  const double p1 = fitted_order(steps, e_osc), p2 = fitted_order(steps, e_cos);
  MESSAGE("order p = " << Tab::order << ": fitted " << p1 << " (oscillator), " << p2
                       << " (y' = y cos t)");
  CHECK(p2 == doctest::Approx(p1).epsilon(0.1));
  return std::min(p1, p2);
}

/// Kutta's 3/8 rule: a fourth-order method given only as data.
struct three_eighths_tableau {
  static constexpr int stages = 4;
  static constexpr int order = 4;
  static constexpr std::array<double, 4> c{0.0, 1.0 / 3, 2.0 / 3, 1.0};
  static constexpr std::array<std::array<double, 4>, 4> a{
      {{0, 0, 0, 0}, {1.0 / 3, 0, 0, 0}, {-1.0 / 3, 1, 0, 0}, {1, -1, 1, 0}}};
  static constexpr std::array<double, 4> b{1.0 / 8, 3.0 / 8, 3.0 / 8, 1.0 / 8};
};

}  // namespace

static_assert(stepper<euler<state2>> && stepper<midpoint<state2>> && stepper<rk4<state2>>);
static_assert(error_stepper<heun<state2>> && !error_stepper<rk4<state2>>);
static_assert(std::is_same_v<rk4<state2>::category, stepper_tag>);
static_assert(rk4<state2>::order == 4 && rk4<state2>::stages == 4 && !rk4<state2>::fsal);
static_assert(tableau_defect<rk4_tableau>() <= 2e-16 && tableau_defect<heun_tableau>() == 0);

TEST_CASE("explicit steppers converge at their nominal order") {
  const std::vector<int> coarse{64, 128, 256, 512};
  CHECK(measured_order<euler_tableau>(coarse) == doctest::Approx(1).epsilon(0.05));
  CHECK(measured_order<midpoint_tableau>(coarse) == doctest::Approx(2).epsilon(0.05));
  CHECK(measured_order<heun_tableau>(coarse) == doctest::Approx(2).epsilon(0.05));
  const std::vector<int> fine{32, 64, 128, 256};  // asymptotic, still far above rounding
  CHECK(measured_order<rk4_tableau>(fine) == doctest::Approx(4).epsilon(0.05));
  CHECK(measured_order<three_eighths_tableau>(fine) == doctest::Approx(4).epsilon(0.05));
}

TEST_CASE("one RK4 step equals the hand-written formula, with one evaluation per stage") {
  state2 x{0.3, -0.7};
  const double t = 0.2, h = 0.1;
  int calls = 0;
  auto f = [&](const state2& y, state2& d, double tt) {
    ++calls;
    d[0] = y[1] * (1 + tt);
    d[1] = -y[0] * y[0];
  };
  auto ref = [&](state2 y) {
    auto g = [&](const state2& z, double tt) {
      state2 d;
      d[0] = z[1] * (1 + tt);
      d[1] = -z[0] * z[0];
      return d;
    };
    auto add = [](state2 a, double s, state2 b) { return state2{a[0] + s * b[0], a[1] + s * b[1]}; };
    const state2 k1 = g(y, t), k2 = g(add(y, h / 2, k1), t + h / 2),
                 k3 = g(add(y, h / 2, k2), t + h / 2), k4 = g(add(y, h, k3), t + h);
    for (int i = 0; i < 2; ++i) y[i] += h / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
    return y;
  };
  const state2 expect = ref(x);
  rk4<state2> st;
  st.do_step(f, x, t, h);
  CHECK(calls == 4);
  CHECK(x[0] == doctest::Approx(expect[0]).epsilon(1e-15));
  CHECK(x[1] == doctest::Approx(expect[1]).epsilon(1e-15));
  // With the derivative given, one evaluation fewer; the out-of-place step agrees.
  state2 y{0.3, -0.7}, dydt, out, unused;
  f(y, dydt, t);
  calls = 0;
  st.step(f, y, dydt, t, h, out, unused);
  CHECK(calls == 3);
  CHECK(out == x);
}

TEST_CASE("Heun's embedded Euler estimate is the difference of the two solutions") {
  state2 x{1.0, 0.5}, xerr;
  const state2 x0 = x;
  heun<state2> st;
  st.do_step(oscillator{}, x, 0.0, 0.1, xerr);
  state2 e = x0;
  euler<state2>{}.do_step(oscillator{}, e, 0.0, 0.1);
  for (int i = 0; i < 2; ++i) CHECK(xerr[i] == doctest::Approx(x[i] - e[i]).epsilon(1e-14));
}

/// Per-scalar kernel of `d = λ u + c`.
template <class S>
struct affine_kernel {
  const S* u;
  S* d;
  S lambda, c;
  DIFFEO_HD void operator()(index_t i) const { d[i] = lambda * u[i] + c; }
};

/// du/dt = λ u + c per component: u(t) = (u0 + c/λ) e^{λt} - c/λ.
template <class S>
struct linear_field_rhs {
  S lambda, c;
  template <class F>
  void operator()(const F& u, F& d, double) const {
    using B = typename F::backend_type;
    for_each_index(B{}, u.size() * 2,
                   affine_kernel<S>{reinterpret_cast<const S*>(u.data()),
                                    reinterpret_cast<S*>(d.data()), lambda, c});
  }
};

TEST_CASE_TEMPLATE("RK4 on a field state runs on every backend and matches the closed form", B,
                   DIFFEO_TEST_BACKENDS) {
  auto run = [](auto scalar, double tol) {
    using S = decltype(scalar);
    using F = vector_field<S, 2, B>;
    vector_field<S, 2, backend::serial> h0(make_extents(33, 7));
    for (index_t i = 0; i < h0.points(); ++i)
      h0[i] = vec<S, 2>{{S(std::sin(0.3 * double(i))), S(0.5)}};
    F u = to_backend<B>(h0);
    const S lambda = S(-0.8), c = S(0.25);
    const auto st = integrate_const(rk4<F>{}, linear_field_rhs<S>{lambda, c}, u, 0.0, 1.0, 0.05);
    CHECK(st.rhs_evals == 80);
    CHECK(st.accepted == 20);
    const auto h = to_host(u);
    double worst = 0;
    for (index_t i = 0; i < h.points(); ++i)
      for (int k = 0; k < 2; ++k) {
        const double u0 = double(h0[i][k]), cl = double(c) / double(lambda);
        const double exact = (u0 + cl) * std::exp(double(lambda)) - cl;
        worst = std::max(worst, std::fabs(double(h[i][k]) - exact));
      }
    CHECK(worst < tol);
    // The discrete solution has a closed form too: u_n = R(λh)^n (u0 + c/λ) - c/λ with
    // RK4's stability polynomial R(z) = 1 + z + z²/2 + z³/6 + z⁴/24.
    const double z = double(lambda) * 0.05;
    const double R20 = std::pow(1 + z + z * z / 2 + z * z * z / 6 + z * z * z * z / 24, 20);
    double worst_discrete = 0;
    for (index_t i = 0; i < h.points(); ++i)
      for (int k = 0; k < 2; ++k) {
        const double u0 = double(h0[i][k]), cl = double(c) / double(lambda);
        worst_discrete = std::max(worst_discrete, std::fabs(double(h[i][k]) - ((u0 + cl) * R20 - cl)));
      }
    CHECK(worst_discrete < (std::is_same_v<S, double> ? 1e-14 : 5e-7));
    // Backends agree with serial: bitwise on the CPU backends.
    auto us = h0;
    integrate_const(rk4<vector_field<S, 2, backend::serial>>{}, linear_field_rhs<S>{lambda, c}, us,
                    0.0, 1.0, 0.05);
    for (index_t i = 0; i < h.points(); ++i) {
      if constexpr (test::bitwise_like_serial<B>)
        CHECK(h[i] == us[i]);
      else
        CHECK(std::fabs(double(h[i][0] - us[i][0])) < 4 * tol);
    }
  };
  run(double{}, 2e-8);  // RK4's global error at h = 0.05 is 1.0e-8 here
  run(float{}, 5e-7);   // float rounding dominates (80 stage passes at eps 6e-8)
}
