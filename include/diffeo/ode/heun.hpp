#pragma once
/// Heun's method (the explicit trapezoidal rule): second order, two evaluations per step.
/// Its embedded Euler solution makes it the smallest error stepper (Heun-Euler 2(1)).

#include <array>

#include "explicit_rk.hpp"

namespace diffeo::ode {

/// Butcher tableau of Heun's method with the embedded Euler solution: `e = b - b̂`.
struct heun_tableau {
  static constexpr int stages = 2;
  static constexpr int order = 2;
  static constexpr int error_order = 1;
  static constexpr std::array<double, 2> c{0.0, 1.0};
  static constexpr std::array<std::array<double, 2>, 2> a{{{0.0, 0.0}, {1.0, 0.0}}};
  static constexpr std::array<double, 2> b{0.5, 0.5};
  static constexpr std::array<double, 2> e{-0.5, 0.5};  // b - (1, 0)
};

/// Heun stepper (second order; an error stepper with the embedded Euler estimate).
template <ode_state State, class Time = double>
using heun = explicit_rk<heun_tableau, State, Time>;

}  // namespace diffeo::ode
