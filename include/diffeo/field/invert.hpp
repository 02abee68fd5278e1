#pragma once
/// The inverse of a displacement field by fixed-point iteration, after ITK's
/// InvertDisplacementFieldImageFilter (Tustison & Avants; the inverse of ANTs' SyN):
///
///   e(p) = compose(u, w)(p) = w(p) + u(p + w(p))     the residual of the estimate w
///   w(p) ← w(p) − ε · min(1, ε·max|e| / |e(p)|) · e(p)     ε = 0.75 first, then 0.5
///
/// so every step is bounded by ε² times the largest residual. The residual at p depends on
/// w(p) alone, so each iteration is one pass: the update of w(p) from the last residual
/// (kept in a field, as the update needs its max first), then the new residual and its
/// norm, a row at a time on the CPU backends. Units: voxels. See docs/field.md.

#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "compose.hpp"
#include "jacobian.hpp"

namespace diffeo {

/// Options of `invert`; the defaults are ITK's.
struct invert_options {
  int max_iterations = 20;             ///< updates at most (0: only measure the residual)
  double max_error_tolerance = 0.1;    ///< stop once max|e| ≤ this (voxels) ...
  double mean_error_tolerance = 0.001; ///< ... and mean|e| ≤ this (voxels)
  /// Hold the inverse at zero on the grid's outer voxels (ITK's EnforceBoundaryCondition).
  bool enforce_boundary = true;
};

/// How an inversion ended; the errors are those of the returned field.
struct invert_report {
  int iterations;     ///< updates applied
  double max_error;   ///< max over the grid of |compose(u, w)| (voxels)
  double mean_error;  ///< mean over the grid of the same
  bool converged;     ///< both tolerances met (else `max_iterations` ran out)
};

/// Replaces `w` (on entry the initial estimate: zeros, or e.g. exp(−v) for u = exp(v)) by
/// the inverse of `u`: compose(u, w) ≈ 0. `w` has `u`'s extents and does not alias it.
/// Throws `value_error` when the residual is not finite (NaN or infinity in `u` or `w`),
/// which the iteration measures anyway. Allocates one field for the residual.
template <class Boundary = boundary::border, class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
invert_report invert(Backend be, field_view<U, Dim> u, vector_view<S, Dim> w,
                     const invert_options& opts = {}, Boundary = {});

/// An inverse and how it was reached.
template <class S, int Dim, class Backend>
struct invert_result {
  vector_field<S, Dim, Backend> field;
  invert_report report;
};

/// The inverse of `u`, starting from zero.
template <class Boundary = boundary::border, class S, int Dim, class Backend>
invert_result<S, Dim, Backend> invert(const vector_field<S, Dim, Backend>& u,
                                      const invert_options& opts = {}, Boundary = {});

/// The inverse of `u`, starting from `initial` (same grid).
template <class Boundary = boundary::border, class S, int Dim, class Backend>
invert_result<S, Dim, Backend> invert(const vector_field<S, Dim, Backend>& u,
                                      const vector_field<S, Dim, Backend>& initial,
                                      const invert_options& opts = {}, Boundary = {});

/// ∂L/∂u of the inverse `w` of `u` (as `invert` returns it), given `grad_w` = ∂L/∂w, by
/// the implicit function theorem on w(p) + u(p + w(p)) = 0:
///
///   λ(p) = (I + Du(q))^-T grad_w(p),  q = p + w(p);   ∂L/∂u = −Σ_p λ(p) ⊗ taps of q,
///
/// the scatter of `compose_vjp` with −λ. Exact for the exact inverse; for an estimate it is
/// the gradient of the inverse it approximates. With `opts.enforce_boundary` the border
/// voxels of w are held at 0 and pass no gradient. The initial estimate gets none either.
/// Throws `value_error` where I + Du(q) is singular (u folds there: no inverse).
template <class Boundary = boundary::border, class Backend, class U, class W, class G, class S,
          int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<W>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<G>, vec<S, Dim>>
void invert_vjp(Backend be, field_view<U, Dim> u, field_view<W, Dim> w, field_view<G, Dim> grad_w,
                vector_view<S, Dim> grad_u, const invert_options& opts = {}, Boundary = {},
                scatter_mode mode = scatter_mode::atomic);

/// ∂L/∂u of `w = invert(u, opts).field` as a new field.
template <class Boundary = boundary::border, class S, int Dim, class Backend>
vector_field<S, Dim, Backend> invert_vjp(const vector_field<S, Dim, Backend>& u,
                                         const vector_field<S, Dim, Backend>& w,
                                         const vector_field<S, Dim, Backend>& grad_w,
                                         const invert_options& opts = {}, Boundary = {},
                                         scatter_mode mode = scatter_mode::atomic);

// ------------------------------------------------------------------------------------------

namespace detail {

/// True on the outer voxels of the grid (index 0 or n − 1 along some axis).
template <int Dim>
DIFFEO_HD bool on_border(const extents<Dim>& e, const index_vec<Dim>& p) {
  for (int a = 0; a < Dim; ++a)
    if (p[a] == 0 || p[a] == e[a] - 1) return true;
  return false;
}

/// True when the whole row through p (all axes but x) lies on the outer voxels: a border
/// row, or a grid at most 2 wide along x.
template <int Dim>
bool row_on_border(const extents<Dim>& e, index_vec<Dim> p) {
  p[0] = e[0] > 2 ? 1 : 0;  // an inner x, where there is one
  return on_border(e, p);
}

/// ITK's update of one point from its residual e = w + u(p + w), in place: a step of
/// −step·e with |e| clamped to `bound` = step·max|e|. Under `enforce_boundary` the outer
/// voxels, zeroed before the first pass, are left alone.
template <class S, int Dim>
struct invert_step_kernel {
  const_vector_view<S, Dim> e;
  vector_view<S, Dim> w;
  double step, bound;
  bool enforce_boundary;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    if (!enforce_boundary || !on_border(w.ext, p)) update(i);
  }
  DIFFEO_HD void update(index_t i) const {
    const vec<S, Dim> ei = e[i];
    const double n = norm(ei.template cast<double>());
    const double f = n > bound ? step * bound / n : step;
    w[i] = w[i] - ei * S(f);
  }
  /// One row (CPU backends), with no branch on the position inside the loop.
  void row(index_t i, const index_vec<Dim>& p, index_t n) const {
    if (!enforce_boundary) {
      for (index_t x = 0; x < n; ++x) update(i + x);
    } else if (!row_on_border(w.ext, p)) {
      for (index_t x = 1; x < n - 1; ++x) update(i + x);
    }
  }
};

/// One pass of `invert`: the update `step` of w (if any), then the residual
/// e = compose(u, w) and its norm statistics. On the CPU backends both in one sweep, a row
/// at a time: a row's update reads that row of e and w only, and its composition reads w
/// only at its own points.
template <class Boundary, class Backend, class S, int Dim>
norm_stats invert_pass(Backend be, const_vector_view<S, Dim> u, vector_view<S, Dim> w,
                       vector_view<S, Dim> e,
                       const std::optional<invert_step_kernel<S, Dim>>& step) {
  if constexpr (is_host_backend<Backend>) {
    const compose_kernel<Boundary, S, Dim> residual{u, as_const(w), e, S(1), S(1)};
    const auto row_map = [&](index_t i, const index_vec<Dim>& p, index_t n) {
      if (step) step->row(i, p, n);
      return compose_row_stats(residual, i, p, n);
    };
    return transform_reduce_rows(be, w.ext, norm_stats{0.0, 0.0, 0}, row_map, norm_stats_op{});
  } else {
    if (step) for_each_point(be, w.ext, *step);
    return compose_norm_stats<Boundary>(be, u, as_const(w), e);
  }
}

/// Zeroes the outer voxels.
template <class S, int Dim>
struct zero_border_kernel {
  vector_view<S, Dim> w;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    if (on_border(w.ext, p)) w[i] = vec<S, Dim>::zero();
  }
};

