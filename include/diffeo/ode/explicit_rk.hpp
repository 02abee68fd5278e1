#pragma once
/// The explicit Runge-Kutta core: one class runs any Butcher tableau (tableau.hpp) on any
/// state (algebra.hpp). Each stage input `x + dt Σ_j a_ij k_j` and the update
/// `x + dt Σ_j b_j k_j` is one fused pass over the state; zero coefficients are dropped at
/// compile time. Euler, midpoint, Heun, RK4 and Dormand-Prince are aliases of it.

#include <array>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "algebra.hpp"
#include "concepts.hpp"
#include "tableau.hpp"

namespace diffeo::ode {

namespace detail {
template <class Tab>
constexpr int error_order_of() {
  if constexpr (embedded_tableau<Tab>)
    return Tab::error_order;
  else
    return 0;
}
}  // namespace detail

/// An explicit Runge-Kutta stepper for the method `Tab` on states `State`. A stepper
/// (`do_step`) for every tableau; also an error stepper (`do_step(..., xerr)`,
/// `error_norm`) when `Tab` is embedded. It keeps `stages + 1` states of workspace, sized
/// on first use and reused (on the stack instead for fixed-size states).
template <butcher_tableau Tab, ode_state State, class Time = double>
class explicit_rk {
  static_assert(tableau_defect<Tab>() < 1e-14,
                "explicit_rk: the tableau is not explicit, or its rows do not sum to c, or Σb != 1");

 public:
  using state_type = State;
  using time_type = Time;
  using tableau_type = Tab;
  using category = std::conditional_t<embedded_tableau<Tab>, error_stepper_tag, stepper_tag>;
  static constexpr int order = Tab::order;
  static constexpr int stages = Tab::stages;
  /// Order of the embedded solution (0 when there is none).
  static constexpr int error_order = detail::error_order_of<Tab>();
  /// Whether the last stage is f at the new solution (Dormand-Prince): saves one evaluation.
  static constexpr bool fsal = is_fsal<Tab>();
  /// Evaluations of f made by `do_step(sys, x, t, dt)` (FSAL's last stage is not needed).
  static constexpr int evals_per_step = fsal ? stages - 1 : stages;

  explicit_rk() = default;
  /// A copy carries no workspace (it is scratch, sized again on first use), so copying a
  /// stepper never copies states and never keeps pointers into another stepper.
  explicit_rk(const explicit_rk&) noexcept {}
  explicit_rk& operator=(const explicit_rk&) noexcept { return *this; }

  /// Advances `x` in place from `t` to `t + dt`; `sys(x, dxdt, t)` is the right-hand side.
  template <class System>
  void do_step(System&& sys, State& x, Time t, Time dt);
  /// The same with `dxdt = f(x, t)` already known (one evaluation fewer).
  template <class System>
  void do_step(System&& sys, State& x, const State& dxdt, Time t, Time dt);
  /// Error stepper: advances `x` and writes the local error estimate `xerr = dt Σ e_i k_i`.
  template <class System>
    requires embedded_tableau<Tab>
  void do_step(System&& sys, State& x, Time t, Time dt, State& xerr);

  /// Out of place, given `dxdt = f(x, t)`: writes the step's result to `out`; for FSAL
  /// methods also `f(out, t + dt)` to `dxdt_out` (otherwise `dxdt_out` is untouched).
  /// `out` and `dxdt_out` must not alias `x` or `dxdt`. The stage derivatives (reading
  /// `dxdt` and `dxdt_out`) stay available to `error_norm` and `dense_correction` until
  /// the next step.
  template <class System>
  void step(System&& sys, const State& x, const State& dxdt, Time t, Time dt, State& out,
            State& dxdt_out);

  /// Scaled norm of the last step's error estimate, with `atol + rtol·max(|x|, |out|)`.
  double error_norm(const State& x, const State& out, Time dt, double atol, double rtol,
                    norm_kind kind) const
    requires embedded_tableau<Tab>;

