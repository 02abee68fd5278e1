#pragma once
/// io/: image files. Optional, outside the core's include graph; link `diffeo::io`
/// (libpng). See docs/io.md.

#include "io/png.hpp"
