#pragma once
/// Gradients through an integration by backpropagation through the steps actually taken
/// (discretize-then-optimize): the exact gradient of the computed solution with respect
/// to the initial state and the system's parameters, step sizes held fixed.
///
///   trajectory<State> tape;                                  // an observer
///   integrate_const(rk4<State>{}, sys, x, t0, t1, dt, tape); // or integrate_adaptive
///   backprop(rk4<State>{}, sys, tape, dL_dx1, dL_dx0, &dL_dtheta);
///
/// Memory: the tape holds the N+1 step points (N+1 states); the backward pass adds 2m+1
/// states of workspace, m the stages up to the last nonzero weight (stage inputs, their
/// adjoints, two more: 9 states for RK4, 13 for Dormand-Prince), plus two parameter-sized
/// buffers. Time: per step, the stage inputs are recomputed (m-1 evaluations of f: 3 for
/// RK4, 5 for Dormand-Prince) and m vector-Jacobian products are taken. docs/ode.md has
/// measured numbers.

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "algebra.hpp"
#include "concepts.hpp"
#include "explicit_rk.hpp"

namespace diffeo::ode {

/// The step points of an integration, recorded as an observer (one state copy per call).
template <ode_state State, class Time = double>
class trajectory {
 public:
  using state_type = State;
  using time_type = Time;
  void operator()(const State& x, Time t) {
    m_x.emplace_back();
    assign(m_x.back(), x);
    m_t.push_back(t);
  }
  /// Number of steps (points - 1).
  std::size_t steps() const { return m_t.empty() ? 0 : m_t.size() - 1; }
  const State& state(std::size_t n) const { return m_x[n]; }
  Time time(std::size_t n) const { return m_t[n]; }
  const std::vector<Time>& times() const { return m_t; }
  void clear() {
    m_x.clear();
    m_t.clear();
  }
  /// Bytes of state storage held.
  std::size_t memory_bytes() const {
    std::size_t b = 0;
    for (const State& s : m_x) b += state_bytes(s);
    return b;
  }

