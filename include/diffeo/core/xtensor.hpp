#pragma once
/// Interop with xtensor on the CPU: wrap an `xt::xtensor` / `xt::xarray` (or any
/// contiguous row-major xtensor container) as a view without copying, and hand fields back
/// as `xt::xarray`. Array shapes follow docs/conventions.md: `(ny, nx[, C])`,
/// `(nz, ny, nx[, C])`, vector fields `(…, Dim)`.

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include <string>
#include <type_traits>
#include <vector>

#include "field.hpp"

namespace diffeo {

namespace detail {
template <class E>
void require_row_major(const E& e, const char* where) {
  if (e.layout() != xt::layout_type::row_major)
    throw shape_error(std::string(where) + ": expected a contiguous row-major container");
}
template <int Dim, class Shape>
extents<Dim> spatial_extents(const Shape& shape) {
  extents<Dim> ext{};
  for (int a = 0; a < Dim; ++a) ext[a] = static_cast<index_t>(shape[Dim - 1 - a]);
  return ext;
}
template <class Shape>
std::string shape_string(const Shape& s) {
  std::string r = "(";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + ")";
}
}  // namespace detail

/// Views an xtensor container as a `Dim`-dimensional image: rank `Dim` is one channel,
/// rank `Dim + 1` has its last axis as channels. No copy; the container must outlive the
/// view.
template <int Dim, class E>
auto as_image(E& e) {
  using T = std::remove_reference_t<decltype(*e.data())>;
  detail::require_row_major(e, "as_image(array)");
  const auto& s = e.shape();
  const auto rank = static_cast<int>(s.size());
  if (rank != Dim && rank != Dim + 1)
    throw shape_error("as_image(array): expected rank " + std::to_string(Dim) + " or " +
                      std::to_string(Dim + 1) + ", got shape " + detail::shape_string(s));
  const int channels = rank == Dim ? 1 : static_cast<int>(s[Dim]);
  return make_view<T, Dim>(e.data(), detail::spatial_extents<Dim>(s), channels);
}

/// Views an xtensor container of shape `(…, Dim)` as a vector field (no copy).
template <int Dim, class E>
auto as_vector_field(E& e) {
  using S = std::remove_reference_t<decltype(*e.data())>;
  using V = std::conditional_t<std::is_const_v<S>, const vec<std::remove_const_t<S>, Dim>,
                               vec<std::remove_const_t<S>, Dim>>;
  static_assert(sizeof(V) == Dim * sizeof(S), "vec must be laid out as Dim scalars");
  detail::require_row_major(e, "as_vector_field(array)");
  const auto& s = e.shape();
  if (static_cast<int>(s.size()) != Dim + 1 || static_cast<int>(s[Dim]) != Dim)
    throw shape_error("as_vector_field(array): expected shape (" +
                      std::string(Dim == 3 ? "nz, " : "") + "ny, nx, " + std::to_string(Dim) +
                      "), got " + detail::shape_string(s));
  return make_view<V, Dim>(reinterpret_cast<V*>(e.data()), detail::spatial_extents<Dim>(s));
}

/// Copies a field (from any backend) into an `xt::xarray` of scalars: shape `(…)` for a
/// one-channel image, `(…, C)` for C channels, `(…, Dim)` for a vector field.
template <class T, int Dim, class Backend>
xt::xarray<scalar_of<T>> to_xarray(const field<T, Dim, Backend>& f) {
  using S = scalar_of<T>;
  constexpr int per_element = detail::components<T>::count;
  std::vector<std::size_t> shape;
  for (int a = Dim - 1; a >= 0; --a) shape.push_back(static_cast<std::size_t>(f.ext()[a]));
  const int trailing = per_element * f.channels();
  if (trailing > 1) shape.push_back(static_cast<std::size_t>(trailing));
  xt::xarray<S> out = xt::xarray<S>::from_shape(shape);
  copy_between(Backend{}, f.data(), f.size(), backend::serial{}, reinterpret_cast<T*>(out.data()));
  return out;
}

/// Copies an xtensor container into a new field on `Backend` (an image, or a vector field
/// when `T` is a `vec`).
template <class T, int Dim, class Backend = backend::default_t, class E>
field<T, Dim, Backend> from_xtensor(const E& e) {
  auto v = [&] {
    if constexpr (detail::components<T>::count > 1)
      return as_vector_field<Dim>(e);
    else
      return as_image<Dim>(e);
  }();
  field<T, Dim, Backend> out(grid<Dim>{v.ext}, v.channels);
  copy_between(backend::serial{}, reinterpret_cast<const T*>(v.data), out.size(), Backend{},
               out.data());
  return out;
}

}  // namespace diffeo
