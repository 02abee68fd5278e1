#pragma once
/// The contracts of diffeo's ODE layer, after Boost.odeint: systems (right-hand sides),
/// systems with vector-Jacobian products, and the four stepper kinds (stepper, error
/// stepper, controlled stepper, dense-output stepper), each with a category tag.
/// docs/ode.md lists every valid expression in a table.

#include <concepts>
#include <cstddef>
#include <string>
#include <utility>

#include "../core/error.hpp"

namespace diffeo::ode {

/// Category of a fixed-step stepper: `do_step(sys, x, t, dt)`.
struct stepper_tag {};
/// Category of a stepper that also estimates its local error: `do_step(sys, x, t, dt, xerr)`.
struct error_stepper_tag : stepper_tag {};
/// Category of a stepper that accepts or rejects a step by tolerances: `try_step`.
struct controlled_stepper_tag {};
/// Category of a stepper that covers intervals and interpolates inside them: `calc_state`.
struct dense_output_tag {};

/// Outcome of a controlled step attempt.
enum class step_result { success, fail };

/// Thrown when an integration cannot finish: step limit reached, step size underflow,
/// non-finite right-hand side. Bad arguments throw `diffeo::value_error` instead.
struct integration_error : error {
  using error::error;
};

/// A right-hand side `dxdt = f(x, t)` written into a caller-owned `dxdt` (odeint's form).
template <class F, class State, class Time>
concept system = requires(F& f, const State& x, State& dxdt, Time t) { f(x, dxdt, t); };

/// A right-hand side with vector-Jacobian products: `vjp(x, t, a, a_dx, a_dtheta)` writes
/// `a_dx = aᵀ ∂f/∂x (x, t)` and `a_dtheta = aᵀ ∂f/∂θ (x, t)` (overwriting both), where θ are
/// the system's parameters, of type `parameter_type` (`no_parameters` when it has none).
template <class F, class State, class Time>
concept system_with_vjp =
    system<F, State, Time> &&
    requires(const F& f, const State& x, Time t, const State& a, State& a_dx,
             typename std::remove_cvref_t<F>::parameter_type& a_dtheta) {
      f.vjp(x, t, a, a_dx, a_dtheta);
      { f.parameter_like() } -> std::convertible_to<typename std::remove_cvref_t<F>::parameter_type>;
    };

namespace detail {
/// Stands for any system in the concept checks below.
template <class State>
struct rhs_archetype {
  template <class Time>
  void operator()(const State&, State&, Time) const {}
};
}  // namespace detail

/// A fixed-step stepper: advances `x` in place from `t` to `t + dt`.
template <class S>
concept stepper = requires(S s, typename S::state_type& x, typename S::time_type t) {
  typename S::state_type;
  typename S::time_type;
  typename S::category;
  { S::order } -> std::convertible_to<int>;
  s.do_step(detail::rhs_archetype<typename S::state_type>{}, x, t, t);
};

/// A stepper with an embedded error estimate `xerr` of order `error_order`.
template <class S>
concept error_stepper =
    stepper<S> && std::derived_from<typename S::category, error_stepper_tag> &&
    requires(S s, typename S::state_type& x, typename S::time_type t) {
      { S::error_order } -> std::convertible_to<int>;
      s.do_step(detail::rhs_archetype<typename S::state_type>{}, x, t, t, x);
    };

/// A stepper that tries a step of size `dt` and accepts it (advancing `x`, `t` and proposing
/// the next `dt`) or rejects it (shrinking `dt` only).
template <class S>
concept controlled_stepper =
    std::same_as<typename S::category, controlled_stepper_tag> &&
    requires(S s, typename S::state_type& x, typename S::time_type& t) {
      { s.try_step(detail::rhs_archetype<typename S::state_type>{}, x, t, t) }
          -> std::same_as<step_result>;
    };

/// A stepper that owns its state, covers one interval per `do_step` and evaluates the
/// solution anywhere inside the last interval with `calc_state`.
template <class S>
concept dense_output_stepper =
    std::same_as<typename S::category, dense_output_tag> &&
    requires(S s, const S& cs, typename S::state_type& x, typename S::time_type t) {
      s.initialize(x, t, t);
      { s.do_step(detail::rhs_archetype<typename S::state_type>{}) }
          -> std::same_as<std::pair<typename S::time_type, typename S::time_type>>;
      cs.calc_state(t, x);
      { cs.current_time() } -> std::convertible_to<typename S::time_type>;
      { cs.current_state() } -> std::convertible_to<const typename S::state_type&>;
      { cs.current_time_step() } -> std::convertible_to<typename S::time_type>;
    };

/// Work done by one integration call.
struct integrate_stats {
  std::size_t rhs_evals = 0;  ///< evaluations of the right-hand side
  std::size_t accepted = 0;   ///< steps taken (all steps for fixed-step integration)
  std::size_t rejected = 0;   ///< steps tried and rejected by the error control
};

}  // namespace diffeo::ode
