#pragma once
/// Owning fields: a grid of elements in the memory of one backend. The backend is part of
/// the type, so ops run where the data lives and fields of different backends never mix
/// by accident; `to_backend` copies explicitly.

#include <string>
#include <utility>

#include "backend.hpp"
#include "field_view.hpp"

namespace diffeo {

/// A `Dim`-dimensional grid of `T` with `channels` interleaved elements per point, owned
/// in the memory of `Backend`. Images use a scalar `T` (any channel count, chosen at run
/// time); vector fields use `T = vec<S, Dim>` with one channel (see `vector_field`).
template <class T, int Dim, class Backend = backend::default_t>
class field {
 public:
  using element_type = T;
  using scalar_type = scalar_of<T>;
  using backend_type = Backend;
  static constexpr int rank = Dim;

  field() = default;
  /// A zero-filled field on grid `g` with `channels` elements per point.
  explicit field(const grid<Dim>& g, int channels = 1) : m_grid(g), m_channels(channels) {
    require_valid(g, "field(grid)");
    if (channels <= 0)
      throw shape_error("field(channels): expected a positive channel count, got " +
                        std::to_string(channels));
    if (is_vector && channels != 1)
      throw shape_error("field(channels): a vector field has one vec element per point, got " +
                        std::to_string(channels) + " channels");
    m_buffer = storage(g.count() * channels);
    fill(T{});
  }
  /// A zero-filled field of extents `e` (unit spacing).
  explicit field(const extents<Dim>& e, int channels = 1) : field(grid<Dim>{e}, channels) {}

  const grid<Dim>& geometry() const { return m_grid; }
  const extents<Dim>& ext() const { return m_grid.ext; }
  const vec<double, Dim>& spacing() const { return m_grid.spacing; }
  int channels() const { return m_channels; }
  /// Number of grid points.
  index_t points() const { return m_grid.count(); }
  /// Number of elements (points times channels).
  index_t size() const { return m_buffer.size(); }
  bool empty() const { return size() == 0; }

  /// Changes the spacing (the voxels stay as they are).
  void set_spacing(const vec<double, Dim>& s) {
    grid<Dim> g{m_grid.ext, s};
    require_valid(g, "field::set_spacing(spacing)");
    m_grid = g;
  }

  field_view<T, Dim> view() { return {m_buffer.data(), m_grid.ext, m_channels, m_grid.spacing}; }
  field_view<const T, Dim> view() const {
    return {m_buffer.data(), m_grid.ext, m_channels, m_grid.spacing};
  }
  /// Pointer to the first element, in the backend's memory.
  T* data() { return m_buffer.data(); }
  const T* data() const { return m_buffer.data(); }

  /// Sets every element to `value` (on the backend).
  void fill(const T& value) { fill_n(Backend{}, m_buffer.data(), size(), value); }

  /// Element `c` of point `p` (host backends only).
  T& operator()(const index_vec<Dim>& p, int c = 0)
    requires is_host_backend<Backend>
  {
    return m_buffer.data()[m_grid.ext.linear(p) * m_channels + c];
  }
  const T& operator()(const index_vec<Dim>& p, int c = 0) const
    requires is_host_backend<Backend>
  {
    return m_buffer.data()[m_grid.ext.linear(p) * m_channels + c];
  }
  /// Element `i` in memory order (host backends only).
  T& operator[](index_t i)
    requires is_host_backend<Backend>
  {
    return m_buffer.data()[i];
  }
  const T& operator[](index_t i) const
    requires is_host_backend<Backend>
  {
    return m_buffer.data()[i];
  }

 private:
  static constexpr bool is_vector = detail::components<T>::count > 1;
  using storage = typename backend_storage<Backend, T>::type;

  grid<Dim> m_grid{};
  int m_channels = 1;
  storage m_buffer;
};

/// A scalar or multi-channel image.
template <class S, int Dim, class Backend = backend::default_t>
using image = field<S, Dim, Backend>;
/// A displacement or velocity field: one `vec<S, Dim>` per point, components (x, y[, z]).
template <class S, int Dim, class Backend = backend::default_t>
using vector_field = field<vec<S, Dim>, Dim, Backend>;

/// A copy of `f` in the memory of backend `To`.
template <class To, class T, int Dim, class From>
field<T, Dim, To> to_backend(const field<T, Dim, From>& f) {
  field<T, Dim, To> out(f.geometry(), f.channels());
  copy_between(From{}, f.data(), f.size(), To{}, out.data());
  return out;
}

/// A host copy of `f`, for reading it element by element.
template <class T, int Dim, class From>
field<T, Dim, backend::serial> to_host(const field<T, Dim, From>& f) {
  return to_backend<backend::serial>(f);
}

/// Copies the contents of `src` into `dst` (same grid and channels), across backends.
template <class T, int Dim, class From, class To>
void copy(const field<T, Dim, From>& src, field<T, Dim, To>& dst) {
  require_same_extents(src.view(), dst.view(), "copy(src, dst)");
  require_same_channels(src.view(), dst.view(), "copy(src, dst)");
  copy_between(From{}, src.data(), src.size(), To{}, dst.data());
}

}  // namespace diffeo
