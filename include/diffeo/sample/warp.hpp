#pragma once
/// Backward warp (pull-back) of an image by a displacement field, and its vector-Jacobian
/// products with respect to the image and to the displacement.
///
///   out(p) = src(p + u(p))          (positions in voxels of `src`)
///
/// `src` may live on another grid than `u` and `out`; `u` and `out` share one.

#include <string>
#include <type_traits>

#include "../core/backend.hpp"
#include "../core/field.hpp"
#include "../core/scatter.hpp"
#include "detail/linear_rows_avx2.hpp"
#include "interpolate.hpp"

namespace diffeo {

/// Pulls `src` back through `u` into `out` (same extents as `u`, same channels as `src`).
/// Views may be const or not; `u`'s element is a `vec<S, Dim>`.
template <class Interp = interp::linear, class Boundary = boundary::zeros, class Backend,
          class Src, class U, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<Src>, T> && is_vector_element<U, Dim>
void warp(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u, field_view<T, Dim> out,
          Interp = {}, Boundary = {});

/// `src` pulled back through `u`, as a new field on `u`'s grid.
template <class Interp = interp::linear, class Boundary = boundary::zeros, class T, class S,
          int Dim, class Backend>
field<T, Dim, Backend> warp(const field<T, Dim, Backend>& src,
                            const vector_field<S, Dim, Backend>& u, Interp = {}, Boundary = {});

/// Vector-Jacobian products of `warp`: given `grad_out` = ∂L/∂out, writes ∂L/∂src into
/// `grad_src` and ∂L/∂u into `grad_u` (either may be an empty view to skip it). The image
/// gradient is a scatter; `mode` picks atomic or deterministic accumulation.
template <class Interp = interp::linear, class Boundary = boundary::zeros, class Backend,
          class Src, class U, class G, class T, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<Src>, T> && std::is_same_v<std::remove_const_t<G>, T> &&
           std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void warp_vjp(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u,
              field_view<G, Dim> grad_out, field_view<T, Dim> grad_src,
              vector_view<S, Dim> grad_u, Interp = {}, Boundary = {},
              scatter_mode mode = scatter_mode::atomic);

// ------------------------------------------------------------------------------------------

namespace detail {

template <class V>
void require_data(const V& v, const std::string& where) {
  if (v.data == nullptr && v.size() > 0) throw value_error(where + ": null data pointer");
}

template <class Interp, class Boundary, class T, class S, int Dim>
struct warp_kernel {
  field_view<const T, Dim> src;
  const_vector_view<S, Dim> u;
  field_view<T, Dim> out;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    const vec<S, Dim> q = p.template cast<S>() + u[i];
    if (out.channels == 1)
      out[i] = sample(src, q, Interp{}, Boundary{});
    else
      sample_channels(src, q, out.at(i), Interp{}, Boundary{});
  }
#if defined(DIFFEO_HAVE_AVX2)
  /// Blocks of 8 points of a row with AVX2, from x = 0; returns where it stopped.
  /// `Channels`: see `linear_block_avx2::finish`.
  template <int Channels>
  DIFFEO_TARGET_AVX2 index_t row_avx2(index_t i, index_vec<Dim> p, index_t n) const {
    const linear_block_avx2<Dim, Boundary> block(src);
    return run_row(
        block, u.data + i, p, n, 1.f,
        [&](index_t x, const auto& b) DIFFEO_INLINE_AVX2_LAMBDA {
          return block.template finish<Channels>(b, out.at(i + x));
        },
        [&](index_t x) {  // left by the block (reflection off the grid): scalar path
          p[0] = x;
          (*this)(i + x, p);
        });
  }
  index_t row_avx2(index_t i, const index_vec<Dim>& p, index_t n) const {
    switch (src.channels) {
      case 1: return row_avx2<1>(i, p, n);
      case 2: return row_avx2<2>(i, p, n);
      case 3: return row_avx2<3>(i, p, n);
      case 4: return row_avx2<4>(i, p, n);
      default: return row_avx2<0>(i, p, n);
    }
  }
#endif
  /// One row on the CPU backends: 8 points at a time with AVX2 where it applies.
  void row(index_t i, index_vec<Dim> p, index_t n) const {
    index_t x = 0;
#if defined(DIFFEO_HAVE_AVX2)
    if constexpr (std::is_same_v<Interp, interp::linear> && std::is_same_v<T, float> &&
                  std::is_same_v<S, float>) {
      if (linear_block_avx2<Dim, Boundary>::applies(src) && cpu_has_avx2()) x = row_avx2(i, p, n);
    }
#endif
    for (; x < n; ++x) {
      p[0] = x;
      (*this)(i + x, p);
    }
  }
};

/// ∂L/∂u(p)_k = Σ_c ∂L/∂out(p, c) · ∂src_c/∂q_k at q = p + u(p).
template <class Interp, class Boundary, class T, class S, int Dim>
struct warp_grad_u_kernel {
  field_view<const T, Dim> src;
  const_vector_view<S, Dim> u;
  field_view<const T, Dim> grad_out;
  vector_view<S, Dim> grad_u;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    using R = scalar_of<T>;
    using comp = components<T>;
    const vec<S, Dim> q = p.template cast<S>() + u[i];
    const int C = src.channels;
    const T* g = grad_out.at(i);
    vec<S, Dim> acc = vec<S, Dim>::zero();
    for_each_tap<Interp, Boundary>(src.ext, q, [&](index_t j, S, const vec<S, Dim>& dw) {
      const T* v = src.data + j * C;
      for (int c = 0; c < C; ++c) {
        R gv = 0;  // ⟨∂L/∂out, src value⟩ over this element's components
        for (int m = 0; m < comp::count; ++m) gv += comp::get(g[c], m) * comp::get(v[c], m);
        for (int k = 0; k < Dim; ++k) acc[k] += S(gv) * dw[k];
      }
    });
    grad_u[i] = acc;
  }
};

