#pragma once
/// A whole solution from one adaptive integration: the accepted steps' dense-output data,
/// so that `x(t)` for any `t` in `[t0, t1]` costs one interpolation (a binary search and
/// one fused pass over the state) and no evaluation of f — the animation use case, where
/// hundreds of frames come from one solve.
///
/// Memory: the state and its derivative at each of the N+1 step points, plus, for a
/// method with a continuous extension (Dormand-Prince), one correction per step:
/// (3N + 2) states for DOPRI5, (2N + 2) with Hermite interpolation. A 256x256 2D float
/// displacement is 512 KiB, so a 12-step DOPRI5 solution holds 19 MiB.

#include <algorithm>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "algebra.hpp"
#include "concepts.hpp"
#include "dense_output.hpp"
#include "integrate.hpp"

namespace diffeo::ode {

/// The solution of one integration, evaluable at any time of its interval.
template <ode_state State, class Time = double>
class dense_solution {
 public:
  using state_type = State;
  using time_type = Time;

  dense_solution() = default;

  /// First and last time (t_begin > t_end for a backward integration).
  Time t_begin() const { return m_t.front(); }
  Time t_end() const { return m_t.back(); }
  /// Number of stored steps.
  std::size_t steps() const { return m_t.empty() ? 0 : m_t.size() - 1; }
  /// The step points.
  const std::vector<Time>& times() const { return m_t; }
  /// The state at step point `i` (exact, not interpolated).
  const State& state_at_step(std::size_t i) const { return m_y[i]; }
  /// Work done by the integration that produced it.
  const integrate_stats& stats() const { return m_stats; }
  /// Bytes of state storage held.
  std::size_t memory_bytes() const;

  /// Writes `x(t)`; throws `value_error` for `t` outside the interval.
  void operator()(Time t, State& x) const;
  /// Returns `x(t)`.
  State operator()(Time t) const {
    State x{};
    (*this)(t, x);
    return x;
  }

  /// Starts a solution at `(x0, t0)` with `f0 = f(x0, t0)`.
  void start(const State& x0, const State& f0, Time t0);
  /// Appends a step ending at `(x1, t1)` with `f1 = f(x1, t1)` and the step's
  /// continuous-extension correction (`nullptr` for Hermite interpolation).
  void push_step(const State& x1, const State& f1, Time t1, const State* correction);
  void set_stats(const integrate_stats& s) { m_stats = s; }