  /// The last step's continuous-extension correction `r = dt Σ_i dense_i k_i`.
  void dense_correction(State& r, Time dt) const
    requires dense_tableau<Tab>;

  /// Derivative of stage `i` in the last step (`k_1 = f(x, t)` is stage 0).
  const State& stage_derivative(int i) const { return *m_ws.kp[i]; }

 private:
  /// Stage derivatives, pointers to them (k_1 and FSAL's k_s may live in the caller's
  /// buffers) and the stage input buffer.
  struct workspace {
    std::array<State, stages> k{};
    std::array<const State*, stages> kp{};
    State tmp{};
  };
  template <class System>
  static void stages_into(System& sys, const State& x, Time t, Time dt, State& buffer,
                          workspace& ws);
  template <class System>
  static void advance(System& sys, State& x, const State& dxdt, Time t, Time dt, workspace& ws);

  workspace m_ws{};
};

// ----------------------------------------------------------------------------------------

namespace detail {
/// Row `I` of `a` (entries before the diagonal).
template <class Tab, int I>
struct a_row {
  static constexpr auto value = Tab::a[I];
  static constexpr int n = I;
};
template <class Tab>
struct b_row {
  static constexpr auto value = Tab::b;
  static constexpr int n = Tab::stages;
};
template <class Tab>
struct e_row {
  static constexpr auto value = Tab::e;
  static constexpr int n = Tab::stages;
};
template <class Tab>
struct dense_row {
  static constexpr auto value = Tab::dense;
  static constexpr int n = Tab::stages;
};

/// Number of nonzero coefficients in `Row`.
template <class Row>
inline constexpr std::size_t row_terms = nonzero_count(Row::value, Row::n);

/// The nonzero entries of `Row` grouped by equal value (RK4's weights 1/6, 1/3, 1/3, 1/6
/// form two groups): a combination then multiplies once per group, `c (k1 + k4)`.
template <class Row>
struct row_groups {
  static constexpr std::size_t terms = row_terms<Row>;
  static constexpr auto idx = nonzero_indices<terms>(Row::value, Row::n);
  static constexpr std::size_t count = [] {
    std::size_t g = 0;
    for (std::size_t j = 0; j < terms; ++j) {
      bool seen = false;
      for (std::size_t i = 0; i < j; ++i) seen = seen || Row::value[idx[i]] == Row::value[idx[j]];
      if (!seen) ++g;
    }
    return g;
  }();
  static constexpr std::array<double, count> value = [] {
    std::array<double, count> v{};
    std::size_t g = 0;
    for (std::size_t j = 0; j < terms; ++j) {
      bool seen = false;
      for (std::size_t i = 0; i < g; ++i) seen = seen || v[i] == Row::value[idx[j]];
      if (!seen) v[g++] = Row::value[idx[j]];
    }
    return v;
  }();
  static constexpr std::array<int, terms> group = [] {
    std::array<int, terms> r{};
    for (std::size_t j = 0; j < terms; ++j)
      for (std::size_t g = 0; g < count; ++g)
        if (value[g] == Row::value[idx[j]]) r[j] = int(g);
    return r;
  }();
};

/// `out = [x +] scale·Σ_j Row_j k_j`, one pass, zero entries skipped at compile time.
template <class Row, bool WithX, class State, class Time, std::size_t S>
DIFFEO_ODE_INLINE void rk_combine(State& out, const State* x, Time scale,
                                  const std::array<const State*, S>& k) {
  constexpr std::size_t nz = row_terms<Row>;
  constexpr auto idx = nonzero_indices<nz>(Row::value, Row::n);
  constexpr std::size_t n = nz + (WithX ? 1 : 0);
  using groups = row_groups<Row>;
  if constexpr (n == 0) {
    set_zero(out);
  } else if constexpr (groups::count < nz) {
    std::array<double, groups::count> c{};
    for (std::size_t g = 0; g < groups::count; ++g) c[g] = double(scale) * groups::value[g];
    std::array<const State*, nz> ys{};
    for (std::size_t j = 0; j < nz; ++j) ys[j] = k[idx[j]];
    grouped_sum<groups, WithX>(out, x, c, ys);
  } else {
    std::array<double, n> c{};
    std::array<const State*, n> xs{};
    std::size_t q = 0;
    if constexpr (WithX) {
      c[0] = 1.0;
      xs[0] = x;
      q = 1;
    }
    for (std::size_t j = 0; j < nz; ++j, ++q) {
      c[q] = double(scale) * Row::value[idx[j]];
      xs[q] = k[idx[j]];
    }
    if constexpr (WithX)
      unit_scale_sum_n<n>(out, c, xs);
    else
      scale_sum_n<n>(out, c, xs);
  }
}

/// Calls `f(std::integral_constant<int, I>{})` for I = First .. Last-1.
template <int First, int Last, class F>
DIFFEO_ODE_INLINE void static_for(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) DIFFEO_ODE_LAMBDA_INLINE {
    (f(std::integral_constant<int, First + I>{}), ...);
  }(std::make_integer_sequence<int, (Last > First ? Last - First : 0)>{});
}
}  // namespace detail

