#pragma once
/// sample/: boundary policies, interpolation, backward warp (pull), splatting (push),
/// conversions to PyTorch's normalized grids.

#include "sample/boundary.hpp"
#include "sample/interpolate.hpp"
#include "sample/normalized_grid.hpp"
#include "sample/splat.hpp"
#include "sample/warp.hpp"
