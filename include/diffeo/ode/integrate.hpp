#pragma once
/// Integrate functions (after Boost.odeint): fixed step over `[t0, t1]` or for `n` steps,
/// adaptive with a controlled or dense-output stepper, and output at a list of times.
/// Each validates its arguments (`value_error` naming the function and argument),
/// calls the observer at the start and after every step or output time, and returns the
/// work done: f evaluations, accepted and rejected steps. `t1 < t0` integrates backward.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <iterator>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include "algebra.hpp"
#include "concepts.hpp"
#include "controlled.hpp"
#include "dense_output.hpp"
#include "observers.hpp"

namespace diffeo::ode {

/// Options of adaptive integration.
struct adaptive_options {
  /// First step; its magnitude only (the direction is that of `t1 - t0`); 0 selects it by
  /// Hairer's algorithm (one extra evaluation of f).
  double dt0 = 0;
  /// Attempted steps (accepted + rejected) before `integration_error` is thrown.
  std::size_t max_steps = 100000;
};

/// `n` fixed steps of size `dt` from `t0` (dt < 0 integrates backward).
template <class Stepper, class System, class State, class Observer = null_observer>
  requires stepper<std::remove_cvref_t<Stepper>>
integrate_stats integrate_n_steps(Stepper&& st, System&& sys, State& x,
                                  typename std::remove_cvref_t<Stepper>::time_type t0,
                                  typename std::remove_cvref_t<Stepper>::time_type dt,
                                  std::size_t n, Observer&& obs = {});

/// Fixed steps of size `dt` from `t0` to exactly `t1`: the last step is shortened when
/// `t1 - t0` is not a multiple of `dt`.
template <class Stepper, class System, class State, class Observer = null_observer>
  requires stepper<std::remove_cvref_t<Stepper>>
integrate_stats integrate_const(Stepper&& st, System&& sys, State& x,
                                typename std::remove_cvref_t<Stepper>::time_type t0,
                                typename std::remove_cvref_t<Stepper>::time_type t1,
                                typename std::remove_cvref_t<Stepper>::time_type dt,
                                Observer&& obs = {});

/// Adaptive steps from `t0` to exactly `t1` with a controlled or dense-output stepper;
/// the observer sees every accepted step.
template <class Stepper, class System, class State, class Observer = null_observer>
  requires controlled_stepper<std::remove_cvref_t<Stepper>> ||
           dense_output_stepper<std::remove_cvref_t<Stepper>>
integrate_stats integrate_adaptive(Stepper&& st, System&& sys, State& x,
                                   typename std::remove_cvref_t<Stepper>::time_type t0,
                                   typename std::remove_cvref_t<Stepper>::time_type t1,
                                   adaptive_options opt = {}, Observer&& obs = {});

/// Adaptive integration through the strictly monotone `times` (the first is the start,
/// where `x` is given); the observer sees the solution at each of them, interpolated by
/// dense output where they fall between steps. `x` ends at `times.back()`.
template <class Stepper, class System, class State, class Times, class Observer = null_observer>
  requires dense_output_stepper<std::remove_cvref_t<Stepper>>
integrate_stats integrate_times(Stepper&& st, System&& sys, State& x, const Times& times,
                                adaptive_options opt = {}, Observer&& obs = {});

/// Fixed steps of at most |dt| through the strictly monotone `times`, landing on each.
template <class Stepper, class System, class State, class Times, class Observer = null_observer>
  requires stepper<std::remove_cvref_t<Stepper>>
integrate_stats integrate_times(Stepper&& st, System&& sys, State& x, const Times& times,
                                typename std::remove_cvref_t<Stepper>::time_type dt,
                                Observer&& obs = {});

// ----------------------------------------------------------------------------------------

namespace detail {

inline void require_interval(double t0, double t1, const std::string& where) {
  if (!std::isfinite(t0) || !std::isfinite(t1))
    throw value_error(where + "(t0, t1): times must be finite, got t0 = " + num(t0) +
                      ", t1 = " + num(t1));
  if (t0 == t1)
    throw value_error(where + "(t0, t1): empty interval, t0 == t1 == " + num(t0));
}

inline void require_step(double dt, double t0, double t1, const std::string& where) {
  if (!std::isfinite(dt) || dt == 0)
    throw value_error(where + "(dt): step must be finite and nonzero, got " + num(dt));
  if ((t1 - t0) * dt < 0)
    throw value_error(where + "(dt): step " + num(dt) + " has the wrong sign for t0 = " +
                      num(t0) + " -> t1 = " + num(t1));
  if (std::fabs(t1 - t0) / std::fabs(dt) > 1e12)
    throw value_error(where + "(dt): step " + num(dt) + " is too small for the interval");
}

template <class State>
void require_finite(const State& x, const std::string& where) {
  if (scalar_count(x) == 0) throw value_error(where + "(x): empty state");
  if (!all_finite(x))
    throw value_error(where + "(x): initial state has non-finite values (NaN or inf)");
}

/// Steppers that state their evaluations per `do_step` (`evals_per_step`).
template <class S>
concept known_step_cost = requires {
  { S::evals_per_step } -> std::convertible_to<int>;
};

/// Counts evaluations of `sys` into `count`.
template <class System>
struct counted_system {
  System& sys;
  std::size_t& count;
  template <class X, class D, class T>
  void operator()(const X& x, D& dxdt, T t) {
    ++count;
    sys(x, dxdt, t);
  }
};
template <class System>
counted_system(System&, std::size_t&) -> counted_system<System>;

/// Number of steps of size `dt` covering `[t0, t1]`: a ratio within rounding of an
/// integer gives that integer (no sliver step).
inline std::size_t step_count(double t0, double t1, double dt) {
  const double ratio = (t1 - t0) / dt;
  const double r = std::round(ratio);
  if (r >= 1 && std::fabs(ratio - r) <= 1e-9 * std::max(1.0, ratio)) return std::size_t(r);
  return std::size_t(std::ceil(ratio));
}

/// Fixed steps from `t0` to exactly `t1`; times are `t0 + i·dt` (no drift), the last `t1`.
template <class St, class Sys, class State, class Obs, class Time>
void fixed_steps(St& st, Sys& sys, State& x, Time t0, Time t1, Time dt, Obs& obs,
                 integrate_stats& stats) {
  const index_t n = index_t(step_count(double(t0), double(t1), double(dt)));
  for (index_t i = 0; i < n; ++i) {
    const Time ti = t0 + Time(i) * dt;
    const Time tn = (i + 1 == n) ? t1 : t0 + Time(i + 1) * dt;
    st.do_step(sys, x, ti, tn - ti);
    ++stats.accepted;
    obs(std::as_const(x), tn);
  }
}

template <class Times>
void require_times(const Times& times, const std::string& where) {
  using std::begin;
  using std::end;
  const auto n = std::distance(begin(times), end(times));
  if (n < 2)
    throw value_error(where + "(times): need the start time and at least one output time, got " +
                      std::to_string(n) + " times");
  auto it = begin(times);
  double prev = double(*it);
  const double first = prev;
  double dir = 0;
  for (++it; it != end(times); ++it) {
    const double t = double(*it);
    if (!std::isfinite(t) || !std::isfinite(prev))
      throw value_error(where + "(times): times must be finite");
    const double d = t - prev;
    if (d == 0 || (dir != 0 && d * dir < 0))
      throw value_error(where + "(times): times must be strictly monotone; " + num(prev) +
                        " is followed by " + num(t) + " (start " + num(first) + ")");
    dir = d > 0 ? 1 : -1;
    prev = t;
  }
}

}  // namespace detail

template <class Stepper, class System, class State, class Observer>
  requires stepper<std::remove_cvref_t<Stepper>>
integrate_stats integrate_n_steps(Stepper&& st, System&& sys, State& x,
                                  typename std::remove_cvref_t<Stepper>::time_type t0,
                                  typename std::remove_cvref_t<Stepper>::time_type dt,
                                  std::size_t n, Observer&& obs) {
  using Time = typename std::remove_cvref_t<Stepper>::time_type;
  if (!std::isfinite(double(t0)))
    throw value_error("integrate_n_steps(t0): must be finite, got " + detail::num(double(t0)));
  if (!std::isfinite(double(dt)) || dt == Time(0))
    throw value_error("integrate_n_steps(dt): step must be finite and nonzero, got " +
                      detail::num(double(dt)));
  detail::require_finite(x, "integrate_n_steps");
  integrate_stats stats;
  stats.accepted = n;
  obs(std::as_const(x), t0);
  // A signed counter: its conversion to floating point is one instruction.
  if constexpr (detail::known_step_cost<std::remove_cvref_t<Stepper>>) {
    // The stepper knows its evaluations per step: no counting wrapper in the hot loop.
    for (index_t i = 0; i < index_t(n); ++i) {
      st.do_step(sys, x, t0 + Time(i) * dt, dt);
      obs(std::as_const(x), t0 + Time(i + 1) * dt);
    }
    stats.rhs_evals = n * std::size_t(std::remove_cvref_t<Stepper>::evals_per_step);
  } else {
    std::size_t evals = 0;  // a local, not the returned struct: it stays in a register
    detail::counted_system counted{sys, evals};
    for (index_t i = 0; i < index_t(n); ++i) {
      st.do_step(counted, x, t0 + Time(i) * dt, dt);
      obs(std::as_const(x), t0 + Time(i + 1) * dt);
    }
    stats.rhs_evals = evals;
  }
  return stats;
}

template <class Stepper, class System, class State, class Observer>
  requires stepper<std::remove_cvref_t<Stepper>>
integrate_stats integrate_const(Stepper&& st, System&& sys, State& x,
                                typename std::remove_cvref_t<Stepper>::time_type t0,
                                typename std::remove_cvref_t<Stepper>::time_type t1,
                                typename std::remove_cvref_t<Stepper>::time_type dt,
                                Observer&& obs) {
  detail::require_interval(double(t0), double(t1), "integrate_const");
  detail::require_step(double(dt), double(t0), double(t1), "integrate_const");
  detail::require_finite(x, "integrate_const");
  integrate_stats stats;
  obs(std::as_const(x), t0);
  if constexpr (detail::known_step_cost<std::remove_cvref_t<Stepper>>) {
    detail::fixed_steps(st, sys, x, t0, t1, dt, obs, stats);
    stats.rhs_evals = stats.accepted * std::size_t(std::remove_cvref_t<Stepper>::evals_per_step);
  } else {
    std::size_t evals = 0;
    detail::counted_system counted{sys, evals};
    detail::fixed_steps(st, counted, x, t0, t1, dt, obs, stats);
    stats.rhs_evals = evals;
  }
  return stats;
}

template <class Stepper, class System, class State, class Observer>
  requires controlled_stepper<std::remove_cvref_t<Stepper>> ||
           dense_output_stepper<std::remove_cvref_t<Stepper>>
integrate_stats integrate_adaptive(Stepper&& st, System&& sys, State& x,
                                   typename std::remove_cvref_t<Stepper>::time_type t0,
                                   typename std::remove_cvref_t<Stepper>::time_type t1,
                                   adaptive_options opt, Observer&& obs) {
  using S = std::remove_cvref_t<Stepper>;
  using Time = typename S::time_type;
  detail::require_interval(double(t0), double(t1), "integrate_adaptive");
  if (!(opt.dt0 >= 0) || !std::isfinite(opt.dt0))
    throw value_error("integrate_adaptive(opt.dt0): must be >= 0 and finite (0 = automatic), got " +
                      detail::num(opt.dt0));
  if (opt.max_steps == 0) throw value_error("integrate_adaptive(opt.max_steps): must be positive");
  detail::require_finite(x, "integrate_adaptive");
  const double dir = t1 > t0 ? 1.0 : -1.0;
  const auto limit_error = [&](Time t) {
    return integration_error("integrate_adaptive: reached max_steps = " +
                             std::to_string(opt.max_steps) + " at t = " + detail::num(double(t)) +
                             " before t1 = " + detail::num(double(t1)) +
                             "; raise adaptive_options::max_steps or loosen the tolerances");
  };
  integrate_stats stats;
  obs(std::as_const(x), t0);
  if constexpr (dense_output_stepper<S>) {
    st.initialize(x, t0, Time(dir * opt.dt0));
    while (st.current_time() != t1) {
      const integrate_stats& s = st.stats();
      if (s.accepted + s.rejected >= opt.max_steps) throw limit_error(st.current_time());
      st.do_step(sys, t1);
      obs(st.current_state(), st.current_time());
    }
    assign(x, st.current_state());
    return st.stats();
  } else {
    detail::counted_system counted{sys, stats.rhs_evals};
    st.reset();
    State dxdt{};
    resize_like(dxdt, x);
    counted(std::as_const(x), dxdt, t0);
    Time dt = opt.dt0 > 0 ? Time(dir * opt.dt0) : st.initial_step(counted, x, dxdt, t0, t1);
    Time t = t0;
    const double eps = std::numeric_limits<double>::epsilon();
    while (dir * (double(t) - double(t1)) < 0) {
      if (stats.accepted + stats.rejected >= opt.max_steps) throw limit_error(t);
      Time h = dt;
      if (dir * (double(t) + 1.01 * double(h) - double(t1)) > 0) h = t1 - t;
      if (std::fabs(double(h)) <= 16 * eps * std::max(std::fabs(double(t)), 1e-300))
        throw integration_error("integrate_adaptive: step size underflow (dt = " +
                                detail::num(double(h)) + ") at t = " + detail::num(double(t)) +
                                "; the right-hand side may be non-finite or the problem stiff");
      if (st.try_step(counted, x, dxdt, t, h) == step_result::success) {
        ++stats.accepted;
        if (dir * (double(t) - double(t1)) >= 0) t = t1;
        obs(std::as_const(x), t);
      } else {
        ++stats.rejected;
      }
      dt = h;  // the controller's proposal for the next try
    }
    return stats;
  }
}

template <class Stepper, class System, class State, class Times, class Observer>
  requires dense_output_stepper<std::remove_cvref_t<Stepper>>
integrate_stats integrate_times(Stepper&& st, System&& sys, State& x, const Times& times,
                                adaptive_options opt, Observer&& obs) {
  using S = std::remove_cvref_t<Stepper>;
  using Time = typename S::time_type;
  using std::begin;
  using std::end;
  detail::require_times(times, "integrate_times");
  if (!(opt.dt0 >= 0) || !std::isfinite(opt.dt0))
    throw value_error("integrate_times(opt.dt0): must be >= 0 and finite (0 = automatic), got " +
                      detail::num(opt.dt0));
  detail::require_finite(x, "integrate_times");
  auto it = begin(times);
  const Time t0 = Time(*it);
  Time t_end = t0;
  for (auto jt = begin(times); jt != end(times); ++jt) t_end = Time(*jt);
  const double dir = t_end > t0 ? 1.0 : -1.0;
  st.initialize(x, t0, Time(dir * opt.dt0));
  obs(std::as_const(x), t0);
  State xi{};
  for (++it; it != end(times); ++it) {
    const Time ti = Time(*it);
    while (dir * (double(st.current_time()) - double(ti)) < 0) {
      const integrate_stats& s = st.stats();
      if (s.accepted + s.rejected >= opt.max_steps)
        throw integration_error("integrate_times: reached max_steps = " +
                                std::to_string(opt.max_steps) + " at t = " +
                                detail::num(double(st.current_time())) +
                                "; raise adaptive_options::max_steps or loosen the tolerances");
      st.do_step(sys, t_end);
    }
    st.calc_state(ti, xi);
    obs(std::as_const(xi), ti);
  }
  assign(x, st.current_state());
  return st.stats();
}

template <class Stepper, class System, class State, class Times, class Observer>
  requires stepper<std::remove_cvref_t<Stepper>>
integrate_stats integrate_times(Stepper&& st, System&& sys, State& x, const Times& times,
                                typename std::remove_cvref_t<Stepper>::time_type dt,
                                Observer&& obs) {
  using Time = typename std::remove_cvref_t<Stepper>::time_type;
  using std::begin;
  using std::end;
  detail::require_times(times, "integrate_times");
  detail::require_finite(x, "integrate_times");
  auto it = begin(times);
  Time t = Time(*it);
  Time t_end = t;
  for (auto jt = begin(times); jt != end(times); ++jt) t_end = Time(*jt);
  detail::require_step(double(dt), double(t), double(t_end), "integrate_times");
  integrate_stats stats;
  detail::counted_system counted{sys, stats.rhs_evals};
  obs(std::as_const(x), t);
  null_observer quiet;
  for (++it; it != end(times); ++it) {
    const Time ti = Time(*it);
    detail::fixed_steps(st, counted, x, t, ti, dt, quiet, stats);
    obs(std::as_const(x), ti);
    t = ti;
  }
  return stats;
}

}  // namespace diffeo::ode
