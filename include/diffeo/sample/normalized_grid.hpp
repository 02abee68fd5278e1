#pragma once
/// Conversions between displacement fields (voxel units) and PyTorch's normalized sampling
/// grids (`grid_sample`'s `grid`: absolute positions in [-1, 1], components (x, y[, z])),
/// for both `align_corners` settings:
///
///   align_corners = true:   g = 2 x / (n - 1) - 1     (voxel centres 0 and n-1 map to ±1)
///   align_corners = false:  g = (2 x + 1) / n - 1     (voxel edges -0.5 and n-0.5 map to ±1)
///
/// With these, `warp(I, u)` equals `grid_sample(I, displacement_to_grid(u))` with the
/// matching `align_corners` and `padding_mode`.

#include "../core/field.hpp"

namespace diffeo {

/// Which of PyTorch's normalized coordinate conventions a grid uses.
enum class align_corners : bool { no = false, yes = true };

/// Normalized coordinate of voxel position `x` on an axis of `n` points.
template <class S>
DIFFEO_HD S normalize_coordinate(S x, index_t n, align_corners ac) {
  if (ac == align_corners::yes) return n > 1 ? S(2) * x / S(n - 1) - S(1) : S(0);
  return (S(2) * x + S(1)) / S(n) - S(1);
}

/// Voxel position of normalized coordinate `g` on an axis of `n` points.
template <class S>
DIFFEO_HD S unnormalize_coordinate(S g, index_t n, align_corners ac) {
  if (ac == align_corners::yes) return (g + S(1)) * S(n - 1) / S(2);
  return ((g + S(1)) * S(n) - S(1)) / S(2);
}

/// Writes the normalized grid `g(p) = normalize(p + u(p))` of displacement `u`; `source`
/// are the extents of the image the grid will sample (usually `u.ext`).
template <class Backend, class U, class S, int Dim>
void displacement_to_grid(Backend be, field_view<U, Dim> u, vector_view<S, Dim> g,
                          const extents<Dim>& source, align_corners ac);
/// Writes the displacement `u(p) = unnormalize(g(p)) - p` of a normalized grid `g`.
template <class Backend, class G, class S, int Dim>
void grid_to_displacement(Backend be, field_view<G, Dim> g, vector_view<S, Dim> u,
                          const extents<Dim>& source, align_corners ac);

/// The normalized grid of `u` for sampling an image on `u`'s own grid.
template <class S, int Dim, class Backend>
vector_field<S, Dim, Backend> displacement_to_grid(const vector_field<S, Dim, Backend>& u,
                                                   align_corners ac);
/// The displacement of normalized grid `g` sampling an image on `g`'s own grid.
template <class S, int Dim, class Backend>
vector_field<S, Dim, Backend> grid_to_displacement(const vector_field<S, Dim, Backend>& g,
                                                   align_corners ac);

// ------------------------------------------------------------------------------------------

namespace detail {
template <class S, int Dim, bool ToGrid>
struct grid_convert_kernel {
  const vec<S, Dim>* in;
  vec<S, Dim>* out;
  extents<Dim> source;
  align_corners ac;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    vec<S, Dim> r;
    for (int a = 0; a < Dim; ++a) {
      if constexpr (ToGrid)
        r[a] = normalize_coordinate(S(p[a]) + in[i][a], source[a], ac);
      else
        r[a] = unnormalize_coordinate(in[i][a], source[a], ac) - S(p[a]);
    }
    out[i] = r;
  }
};

}  // namespace detail

template <class Backend, class U, class S, int Dim>
void displacement_to_grid(Backend be, field_view<U, Dim> u, vector_view<S, Dim> g,
                          const extents<Dim>& source, align_corners ac) {
  static_assert(std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>,
                "displacement_to_grid: u and g must have the same scalar type");
  require_same_extents(u, g, "displacement_to_grid(u, g)");
  require_valid(grid<Dim>{source}, "displacement_to_grid(source)");
  for_each_point(be, g.ext, detail::grid_convert_kernel<S, Dim, true>{u.data, g.data, source, ac});
}

template <class Backend, class G, class S, int Dim>
void grid_to_displacement(Backend be, field_view<G, Dim> g, vector_view<S, Dim> u,
                          const extents<Dim>& source, align_corners ac) {
  static_assert(std::is_same_v<std::remove_const_t<G>, vec<S, Dim>>,
                "grid_to_displacement: g and u must have the same scalar type");
  require_same_extents(g, u, "grid_to_displacement(g, u)");
  require_valid(grid<Dim>{source}, "grid_to_displacement(source)");
  for_each_point(be, u.ext, detail::grid_convert_kernel<S, Dim, false>{g.data, u.data, source, ac});
}

template <class S, int Dim, class Backend>
vector_field<S, Dim, Backend> displacement_to_grid(const vector_field<S, Dim, Backend>& u,
                                                   align_corners ac) {
  vector_field<S, Dim, Backend> g(u.geometry());
  displacement_to_grid(Backend{}, u.view(), g.view(), u.ext(), ac);
  return g;
}

template <class S, int Dim, class Backend>
vector_field<S, Dim, Backend> grid_to_displacement(const vector_field<S, Dim, Backend>& g,
                                                   align_corners ac) {
  vector_field<S, Dim, Backend> u(g.geometry());
  grid_to_displacement(Backend{}, g.view(), u.view(), g.ext(), ac);
  return u;
}

}  // namespace diffeo
