#pragma once
/// ode/: stepper concepts and the state algebra; explicit Runge-Kutta methods from Butcher
/// tableaus (Euler, midpoint, Heun, RK4, Dormand-Prince 5(4) with dense output); step
/// control; integrate functions with observers; whole dense solutions; the flow of a
/// stationary velocity field; gradients by backpropagation and by the adjoint method.
/// See docs/ode.md.

#include "ode/adjoint.hpp"
#include "ode/algebra.hpp"
#include "ode/backprop.hpp"
#include "ode/concepts.hpp"
#include "ode/controlled.hpp"
#include "ode/dense_output.hpp"
#include "ode/dense_solution.hpp"
#include "ode/dopri5.hpp"
#include "ode/euler.hpp"
#include "ode/explicit_rk.hpp"
#include "ode/heun.hpp"
#include "ode/integrate.hpp"
#include "ode/midpoint.hpp"
#include "ode/observers.hpp"
#include "ode/rhs.hpp"
#include "ode/rk4.hpp"
#include "ode/svf_flow.hpp"
#include "ode/tableau.hpp"
