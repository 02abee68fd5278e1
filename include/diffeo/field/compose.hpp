#pragma once
/// Composition of displacement fields, and its vector-Jacobian products.
///
///   w = compose(u, v):   w(p) = v(p) + u(p + v(p))      φ_w = φ_u ∘ φ_v: first v, then u
///
/// `u` is sampled with (bi/tri)linear interpolation under a boundary policy. The default,
/// `boundary::border`, extends `u` by its edge values, as ITK's vector interpolator does near
/// the edge; `boundary::zeros` gives W2's "zero outside". Positions and displacements are in
/// voxels; see docs/conventions.md and docs/field.md.

#include <string>
#include <type_traits>

#include "../core/backend.hpp"
#include "../core/detail/thread_scratch.hpp"
#include "../core/field.hpp"
#include "../core/scatter.hpp"
#include "../sample/interpolate.hpp"
#include "../sample/warp.hpp"

namespace diffeo {

/// Writes `w = compose(u, v)`, the displacement of φ_u ∘ φ_v. `u` and `v` share one grid
/// (extents and spacing); `w` has their extents and may alias `v` (each point reads `v` only
/// there), never `u`.
template <class Boundary = boundary::border, class Backend, class U, class V, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<V>, vec<S, Dim>>
void compose(Backend be, field_view<U, Dim> u, field_view<V, Dim> v, vector_view<S, Dim> w,
             Boundary = {});

/// `compose(u, v)` as a new field on their grid.
template <class Boundary = boundary::border, class S, int Dim, class Backend>
vector_field<S, Dim, Backend> compose(const vector_field<S, Dim, Backend>& u,
                                      const vector_field<S, Dim, Backend>& v, Boundary = {});

/// Vector-Jacobian products of `compose`: given `grad_w` = ∂L/∂w, writes
///   ∂L/∂u = the scatter of `grad_w(p)` onto the interpolation taps of p + v(p)
///           (exactly `warp_vjp`'s image gradient; `mode` picks atomic or deterministic),
///   ∂L/∂v(p) = grad_w(p) + (∇u)(p + v(p))ᵀ grad_w(p).
/// Either output may be an empty view to skip it; outputs alias no input.
template <class Boundary = boundary::border, class Backend, class U, class V, class G, class S,
          int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<V>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<G>, vec<S, Dim>>
void compose_vjp(Backend be, field_view<U, Dim> u, field_view<V, Dim> v,
                 field_view<G, Dim> grad_w, vector_view<S, Dim> grad_u,
                 vector_view<S, Dim> grad_v, Boundary = {},
                 scatter_mode mode = scatter_mode::atomic);

/// The two gradients of `compose_vjp`.
template <class S, int Dim, class Backend>
struct compose_grads {
  vector_field<S, Dim, Backend> u;  ///< ∂L/∂u
  vector_field<S, Dim, Backend> v;  ///< ∂L/∂v
};

/// ∂L/∂u and ∂L/∂v of `compose(u, v)` as new fields.
template <class Boundary = boundary::border, class S, int Dim, class Backend>
compose_grads<S, Dim, Backend> compose_vjp(const vector_field<S, Dim, Backend>& u,
                                           const vector_field<S, Dim, Backend>& v,
                                           const vector_field<S, Dim, Backend>& grad_w,
                                           Boundary = {},
                                           scatter_mode mode = scatter_mode::atomic);

/// Throws `value_error` naming `where` unless every component of `f` is finite. This is the
/// explicit O(n) check (docs/field.md): `compose` does not scan its inputs (a NaN propagates
/// to the points that read it); automatic `exp` and `invert` reject non-finite input because
/// they reduce over it anyway.
template <class Backend, class T, int Dim>
void validate_finite(Backend be, field_view<T, Dim> f, const std::string& where);
/// `validate_finite` on an owning field.
template <class T, int Dim, class Backend>
void validate_finite(const field<T, Dim, Backend>& f, const std::string& where);

// ------------------------------------------------------------------------------------------

namespace detail {

/// Throws unless `v` is a usable one-vector-per-point view.
template <class V>
void require_vector_view(const V& v, const std::string& where) {
  require_valid(v, where);
  if (v.channels != 1)
    throw shape_error(where + ": a vector field has one vec per point, got " +
                      std::to_string(v.channels) + " channels");
}

/// Throws `shape_error` unless `a` and `b` lie on one grid (extents and spacing).
template <class A, class B>
void require_same_grid(const A& a, const B& b, const std::string& where) {
  require_same_extents(a, b, where);
  for (int k = 0; k < A::rank; ++k)
    if (a.spacing[k] != b.spacing[k])
      throw shape_error(where + ": spacings differ along axis " + std::to_string(k) + " (" +
                        std::to_string(a.spacing[k]) + " vs " + std::to_string(b.spacing[k]) +
                        ")");
}

template <class A, class B>
void require_no_alias(const A& a, const B& b, const std::string& where) {
  if (a.data != nullptr && static_cast<const void*>(a.data) == static_cast<const void*>(b.data))
    throw value_error(where + ": the arguments must not alias");
}

#if defined(DIFFEO_HAVE_AVX2)
/// A float vector field as a Dim-channel float image (what the AVX2 rows sample).
template <int Dim>
field_view<const float, Dim> as_floats(const_vector_view<float, Dim> f) {
  return {reinterpret_cast<const float*>(f.data), f.ext, Dim, f.spacing};
}
#endif

#if defined(DIFFEO_HAVE_AVX2)
/// The AVX2 row of a kernel whose blocks combine the gradient of `u` at p + v(p) with
/// `g(p)` into `out(p)` by `block_op(block, located, g, out)` (false: the block is left to
/// the kernel's scalar path, as are the rest of the row). Returns where the blocks stopped.
template <class Boundary, class Kernel, class BlockOp, int Dim>
DIFFEO_INLINE_AVX2 index_t gradient_row_avx2(const Kernel& k, const BlockOp& block_op,
                                             const_vector_view<float, Dim> u,
                                             const vec<float, Dim>* v, const vec<float, Dim>* g,
                                             vec<float, Dim>* out, index_t i, index_vec<Dim> p,
                                             index_t n) {
  const linear_block_avx2<Dim, Boundary> block(as_floats(u));
  return run_row(
      block, v + i, p, n, 1.f,
      [&](index_t x, const auto& b) DIFFEO_INLINE_AVX2_LAMBDA {
        return block_op(block, b, reinterpret_cast<const float*>(g + i + x),
                        reinterpret_cast<float*>(out + i + x))
                   ? 0
                   : 0xff;
      },
      [&](index_t x) {
        p[0] = x;
        k(i + x, p);
      });
}
#endif

/// One row of a kernel that samples `u` linearly, on the CPU backends: its AVX2 blocks
/// (`k.row_avx2`, 8 points at a time) where they apply, then the rest point by point.
template <class Boundary, class Kernel, class S, int Dim>
void run_linear_row(const Kernel& k, const_vector_view<S, Dim> u, index_t i, index_vec<Dim> p,
                    index_t n) {
  index_t x = 0;
#if defined(DIFFEO_HAVE_AVX2)
  if constexpr (std::is_same_v<S, float>)
    if (linear_block_avx2<Dim, Boundary>::applies(as_floats(u)) && cpu_has_avx2())
      x = k.row_avx2(i, p, n);
#endif
  for (; x < n; ++x) {
    p[0] = x;
    k(i + x, p);
  }
}

/// w(p) = sv·v(p) + su·u(p + sv·v(p)). Plain composition has su = sv = 1; the first
/// squaring of `exp` has su = sv = ±2⁻ᴺ, so the scaling costs no pass of its own (powers of
/// two scale exactly: the result equals scaling first, then squaring). Point i is written
/// to w[i − out_first]: a nonzero `out_first` puts a row into a buffer of its own.
template <class Boundary, class S, int Dim>
struct compose_kernel {
  const_vector_view<S, Dim> u, v;
  vector_view<S, Dim> w;
  S su, sv;
  index_t out_first = 0;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    const vec<S, Dim> b = v[i] * sv;
    const vec<S, Dim> s = sample(u, p.template cast<S>() + b, interp::linear{}, Boundary{});
    w[i - out_first] = b + s * su;
  }
#if defined(DIFFEO_HAVE_AVX2)
  /// Blocks of 8 points of a row with AVX2 (u read as a Dim-channel float image); points
  /// the block leaves (reflection off the grid) take the scalar path. Returns where it
  /// stopped.
  DIFFEO_TARGET_AVX2 index_t row_avx2(index_t i, index_vec<Dim> p, index_t n) const {
    const linear_block_avx2<Dim, Boundary> block(as_floats(u));
    const bool in_place = w.data == v.data;
    return run_row(
        block, v.data + i, p, n, sv,
        [&](index_t x, const auto& b) DIFFEO_INLINE_AVX2_LAMBDA {
          const float* vf = reinterpret_cast<const float*>(v.data + i + x);
          float* wf = reinterpret_cast<float*>(w.data + (i - out_first) + x);
          if (!in_place) return block.template finish<Dim>(b, wf, store_affine{wf, vf, sv, su});
          float sampled[8 * Dim];  // in place, w = v + u(p + v) is summed after sampling
          const int rest = block.template finish<Dim>(b, sampled);
          for (int l = 0; l < 8; ++l) {
            if ((rest >> l) & 1) continue;
            vec<S, Dim> s;
            for (int a = 0; a < Dim; ++a) s[a] = sampled[l * Dim + a];
            w[i - out_first + x + l] = v[i + x + l] * sv + s * su;
          }
          return rest;
        },
        [&](index_t x) {  // left by the block (reflection off the grid): scalar path
          p[0] = x;
          (*this)(i + x, p);
        });
  }
#endif
  /// One row on the CPU backends (see `run_linear_row`).
  void row(index_t i, const index_vec<Dim>& p, index_t n) const {
    run_linear_row<Boundary>(*this, u, i, p, n);
  }
};

/// Max, sum and non-finite count of a set of norms; folded by `norm_stats_op`.
struct norm_stats {
  double max;
  double sum;
  index_t nonfinite;
};
struct norm_stats_op {
  DIFFEO_HD norm_stats operator()(const norm_stats& a, const norm_stats& b) const {
    return {a.max > b.max ? a.max : b.max, a.sum + b.sum, a.nonfinite + b.nonfinite};
  }
};

/// The statistics of one vector's norm (in double): a non-finite norm only counts.
template <class S, int Dim>
DIFFEO_HD norm_stats norm_stats_of(const vec<S, Dim>& a) {
  using std::isfinite;
  const double n = norm(a.template cast<double>());
  if (!isfinite(n)) return {0.0, 0.0, 1};
  return {n, n, 0};
}

/// |f(p)| folded by `norm_stats_op`.
template <class S, int Dim>
struct vector_norm_map {
  const_vector_view<S, Dim> f;
  DIFFEO_HD norm_stats operator()(index_t i) const { return norm_stats_of(f[i]); }
};

/// |compose(u, v)(p)| computed on the fly, without writing the composition (Thrust's form
/// of `compose_norm_stats`).
template <class Boundary, class S, int Dim>
struct compose_norm_map {
  const_vector_view<S, Dim> u, v;
  DIFFEO_HD norm_stats operator()(index_t i) const {
    const vec<S, Dim> b = v[i];
    return norm_stats_of<S, Dim>(
        b + sample(u, v.ext.unravel(i).template cast<S>() + b, interp::linear{}, Boundary{}));
  }
};

/// One row of a composition (the kernel's row kernel, into its output), and the norm
/// statistics of the row it wrote.
template <class Boundary, class S, int Dim>
norm_stats compose_row_stats(const compose_kernel<Boundary, S, Dim>& k, index_t i,
                             const index_vec<Dim>& p, index_t n) {
  k.row(i, p, n);
  const vec<S, Dim>* w = k.w.data + (i - k.out_first);
  norm_stats acc{0.0, 0.0, 0};
  for (index_t x = 0; x < n; ++x) acc = norm_stats_op{}(acc, norm_stats_of(w[x]));
  return acc;
}

/// Norm statistics of `compose(u, v)` over all points (the inverse-consistency error of
/// `exp`, the residual of `invert`); the composition is also written to `out` unless that
/// is empty. On the CPU backends a row at a time: the composition's row kernel (SIMD) into
/// `out` or a per-thread row, then the row's norms.
template <class Boundary, class Backend, class S, int Dim>
norm_stats compose_norm_stats(Backend be, const_vector_view<S, Dim> u,
                              const_vector_view<S, Dim> v, vector_view<S, Dim> out = {}) {
  const norm_stats none{0.0, 0.0, 0};
  if constexpr (is_host_backend<Backend>) {
    using kernel = compose_kernel<Boundary, S, Dim>;
    const auto row_map = [&](index_t i, const index_vec<Dim>& p, index_t n) {
      if (out.data) return compose_row_stats(kernel{u, v, out, S(1), S(1)}, i, p, n);
      const thread_scratch<vec<S, Dim>, struct composed_row> row(static_cast<std::size_t>(n));
      const vector_view<S, Dim> to_row{row.data(), v.ext};
      return compose_row_stats(kernel{u, v, to_row, S(1), S(1), i}, i, p, n);
    };
    return transform_reduce_rows(be, v.ext, none, row_map, norm_stats_op{});
  } else {
    if (!out.data)
      return transform_reduce(be, v.points(), none, compose_norm_map<Boundary, S, Dim>{u, v},
                              norm_stats_op{});
    for_each_point(be, v.ext, compose_kernel<Boundary, S, Dim>{u, v, out, S(1), S(1)});
    return transform_reduce(be, v.points(), none, vector_norm_map<S, Dim>{as_const(out)},
                            norm_stats_op{});
  }
}

/// out(p) = g(p) + (∇u)(q)ᵀ g(p), q = p + v(p): the pointwise part of the composition's VJP.
/// `out` may be `g`.
template <class Boundary, class S, int Dim>
struct compose_grad_v_kernel {
  const_vector_view<S, Dim> u, v, g;
  vector_view<S, Dim> out;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    const auto s =
        sample_with_gradient(u, p.template cast<S>() + v[i], interp::linear{}, Boundary{});
    const vec<S, Dim> gi = g[i];
    vec<S, Dim> r = gi;
    for (int k = 0; k < Dim; ++k) r[k] += dot(s.d[k], gi);
    out[i] = r;
  }
#if defined(DIFFEO_HAVE_AVX2)
  /// Blocks of 8 points with AVX2 where all their corners lie on the grid, the others (and
  /// the rest of the row) point by point. Returns where the blocks stopped.
  DIFFEO_TARGET_AVX2 index_t row_avx2(index_t i, const index_vec<Dim>& p, index_t n) const {
    const auto op = [&](const auto& block, const auto& b, const float* gi, float* o)
                        DIFFEO_INLINE_AVX2_LAMBDA { return block.add_gradient_dot(b, gi, o); };
    return gradient_row_avx2<Boundary>(*this, op, u, v.data, g.data, out.data, i, p, n);
  }
#endif
  /// One row on the CPU backends (see `run_linear_row`).
  void row(index_t i, const index_vec<Dim>& p, index_t n) const {
    run_linear_row<Boundary>(*this, u, i, p, n);
  }
};

