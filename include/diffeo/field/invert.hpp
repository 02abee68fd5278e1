#pragma once
/// The inverse of a displacement field by fixed-point iteration, after ITK's
/// InvertDisplacementFieldImageFilter (Tustison & Avants; the inverse of ANTs' SyN):
///
///   e(p) = compose(u, w)(p) = w(p) + u(p + w(p))     the residual of the estimate w
///   w(p) ← w(p) − ε · min(1, ε·max|e| / |e(p)|) · e(p)     ε = 0.75 first, then 0.5
///
/// so every step is bounded by ε² times the largest residual. The residual at p depends on
/// w(p) alone, so the update runs in place and needs no extra field; its statistics are a
/// reduction computed on the fly. Units: voxels. See docs/field.md.

#include <cmath>
#include <string>

#include "compose.hpp"

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
/// which the iteration measures anyway.
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

// ------------------------------------------------------------------------------------------

namespace detail {

/// True on the outer voxels of the grid (index 0 or n − 1 along some axis).
template <int Dim>
DIFFEO_HD bool on_border(const extents<Dim>& e, const index_vec<Dim>& p) {
  for (int a = 0; a < Dim; ++a)
    if (p[a] == 0 || p[a] == e[a] - 1) return true;
  return false;
}

/// One update of ITK's iteration, in place: `bound` = ε·max|e|.
template <class Boundary, class S, int Dim>
struct invert_update_kernel {
  const_vector_view<S, Dim> u;
  vector_view<S, Dim> w;
  double step, bound;
  bool enforce_boundary;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    if (enforce_boundary && on_border(w.ext, p)) {
      w[i] = vec<S, Dim>::zero();
      return;
    }
    const vec<S, Dim> wi = w[i];
    const vec<S, Dim> e =
        wi + sample(u, p.template cast<S>() + wi, interp::linear{}, Boundary{});
    const double n = norm(e.template cast<double>());
    const double f = n > bound ? step * bound / n : step;
    w[i] = wi - e * S(f);
  }
};

/// Zeroes the outer voxels.
template <class S, int Dim>
struct zero_border_kernel {
  vector_view<S, Dim> w;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    if (on_border(w.ext, p)) w[i] = vec<S, Dim>::zero();
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
  for (;;) {
    const auto st = detail::compose_norm_stats<Boundary>(be, as_const(u), as_const(w));
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
    const double step = r.iterations == 0 ? 0.75 : 0.5;
    for_each_point(be, w.ext,
                   detail::invert_update_kernel<Boundary, S, Dim>{
                       as_const(u), w, step, step * r.max_error, opts.enforce_boundary});
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

}  // namespace diffeo
