#pragma once
// Systems with vector-Jacobian products for the gradient tests, and a finite-difference
// helper. Shared by test_backprop.cpp and test_adjoint.cpp.

#include <diffeo/ode/algebra.hpp>

#include <Eigen/Core>

namespace diffeo::test {

/// Lotka-Volterra with parameters θ = (α, β, δ, γ): x' = αx - βxy, y' = δxy - γy.
struct lotka_volterra_theta {
  using parameter_type = Eigen::Vector4d;
  Eigen::Vector4d theta{2.0 / 3, 4.0 / 3, 1.0, 1.0};

  void operator()(const Eigen::Vector2d& x, Eigen::Vector2d& d, double) const {
    d[0] = theta[0] * x[0] - theta[1] * x[0] * x[1];
    d[1] = theta[2] * x[0] * x[1] - theta[3] * x[1];
  }
  /// a_dx = Jᵀ a, a_dθ = (∂f/∂θ)ᵀ a.
  void vjp(const Eigen::Vector2d& x, double, const Eigen::Vector2d& a, Eigen::Vector2d& a_dx,
           Eigen::Vector4d& a_dtheta) const {
    a_dx[0] = a[0] * (theta[0] - theta[1] * x[1]) + a[1] * theta[2] * x[1];
    a_dx[1] = -a[0] * theta[1] * x[0] + a[1] * (theta[2] * x[0] - theta[3]);
    a_dtheta << a[0] * x[0], -a[0] * x[0] * x[1], a[1] * x[0] * x[1], -a[1] * x[1];
  }
  Eigen::Vector4d parameter_like() const { return Eigen::Vector4d::Zero(); }
};

/// A time-dependent linear system x' = sin(t)·A(θ) x with A = [[θ0, θ1], [-θ1, θ0]]: its
/// stages see different times, so a wrong stage time shows in the gradient.
struct rotating_theta {
  using parameter_type = Eigen::Vector2d;
  Eigen::Vector2d theta{-0.3, 1.1};

  void operator()(const Eigen::Vector2d& x, Eigen::Vector2d& d, double t) const {
    const double s = std::sin(t);
    d[0] = s * (theta[0] * x[0] + theta[1] * x[1]);
    d[1] = s * (-theta[1] * x[0] + theta[0] * x[1]);
  }
  void vjp(const Eigen::Vector2d& x, double t, const Eigen::Vector2d& a, Eigen::Vector2d& a_dx,
           Eigen::Vector2d& a_dtheta) const {
    const double s = std::sin(t);
    a_dx[0] = s * (a[0] * theta[0] - a[1] * theta[1]);
    a_dx[1] = s * (a[0] * theta[1] + a[1] * theta[0]);
    a_dtheta[0] = s * (a[0] * x[0] + a[1] * x[1]);
    a_dtheta[1] = s * (a[0] * x[1] - a[1] * x[0]);
  }
  Eigen::Vector2d parameter_like() const { return Eigen::Vector2d::Zero(); }
};

/// Central difference of `loss` along coordinate `k` of `p` (a copy is perturbed).
template <class P, class Loss>
double central_difference(const P& p, int k, double h, const Loss& loss) {
  P plus = p, minus = p;
  plus[k] += h;
  minus[k] -= h;
  return (loss(plus) - loss(minus)) / (2 * h);
}

}  // namespace diffeo::test