/// Adds the scatter of g(p) onto the taps of p + v(p) into `target` (no zero fill).
template <class Boundary, class Backend, class S, int Dim>
void compose_scatter(Backend be, const_vector_view<S, Dim> v, const_vector_view<S, Dim> g,
                     vector_view<S, Dim> target, scatter_mode mode) {
  using taps_t = warp_taps<interp::linear, Boundary, S, Dim>;
  scatter_add<taps_t::K>(be, v.points(), taps_t{v.ext, target.ext, v.data},
                         scalar_values<S>{reinterpret_cast<const S*>(g.data), Dim},
                         reinterpret_cast<S*>(target.data), target.points(), Dim, mode);
}

/// A grid point as text, x first: "(3, 5)".
template <int Dim>
std::string point_string(const index_vec<Dim>& p) {
  // Appends piecewise: GCC 12 warns falsely (-Wrestrict) on "(" + std::to_string(...).
  std::string s(1, '(');
  for (int a = 0; a < Dim; ++a) {
    if (a > 0) s += ", ";
    s += std::to_string(p[a]);
  }
  s += ')';
  return s;
}

/// Non-finite scalars of a field: their count and the first point holding one.
struct finite_count {
  index_t count;
  index_t first;
};
struct finite_count_op {
  DIFFEO_HD finite_count operator()(const finite_count& a, const finite_count& b) const {
    return {a.count + b.count, a.first < b.first ? a.first : b.first};
  }
};
template <class T, int Dim>
struct finite_count_map {
  field_view<const T, Dim> f;
  DIFFEO_HD finite_count operator()(index_t point) const {
    using std::isfinite;
    using comp = components<T>;
    index_t bad = 0;
    const T* e = f.at(point);
    for (int c = 0; c < f.channels; ++c)
      for (int m = 0; m < comp::count; ++m) bad += isfinite(comp::get(e[c], m)) ? 0 : 1;
    return {bad, bad ? point : f.points()};
  }
};

}  // namespace detail