/// The taps of output point `s` for the image-gradient scatter.
template <class Interp, class Boundary, class S, int Dim>
struct warp_taps {
  static constexpr int K = Dim == 2 ? Interp::taps * Interp::taps
                                    : Interp::taps * Interp::taps * Interp::taps;
  extents<Dim> out_ext, src_ext;
  const vec<S, Dim>* u;
  template <class W>
  DIFFEO_HD void operator()(index_t s, index_t* idx, W* w) const {
    at(s, out_ext.unravel(s), idx, w);
  }
  /// The taps of the consecutive sources s0, s0 + 1, ... into rows `idx[n]`, `w[n]`: as
  /// `operator()`, stepping from each grid point to the next without a division.
  template <class W>
  DIFFEO_HD void run(index_t s0, index_t count, index_t (*idx)[K], W (*w)[K]) const {
    index_vec<Dim> p = out_ext.unravel(s0);
    for (index_t n = 0; n < count; ++n) {
      at(s0 + n, p, idx[n], w[n]);
      for (int a = 0; a < Dim; ++a) {
        if (++p[a] < out_ext[a] || a + 1 == Dim) break;
        p[a] = 0;
      }
    }
  }
  /// The taps of source `s` at grid point `p`.
  template <class W>
  DIFFEO_HD void at(index_t s, const index_vec<Dim>& p, index_t* idx, W* w) const {
    for (int k = 0; k < K; ++k) idx[k] = -1, w[k] = 0;
    const vec<S, Dim> q = p.template cast<S>() + u[s];
    int k = 0;
    for_each_tap<Interp, Boundary>(src_ext, q, [&](index_t j, S wt) {
      idx[k] = j;
      w[k] = W(wt);
      ++k;
    });
  }
};

/// Scalar component `c` of `grad_out` at output point `s`.
template <class R>
struct scalar_values {
  const R* data;
  int per_point;
  DIFFEO_HD R operator()(index_t s, int c) const { return data[s * per_point + c]; }
};

}  // namespace detail

template <class Interp, class Boundary, class Backend, class Src, class U, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<Src>, T> && is_vector_element<U, Dim>
void warp(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u, field_view<T, Dim> out,
          Interp, Boundary) {
  using S = scalar_of<U>;
  require_valid(src, "warp(src)");
  require_same_extents(u, out, "warp(u, out)");
  require_same_channels(src, out, "warp(src, out)");
  detail::require_data(u, "warp(u)");
  detail::require_data(out, "warp(out)");
  for_each_point(be, out.ext,
                 detail::warp_kernel<Interp, Boundary, T, S, Dim>{as_const(src), as_const(u), out});
}

template <class Interp, class Boundary, class T, class S, int Dim, class Backend>
field<T, Dim, Backend> warp(const field<T, Dim, Backend>& src,
                            const vector_field<S, Dim, Backend>& u, Interp, Boundary) {
  field<T, Dim, Backend> out(u.geometry(), src.channels());
  warp(Backend{}, src.view(), u.view(), out.view(), Interp{}, Boundary{});
  return out;
}

template <class Interp, class Boundary, class Backend, class Src, class U, class G, class T,
          class S, int Dim>
  requires std::is_same_v<std::remove_const_t<Src>, T> && std::is_same_v<std::remove_const_t<G>, T> &&
           std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void warp_vjp(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u,
              field_view<G, Dim> grad_out, field_view<T, Dim> grad_src,
              vector_view<S, Dim> grad_u, Interp, Boundary, scatter_mode mode) {
  require_valid(src, "warp_vjp(src)");
  require_same_extents(u, grad_out, "warp_vjp(u, grad_out)");
  require_same_channels(src, grad_out, "warp_vjp(src, grad_out)");
  if (grad_u.data != nullptr) {
    require_same_extents(u, grad_u, "warp_vjp(u, grad_u)");
    for_each_point(be, u.ext,
                   detail::warp_grad_u_kernel<Interp, Boundary, T, S, Dim>{
                       as_const(src), as_const(u), as_const(grad_out), grad_u});
  }
  if (grad_src.data != nullptr) {
    require_same_extents(src, grad_src, "warp_vjp(src, grad_src)");
    require_same_channels(src, grad_src, "warp_vjp(src, grad_src)");
    using R = scalar_of<T>;
    constexpr int per_element = detail::components<T>::count;
    const int width = src.channels * per_element;
    R* target = reinterpret_cast<R*>(grad_src.data);
    fill_n(be, target, grad_src.size() * per_element, R(0));
    using taps_t = detail::warp_taps<Interp, Boundary, S, Dim>;
    scatter_add<taps_t::K>(be, u.points(), taps_t{u.ext, src.ext, u.data},
                           detail::scalar_values<R>{reinterpret_cast<const R*>(grad_out.data), width},
                           target, src.points(), width, mode);
  }
}

}  // namespace diffeo
