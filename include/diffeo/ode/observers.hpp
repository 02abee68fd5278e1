#pragma once
/// Observers: callables `obs(const State& x, Time t)` that integrate functions call at the
/// initial point and after every step (or every requested output time). The default
/// `null_observer` costs nothing.

#include <cstddef>
#include <utility>
#include <vector>

#include "algebra.hpp"

namespace diffeo::ode {

/// Observes nothing.
struct null_observer {
  template <class State, class Time>
  void operator()(const State&, Time) const {}
};

/// Keeps a copy of every observed state with its time (memory: one state per call).
template <class State, class Time = double>
struct state_recorder {
  std::vector<State> states;
  std::vector<Time> times;
  void operator()(const State& x, Time t) {
    states.emplace_back();
    assign(states.back(), x);
    times.push_back(t);
  }
};

/// Records only the observed times.
template <class Time = double>
struct time_recorder {
  std::vector<Time> times;
  template <class State>
  void operator()(const State&, Time t) {
    times.push_back(t);
  }
};

/// Calls two observers in turn.
template <class A, class B>
struct observer_pair {
  A first;
  B second;
  template <class State, class Time>
  void operator()(const State& x, Time t) {
    first(x, t);
    second(x, t);
  }
};

/// Both observers, by reference (`both(a, b)` keeps `a` and `b` alive in the caller).
template <class A, class B>
observer_pair<A&, B&> both(A& a, B& b) {
  return {a, b};
}

}  // namespace diffeo::ode
