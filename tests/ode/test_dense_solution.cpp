// Dense output: the dense-output stepper's calc_state and the whole-solution object, exact at
// step points, fourth order between them, free of new f evaluations, forward and backward,
// on small states and on fields on every backend.
#include <diffeo/ode/dense_solution.hpp>
#include <diffeo/ode/dopri5.hpp>
#include <diffeo/ode/heun.hpp>
#include <diffeo/ode/observers.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <vector>

#include "support/backends.hpp"

using namespace diffeo;
using namespace diffeo::ode;

namespace {

using state1 = std::array<double, 1>;
using state2 = std::array<double, 2>;

struct oscillator {
  void operator()(const state2& x, state2& d, double) const {
    d[0] = x[1];
    d[1] = -x[0];
  }
};

/// y' = y cos t, y = exp(sin t) from y(0) = 1; counts its evaluations.
struct cos_growth {
  int* calls = nullptr;
  void operator()(const state1& y, state1& d, double t) const {
    if (calls) ++*calls;
    d[0] = y[0] * std::cos(t);
  }
};

/// Interpolation error at θ = 1/2 of one accepted step of size h from the exact solution.
template <class Stepper>
double midstep_error(double h) {
  const double t0 = 0.3;
  // A loose tolerance so the step of size h is accepted as given.
  dense_output<Stepper> st(tolerance{1.0, 1.0});
  st.initialize(state1{std::exp(std::sin(t0))}, t0, h);
  const auto [a, b] = st.do_step(cos_growth{});
  REQUIRE(b - a == doctest::Approx(h));
  state1 y;
  st.calc_state(t0 + h / 2, y);
  return std::fabs(y[0] - std::exp(std::sin(t0 + h / 2)));
}

}  // namespace

static_assert(dense_output_stepper<dense_output<dopri5<state2>>>);
static_assert(dense_output<dopri5<state2>>::has_continuous_extension);
static_assert(!dense_output<heun<state2>>::has_continuous_extension);

TEST_CASE("DOPRI5's continuous extension is 4th order between steps; Hermite is 3rd") {
  // Local interpolation error O(h^(p+1)) for a dense output of order p.
  const double p_dopri = std::log2(midstep_error<dopri5<state1>>(0.2) /
                                   midstep_error<dopri5<state1>>(0.1)) - 1;
  const double p_heun =
      std::log2(midstep_error<heun<state1>>(0.2) / midstep_error<heun<state1>>(0.1)) - 1;
  MESSAGE("dense output order: DOPRI5 " << p_dopri << ", Heun with Hermite " << p_heun);
  CHECK(p_dopri >= 3.9);
  CHECK(p_heun == doctest::Approx(2).epsilon(0.1));  // Heun's own 2nd-order error dominates
  CHECK(midstep_error<dopri5<state1>>(0.1) < 1e-7);
}

TEST_CASE("a dense solution equals the stepper at step points and costs no f between them") {
  int calls = 0;
  const cos_growth sys{&calls};
  const auto sol = integrate_dense(make_dense_output(1e-8, 1e-8, dopri5<state1>{}), sys,
                                   state1{1.0}, 0.0, 6.0);
  CHECK(std::size_t(calls) == sol.stats().rhs_evals);
  CHECK(sol.t_begin() == 0.0);
  CHECK(sol.t_end() == 6.0);
  // The same integration through integrate_adaptive takes the same steps.
  state1 y{1.0};
  state_recorder<state1> rec;
  integrate_adaptive(make_controlled(1e-8, 1e-8, dopri5<state1>{}), cos_growth{}, y, 0.0, 6.0, {},
                     rec);
  REQUIRE(rec.times == sol.times());
  for (std::size_t n = 0; n < rec.times.size(); ++n) {
    CHECK(sol(rec.times[n])[0] == rec.states[n][0]);
    CHECK(sol.state_at_step(n)[0] == rec.states[n][0]);
  }
  // Hundreds of frames from the one solve: no new evaluation, error at the tolerance.
  const int before = calls;
  double worst = 0;
  for (int k = 0; k <= 600; ++k) {
    const double t = 6.0 * k / 600;
    worst = std::max(worst, std::fabs(sol(t)[0] - std::exp(std::sin(t))));
  }
  CHECK(calls == before);
  double at_steps = 0;
  for (std::size_t n = 0; n < rec.times.size(); ++n)
    at_steps = std::max(at_steps, std::fabs(rec.states[n][0] - std::exp(std::sin(rec.times[n]))));
  MESSAGE("worst frame error " << worst << ", worst step-point error " << at_steps << ", "
                               << sol.steps() << " steps");
  // The continuous extension is one order below the step (4 vs 5): between steps the error
  // is a fixed multiple of the tolerance (measured 24x here), at steps below it.
  CHECK(at_steps < 1e-8);
  CHECK(worst < 40 * 1e-8);
  // Memory: y and f at N+1 points and one correction per step.
  CHECK(sol.memory_bytes() == (3 * sol.steps() + 2) * sizeof(double));
  CHECK_THROWS_WITH_AS(sol(6.5), doctest::Contains("dense_solution(t): t = 6.5 lies outside [0, 6]"),
                       value_error);
  CHECK_THROWS_AS(sol(-1e-9), value_error);
}

