#pragma once
/// core/: extents and grids, views, owning fields, backends and their dispatch, errors.
/// Interop with xtensor and Eigen is in core/xtensor.hpp and core/eigen.hpp.

#include "config.hpp"
#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/extents.hpp"
#include "core/field.hpp"
#include "core/field_view.hpp"
#include "core/vec.hpp"