template <butcher_tableau Tab, ode_state State, class Time>
template <class System>
DIFFEO_ODE_INLINE void explicit_rk<Tab, State, Time>::stages_into(System& sys, const State& x,
                                                                  Time t, Time dt,
                                                                  State& buffer, workspace& ws) {
  // Stages 1 .. s-1 (s-2 for FSAL methods, whose last stage is the new solution).
  constexpr int last = fsal ? stages - 1 : stages;
  detail::static_for<1, last>([&](auto stage) DIFFEO_ODE_LAMBDA_INLINE {
    constexpr int i = stage();
    resize_like(ws.k[i], x);
    ws.kp[i] = &ws.k[i];
    const Time ti = t + Time(Tab::c[i]) * dt;
    if constexpr (detail::row_terms<detail::a_row<Tab, i>> == 0) {
      sys(x, ws.k[i], ti);
    } else {
      detail::rk_combine<detail::a_row<Tab, i>, true>(buffer, &x, dt, ws.kp);
      sys(std::as_const(buffer), ws.k[i], ti);
    }
  });
}

template <butcher_tableau Tab, ode_state State, class Time>
template <class System>
DIFFEO_ODE_INLINE void explicit_rk<Tab, State, Time>::advance(System& sys, State& x,
                                                              const State& dxdt, Time t, Time dt,
                                                              workspace& ws) {
  ws.kp[0] = &dxdt;
  if constexpr (stages > 1) {
    resize_like(ws.tmp, x);
    stages_into(sys, x, t, dt, ws.tmp, ws);
  }
  if constexpr (fsal) {
    // The last stage's input is the new solution; its derivative is not needed here.
    detail::rk_combine<detail::a_row<Tab, stages - 1>, true>(x, &x, dt, ws.kp);
  } else {
    detail::rk_combine<detail::b_row<Tab>, true>(x, &x, dt, ws.kp);
  }
}

template <butcher_tableau Tab, ode_state State, class Time>
template <class System>
DIFFEO_ODE_INLINE void explicit_rk<Tab, State, Time>::do_step(System&& sys, State& x, Time t,
                                                              Time dt) {
  if constexpr (detail::fixed_size_state<State>) {
    // Small fixed-size states: a local workspace that provably aliases nothing, so the
    // step compiles to the registers-only code of a hand-written loop.
    workspace ws;
    sys(std::as_const(x), ws.k[0], t);
    advance(sys, x, std::as_const(ws.k[0]), t, dt, ws);
  } else {
    resize_like(m_ws.k[0], x);
    sys(std::as_const(x), m_ws.k[0], t);
    advance(sys, x, std::as_const(m_ws.k[0]), t, dt, m_ws);
  }
}