template <class Boundary, class Backend, class U, class V, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<V>, vec<S, Dim>>
void compose(Backend be, field_view<U, Dim> u, field_view<V, Dim> v, vector_view<S, Dim> w,
             Boundary) {
  detail::require_vector_view(u, "compose(u)");
  detail::require_vector_view(v, "compose(v)");
  detail::require_vector_view(w, "compose(w)");
  detail::require_same_grid(u, v, "compose(u, v)");
  require_same_extents(v, w, "compose(v, w)");
  detail::require_no_alias(w, u, "compose(u, w)");
  for_each_point(be, w.ext,
                 detail::compose_kernel<Boundary, S, Dim>{as_const(u), as_const(v), w, S(1),
                                                          S(1)});
}

template <class Boundary, class S, int Dim, class Backend>
vector_field<S, Dim, Backend> compose(const vector_field<S, Dim, Backend>& u,
                                      const vector_field<S, Dim, Backend>& v, Boundary) {
  detail::require_same_grid(u.view(), v.view(), "compose(u, v)");
  vector_field<S, Dim, Backend> w(v.geometry());
  compose(Backend{}, u.view(), v.view(), w.view(), Boundary{});
  return w;
}

template <class Boundary, class Backend, class U, class V, class G, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<V>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<G>, vec<S, Dim>>
void compose_vjp(Backend be, field_view<U, Dim> u, field_view<V, Dim> v,
                 field_view<G, Dim> grad_w, vector_view<S, Dim> grad_u,
                 vector_view<S, Dim> grad_v, Boundary, scatter_mode mode) {
  detail::require_vector_view(u, "compose_vjp(u)");
  detail::require_vector_view(v, "compose_vjp(v)");
  detail::require_vector_view(grad_w, "compose_vjp(grad_w)");
  detail::require_same_grid(u, v, "compose_vjp(u, v)");
  require_same_extents(v, grad_w, "compose_vjp(v, grad_w)");
  if (grad_u.data != nullptr) {
    detail::require_vector_view(grad_u, "compose_vjp(grad_u)");
    require_same_extents(u, grad_u, "compose_vjp(u, grad_u)");
    detail::require_no_alias(grad_u, u, "compose_vjp(u, grad_u)");
    detail::require_no_alias(grad_u, v, "compose_vjp(v, grad_u)");
    detail::require_no_alias(grad_u, grad_w, "compose_vjp(grad_w, grad_u)");
    detail::require_no_alias(grad_u, grad_v, "compose_vjp(grad_u, grad_v)");
    fill_n(be, grad_u.data, grad_u.points(), vec<S, Dim>::zero());
    detail::compose_scatter<Boundary>(be, as_const(v), as_const(grad_w), grad_u, mode);
  }
  if (grad_v.data != nullptr) {
    detail::require_vector_view(grad_v, "compose_vjp(grad_v)");
    require_same_extents(v, grad_v, "compose_vjp(v, grad_v)");
    detail::require_no_alias(grad_v, u, "compose_vjp(u, grad_v)");
    detail::require_no_alias(grad_v, v, "compose_vjp(v, grad_v)");
    detail::require_no_alias(grad_v, grad_w, "compose_vjp(grad_w, grad_v)");
    for_each_point(be, v.ext,
                   detail::compose_grad_v_kernel<Boundary, S, Dim>{as_const(u), as_const(v),
                                                                   as_const(grad_w), grad_v});
  }
}

