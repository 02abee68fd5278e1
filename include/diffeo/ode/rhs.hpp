#pragma once
/// Adapters from plain callables to systems: `make_rhs(V)` turns a velocity `V(x, t)` that
/// returns the derivative (a network, a closure over an image) into the `sys(x, dxdt, t)`
/// form the steppers call. Callables already of that form pass through unchanged.

#include <type_traits>
#include <utility>

#include "algebra.hpp"

namespace diffeo::ode {

/// A system `dxdt = V(x, t)` from a callable returning the derivative.
template <class V>
struct callable_rhs {
  V velocity;
  template <class State, class Time>
  void operator()(const State& x, State& dxdt, Time t) {
    if constexpr (std::is_invocable_v<V&, const State&, State&, Time>) {
      velocity(x, dxdt, t);
    } else {
      // A returned temporary is moved in: no copy of the state when V builds a new one.
      dxdt = velocity(x, t);
    }
  }
};

/// Wraps `V(x, t) -> dxdt` (or `V(x, dxdt, t)`) as a system.
template <class V>
callable_rhs<std::decay_t<V>> make_rhs(V&& velocity) {
  return {std::forward<V>(velocity)};
}

}  // namespace diffeo::ode
