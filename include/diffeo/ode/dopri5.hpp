#pragma once
/// The Dormand-Prince 5(4) pair (Dormand & Prince 1980) with Shampine's continuous
/// extension in Hairer's form (Hairer, Nørsett & Wanner, Solving ODEs I, II.6, code
/// DOPRI5): 7 stages, FSAL (k7 of this step is k1 of the next, so 6 evaluations per
/// step), local extrapolation (the 5th-order solution is propagated), 4th-order error
/// estimate, 4th-order dense output.

#include <array>

#include "explicit_rk.hpp"

namespace diffeo::ode {

/// Butcher tableau of DOPRI5 with error weights `e = b - b̂` and dense weights `d_i`.
struct dopri5_tableau {
  static constexpr int stages = 7;
  static constexpr int order = 5;
  static constexpr int error_order = 4;
  static constexpr std::array<double, 7> c{0.0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0, 1.0};
  static constexpr std::array<std::array<double, 7>, 7> a{{
      {0, 0, 0, 0, 0, 0, 0},
      {1.0 / 5, 0, 0, 0, 0, 0, 0},
      {3.0 / 40, 9.0 / 40, 0, 0, 0, 0, 0},
      {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0, 0},
      {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0, 0},
      {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0, 0},
      {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0},
  }};
  static constexpr std::array<double, 7> b{35.0 / 384,     0, 500.0 / 1113, 125.0 / 192,
                                           -2187.0 / 6784, 11.0 / 84, 0};
  // Hairer's E1..E7 (b - b̂ of the 4th-order embedded solution).
  static constexpr std::array<double, 7> e{71.0 / 57600,      0,           -71.0 / 16695,
                                           71.0 / 1920,       -17253.0 / 339200, 22.0 / 525,
                                           -1.0 / 40};
  // Hairer's D1..D7: r = dt Σ d_i k_i is the quartic term of the continuous extension
  //   x(t0 + θ dt) = y0 + θ Δ + θ(1-θ) (dt k1 - Δ + θ (Δ - dt k7 - (dt k1 - Δ) + (1-θ) r)).
  static constexpr std::array<double, 7> dense{-12715105075.0 / 11282082432.0,
                                               0,
                                               87487479700.0 / 32700410799.0,
                                               -10690763975.0 / 1880347072.0,
                                               701980252875.0 / 199316789632.0,
                                               -1453857185.0 / 822651844.0,
                                               69997945.0 / 29380423.0};
};

/// Dormand-Prince 5(4) error stepper (FSAL); use with `controlled`, `dense_output`.
template <ode_state State, class Time = double>
using dopri5 = explicit_rk<dopri5_tableau, State, Time>;

}  // namespace diffeo::ode