TEST_CASE("dense solutions integrate backward too; Hermite solutions hold 2 states per step") {
  const auto sol = integrate_dense(make_dense_output(1e-9, 1e-9, dopri5<state2>{}), oscillator{},
                                   state2{0, 1}, 0.0, -4.0);
  CHECK(sol.t_end() == -4.0);
  double worst = 0;
  for (int k = 0; k <= 100; ++k) {
    const double t = -0.04 * k;
    const state2 x = sol(t);
    worst = std::max({worst, std::fabs(x[0] - std::sin(t)), std::fabs(x[1] - std::cos(t))});
  }
  CHECK(worst < 1e-8);
  CHECK_THROWS_AS(sol(0.1), value_error);
  const auto herm = integrate_dense(make_dense_output(1e-6, 1e-6, heun<state2>{}), oscillator{},
                                    state2{0, 1}, 0.0, 1.0);
  CHECK(herm.memory_bytes() == (2 * herm.steps() + 2) * sizeof(state2));
  CHECK(herm(0.5)[0] == doctest::Approx(std::sin(0.5)).epsilon(1e-5));
}

/// Per-scalar kernel of `d = -u` (u = u0 e^{-t}).
struct decay_kernel {
  const float* u;
  float* d;
  DIFFEO_HD void operator()(index_t i) const { d[i] = -u[i]; }
};
struct field_decay {
  template <class F>
  void operator()(const F& u, F& d, double) const {
    using B = typename F::backend_type;
    for_each_index(B{}, u.size() * 2,
                   decay_kernel{reinterpret_cast<const float*>(u.data()),
                                reinterpret_cast<float*>(d.data())});
  }
};

TEST_CASE_TEMPLATE("dense solutions of field states on every backend", B, DIFFEO_TEST_BACKENDS) {
  using F = vector_field<float, 2, B>;
  vector_field<float, 2, backend::serial> h0(make_extents(19, 6));
  for (index_t i = 0; i < h0.points(); ++i)
    h0[i] = vec2f{{float(std::sin(0.2 * double(i))), 1.0f}};
  const F u0 = to_backend<B>(h0);
  const auto sol =
      integrate_dense(make_dense_output(1e-6, 1e-6, dopri5<F>{}), field_decay{}, u0, 0.0, 2.0);
  CHECK(sol.memory_bytes() == (3 * sol.steps() + 2) * std::size_t(19 * 6 * 2 * sizeof(float)));
  F u;
  double worst = 0;
  for (double t : {0.0, 0.37, 1.0, 1.61, 2.0}) {
    sol(t, u);
    const auto h = to_host(u);
    for (index_t i = 0; i < h.points(); ++i)
      for (int c = 0; c < 2; ++c)
        worst = std::max(worst, std::fabs(double(h[i][c]) - double(h0[i][c]) * std::exp(-t)));
  }
  CHECK(worst < 2e-6);
}
