#pragma once
/// Butcher tableaus as data: a type with `static constexpr` coefficients describes an
/// explicit Runge-Kutta method completely, so a new method is a new struct, not new code
/// (`explicit_rk<Tableau, State>` in explicit_rk.hpp runs it).
///
///   struct my_tableau {                                     // Kutta's 3/8 rule
///     static constexpr int stages = 4, order = 4;
///     static constexpr std::array<double, 4> c{0, 1. / 3, 2. / 3, 1};
///     static constexpr std::array<std::array<double, 4>, 4> a{{
///         {}, {1. / 3}, {-1. / 3, 1}, {1, -1, 1}}};
///     static constexpr std::array<double, 4> b{1. / 8, 3. / 8, 3. / 8, 1. / 8};
///   };
///
/// Embedded pairs add `error_order` and `e = b - b̂` (the error weights); pairs with a
/// continuous extension add `dense` (Hairer's `d_i`, see dopri5.hpp). A method is FSAL
/// when its last stage is evaluated at the new solution; that is read off the data.

#include <array>
#include <concepts>
#include <cstddef>

namespace diffeo::ode {

/// An explicit Runge-Kutta method: `stages`, `order`, nodes `c`, strictly lower
/// triangular `a`, weights `b`.
template <class T>
concept butcher_tableau = requires {
  { T::stages } -> std::convertible_to<int>;
  { T::order } -> std::convertible_to<int>;
  { T::c[0] } -> std::convertible_to<double>;
  { T::a[0][0] } -> std::convertible_to<double>;
  { T::b[0] } -> std::convertible_to<double>;
};

/// A tableau with an embedded lower-order solution: error weights `e = b - b̂` and the
/// order `error_order` of `b̂` (local error estimate O(dt^(error_order+1))).
template <class T>
concept embedded_tableau = butcher_tableau<T> && requires {
  { T::error_order } -> std::convertible_to<int>;
  { T::e[0] } -> std::convertible_to<double>;
};

/// An embedded tableau with a quartic continuous extension in Hairer's form: the
/// correction `r = dt Σ dense_i k_i` completes the cubic Hermite interpolant.
template <class T>
concept dense_tableau = embedded_tableau<T> && requires {
  { T::dense[0] } -> std::convertible_to<double>;
};

/// Largest |Σ_j a_ij - c_i| and |Σ b - 1|: zero (to rounding) for a consistent method.
template <butcher_tableau T>
constexpr double tableau_defect();

/// True when the last stage is evaluated at the new solution (First Same As Last): its
/// derivative is the first stage of the next step.
template <butcher_tableau T>
constexpr bool is_fsal();

// ----------------------------------------------------------------------------------------

namespace detail {
constexpr double cabs(double x) { return x < 0 ? -x : x; }

/// Indices of the nonzero entries among the first `n` of `row`, as a fixed array: the
/// stepper skips zero coefficients at compile time (each skipped term is one field read).
template <std::size_t Count, class Row>
constexpr std::array<int, Count> nonzero_indices(const Row& row, int n) {
  std::array<int, Count> idx{};
  std::size_t k = 0;
  for (int j = 0; j < n; ++j)
    if (row[j] != 0.0) idx[k++] = j;
  return idx;
}
template <class Row>
constexpr std::size_t nonzero_count(const Row& row, int n) {
  std::size_t k = 0;
  for (int j = 0; j < n; ++j)
    if (row[j] != 0.0) ++k;
  return k;
}
}  // namespace detail

template <butcher_tableau T>
constexpr double tableau_defect() {
  double worst = 0;
  for (int i = 0; i < T::stages; ++i) {
    double s = 0;
    for (int j = 0; j < i; ++j) s += T::a[i][j];
    worst = detail::cabs(s - T::c[i]) > worst ? detail::cabs(s - T::c[i]) : worst;
    for (int j = i; j < T::stages; ++j)
      if (T::a[i][j] != 0.0) return 1e300;  // not explicit
  }
  double sb = 0;
  for (int i = 0; i < T::stages; ++i) sb += T::b[i];
  return detail::cabs(sb - 1) > worst ? detail::cabs(sb - 1) : worst;
}

template <butcher_tableau T>
constexpr bool is_fsal() {
  constexpr int s = T::stages;
  // One expression, no early return: nvcc flags the loop after it as unreachable when
  // the first test is false at compile time.
  bool fsal = s >= 2 && T::c[s - 1] == 1.0 && T::b[s - 1] == 0.0;
  for (int j = 0; fsal && j < s - 1; ++j) fsal = T::a[s - 1][j] == T::b[j];
  return fsal;
}

}  // namespace diffeo::ode
