#pragma once
/// Non-owning views of fields: a pointer, the grid and a channel count. Trivially
/// copyable, captured by value in kernels; copying one never copies voxels.

#include <string>
#include <type_traits>

#include "../config.hpp"
#include "error.hpp"
#include "extents.hpp"
#include "vec.hpp"

namespace diffeo {

/// A `Dim`-dimensional grid of elements `T`, `channels` of them per point, interleaved
/// last: element `(p, c)` sits at `data[linear(p) * channels + c]`.
/// An image has a scalar `T` and any channel count; a vector field has `T = vec<S, Dim>`
/// and one channel.
template <class T, int Dim>
struct field_view {
  using element_type = T;
  static constexpr int rank = Dim;

  T* data = nullptr;
  extents<Dim> ext{};
  int channels = 1;
  vec<double, Dim> spacing = vec<double, Dim>::filled(1.0);

  /// Number of grid points.
  DIFFEO_HD index_t points() const { return ext.count(); }
  /// Number of elements (points times channels).
  DIFFEO_HD index_t size() const { return ext.count() * channels; }
  DIFFEO_HD T& operator[](index_t i) const { return data[i]; }
  /// First channel of grid point `point` (a linear index).
  DIFFEO_HD T* at(index_t point) const { return data + point * channels; }
  /// The grid this view lives on.
  grid<Dim> geometry() const { return {ext, spacing}; }
  /// Read-only view of the same data.
  // A template, so that field_view<const T> declares no conversion to itself (nvcc warns).
  template <class U = T>
    requires(std::is_same_v<U, T> && !std::is_const_v<U>)
  DIFFEO_HD operator field_view<const U, Dim>() const {
    return {data, ext, channels, spacing};
  }
};

/// Read-write view of a vector field (displacement or velocity) with scalar `S`.
template <class S, int Dim>
using vector_view = field_view<vec<S, Dim>, Dim>;
/// Read-only view of a vector field.
template <class S, int Dim>
using const_vector_view = field_view<const vec<S, Dim>, Dim>;

/// The same view, read-only.
template <class T, int Dim>
DIFFEO_HD field_view<const T, Dim> as_const(const field_view<T, Dim>& v) {
  return {v.data, v.ext, v.channels, v.spacing};
}

/// True for (const or mutable) element types `vec<S, Dim>`: the element of a vector field.
template <class U, int Dim>
inline constexpr bool is_vector_element =
    detail::components<std::remove_const_t<U>>::count == Dim &&
    !std::is_same_v<std::remove_const_t<U>, scalar_of<U>>;

/// Wraps a raw buffer of `ext.count() * channels` elements as a view (no copy).
template <class T, int Dim>
field_view<T, Dim> make_view(T* data, const extents<Dim>& ext, int channels = 1,
                             vec<double, Dim> spacing = vec<double, Dim>::filled(1.0)) {
  if (channels <= 0)
    throw shape_error("make_view(channels): expected a positive channel count, got " +
                      std::to_string(channels));
  return {data, ext, channels, spacing};
}

namespace detail {
template <class V>
std::string describe(const V& v) {
  return to_string(v.ext) + (v.channels == 1 ? "" : "x" + std::to_string(v.channels) + "ch");
}
}  // namespace detail

/// Throws `shape_error` unless `a` and `b` have the same extents; `where` names the call
/// and its arguments, e.g. "compose(u, v)".
template <class A, class B>
void require_same_extents(const A& a, const B& b, const std::string& where) {
  if (!(a.ext == b.ext))
    throw shape_error(where + ": extents differ (" + to_string(a.ext) + " vs " +
                      to_string(b.ext) + ")");
}

/// Throws `shape_error` unless `a` and `b` have the same number of channels.
template <class A, class B>
void require_same_channels(const A& a, const B& b, const std::string& where) {
  if (a.channels != b.channels)
    throw shape_error(where + ": channel counts differ (" + std::to_string(a.channels) +
                      " vs " + std::to_string(b.channels) + ")");
}

/// Throws `shape_error` / `value_error` unless the view has points, a positive channel
/// count, positive spacing, and (when `T` is non-null-required) data.
template <class T, int Dim>
void require_valid(const field_view<T, Dim>& v, const std::string& where) {
  require_valid(v.geometry(), where);
  if (v.channels <= 0)
    throw shape_error(where + ": expected a positive channel count, got " +
                      std::to_string(v.channels));
  if (v.data == nullptr) throw value_error(where + ": null data pointer");
}

}  // namespace diffeo
