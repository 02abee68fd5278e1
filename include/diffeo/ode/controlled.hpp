#pragma once
/// Step-size control: `controlled<ErrorStepper>` tries a step, accepts it when the scaled
/// error norm is at most 1 and proposes the next step size with Hairer's PI controller
/// (DOPRI5 defaults), or rejects it and shrinks the step. Also Hairer's initial step
/// selection (HINIT), used when an integration is started with `dt0 = 0`.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>

#include "algebra.hpp"
#include "concepts.hpp"
#include "explicit_rk.hpp"

namespace diffeo::ode {

/// Error tolerances: a step is accepted when
/// `norm(err_i / (atol + rtol·max(|x_i|, |x_new_i|))) <= 1`.
struct tolerance {
  double atol = 1e-6;
  double rtol = 1e-6;
  norm_kind norm = norm_kind::rms;
};

/// Parameters of the step-size controller (Hairer's DOPRI5 defaults). `beta = 0` gives
/// the classical I controller; `dt_max` bounds |dt|.
struct step_control {
  double safety = 0.9;
  double fac_min = 0.2;   ///< a step shrinks by at most this factor
  double fac_max = 10.0;  ///< and grows by at most this one
  double beta = 0.04;     ///< PI stabilization (Gustafsson)
  double dt_max = std::numeric_limits<double>::infinity();
};

/// A controlled stepper around the error stepper `Stepper`.
template <class Stepper>
  requires error_stepper<Stepper>
class controlled {
 public:
  using stepper_type = Stepper;
  using state_type = typename Stepper::state_type;
  using time_type = typename Stepper::time_type;
  using category = controlled_stepper_tag;
  static constexpr int order = Stepper::order;
  static constexpr int error_order = Stepper::error_order;

  /// Throws `value_error` unless the tolerances are positive and finite and the
  /// controller's factors are sensible.
  explicit controlled(tolerance tol = {}, step_control ctl = {}, Stepper stepper = {});

  /// Tries a step from `(x, t)` with `dt`: on success advances `x` and `t` and writes the
  /// proposed next step to `dt`; on failure leaves `x`, `t` and only shrinks `dt`.
  /// Evaluates `f(x, t)` first; prefer the overload with `dxdt` in loops.
  template <class System>
  step_result try_step(System&& sys, state_type& x, time_type& t, time_type& dt);
  /// The same with `dxdt = f(x, t)` known; on success `dxdt` becomes `f` at the new point.
  /// On success the storage of `x` and `dxdt` may be exchanged with the stepper's (no copy).
  template <class System>
  step_result try_step(System&& sys, state_type& x, state_type& dxdt, time_type& t,
                       time_type& dt);
  /// Out of place: on success writes the new state and its derivative to `x_out`,
  /// `dxdt_out` and advances `t`; the inputs stay untouched either way.
  template <class System>
  step_result try_step(System&& sys, const state_type& x, const state_type& dxdt, time_type& t,
                       state_type& x_out, state_type& dxdt_out, time_type& dt);

  /// Hairer's initial step (HINIT) from `(x0, t0)` with `dxdt0 = f(x0, t0)` toward `t1`;
  /// costs one evaluation of `f`.
  template <class System>
  time_type initial_step(System&& sys, const state_type& x0, const state_type& dxdt0,
                         time_type t0, time_type t1);

  /// Forgets the controller's history (call before starting a new integration).
  void reset() {
    m_facold = 1e-4;
    m_last_rejected = false;
  }
  /// Scaled error norm of the last tried step.
  double last_error() const { return m_err; }
  const tolerance& tol() const { return m_tol; }
  const step_control& control() const { return m_ctl; }
  Stepper& stepper() { return m_stepper; }
  const Stepper& stepper() const { return m_stepper; }

