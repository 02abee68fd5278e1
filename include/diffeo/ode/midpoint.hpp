#pragma once
/// The explicit midpoint method (Runge 1895): second order, two evaluations per step,
/// `x ← x + dt·f(x + dt/2·f(x, t), t + dt/2)`.

#include <array>

#include "explicit_rk.hpp"

namespace diffeo::ode {

/// Butcher tableau of the explicit midpoint method.
struct midpoint_tableau {
  static constexpr int stages = 2;
  static constexpr int order = 2;
  static constexpr std::array<double, 2> c{0.0, 0.5};
  static constexpr std::array<std::array<double, 2>, 2> a{{{0.0, 0.0}, {0.5, 0.0}}};
  static constexpr std::array<double, 2> b{0.0, 1.0};
};

/// Explicit midpoint stepper (second order).
template <ode_state State, class Time = double>
using midpoint = explicit_rk<midpoint_tableau, State, Time>;

}  // namespace diffeo::ode
