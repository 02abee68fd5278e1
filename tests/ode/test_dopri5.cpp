// Dormand-Prince 5(4): fifth order, its error estimate, FSAL, step control to the requested
// tolerance on Lotka-Volterra and the Arenstorf orbit, and step counts beside Boost.odeint's
// runge_kutta_dopri5 at the same tolerances.
#include <diffeo/ode/controlled.hpp>
#include <diffeo/ode/dopri5.hpp>
#include <diffeo/ode/integrate.hpp>
#include <diffeo/ode/observers.hpp>

#include <doctest/doctest.h>

// odeint's Fehlberg 7(8) copies workspace it has not filled yet; g++ 12 says so at -O2.
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#  pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <boost/numeric/odeint.hpp>

#include <array>
#include <cmath>
#include <string>
#include <vector>

using namespace diffeo::ode;
namespace odeint = boost::numeric::odeint;

namespace {

using state1 = std::array<double, 1>;
using state2 = std::array<double, 2>;
using state4 = std::array<double, 4>;

/// y' = y cos t; y(0) = 1 gives y = exp(sin t).
struct cos_growth {
  void operator()(const state1& y, state1& d, double t) const { d[0] = y[0] * std::cos(t); }
};

/// Lotka-Volterra with (α, β, δ, γ) = (2/3, 4/3, 1, 1), from (1, 1) over [0, 15].
struct lotka_volterra {
  void operator()(const state2& x, state2& d, double) const {
    d[0] = 2.0 / 3 * x[0] - 4.0 / 3 * x[0] * x[1];
    d[1] = x[0] * x[1] - x[1];
  }
};

/// The restricted three-body problem (Hairer, Nørsett & Wanner I, II.0): the Arenstorf
/// initial values give a periodic orbit of period T, so y(T) = y(0) is a closed form.
struct arenstorf {
  static constexpr double mu = 0.012277471;
  static constexpr double period = 17.0652165601579625588917206249;
  static constexpr state4 y0{0.994, 0, 0, -2.00158510637908252240537862224};
  void operator()(const state4& y, state4& d, double) const {
    const double mup = 1 - mu;
    const double d1 = std::pow((y[0] + mu) * (y[0] + mu) + y[1] * y[1], 1.5);
    const double d2 = std::pow((y[0] - mup) * (y[0] - mup) + y[1] * y[1], 1.5);
    d[0] = y[2];
    d[1] = y[3];
    d[2] = y[0] + 2 * y[3] - mup * (y[0] + mu) / d1 - mu * (y[0] - mup) / d2;
    d[3] = y[1] - 2 * y[2] - mup * y[1] / d1 - mu * y[1] / d2;
  }
};

template <class State>
double max_diff(const State& a, const State& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

/// Integrates with diffeo's controlled DOPRI5, then measures every accepted step's true
/// local error (against Boost.odeint's Fehlberg 7(8) at 1e-14 from the same start) in the
/// controller's own scale; returns the largest, which must stay below 1.
template <class State, class Sys>
double worst_local_error(Sys sys, State x, double t1, double tol) {
  state_recorder<State> rec;
  integrate_adaptive(make_controlled(tol, tol, dopri5<State>{}, norm_kind::max), sys, x, 0.0, t1,
                     {}, rec);
  double worst = 0;
  for (std::size_t n = 0; n + 1 < rec.times.size(); ++n) {
    State ref = rec.states[n];
    odeint::integrate_adaptive(
        odeint::make_controlled(1e-14, 1e-14, odeint::runge_kutta_fehlberg78<State>()), sys, ref,
        rec.times[n], rec.times[n + 1], 1e-4);
    for (std::size_t i = 0; i < ref.size(); ++i) {
      const double sc =
          tol + tol * std::max(std::fabs(rec.states[n][i]), std::fabs(rec.states[n + 1][i]));
      worst = std::max(worst, std::fabs(rec.states[n + 1][i] - ref[i]) / sc);
    }
  }
  return worst;
}

struct counts {
  std::size_t evals = 0, accepted = 0;
};

/// Boost.odeint's controlled runge_kutta_dopri5 (its max norm, its controller).
template <class State, class Sys>
counts odeint_dopri5(Sys sys, State& x, double t1, double tol, double dt0) {
  counts c;
  auto f = [&](const State& y, State& d, double t) {
    ++c.evals;
    sys(y, d, t);
  };
  odeint::integrate_adaptive(
      odeint::make_controlled(tol, tol, odeint::runge_kutta_dopri5<State>()), f, x, 0.0, t1, dt0,
      [&](const State&, double) { ++c.accepted; });
  --c.accepted;  // the observer also sees the start
  return c;
}

}  // namespace

static_assert(error_stepper<dopri5<state2>>);
static_assert(dopri5<state2>::fsal && dopri5<state2>::order == 5 && dopri5<state2>::error_order == 4);
static_assert(tableau_defect<dopri5_tableau>() < 1e-15);
static_assert(controlled_stepper<controlled<dopri5<state2>>>);

TEST_CASE("Dormand-Prince converges at order 5 with fixed steps") {
  std::vector<double> le, lh;
  for (int n : {8, 16, 32, 64}) {
    state1 y{1};
    integrate_const(dopri5<state1>{}, cos_growth{}, y, 0.0, 2.0, 2.0 / n);
    le.push_back(std::log(std::fabs(y[0] - std::exp(std::sin(2.0)))));
    lh.push_back(std::log(2.0 / n));
  }
  const double slope = (le.back() - le.front()) / (lh.back() - lh.front());
  MESSAGE("DOPRI5 fitted order " << slope);
  CHECK(slope == doctest::Approx(5).epsilon(0.05));
}

TEST_CASE("the embedded error estimate is O(dt^5) and one step costs 6 evaluations (FSAL)") {
  std::vector<double> est;
  for (double h : {0.2, 0.1, 0.05}) {
    state2 x{1, 1}, xerr;
    dopri5<state2>{}.do_step(lotka_volterra{}, x, 0.0, h, xerr);
    est.push_back(std::hypot(xerr[0], xerr[1]));
  }
  CHECK(std::log2(est[1] / est[2]) == doctest::Approx(5).epsilon(0.05));
  state2 x{1, 1};
  const auto st = integrate_adaptive(make_controlled(1e-8, 1e-8, dopri5<state2>{}), lotka_volterra{},
                                     x, 0.0, 15.0);
  // f(x0), one more for Hairer's initial step, then 6 per tried step.
  CHECK(st.rhs_evals == 2 + 6 * (st.accepted + st.rejected));
}

TEST_CASE("every accepted step meets the requested tolerance (Lotka-Volterra, Arenstorf)") {
  for (double tol : {1e-6, 1e-8, 1e-10}) {
    const double lv = worst_local_error(lotka_volterra{}, state2{1, 1}, 15.0, tol);
    const double ar = worst_local_error(arenstorf{}, arenstorf::y0, arenstorf::period, tol);
    MESSAGE("tol " << tol << ": worst true local error / tolerance: LV " << lv << ", Arenstorf "
                   << ar);
    CHECK(lv <= 1.0);
    CHECK(ar <= 1.0);
  }
}

TEST_CASE("global errors shrink with the tolerance: Lotka-Volterra to the tolerance itself") {
  state2 ref{1, 1};
  odeint::integrate_adaptive(
      odeint::make_controlled(1e-14, 1e-14, odeint::runge_kutta_fehlberg78<state2>()),
      lotka_volterra{}, ref, 0.0, 15.0, 1e-4);
  double last_ar = 1;
  for (double tol : {1e-6, 1e-8, 1e-10}) {
    state2 x{1, 1};
    integrate_adaptive(make_controlled(tol, tol, dopri5<state2>{}), lotka_volterra{}, x, 0.0, 15.0);
    // Measured: 7.2, 2.3 and 0.9 times the tolerance (relative to |x| ~ 1).
    CHECK(max_diff(x, ref) <= 10 * tol);
    state4 y = arenstorf::y0;
    integrate_adaptive(make_controlled(tol, tol, dopri5<state4>{}), arenstorf{}, y, 0.0,
                       arenstorf::period);
    // The orbit is unstable (errors grow ~1e4-fold over a period), but it must close
    // better with every tighter tolerance.
    const double ar = max_diff(y, arenstorf::y0);
    MESSAGE("tol " << tol << ": Arenstorf closes to " << ar);
    CHECK(ar < last_ar / 10);
    last_ar = ar;
  }
  CHECK(last_ar < 1e-5);
}

TEST_CASE("step counts beside Boost.odeint's controlled runge_kutta_dopri5") {
  // Same tolerances; odeint starts from dt0 = 1e-3, diffeo chooses its own (Hairer).
  // diffeo's default RMS norm and PI controller need fewer evaluations at the same
  // tolerance; with the max norm (odeint's) the counts are close.
  struct row {
    std::string problem;
    double tol;
    counts ours_rms, ours_max, theirs;
  };
  std::vector<row> rows;
  auto ours = [](auto sys, auto x, double t1, double tol, norm_kind nk) {
    const auto st = integrate_adaptive(make_controlled(tol, tol, dopri5<decltype(x)>{}, nk), sys,
                                       x, 0.0, t1);
    return counts{st.rhs_evals, st.accepted};
  };
  for (double tol : {1e-5, 1e-6, 1e-8, 1e-10}) {
    state2 a{1, 1};
    rows.push_back({"Lotka-Volterra", tol, ours(lotka_volterra{}, a, 15.0, tol, norm_kind::rms),
                    ours(lotka_volterra{}, a, 15.0, tol, norm_kind::max),
                    odeint_dopri5(lotka_volterra{}, a, 15.0, tol, 1e-3)});
    state4 y = arenstorf::y0;
    rows.push_back({"Arenstorf", tol, ours(arenstorf{}, y, arenstorf::period, tol, norm_kind::rms),
                    ours(arenstorf{}, y, arenstorf::period, tol, norm_kind::max),
                    odeint_dopri5(arenstorf{}, y, arenstorf::period, tol, 1e-3)});
  }
  for (const row& r : rows) {
    MESSAGE(r.problem << " tol " << r.tol << ": f evals (accepted steps) diffeo rms "
                      << r.ours_rms.evals << " (" << r.ours_rms.accepted << "), diffeo max "
                      << r.ours_max.evals << " (" << r.ours_max.accepted << "), odeint "
                      << r.theirs.evals << " (" << r.theirs.accepted << ")");
    CHECK(r.ours_rms.evals <= r.theirs.evals);
    CHECK(double(r.ours_max.evals) <= 1.05 * double(r.theirs.evals));
    CHECK(double(r.ours_max.accepted) >= 0.75 * double(r.theirs.accepted));
    CHECK(double(r.ours_max.accepted) <= 1.25 * double(r.theirs.accepted));
  }
}