template <butcher_tableau Tab, ode_state State, class Time>
template <class System>
DIFFEO_ODE_INLINE void explicit_rk<Tab, State, Time>::do_step(System&& sys, State& x,
                                                              const State& dxdt, Time t,
                                                              Time dt) {
  if constexpr (detail::fixed_size_state<State>) {
    workspace ws;
    advance(sys, x, dxdt, t, dt, ws);
  } else {
    advance(sys, x, dxdt, t, dt, m_ws);
  }
}

template <butcher_tableau Tab, ode_state State, class Time>
template <class System>
  requires embedded_tableau<Tab>
void explicit_rk<Tab, State, Time>::do_step(System&& sys, State& x, Time t, Time dt,
                                            State& xerr) {
  workspace& ws = m_ws;
  resize_like(ws.k[0], x);
  sys(std::as_const(x), ws.k[0], t);
  ws.kp[0] = &ws.k[0];
  resize_like(ws.tmp, x);
  stages_into(sys, x, t, dt, ws.tmp, ws);
  if constexpr (fsal) {
    resize_like(ws.k[stages - 1], x);
    detail::rk_combine<detail::a_row<Tab, stages - 1>, true>(x, &x, dt, ws.kp);
    sys(std::as_const(x), ws.k[stages - 1], t + dt);
    ws.kp[stages - 1] = &ws.k[stages - 1];
  } else {
    detail::rk_combine<detail::b_row<Tab>, true>(x, &x, dt, ws.kp);
  }
  resize_like(xerr, x);
  detail::rk_combine<detail::e_row<Tab>, false>(xerr, static_cast<const State*>(nullptr), dt,
                                                ws.kp);
}

template <butcher_tableau Tab, ode_state State, class Time>
template <class System>
DIFFEO_ODE_INLINE void explicit_rk<Tab, State, Time>::step(System&& sys, const State& x,
                                                           const State& dxdt, Time t, Time dt,
                                                           State& out, State& dxdt_out) {
  resize_like(out, x);
  m_ws.kp[0] = &dxdt;
  // `out` doubles as the stage buffer: it is overwritten by the result at the end.
  stages_into(sys, x, t, dt, out, m_ws);
  if constexpr (fsal) {
    detail::rk_combine<detail::a_row<Tab, stages - 1>, true>(out, &x, dt, m_ws.kp);
    resize_like(dxdt_out, x);
    sys(std::as_const(out), dxdt_out, t + dt);
    m_ws.kp[stages - 1] = &dxdt_out;
  } else {
    detail::rk_combine<detail::b_row<Tab>, true>(out, &x, dt, m_ws.kp);
  }
}

template <butcher_tableau Tab, ode_state State, class Time>
double explicit_rk<Tab, State, Time>::error_norm(const State& x, const State& out, Time dt,
                                                 double atol, double rtol,
                                                 norm_kind kind) const
  requires embedded_tableau<Tab>
{
  using row = detail::e_row<Tab>;
  constexpr std::size_t nz = detail::row_terms<row>;
  constexpr auto idx = detail::nonzero_indices<nz>(row::value, row::n);
  std::array<double, nz> c{};
  std::array<const State*, nz> xs{};
  for (std::size_t j = 0; j < nz; ++j) {
    c[j] = double(dt) * row::value[idx[j]];
    xs[j] = m_ws.kp[idx[j]];
  }
  return scaled_norm<nz>(kind, x, out, atol, rtol, c, xs);
}

template <butcher_tableau Tab, ode_state State, class Time>
void explicit_rk<Tab, State, Time>::dense_correction(State& r, Time dt) const
  requires dense_tableau<Tab>
{
  resize_like(r, *m_ws.kp[0]);
  detail::rk_combine<detail::dense_row<Tab>, false>(r, static_cast<const State*>(nullptr), dt,
                                                    m_ws.kp);
}

}  // namespace diffeo::ode
