// integrate_const / _n_steps / _adaptive / _times: where they step and observe, what they
// report, backward integration, step limits and the errors for bad input.
#include <diffeo/ode/dopri5.hpp>
#include <diffeo/ode/integrate.hpp>
#include <diffeo/ode/observers.hpp>
#include <diffeo/ode/rhs.hpp>
#include <diffeo/ode/rk4.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <vector>

using namespace diffeo;
using namespace diffeo::ode;

namespace {

using state2 = std::array<double, 2>;

/// x'' = -x; from (0, 1) at t = 0: x = sin t, x' = cos t (for any t, also negative).
struct oscillator {
  void operator()(const state2& x, state2& d, double) const {
    d[0] = x[1];
    d[1] = -x[0];
  }
};

double err_sin(const state2& x, double t) {
  return std::max(std::fabs(x[0] - std::sin(t)), std::fabs(x[1] - std::cos(t)));
}

}  // namespace

TEST_CASE("integrate_const lands on t1, shortening only the last step, and observes each step") {
  state2 x{0, 1};
  time_recorder<double> obs;
  const auto st = integrate_const(rk4<state2>{}, oscillator{}, x, 0.0, 1.0, 0.3, obs);
  CHECK(obs.times == std::vector<double>{0.0, 0.3, 0.6, 0.8999999999999999, 1.0});
  CHECK(st.accepted == 4);
  CHECK(st.rhs_evals == 16);
  CHECK(st.rejected == 0);
  CHECK(err_sin(x, 1.0) < 1e-4);
  // A ratio within rounding of an integer takes that many equal steps (no sliver).
  time_recorder<double> obs2;
  state2 y{0, 1};
  integrate_const(rk4<state2>{}, oscillator{}, y, 0.0, 1.0, 0.1, obs2);
  CHECK(obs2.times.size() == 11);
  CHECK(obs2.times.back() == 1.0);
}

TEST_CASE("integrating toward negative t uses a negative step") {
  state2 x{0, 1};
  integrate_const(rk4<state2>{}, oscillator{}, x, 0.0, -1.0, -0.01);
  CHECK(err_sin(x, -1.0) < 1e-9);
  state2 y{0, 1};
  const auto st = integrate_n_steps(rk4<state2>{}, oscillator{}, y, 0.0, -0.01, 100);
  CHECK(st.accepted == 100);
  CHECK(y[0] == doctest::Approx(x[0]).epsilon(1e-14));
  state2 z{0, 1};
  integrate_adaptive(make_controlled(1e-10, 1e-10, dopri5<state2>{}), oscillator{}, z, 0.0, -3.0);
  CHECK(err_sin(z, -3.0) < 1e-9);
}

TEST_CASE("controlled and dense-output steppers take the same steps in integrate_adaptive") {
  state2 a{0, 1}, b{0, 1};
  state_recorder<state2> ra, rb;
  const auto sa = integrate_adaptive(make_controlled(1e-7, 1e-7, dopri5<state2>{}), oscillator{},
                                     a, 0.0, 10.0, {}, ra);
  const auto sb = integrate_adaptive(make_dense_output(1e-7, 1e-7, dopri5<state2>{}), oscillator{},
                                     b, 0.0, 10.0, {}, rb);
  CHECK(sa.rhs_evals == sb.rhs_evals);
  CHECK(sa.accepted == sb.accepted);
  CHECK(sa.rejected == sb.rejected);
  CHECK(ra.times == rb.times);
  CHECK(a == b);
  CHECK(ra.times.size() == sa.accepted + 1);
  CHECK(ra.times.back() == 10.0);
  CHECK(err_sin(a, 10.0) < 1e-6);
  // A given first step replaces Hairer's choice (one evaluation fewer).
  state2 c{0, 1};
  const auto sc = integrate_adaptive(make_controlled(1e-7, 1e-7, dopri5<state2>{}), oscillator{},
                                     c, 0.0, 10.0, adaptive_options{0.05});
  CHECK(sc.rhs_evals == 1 + 6 * (sc.accepted + sc.rejected));
}

