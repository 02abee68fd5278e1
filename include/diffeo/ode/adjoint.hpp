#pragma once
/// Gradients through an integration by the continuous adjoint method
/// (optimize-then-discretize; Pontryagin, as in Chen et al. 2018): from `x(t1)` and
/// `a(t1) = ∂L/∂x(t1)`, the augmented system
///   dx/dt = f(x, t),   da/dt = -aᵀ ∂f/∂x,   dg/dt = -aᵀ ∂f/∂θ,   g(t1) = 0
/// is integrated back to `t0`, giving `∂L/∂x(t0) = a(t0)` and `∂L/∂θ = g(t0)`. The state
/// is re-integrated backward with the adjoint, so nothing of the forward pass is stored.
///
/// Memory: constant in the number of steps: the augmented state (2 states + 1 parameter
/// set) times the stepper's workspace (s + 2 copies for an s-stage method). Time: one
/// evaluation of f and one VJP per stage of the backward solve. The gradient approximates
/// that of the exact flow to the solver's accuracy (not the gradient of the discrete
/// forward solution, see backprop.hpp), and backward re-integration of x is accurate only
/// for flows that are well conditioned backward (true of diffeomorphic flows).

#include <cmath>
#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "algebra.hpp"
#include "backprop.hpp"
#include "concepts.hpp"
#include "controlled.hpp"
#include "explicit_rk.hpp"
#include "integrate.hpp"

