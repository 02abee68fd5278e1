#pragma once
/// The classical fourth-order Runge-Kutta method (Kutta 1901): four evaluations per step.

#include <array>

#include "explicit_rk.hpp"

namespace diffeo::ode {

/// Butcher tableau of the classical RK4.
struct rk4_tableau {
  static constexpr int stages = 4;
  static constexpr int order = 4;
  static constexpr std::array<double, 4> c{0.0, 0.5, 0.5, 1.0};
  static constexpr std::array<std::array<double, 4>, 4> a{
      {{0.0, 0.0, 0.0, 0.0}, {0.5, 0.0, 0.0, 0.0}, {0.0, 0.5, 0.0, 0.0}, {0.0, 0.0, 1.0, 0.0}}};
  static constexpr std::array<double, 4> b{1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6};
};

/// Classical fourth-order Runge-Kutta stepper with a fixed step.
template <ode_state State, class Time = double>
using rk4 = explicit_rk<rk4_tableau, State, Time>;

}  // namespace diffeo::ode