 private:
  std::vector<State> m_x;
  std::vector<Time> m_t;
};

/// Work done by a gradient computation.
struct gradient_stats {
  std::size_t rhs_evals = 0;  ///< evaluations of f
  std::size_t vjp_evals = 0;  ///< vector-Jacobian products
  std::size_t accepted = 0;   ///< steps of the backward pass
  std::size_t rejected = 0;   ///< rejected steps (adaptive adjoint only)
  std::size_t workspace_bytes = 0;  ///< state storage held by the method (tape excluded)
};

/// Backpropagates `a_end = ∂L/∂x(t_N)` through the steps recorded in `tape`, taken by the
/// explicit Runge-Kutta method of `stepper`: writes `a_x0 = ∂L/∂x(t_0)` and, when
/// `a_theta` is not null, `*a_theta = ∂L/∂θ`. `sys` must provide `vjp` (system_with_vjp);
/// with `a_theta == nullptr` a system's `vjp_state(x, t, a, a_dx)` is used when present.
template <butcher_tableau Tab, ode_state State, class Time, class System,
          class Param = no_parameters>
gradient_stats backprop(const explicit_rk<Tab, State, Time>& stepper, System&& sys,
                        const trajectory<State, Time>& tape, const State& a_end, State& a_x0,
                        Param* a_theta = nullptr);

// ----------------------------------------------------------------------------------------

namespace detail {

/// Whether the system offers the state-only VJP `vjp_state(x, t, a, a_dx)`.
template <class System, class State, class Time>
concept has_vjp_state = requires(const System& f, const State& x, Time t, const State& a,
                                 State& a_dx) { f.vjp_state(x, t, a, a_dx); };

/// Calls the system's VJP, with the parameter part into `theta` or without it.
template <class System, class State, class Time, class SysParam>
void call_vjp(System& sys, const State& x, Time t, const State& a, State& a_dx, bool want_theta,
              SysParam& theta) {
  if constexpr (has_vjp_state<System, State, Time>) {
    if (!want_theta) {
      sys.vjp_state(x, t, a, a_dx);
      return;
    }
  }
  sys.vjp(x, t, a, a_dx, theta);
}

template <class Tab>
constexpr int last_weighted_stage() {
  int m = 0;
  for (int i = 0; i < Tab::stages; ++i)
    if (Tab::b[i] != 0.0) m = i;
  return m;
}

/// Coefficients of the adjoint of stage `I` among the first `M` stages: `h b_I` on λ and
/// `h a_jI` on ξ_j for I < j < M.
template <class Tab, int I, int M>
struct stage_adjoint_row {
  static constexpr std::array<double, Tab::stages> value = [] {
    std::array<double, Tab::stages> r{};
    for (int j = I + 1; j < M; ++j) r[j] = Tab::a[j][I];
    return r;
  }();
  static constexpr int n = M;
};

}  // namespace detail

template <butcher_tableau Tab, ode_state State, class Time, class System, class Param>
gradient_stats backprop(const explicit_rk<Tab, State, Time>&, System&& sys,
                        const trajectory<State, Time>& tape, const State& a_end, State& a_x0,
                        Param* a_theta) {
  constexpr int s = Tab::stages;
  // Stages after the last one with a nonzero weight do not influence the step.
  constexpr int m = detail::last_weighted_stage<Tab>() + 1;
  if (tape.steps() == 0)
    throw value_error("backprop(tape): the trajectory has no steps (record one with it as observer)");
  if (!all_finite(a_end)) throw value_error("backprop(a_end): non-finite cotangent");
  if (scalar_count(a_end) != scalar_count(tape.state(tape.steps())))
    throw shape_error("backprop(a_end): size " + std::to_string(scalar_count(a_end)) +
                      " differs from the state's " +
                      std::to_string(scalar_count(tape.state(tape.steps()))));

  using sys_t = std::remove_cvref_t<System>;
  static_assert(system_with_vjp<sys_t, State, Time>,
                "backprop: the system needs vjp(x, t, a, a_dx, a_dtheta) and parameter_like()");
  using sys_param = typename sys_t::parameter_type;
  static_assert(std::is_same_v<Param, sys_param> || std::is_same_v<Param, no_parameters>,
                "backprop(a_theta): must point to the system's parameter_type");
  constexpr bool param_out = std::is_same_v<Param, sys_param>;
  const bool want_theta = param_out && a_theta != nullptr;

  gradient_stats stats;
  std::array<State, s> X{}, xi{};  // stage inputs (X[0] is the tape's x_n); k, then ξ
  State g{}, lambda{};
  sys_param theta{};  // one stage's parameter VJP
  if (want_theta || !detail::has_vjp_state<sys_t, State, Time>) theta = sys.parameter_like();
  if constexpr (param_out) {
    if (a_theta) {
      assign(*a_theta, theta);
      set_zero(*a_theta);
    }
  }
  assign(lambda, a_end);
  resize_like(g, lambda);
  for (int i = 0; i < s; ++i) resize_like(xi[i], lambda);
  for (int i = 1; i < m; ++i) resize_like(X[i], lambda);
  stats.workspace_bytes = state_bytes(lambda) * std::size_t(2 + (m - 1) + m);

  for (std::size_t n = tape.steps(); n-- > 0;) {
    const State& x = tape.state(n);
    const Time t = tape.time(n);
    const Time h = tape.time(n + 1) - t;
    std::array<const State*, s> xp{}, kp{};
    xp[0] = &x;
    for (int i = 0; i < s; ++i) kp[i] = &xi[i];
    // Forward: recompute the stage inputs; the last needed stage's derivative is unused.
    detail::static_for<0, m>([&](auto stage) {
      constexpr int i = stage();
      if constexpr (i > 0) {
        if constexpr (detail::row_terms<detail::a_row<Tab, i>> == 0) {
          assign(X[i], x);
        } else {
          detail::rk_combine<detail::a_row<Tab, i>, true>(X[i], &x, h, kp);
        }
        xp[i] = &X[i];
      }
      if constexpr (i + 1 < m) {
        sys(*xp[i], xi[i], t + Time(Tab::c[i]) * h);
        ++stats.rhs_evals;
      }
    });
    // Backward through the stages: g_i = h b_i λ + h Σ_{j>i} a_ji ξ_j, ξ_i = J(X_i)ᵀ g_i.
    detail::static_for<0, m>([&](auto rev) {
      constexpr int i = m - 1 - rev();
      using col = detail::stage_adjoint_row<Tab, i, m>;
      constexpr std::size_t nz = detail::row_terms<col>;
      constexpr auto idx = detail::nonzero_indices<nz>(col::value, col::n);
      constexpr bool weighted = Tab::b[i] != 0.0;
      constexpr std::size_t terms = nz + (weighted ? 1 : 0);
      if constexpr (terms == 0) {
        set_zero(xi[i]);
      } else {
        std::array<double, terms> c{};
        std::array<const State*, terms> v{};
        std::size_t q = 0;
        if constexpr (weighted) {
          c[0] = double(h) * Tab::b[i];
          v[0] = &lambda;
          q = 1;
        }
        for (int j = 0; j < int(nz); ++j, ++q) {  // int: nz may be 0 (nvcc warns on unsigned)
          c[q] = double(h) * col::value[idx[j]];
          v[q] = &xi[idx[j]];
        }
        scale_sum_n<terms>(g, c, v);
        detail::call_vjp(sys, *xp[i], t + Time(Tab::c[i]) * h, std::as_const(g), xi[i],
                         want_theta, theta);
        ++stats.vjp_evals;
        if constexpr (param_out)
          if (want_theta) scale_sum(*a_theta, 1.0, *a_theta, 1.0, theta);
      }
    });
    // λ ← λ + Σ_i ξ_i
    std::array<double, m + 1> c{};
    std::array<const State*, m + 1> v{};
    c.fill(1.0);
    v[0] = &lambda;
    for (int i = 0; i < m; ++i) v[i + 1] = &xi[i];
    scale_sum_n<m + 1>(lambda, c, v);
    ++stats.accepted;
  }
  assign(a_x0, lambda);
  return stats;
}

}  // namespace diffeo::ode