TEST_CASE("Hairer's initial step on y' = -y is the closed form of his algorithm") {
  using state1 = std::array<double, 1>;
  auto decay = [](const state1& y, state1& d, double) { d[0] = -y[0]; };
  controlled<dopri5<state1>> c(tolerance{1e-6, 1e-6});
  const state1 y0{1.0}, f0{-1.0};
  // d0 = d1 = 1/(2e-6); h0 = 0.01; d2 = |f(y0 + h0 f0) - f0| / sc / h0 = d1;
  // h1 = (0.01 / d1)^(1/5); h = min(100 h0, h1).
  const double h1 = std::pow(0.01 * 2e-6, 0.2);
  CHECK(c.initial_step(decay, y0, f0, 0.0, 5.0) == doctest::Approx(h1).epsilon(1e-12));
  CHECK(c.initial_step(decay, y0, f0, 0.0, -5.0) == doctest::Approx(-h1).epsilon(1e-12));
  // ... and the first step it proposes is accepted.
  state1 y = y0;
  const auto st = integrate_adaptive(c, decay, y, 0.0, 5.0);
  CHECK(st.rejected == 0);
  CHECK(y[0] == doctest::Approx(std::exp(-5.0)).epsilon(1e-5));
}

TEST_CASE("integrate_times observes at the requested times, between steps, at no extra cost") {
  for (double dir : {1.0, -1.0}) {
    std::vector<double> times;
    for (int i = 0; i <= 200; ++i) times.push_back(dir * 0.05 * i);  // 201 outputs over 10
    state2 x{0, 1};
    state_recorder<state2> rec;
    const auto st = integrate_times(make_dense_output(1e-7, 1e-7, dopri5<state2>{}), oscillator{},
                                    x, times, {}, rec);
    REQUIRE(rec.times == times);
    double worst = 0;
    for (std::size_t i = 0; i < times.size(); ++i)
      worst = std::max(worst, err_sin(rec.states[i], times[i]));
    MESSAGE("direction " << dir << ": worst error at the outputs " << worst << " with "
                         << st.accepted << " steps");
    CHECK(worst < 1e-6);
    CHECK(st.accepted < 100);  // fewer steps than outputs: most outputs are interpolated
    CHECK(x == rec.states.back());
    // The same integration without outputs costs exactly as much.
    state2 y{0, 1};
    const auto plain = integrate_adaptive(make_dense_output(1e-7, 1e-7, dopri5<state2>{}),
                                          oscillator{}, y, 0.0, dir * 10.0);
    CHECK(plain.rhs_evals == st.rhs_evals);
  }
  // With a fixed-step stepper the steps land on every output time.
  state2 x{0, 1};
  time_recorder<double> obs;
  const std::vector<double> times{0.0, 0.05, 0.5, 0.51};
  const auto st = integrate_times(rk4<state2>{}, oscillator{}, x, times, 0.1, obs);
  CHECK(obs.times == times);
  CHECK(st.accepted == 1 + 5 + 1);
  CHECK(err_sin(x, 0.51) < 5e-7);
}

TEST_CASE("callables returning the derivative are systems, observers combine") {
  auto sys = make_rhs([](const state2& x, double) { return state2{x[1], -x[0]}; });
  state2 x{0, 1};
  time_recorder<double> a;
  state_recorder<state2> b;
  integrate_const(rk4<state2>{}, sys, x, 0.0, 1.0, 0.01, both(a, b));
  CHECK(err_sin(x, 1.0) < 1e-9);
  CHECK(a.times.size() == 101);
  CHECK(b.states.size() == 101);
}

TEST_CASE("the step limit ends an integration with a clear error") {
  state2 x{0, 1};
  CHECK_THROWS_WITH_AS(integrate_adaptive(make_controlled(1e-12, 1e-12, dopri5<state2>{}),
                                          oscillator{}, x, 0.0, 100.0, adaptive_options{0, 50}),
                       doctest::Contains("integrate_adaptive: reached max_steps = 50"),
                       integration_error);
  CHECK_THROWS_AS(integrate_times(make_dense_output(1e-12, 1e-12, dopri5<state2>{}), oscillator{},
                                  x, std::vector<double>{0, 100}, adaptive_options{0, 50}),
                  integration_error);
  // A right-hand side that turns non-finite makes every step fail until dt underflows.
  auto blowup = [](const state2& y, state2& d, double t) {
    d[0] = t > 0.5 ? std::numeric_limits<double>::quiet_NaN() : y[1];
    d[1] = -y[0];
  };
  state2 y{0, 1};
  CHECK_THROWS_WITH_AS(integrate_adaptive(make_controlled(1e-6, 1e-6, dopri5<state2>{}), blowup,
                                          y, 0.0, 1.0),
                       doctest::Contains("step size underflow"), integration_error);
}