/// −λ(p) of `invert_vjp`; NaN where I + Du(q) is singular.
template <class Boundary, class S, int Dim>
struct invert_adjoint_kernel {
  const_vector_view<S, Dim> u, w, g;
  vector_view<S, Dim> out;
  bool enforce_boundary;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    if (enforce_boundary && on_border(w.ext, p)) {
      out[i] = vec<S, Dim>::zero();
      return;
    }
    const auto s = sample_with_gradient(u, p.template cast<S>() + w[i], interp::linear{}, Boundary{});
    jacobian_matrix<S, Dim> a;  // (I + Du)^T: a(k, m) = δ_km + ∂u_m/∂q_k
    for (int k = 0; k < Dim; ++k)
      for (int m = 0; m < Dim; ++m) a.m[k][m] = S(k == m) + s.d[k][m];
    const S det = determinant(a);
    const jacobian_matrix<S, Dim> c = cofactor(a);  // a⁻¹ = cof(a)ᵀ / det
    const vec<S, Dim> gi = g[i];
    vec<S, Dim> r;
    for (int k = 0; k < Dim; ++k) {
      S acc = 0;
      for (int m = 0; m < Dim; ++m) acc += c.m[m][k] * gi[m];
      r[k] = det != S(0) ? -acc / det : std::numeric_limits<S>::quiet_NaN();
    }
    out[i] = r;
  }
