#pragma once
/// The dense-output stepper: owns the state, advances one accepted step per `do_step`
/// (retrying rejected ones), and evaluates the solution anywhere in the last step with
/// `calc_state`, at the cost of one fused pass and no evaluation of f. The interpolant is
/// the method's continuous extension when its tableau has one (Dormand-Prince: 4th
/// order), else the cubic Hermite interpolant of the step's end points and derivatives.

#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "algebra.hpp"
#include "concepts.hpp"
#include "controlled.hpp"

namespace diffeo::ode {

/// Weights of `y0, y1, f0, f1, r` in the interpolant at `θ = (t - t0) / dt` of a step from
/// `t0` to `t0 + dt` (Hairer's form, expanded so the evaluation is one fused pass).
inline std::array<double, 5> interpolation_weights(double theta, double dt) {
  const double s = theta * (1 - theta), q = s * theta;
  return {1 - theta + s - 2 * q, theta - s + 2 * q, dt * (s - q), -dt * q, s * s};
}

/// A dense-output stepper around the error stepper `Stepper` (odeint's
/// dense_output_runge_kutta<controlled_runge_kutta<...>>).
template <class Stepper>
  requires error_stepper<Stepper>
class dense_output {
 public:
  using stepper_type = Stepper;
  using state_type = typename Stepper::state_type;
  using time_type = typename Stepper::time_type;
  using category = dense_output_tag;
  static constexpr int order = Stepper::order;
  /// True when the interpolant is the tableau's continuous extension, not Hermite.
  static constexpr bool has_continuous_extension = dense_tableau<typename Stepper::tableau_type>;

  explicit dense_output(tolerance tol = {}, step_control ctl = {}, Stepper stepper = {})
      : m_ctl(tol, ctl, std::move(stepper)) {}

  /// Starts at `(x0, t0)` with first step `dt0` (its sign is the direction of
  /// integration; `dt0 = 0` lets the first `do_step` choose it by Hairer's algorithm,
  /// toward the `t_end` given to it).
  void initialize(const state_type& x0, time_type t0, time_type dt0);
  /// Takes one accepted step (retrying rejected ones) and returns the interval covered.
  template <class System>
  std::pair<time_type, time_type> do_step(System&& sys);
  /// The same, never stepping past `t_end`. Throws `integration_error` when the step
  /// size underflows.
  template <class System>
  std::pair<time_type, time_type> do_step(System&& sys, time_type t_end);
  /// The solution at `t` inside the last step's interval (one fused pass, no f call).
  void calc_state(time_type t, state_type& x) const;

  time_type current_time() const { return m_t; }
  time_type previous_time() const { return m_t_old; }
  /// The step to be tried next.
  time_type current_time_step() const { return m_dt; }
  const state_type& current_state() const { return m_x[m_cur]; }
  const state_type& previous_state() const { return m_x[1 - m_cur]; }
  /// f at the current point (the next step's first stage).
  const state_type& current_derivative() const { return m_dxdt[m_cur]; }
  const state_type& previous_derivative() const { return m_dxdt[1 - m_cur]; }
  /// The last step's continuous-extension correction (zero for Hermite interpolation).
  const state_type& correction() const;

  /// Accepted and rejected steps, and f evaluations made by this stepper so far.
  const integrate_stats& stats() const { return m_stats; }
  controlled<Stepper>& controller() { return m_ctl; }