 private:
  std::vector<Time> m_t;
  std::vector<State> m_y, m_f, m_r;
  integrate_stats m_stats{};
};

/// Integrates from `(x0, t0)` to `t1` with the dense-output stepper `st` and keeps every
/// step: the result evaluates `x(t)` anywhere in between with no new f evaluation.
template <class Stepper, class System, class State>
  requires dense_output_stepper<std::remove_cvref_t<Stepper>>
dense_solution<State, typename std::remove_cvref_t<Stepper>::time_type> integrate_dense(
    Stepper&& st, System&& sys, const State& x0,
    typename std::remove_cvref_t<Stepper>::time_type t0,
    typename std::remove_cvref_t<Stepper>::time_type t1, adaptive_options opt = {});

// ----------------------------------------------------------------------------------------

template <ode_state State, class Time>
std::size_t dense_solution<State, Time>::memory_bytes() const {
  std::size_t b = 0;
  for (const auto* v : {&m_y, &m_f, &m_r})
    for (const State& s : *v) b += state_bytes(s);
  return b;
}

template <ode_state State, class Time>
void dense_solution<State, Time>::start(const State& x0, const State& f0, Time t0) {
  m_t.assign(1, t0);
  m_y.clear();
  m_f.clear();
  m_r.clear();
  m_y.emplace_back();
  assign(m_y.back(), x0);
  m_f.emplace_back();
  assign(m_f.back(), f0);
}

template <ode_state State, class Time>
void dense_solution<State, Time>::push_step(const State& x1, const State& f1, Time t1,
                                            const State* correction) {
  m_t.push_back(t1);
  m_y.emplace_back();
  assign(m_y.back(), x1);
  m_f.emplace_back();
  assign(m_f.back(), f1);
  if (correction) {
    m_r.emplace_back();
    assign(m_r.back(), *correction);
  }
}

template <ode_state State, class Time>
void dense_solution<State, Time>::operator()(Time t, State& x) const {
  if (m_t.size() < 2) throw value_error("dense_solution(t): the solution is empty");
  const double dir = m_t.back() > m_t.front() ? 1.0 : -1.0;
  const double s = dir * double(t);
  if (!(s >= dir * double(m_t.front()) && s <= dir * double(m_t.back())))
    throw value_error("dense_solution(t): t = " + detail::num(double(t)) + " lies outside [" +
                      detail::num(double(m_t.front())) + ", " + detail::num(double(m_t.back())) +
                      "]");
  // First step point beyond t (in the direction of integration); the step before it holds t.
  const auto it = std::upper_bound(m_t.begin() + 1, m_t.end() - 1, t, [dir](Time a, Time b) {
    return dir * double(a) < dir * double(b);
  });
  const std::size_t n = std::size_t(it - m_t.begin()) - 1;
  const double h = double(m_t[n + 1]) - double(m_t[n]);
  const auto w = interpolation_weights((double(t) - double(m_t[n])) / h, h);
  resize_like(x, m_y[n]);
  if (!m_r.empty()) {
    scale_sum_n<5>(x, w, {&m_y[n], &m_y[n + 1], &m_f[n], &m_f[n + 1], &m_r[n]});
  } else {
    scale_sum_n<4>(x, {w[0], w[1], w[2], w[3]}, {&m_y[n], &m_y[n + 1], &m_f[n], &m_f[n + 1]});
  }
}

template <class Stepper, class System, class State>
  requires dense_output_stepper<std::remove_cvref_t<Stepper>>
dense_solution<State, typename std::remove_cvref_t<Stepper>::time_type> integrate_dense(
    Stepper&& st, System&& sys, const State& x0,
    typename std::remove_cvref_t<Stepper>::time_type t0,
    typename std::remove_cvref_t<Stepper>::time_type t1, adaptive_options opt) {
  using S = std::remove_cvref_t<Stepper>;
  using Time = typename S::time_type;
  detail::require_interval(double(t0), double(t1), "integrate_dense");
  if (!(opt.dt0 >= 0) || !std::isfinite(opt.dt0))
    throw value_error("integrate_dense(opt.dt0): must be >= 0 and finite (0 = automatic), got " +
                      detail::num(opt.dt0));
  detail::require_finite(x0, "integrate_dense");
  const double dir = t1 > t0 ? 1.0 : -1.0;
  st.initialize(x0, t0, Time(dir * opt.dt0));
  dense_solution<State, Time> sol;
  bool started = false;
  while (st.current_time() != t1) {
    const integrate_stats& s = st.stats();
    if (s.accepted + s.rejected >= opt.max_steps)
      throw integration_error("integrate_dense: reached max_steps = " +
                              std::to_string(opt.max_steps) + " at t = " +
                              detail::num(double(st.current_time())) +
                              "; raise adaptive_options::max_steps or loosen the tolerances");
    st.do_step(sys, t1);
    if (!started) {
      sol.start(st.previous_state(), st.previous_derivative(), st.previous_time());
      started = true;
    }
    if constexpr (S::has_continuous_extension) {
      sol.push_step(st.current_state(), st.current_derivative(), st.current_time(),
                    &st.correction());
    } else {
      sol.push_step(st.current_state(), st.current_derivative(), st.current_time(), nullptr);
    }
  }
  sol.set_stats(st.stats());
  return sol;
}

}  // namespace diffeo::ode