namespace diffeo::ode {

/// The augmented state of the adjoint method: the state, its adjoint and the parameter
/// gradient accumulated so far (a composite state for the algebra).
template <ode_state State, class Param>
struct adjoint_state {
  State x{};
  State a{};
  Param g{};
};

template <ode_state State, class Param>
struct composite_traits<adjoint_state<State, Param>> {
  static auto parts(adjoint_state<State, Param>& s) { return std::tie(s.x, s.a, s.g); }
  static auto parts(const adjoint_state<State, Param>& s) { return std::tie(s.x, s.a, s.g); }
};

/// Continuous adjoint with fixed steps of the explicit RK method `Tab` (e.g. rk4_tableau),
/// from `x1 = x(t1)` and `a1 = ∂L/∂x(t1)` back to `t0` with steps of |dt|: writes
/// `a_x0 = ∂L/∂x(t0)`, and `*a_theta = ∂L/∂θ` when not null; `x0_out`, when not null,
/// receives the re-integrated `x(t0)` (a check of the backward solve).
template <butcher_tableau Tab, class System, ode_state State, class Time = double,
          class Param = no_parameters>
gradient_stats adjoint_const(System&& sys, const State& x1, const State& a1, Time t0, Time t1,
                             Time dt, State& a_x0, Param* a_theta = nullptr,
                             State* x0_out = nullptr);

/// Continuous adjoint with the adaptive embedded method `Tab` (e.g. dopri5_tableau) at
/// tolerances `tol` on the whole augmented state.
template <embedded_tableau Tab, class System, ode_state State, class Time = double,
          class Param = no_parameters>
gradient_stats adjoint_adaptive(System&& sys, const State& x1, const State& a1, Time t0,
                                Time t1, tolerance tol, State& a_x0, Param* a_theta = nullptr,
                                adaptive_options opt = {}, State* x0_out = nullptr);

// ----------------------------------------------------------------------------------------

namespace detail {

/// The augmented right-hand side in reversed time s = σ(t1 - t): stepping s forward walks
/// t from t1 to t0, so `d/ds = -σ d/dt`: only the sign of one part changes.
template <class System, class State, class Param, class Time>
struct adjoint_rhs {
  System& sys;
  Time t1;
  double sigma;     // sign of t1 - t0
  bool want_theta;  // also accumulate ∂L/∂θ
  std::size_t* vjps;
  void operator()(const adjoint_state<State, Param>& z, adjoint_state<State, Param>& dz,
                  Time s) const {
    const Time t = t1 - Time(sigma) * s;
    resize_like(dz.x, z.x);
    resize_like(dz.a, z.a);
    sys(z.x, dz.x, t);
    resize_like(dz.g, z.g);
    call_vjp(sys, z.x, t, z.a, dz.a, want_theta, dz.g);
    ++*vjps;
    // dx/ds = -σ f;  da/ds = σ aᵀ∂f/∂x;  dg/ds = σ aᵀ∂f/∂θ.
    if (sigma > 0) {
      scale_sum(dz.x, -1.0, dz.x);
    } else {
      scale_sum(dz.a, -1.0, dz.a);
      if constexpr (!std::is_same_v<Param, no_parameters>)
        if (want_theta) scale_sum(dz.g, -1.0, dz.g);
    }
    if constexpr (!std::is_same_v<Param, no_parameters>)
      if (!want_theta) set_zero(dz.g);
  }
};

template <class System, class State, class Time>
auto make_adjoint_start(const System& sys, const State& x1, const State& a1, bool want_theta) {
  using sys_t = std::remove_cvref_t<System>;
  static_assert(system_with_vjp<sys_t, State, Time>,
                "adjoint: the system needs vjp(x, t, a, a_dx, a_dtheta) and parameter_like()");
  using sys_param = typename sys_t::parameter_type;
  adjoint_state<State, sys_param> z;
  assign(z.x, x1);
  assign(z.a, a1);
  if (want_theta || !has_vjp_state<sys_t, State, Time>) z.g = sys.parameter_like();
  set_zero(z.g);
  return z;
}

template <class State>
void require_adjoint_inputs(const State& x1, const State& a1, const std::string& where) {
  if (!all_finite(x1)) throw value_error(where + "(x1): non-finite state");
  if (!all_finite(a1)) throw value_error(where + "(a1): non-finite cotangent");
  if (scalar_count(x1) != scalar_count(a1))
    throw shape_error(where + "(x1, a1): sizes differ (" + std::to_string(scalar_count(x1)) +
                      " vs " + std::to_string(scalar_count(a1)) + ")");
}

template <class Param, class SysParam, class State, class Z>
void finish_adjoint(const Z& z, State& a_x0, Param* a_theta, State* x0_out) {
  assign(a_x0, z.a);
  if constexpr (std::is_same_v<Param, SysParam>)
    if (a_theta) assign(*a_theta, z.g);
  if (x0_out) assign(*x0_out, z.x);
}

}  // namespace detail

template <butcher_tableau Tab, class System, ode_state State, class Time, class Param>
gradient_stats adjoint_const(System&& sys, const State& x1, const State& a1, Time t0, Time t1,
                             Time dt, State& a_x0, Param* a_theta, State* x0_out) {
  using sys_param = typename std::remove_cvref_t<System>::parameter_type;
  detail::require_interval(double(t0), double(t1), "adjoint_const");
  if (!std::isfinite(double(dt)) || dt == Time(0))
    throw value_error("adjoint_const(dt): step must be finite and nonzero, got " +
                      detail::num(double(dt)));
  detail::require_adjoint_inputs(x1, a1, "adjoint_const");
  const bool want_theta = std::is_same_v<Param, sys_param> && a_theta != nullptr;
  auto z = detail::make_adjoint_start<System, State, Time>(sys, x1, a1, want_theta);
  using Z = decltype(z);
  gradient_stats stats;
  const double sigma = t1 > t0 ? 1.0 : -1.0;
  detail::adjoint_rhs<std::remove_reference_t<System>, State, sys_param, Time> rhs{
      sys, t1, sigma, want_theta, &stats.vjp_evals};
  explicit_rk<Tab, Z, Time> st;
  const integrate_stats is =
      integrate_const(st, rhs, z, Time(0), Time(sigma * (double(t1) - double(t0))),
                      Time(std::fabs(double(dt))));
  stats.rhs_evals = is.rhs_evals;
  stats.accepted = is.accepted;
  stats.workspace_bytes = state_bytes(z) * std::size_t(Tab::stages + 2);
  detail::finish_adjoint<Param, sys_param>(z, a_x0, a_theta, x0_out);
  return stats;
}

template <embedded_tableau Tab, class System, ode_state State, class Time, class Param>
gradient_stats adjoint_adaptive(System&& sys, const State& x1, const State& a1, Time t0,
                                Time t1, tolerance tol, State& a_x0, Param* a_theta,
                                adaptive_options opt, State* x0_out) {
  using sys_param = typename std::remove_cvref_t<System>::parameter_type;
  detail::require_interval(double(t0), double(t1), "adjoint_adaptive");
  detail::require_tolerance(tol, "adjoint_adaptive(tol)");
  detail::require_adjoint_inputs(x1, a1, "adjoint_adaptive");
  const bool want_theta = std::is_same_v<Param, sys_param> && a_theta != nullptr;
  auto z = detail::make_adjoint_start<System, State, Time>(sys, x1, a1, want_theta);
  using Z = decltype(z);
  gradient_stats stats;
  const double sigma = t1 > t0 ? 1.0 : -1.0;
  detail::adjoint_rhs<std::remove_reference_t<System>, State, sys_param, Time> rhs{
      sys, t1, sigma, want_theta, &stats.vjp_evals};
  controlled<explicit_rk<Tab, Z, Time>> st(tol);
  const integrate_stats is = integrate_adaptive(
      st, rhs, z, Time(0), Time(sigma * (double(t1) - double(t0))), opt);
  stats.rhs_evals = is.rhs_evals;
  stats.accepted = is.accepted;
  stats.rejected = is.rejected;
  // Stepper stages + controller's new state and derivative + the loop's derivative.
  stats.workspace_bytes = state_bytes(z) * std::size_t(Tab::stages + 3);
  detail::finish_adjoint<Param, sys_param>(z, a_x0, a_theta, x0_out);
  return stats;
}

}  // namespace diffeo::ode