#if defined(DIFFEO_HAVE_AVX2)
  /// Blocks of 8 points with AVX2 where all their corners lie on the grid (a singular
  /// I + Du gives ±inf or NaN there, which `invert_vjp`'s check reports alike), the others
  /// and the rest of the row point by point. Returns where the blocks stopped.
  DIFFEO_TARGET_AVX2 index_t row_avx2(index_t i, const index_vec<Dim>& p, index_t n) const {
    const auto op = [&](const auto& block, const auto& b, const float* gi, float* o)
                        DIFFEO_INLINE_AVX2_LAMBDA { return block.minus_adjoint_solve(b, gi, o); };
    return gradient_row_avx2<Boundary>(*this, op, u, w.data, g.data, out.data, i, p, n);
  }
#endif
  /// One row on the CPU backends (see `run_linear_row`); the blocks do not know the
  /// border, so its points are set to 0 after them.
  void row(index_t i, const index_vec<Dim>& p, index_t n) const {
    if (enforce_boundary && row_on_border(w.ext, p)) {
      for (index_t x = 0; x < n; ++x) out[i + x] = vec<S, Dim>::zero();
      return;
    }
    run_linear_row<Boundary>(*this, u, i, p, n);
    if (enforce_boundary) out[i] = out[i + n - 1] = vec<S, Dim>::zero();
  }
};

inline void require_invert_options(const invert_options& o) {
  if (o.max_iterations < 0)
    throw value_error("invert(max_iterations): expected >= 0, got " +
                      std::to_string(o.max_iterations));
  if (!(o.max_error_tolerance >= 0) || !std::isfinite(o.max_error_tolerance))
    throw value_error("invert(max_error_tolerance): expected a finite value >= 0, got " +
                      std::to_string(o.max_error_tolerance));
  if (!(o.mean_error_tolerance >= 0) || !std::isfinite(o.mean_error_tolerance))
    throw value_error("invert(mean_error_tolerance): expected a finite value >= 0, got " +
                      std::to_string(o.mean_error_tolerance));
}

}  // namespace detail

template <class Boundary, class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
invert_report invert(Backend be, field_view<U, Dim> u, vector_view<S, Dim> w,
                     const invert_options& opts, Boundary) {
  detail::require_invert_options(opts);
  detail::require_vector_view(u, "invert(u)");
  detail::require_vector_view(w, "invert(w)");
  require_same_extents(u, w, "invert(u, w)");
  detail::require_no_alias(w, u, "invert(u, w)");
  // Zeroing the border first keeps the invariant even when no update runs.
  if (opts.enforce_boundary) for_each_point(be, w.ext, detail::zero_border_kernel<S, Dim>{w});
  const double points = double(u.points());
  invert_report r{0, 0.0, 0.0, false};
  // The residual of the last pass: ITK's update needs its max over the field first.
  field<vec<S, Dim>, Dim, Backend> e(w.ext);
  std::optional<detail::invert_step_kernel<S, Dim>> step;
  for (;;) {
    const auto st = detail::invert_pass<Boundary>(be, as_const(u), w, e.view(), step);
    if (st.nonfinite > 0)
      throw value_error("invert(u): the residual compose(u, w) is not finite at " +
                        std::to_string(st.nonfinite) +
                        " point(s); u or the initial estimate holds NaN or infinity");
    r.max_error = st.max;
    r.mean_error = st.sum / points;
    r.converged =
        r.max_error <= opts.max_error_tolerance && r.mean_error <= opts.mean_error_tolerance;
    if (r.converged || r.iterations == opts.max_iterations) return r;
    // ITK's steps: a bolder first one, then halving the (bounded) residual.
    const double f = r.iterations == 0 ? 0.75 : 0.5;
    step = detail::invert_step_kernel<S, Dim>{as_const(e.view()), w, f, f * r.max_error,
                                              opts.enforce_boundary};
    ++r.iterations;
  }
}

