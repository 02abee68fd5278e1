#pragma once
/// The exception hierarchy thrown at diffeo's API boundary. Kernels never throw; public
/// functions check their arguments first and name the function, the argument, what was
/// expected and what came.

#include <stdexcept>
#include <string>

namespace diffeo {

/// Base of every diffeo exception.
struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/// Extents, spacing or channel counts of arguments that do not fit together.
struct shape_error : error {
  using error::error;
};
/// An argument value out of its domain: non-positive spacing, a negative count, NaN.
struct value_error : error {
  using error::error;
};
/// A failure reported by a backend library (Thrust, CUDA, oneTBB).
struct backend_error : error {
  using error::error;
};
/// A file that cannot be read or written.
struct io_error : error {
  using error::error;
};

}  // namespace diffeo