 private:
  controlled<Stepper> m_ctl;
  std::array<state_type, 2> m_x{}, m_dxdt{};
  int m_cur = 0;
  bool m_have_dxdt = false;
  time_type m_t{}, m_t_old{}, m_dt{};
  mutable state_type m_r{};
  mutable bool m_r_ready = false;
  integrate_stats m_stats{};
};

/// `dense_output` with tolerances `atol`, `rtol` around `stepper`.
template <class Stepper>
dense_output<Stepper> make_dense_output(double atol, double rtol, Stepper stepper = {},
                                        norm_kind norm = norm_kind::rms) {
  return dense_output<Stepper>(tolerance{atol, rtol, norm}, step_control{}, std::move(stepper));
}

// ----------------------------------------------------------------------------------------

template <class Stepper>
  requires error_stepper<Stepper>
void dense_output<Stepper>::initialize(const state_type& x0, time_type t0, time_type dt0) {
  if (!std::isfinite(double(dt0)))
    throw value_error("dense_output::initialize(dt0): must be finite, got " +
                      detail::num(double(dt0)));
  m_cur = 0;
  assign(m_x[0], x0);
  resize_like(m_x[1], x0);
  m_t = m_t_old = t0;
  m_dt = dt0;
  m_have_dxdt = false;
  m_r_ready = false;
  m_ctl.reset();
  m_stats = {};
}

template <class Stepper>
  requires error_stepper<Stepper>
template <class System>
auto dense_output<Stepper>::do_step(System&& sys) -> std::pair<time_type, time_type> {
  const double dir = m_dt < 0 ? -1.0 : 1.0;
  return do_step(sys, time_type(dir * std::numeric_limits<double>::infinity()));
}

template <class Stepper>
  requires error_stepper<Stepper>
template <class System>
auto dense_output<Stepper>::do_step(System&& sys, time_type t_end)
    -> std::pair<time_type, time_type> {
  auto counted = [&](const state_type& x, state_type& dxdt, time_type t) {
    ++m_stats.rhs_evals;
    sys(x, dxdt, t);
  };
  state_type& x = m_x[m_cur];
  state_type& dxdt = m_dxdt[m_cur];
  if (!m_have_dxdt) {
    resize_like(dxdt, x);
    counted(std::as_const(x), dxdt, m_t);
    m_have_dxdt = true;
    if (m_dt == time_type(0)) {
      if (!std::isfinite(double(t_end)) || t_end == m_t)
        throw value_error("dense_output::do_step(t_end): dt0 = 0 needs a finite end time");
      m_dt = m_ctl.initial_step(counted, x, dxdt, m_t, t_end);
    }
  }
  const double dir = m_dt < 0 ? -1.0 : 1.0;
  const int next = 1 - m_cur;
  for (;;) {
    // Hairer: stretch the last step by up to 1% rather than leave a sliver.
    time_type dt = m_dt;
    const bool finite_end = std::isfinite(double(t_end));
    if (finite_end && dir * (double(m_t) + 1.01 * double(dt) - double(t_end)) > 0)
      dt = t_end - m_t;
    const double eps = std::numeric_limits<double>::epsilon();
    if (std::fabs(double(dt)) <= 16 * eps * std::max(std::fabs(double(m_t)), 1e-300) ||
        dt == time_type(0))
      throw integration_error("dense_output::do_step: step size underflow (dt = " +
                              detail::num(double(dt)) + ") at t = " + detail::num(double(m_t)) +
                              "; the right-hand side may be non-finite or the problem stiff");
    time_type t = m_t;
    const step_result r =
        m_ctl.try_step(counted, x, dxdt, t, m_x[next], m_dxdt[next], dt);
    if (r == step_result::success) {
      ++m_stats.accepted;
      m_t_old = m_t;
      m_t = (finite_end && dir * (double(t) - double(t_end)) >= 0) ? t_end : t;
      // Keep the proposal of an ordinary step rather than the clipped last one.
      m_dt = dt;
      m_cur = next;
      m_r_ready = false;
      return {m_t_old, m_t};
    }
    ++m_stats.rejected;
    m_dt = dt;
  }
}

template <class Stepper>
  requires error_stepper<Stepper>
auto dense_output<Stepper>::correction() const -> const state_type& {
  if (!m_r_ready) {
    if constexpr (has_continuous_extension) {
      m_ctl.stepper().dense_correction(m_r, m_t - m_t_old);
    } else {
      resize_like(m_r, m_x[m_cur]);
      set_zero(m_r);
    }
    m_r_ready = true;
  }
  return m_r;
}

template <class Stepper>
  requires error_stepper<Stepper>
void dense_output<Stepper>::calc_state(time_type t, state_type& x) const {
  const double h = double(m_t) - double(m_t_old);
  const double theta = h == 0 ? 1.0 : (double(t) - double(m_t_old)) / h;
  const auto w = interpolation_weights(theta, h);
  resize_like(x, m_x[m_cur]);
  if constexpr (has_continuous_extension) {
    const state_type& r = correction();
    scale_sum_n<5>(x, w, {&m_x[1 - m_cur], &m_x[m_cur], &m_dxdt[1 - m_cur], &m_dxdt[m_cur], &r});
  } else {
    scale_sum_n<4>(x, {w[0], w[1], w[2], w[3]},
                   {&m_x[1 - m_cur], &m_x[m_cur], &m_dxdt[1 - m_cur], &m_dxdt[m_cur]});
  }
}

}  // namespace diffeo::ode