 private:
  Stepper m_stepper;
  tolerance m_tol;
  step_control m_ctl;
  double m_facold = 1e-4;
  bool m_last_rejected = false;
  double m_err = 0;
  state_type m_xnew{}, m_dxdtnew{};
};

/// `controlled` with tolerances `atol`, `rtol` around `stepper` (odeint's make_controlled).
template <class Stepper>
controlled<Stepper> make_controlled(double atol, double rtol, Stepper stepper = {},
                                    norm_kind norm = norm_kind::rms) {
  return controlled<Stepper>(tolerance{atol, rtol, norm}, step_control{}, std::move(stepper));
}

// ----------------------------------------------------------------------------------------

namespace detail {
/// A number in messages: shortest round-trip-ish form ("0.1", "1e-12", "nan").
inline std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

inline void require_tolerance(const tolerance& tol, const std::string& where) {
  if (!(tol.atol > 0) || !std::isfinite(tol.atol))
    throw value_error(where + ": atol must be positive and finite, got " + num(tol.atol));
  if (!(tol.rtol > 0) || !std::isfinite(tol.rtol))
    throw value_error(where + ": rtol must be positive and finite, got " + num(tol.rtol));
}

inline void require_control(const step_control& c, const std::string& where) {
  if (!(c.safety > 0 && c.safety <= 1))
    throw value_error(where + ": safety must lie in (0, 1], got " + num(c.safety));
  if (!(c.fac_min > 0 && c.fac_min < 1))
    throw value_error(where + ": fac_min must lie in (0, 1), got " + num(c.fac_min));
  if (!(c.fac_max > 1))
    throw value_error(where + ": fac_max must exceed 1, got " + num(c.fac_max));
  if (!(c.beta >= 0 && c.beta < 0.2))
    throw value_error(where + ": beta must lie in [0, 0.2), got " + num(c.beta));
  if (!(c.dt_max > 0))
    throw value_error(where + ": dt_max must be positive, got " + num(c.dt_max));
}
}  // namespace detail

template <class Stepper>
  requires error_stepper<Stepper>
controlled<Stepper>::controlled(tolerance tol, step_control ctl, Stepper stepper)
    : m_stepper(std::move(stepper)), m_tol(tol), m_ctl(ctl) {
  detail::require_tolerance(tol, "controlled(tolerance)");
  detail::require_control(ctl, "controlled(step_control)");
}

template <class Stepper>
  requires error_stepper<Stepper>
template <class System>
step_result controlled<Stepper>::try_step(System&& sys, const state_type& x,
                                          const state_type& dxdt, time_type& t,
                                          state_type& x_out, state_type& dxdt_out,
                                          time_type& dt) {
  using std::pow;
  const double h = double(dt);
  m_stepper.step(sys, x, dxdt, t, dt, x_out, dxdt_out);
  const double err = m_stepper.error_norm(x, x_out, dt, m_tol.atol, m_tol.rtol, m_tol.norm);
  m_err = err;
  // Hairer's DOPRI5 controller: fac11 = err^(1/(q+1) - 0.75 beta), then PI correction.
  const double expo1 = 1.0 / (error_order + 1) - 0.75 * m_ctl.beta;
  if (!(err <= 1.0)) {  // also when err is NaN: shrink as much as allowed
    const double fac11 = std::isfinite(err) ? pow(err, expo1) : 1e300;
    const double shrink = std::max(m_ctl.fac_min, m_ctl.safety / fac11);
    dt = time_type(h * shrink);
    m_last_rejected = true;
    return step_result::fail;
  }
  if constexpr (!Stepper::fsal) {
    resize_like(dxdt_out, x);
    sys(std::as_const(x_out), dxdt_out, t + dt);
  }
  const double fac11 = pow(err, expo1);
  double fac = fac11 / pow(m_facold, m_ctl.beta);
  fac = std::max(1.0 / m_ctl.fac_max, std::min(1.0 / m_ctl.fac_min, fac / m_ctl.safety));
  double hnew = h / fac;
  if (m_last_rejected) hnew = h > 0 ? std::min(hnew, h) : std::max(hnew, h);
  hnew = std::copysign(std::min(std::fabs(hnew), m_ctl.dt_max), h);
  m_facold = std::max(err, 1e-4);
  m_last_rejected = false;
  t += dt;
  dt = time_type(hnew);
  return step_result::success;
}

template <class Stepper>
  requires error_stepper<Stepper>
template <class System>
step_result controlled<Stepper>::try_step(System&& sys, state_type& x, state_type& dxdt,
                                          time_type& t, time_type& dt) {
  const step_result r = try_step(sys, std::as_const(x), std::as_const(dxdt), t, m_xnew,
                                 m_dxdtnew, dt);
  if (r == step_result::success) {
    using std::swap;
    swap(x, m_xnew);
    swap(dxdt, m_dxdtnew);
  }
  return r;
}

template <class Stepper>
  requires error_stepper<Stepper>
template <class System>
step_result controlled<Stepper>::try_step(System&& sys, state_type& x, time_type& t,
                                          time_type& dt) {
  state_type dxdt{};
  resize_like(dxdt, x);
  sys(std::as_const(x), dxdt, t);
  return try_step(sys, x, dxdt, t, dt);
}

template <class Stepper>
  requires error_stepper<Stepper>
template <class System>
auto controlled<Stepper>::initial_step(System&& sys, const state_type& x0,
                                       const state_type& dxdt0, time_type t0, time_type t1)
    -> time_type {
  // Hairer, Nørsett & Wanner I, II.4 (code HINIT), with this controller's norm.
  const double dir = (t1 > t0) ? 1.0 : -1.0;
  const double atol = m_tol.atol, rtol = m_tol.rtol;
  const double hmax = std::min(m_ctl.dt_max, std::fabs(double(t1) - double(t0)));
  const double d0 = scaled_norm<1>(m_tol.norm, x0, x0, atol, rtol, {1.0}, {&x0});
  const double d1 = scaled_norm<1>(m_tol.norm, x0, x0, atol, rtol, {1.0}, {&dxdt0});
  double h = (d0 <= 1e-10 || d1 <= 1e-10) ? 1e-6 : 0.01 * d0 / d1;
  h = std::min(h, hmax);
  // Explicit Euler step to estimate the second derivative.
  scale_sum(m_xnew, 1.0, x0, dir * h, dxdt0);
  resize_like(m_dxdtnew, x0);
  sys(std::as_const(m_xnew), m_dxdtnew, time_type(double(t0) + dir * h));
  const double d2 =
      scaled_norm<2>(m_tol.norm, x0, x0, atol, rtol, {1.0 / h, -1.0 / h}, {&m_dxdtnew, &dxdt0});
  const double der = std::max(std::fabs(d2), d1);
  const double h1 = der <= 1e-15 ? std::max(1e-6, h * 1e-3)
                                 : std::pow(0.01 / der, 1.0 / (order));
  h = std::min({100 * h, h1, hmax});
  return time_type(dir * h);
}

}  // namespace diffeo::ode