template <class Boundary, class S, int Dim, class Backend>
invert_result<S, Dim, Backend> invert(const vector_field<S, Dim, Backend>& u,
                                      const invert_options& opts, Boundary) {
  invert_result<S, Dim, Backend> r{vector_field<S, Dim, Backend>(u.geometry()), {}};
  r.report = invert(Backend{}, u.view(), r.field.view(), opts, Boundary{});
  return r;
}

template <class Boundary, class S, int Dim, class Backend>
invert_result<S, Dim, Backend> invert(const vector_field<S, Dim, Backend>& u,
                                      const vector_field<S, Dim, Backend>& initial,
                                      const invert_options& opts, Boundary) {
  detail::require_same_grid(u.view(), initial.view(), "invert(u, initial)");
  invert_result<S, Dim, Backend> r{vector_field<S, Dim, Backend>(u.geometry()), {}};
  copy(initial, r.field);
  r.report = invert(Backend{}, u.view(), r.field.view(), opts, Boundary{});
  return r;
}

template <class Boundary, class Backend, class U, class W, class G, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<W>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<G>, vec<S, Dim>>
void invert_vjp(Backend be, field_view<U, Dim> u, field_view<W, Dim> w, field_view<G, Dim> grad_w,
                vector_view<S, Dim> grad_u, const invert_options& opts, Boundary,
                scatter_mode mode) {
  detail::require_vector_view(u, "invert_vjp(u)");
  detail::require_vector_view(w, "invert_vjp(w)");
  detail::require_vector_view(grad_w, "invert_vjp(grad_w)");
  detail::require_vector_view(grad_u, "invert_vjp(grad_u)");
  detail::require_same_grid(u, w, "invert_vjp(u, w)");
  require_same_extents(w, grad_w, "invert_vjp(w, grad_w)");
  require_same_extents(u, grad_u, "invert_vjp(u, grad_u)");
  detail::require_no_alias(grad_u, u, "invert_vjp(u, grad_u)");
  detail::require_no_alias(grad_u, w, "invert_vjp(w, grad_u)");
  detail::require_no_alias(grad_u, grad_w, "invert_vjp(grad_w, grad_u)");
  vector_field<S, Dim, Backend> minus_lambda(w.ext);
  for_each_point(be, w.ext,
                 detail::invert_adjoint_kernel<Boundary, S, Dim>{
                     as_const(u), as_const(w), as_const(grad_w), minus_lambda.view(),
                     opts.enforce_boundary});
  validate_finite(be, minus_lambda.view(),
                  "invert_vjp(u): I + Du is singular at p + w(p) (u folds there), or the "
                  "input is not finite; lambda has");
  fill_n(be, grad_u.data, grad_u.points(), vec<S, Dim>::zero());
  detail::compose_scatter<Boundary>(be, as_const(w), as_const(minus_lambda.view()), grad_u, mode);
}

template <class Boundary, class S, int Dim, class Backend>
vector_field<S, Dim, Backend> invert_vjp(const vector_field<S, Dim, Backend>& u,
                                         const vector_field<S, Dim, Backend>& w,
                                         const vector_field<S, Dim, Backend>& grad_w,
                                         const invert_options& opts, Boundary, scatter_mode mode) {
  vector_field<S, Dim, Backend> grad_u(u.geometry());
  invert_vjp(Backend{}, u.view(), w.view(), grad_w.view(), grad_u.view(), opts, Boundary{}, mode);
  return grad_u;
}

}  // namespace diffeo
