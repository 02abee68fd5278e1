#pragma once
/// field/: compose, exp (scaling and squaring), invert, Jacobian, penalties, smoothing,
/// pyramids, affine maps.

#include "field/affine.hpp"
#include "field/compose.hpp"
#include "field/exp.hpp"
#include "field/invert.hpp"
#include "field/jacobian.hpp"
#include "field/penalties.hpp"
#include "field/pyramid.hpp"
#include "field/smooth.hpp"