TEST_CASE("bad input is rejected with the function and argument named") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  state2 x{0, 1};
  CHECK_THROWS_WITH_AS(integrate_const(rk4<state2>{}, oscillator{}, x, 1.0, 1.0, 0.1),
                       doctest::Contains("integrate_const(t0, t1): empty interval"), value_error);
  CHECK_THROWS_WITH_AS(integrate_const(rk4<state2>{}, oscillator{}, x, 0.0, 1.0, -0.1),
                       doctest::Contains("integrate_const(dt): step -0.1 has the wrong sign"),
                       value_error);
  CHECK_THROWS_WITH_AS(integrate_const(rk4<state2>{}, oscillator{}, x, 0.0, -1.0, 0.1),
                       doctest::Contains("wrong sign"), value_error);
  CHECK_THROWS_WITH_AS(integrate_const(rk4<state2>{}, oscillator{}, x, 0.0, 1.0, 0.0),
                       doctest::Contains("integrate_const(dt)"), value_error);
  CHECK_THROWS_WITH_AS(integrate_n_steps(rk4<state2>{}, oscillator{}, x, 0.0, nan, 3),
                       doctest::Contains("integrate_n_steps(dt)"), value_error);
  state2 bad{nan, 1};
  CHECK_THROWS_WITH_AS(integrate_adaptive(make_controlled(1e-6, 1e-6, dopri5<state2>{}),
                                          oscillator{}, bad, 0.0, 1.0),
                       doctest::Contains("integrate_adaptive(x): initial state has non-finite"),
                       value_error);
  CHECK_THROWS_WITH_AS(integrate_const(rk4<state2>{}, oscillator{}, bad, 0.0, 1.0, 0.1),
                       doctest::Contains("integrate_const(x)"), value_error);
  CHECK_THROWS_WITH_AS(make_controlled(0.0, 1e-6, dopri5<state2>{}),
                       doctest::Contains("controlled(tolerance): atol must be positive"),
                       value_error);
  CHECK_THROWS_WITH_AS(make_dense_output(1e-6, -1.0, dopri5<state2>{}),
                       doctest::Contains("rtol must be positive"), value_error);
  CHECK_THROWS_AS(make_controlled(1e-6, nan, dopri5<state2>{}), value_error);
  CHECK_THROWS_WITH_AS(integrate_adaptive(make_controlled(1e-6, 1e-6, dopri5<state2>{}),
                                          oscillator{}, x, 2.0, 2.0),
                       doctest::Contains("integrate_adaptive(t0, t1)"), value_error);
  CHECK_THROWS_WITH_AS(integrate_adaptive(make_controlled(1e-6, 1e-6, dopri5<state2>{}),
                                          oscillator{}, x, 0.0, 1.0, adaptive_options{-0.1}),
                       doctest::Contains("integrate_adaptive(opt.dt0)"), value_error);
  CHECK_THROWS_WITH_AS(integrate_times(make_dense_output(1e-6, 1e-6, dopri5<state2>{}),
                                       oscillator{}, x, std::vector<double>{0, 1, 0.5}),
                       doctest::Contains("integrate_times(times): times must be strictly monotone"),
                       value_error);
  CHECK_THROWS_WITH_AS(integrate_times(rk4<state2>{}, oscillator{}, x, std::vector<double>{0.0},
                                       0.1),
                       doctest::Contains("integrate_times(times)"), value_error);
  CHECK_THROWS_WITH_AS(integrate_times(rk4<state2>{}, oscillator{}, x,
                                       std::vector<double>{0.0, -1.0}, 0.1),
                       doctest::Contains("integrate_times(dt)"), value_error);
  // Nothing was integrated by the failed calls.
  CHECK(x == state2{0, 1});
}
