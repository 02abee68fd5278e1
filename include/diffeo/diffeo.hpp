#pragma once
/// Everything in diffeo but io/ (which needs libpng): core, sample, field, ode.

#include "core.hpp"
#include "field.hpp"
#include "ode.hpp"
#include "sample.hpp"