template <class Boundary, class S, int Dim, class Backend>
compose_grads<S, Dim, Backend> compose_vjp(const vector_field<S, Dim, Backend>& u,
                                           const vector_field<S, Dim, Backend>& v,
                                           const vector_field<S, Dim, Backend>& grad_w,
                                           Boundary, scatter_mode mode) {
  detail::require_same_grid(u.view(), v.view(), "compose_vjp(u, v)");
  compose_grads<S, Dim, Backend> g{vector_field<S, Dim, Backend>(u.geometry()),
                                   vector_field<S, Dim, Backend>(v.geometry())};
  compose_vjp(Backend{}, u.view(), v.view(), grad_w.view(), g.u.view(), g.v.view(), Boundary{},
              mode);
  return g;
}

template <class Backend, class T, int Dim>
void validate_finite(Backend be, field_view<T, Dim> f, const std::string& where) {
  require_valid(f, where);
  using E = std::remove_const_t<T>;
  const auto r =
      transform_reduce(be, f.points(), detail::finite_count{0, f.points()},
                       detail::finite_count_map<E, Dim>{as_const(f)}, detail::finite_count_op{});
  if (r.count > 0)
    throw value_error(where + ": " + std::to_string(r.count) +
                      " non-finite value(s), the first at point " +
                      detail::point_string(f.ext.unravel(r.first)));
}

template <class T, int Dim, class Backend>
void validate_finite(const field<T, Dim, Backend>& f, const std::string& where) {
  validate_finite(Backend{}, f.view(), where);
}

}  // namespace diffeo
