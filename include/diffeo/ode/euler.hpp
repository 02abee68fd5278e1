#pragma once
/// The explicit Euler method: `x ← x + dt·f(x, t)`, first order, one evaluation per step.

#include <array>

#include "explicit_rk.hpp"

namespace diffeo::ode {

/// Butcher tableau of the explicit Euler method.
struct euler_tableau {
  static constexpr int stages = 1;
  static constexpr int order = 1;
  static constexpr std::array<double, 1> c{0.0};
  static constexpr std::array<std::array<double, 1>, 1> a{{{0.0}}};
  static constexpr std::array<double, 1> b{1.0};
};

/// Explicit Euler stepper (first order).
template <ode_state State, class Time = double>
using euler = explicit_rk<euler_tableau, State, Time>;

}  // namespace diffeo::ode
