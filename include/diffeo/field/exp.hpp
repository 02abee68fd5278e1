#pragma once
/// The exponential of a stationary velocity field by scaling and squaring, its
/// vector-Jacobian product, and a certificate of the result.
///
///   w₀ = v / 2ᴺ,   w_k = compose(w_{k−1}, w_{k−1})  (k = 1..N),   exp(v) ≈ w_N
///
/// exp(v) is the displacement of φ₁, the flow of d/dt φ_t = v ∘ φ_t at t = 1, and exp(−v)
/// its inverse (Arsigny et al. 2006; ITK's ExponentialDisplacementFieldImageFilter;
/// VoxelMorph's VecInt). Each squaring is one `compose` pass (linear interpolation under a
/// boundary policy, `boundary::border` by default; `boundary::zeros` with N = 7 is W3), and
/// the scaling is fused into the first squaring. Units: voxels. See docs/field.md.

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "compose.hpp"
#include "jacobian.hpp"

namespace diffeo {

/// The most squarings `exp` accepts: 2⁻⁶⁰ still scales every float exactly.
inline constexpr int exp_squarings_limit = 60;

/// How `exp_vjp` gets back the intermediate fields w₀..w_{N−1} of the squarings. Every
/// strategy then runs N backward steps (a gather and a scatter each); they differ in the
/// extra fields held (each the size of `v`) and the squaring passes run to rebuild states.
enum class exp_memory {
  store,       ///< keep all N: N + 2 fields, N − 1 squarings (fastest)
  recompute,   ///< keep only w₀ and rebuild each w_k from it: 5 fields, N(N−1)/2 squarings
  checkpoint   ///< keep every c-th, c = ⌈√N⌉: ⌈N/c⌉ + 4 fields, about N(c+1)/2 squarings
};

/// Options of `exp`, `exp_certified` and `exp_vjp`.
struct exp_options {
  /// The number N of squarings, 0..60; empty (the default) chooses it from the field's
  /// largest vector with ITK's rule (see `auto_squarings`).
  std::optional<int> squarings{};
  /// Upper bound of the automatic N (ITK's MaximumNumberOfIterations default), 0..60.
  int max_squarings = 20;
  /// Compute exp(−v) instead of exp(v) (ITK's ComputeInverse), at no extra cost.
  bool inverse = false;
  /// Memory strategy of `exp_vjp`.
  exp_memory memory = exp_memory::store;
};

/// ITK's automatic number of squarings for a field whose largest vector has length
/// `max_norm` voxels: N = max(0, ⌊3 + log₂ max_norm⌋), at most `max_squarings`. It makes
/// max|v| / 2ᴺ < 1/4 voxel, so the first-order start id + v/2ᴺ is a diffeomorphism.
inline int auto_squarings(double max_norm, int max_squarings = 20);

/// The N that `exp` uses for `v` under `opts`: `opts.squarings`, or the automatic rule, which
/// reduces max|v| over the field (one pass) and so also rejects non-finite vectors.
template <class Backend, class V, int Dim>
int exp_squarings(Backend be, field_view<V, Dim> v, const exp_options& opts = {});

/// Writes exp(v) (or exp(−v) with `opts.inverse`) into `out`, using `scratch` (same extents)
/// as the second buffer of the squarings, and returns N. N passes over memory (the scaling
/// is fused into the first; N = 0 is one copy); `out` and `scratch` alias neither `v` nor
/// each other.
template <class Boundary = boundary::border, class Backend, class V, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<V>, vec<S, Dim>>
int exp(Backend be, field_view<V, Dim> v, vector_view<S, Dim> out, vector_view<S, Dim> scratch,
        const exp_options& opts = {}, Boundary = {});

/// exp(v) as a new field on `v`'s grid.
template <class Boundary = boundary::border, class S, int Dim, class Backend>
vector_field<S, Dim, Backend> exp(const vector_field<S, Dim, Backend>& v,
                                  const exp_options& opts = {}, Boundary = {});

/// Evidence that an exponential is a usable diffeomorphism, in voxel units.
struct exp_certificate {
  int squarings;              ///< N used
  double min_jacobian;        ///< min over the grid of det(I + D exp(v)) (central differences
  double max_jacobian;        ///<   inside, one-sided on the border voxels), and the max
  double inverse_max_error;   ///< max over the grid of |compose(exp(v), exp(−v))|
  double inverse_mean_error;  ///< mean over the grid of the same
};

/// An exponential and its certificate.
template <class S, int Dim, class Backend>
struct exp_result {
  vector_field<S, Dim, Backend> field;
  exp_certificate certificate;
};

/// exp(v) with its certificate: costs a second exponential (of −v, same N) and two
/// reductions (the Jacobian by `jacobian_stats_of`, central differences in voxel units; the
/// composition computed on the fly), so two extra fields.
template <class Boundary = boundary::border, class S, int Dim, class Backend>
exp_result<S, Dim, Backend> exp_certified(const vector_field<S, Dim, Backend>& v,
                                          const exp_options& opts = {}, Boundary = {});

/// Vector-Jacobian product of `exp`: given `grad_out` = ∂L/∂exp(v), writes ∂L/∂v into
/// `grad_v`. N is chosen as in `exp` and held fixed (the automatic N is piecewise constant
/// in v); `opts.memory` trades memory for recomputation; `mode` is the scatter's mode.
template <class Boundary = boundary::border, class Backend, class V, class G, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<V>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<G>, vec<S, Dim>>
void exp_vjp(Backend be, field_view<V, Dim> v, field_view<G, Dim> grad_out,
             vector_view<S, Dim> grad_v, const exp_options& opts = {}, Boundary = {},
             scatter_mode mode = scatter_mode::atomic);

/// ∂L/∂v of `exp` as a new field.
template <class Boundary = boundary::border, class S, int Dim, class Backend>
vector_field<S, Dim, Backend> exp_vjp(const vector_field<S, Dim, Backend>& v,
                                      const vector_field<S, Dim, Backend>& grad_out,
                                      const exp_options& opts = {}, Boundary = {},
                                      scatter_mode mode = scatter_mode::atomic);

// ------------------------------------------------------------------------------------------

namespace detail {

inline void require_squarings(int n, const std::string& where) {
  if (n < 0 || n > exp_squarings_limit)
    throw value_error(where + ": expected 0 <= N <= " + std::to_string(exp_squarings_limit) +
                      ", got " + std::to_string(n));
}

/// out = s·v.
template <class S, int Dim>
struct scaled_copy_kernel {
  const_vector_view<S, Dim> v;
  vector_view<S, Dim> out;
  S s;
  DIFFEO_HD void operator()(index_t i) const { out[i] = v[i] * s; }
};

template <class Backend, class S, int Dim>
int exp_count(Backend be, const_vector_view<S, Dim> v, const exp_options& opts,
              const std::string& fn) {
  require_squarings(opts.max_squarings, fn + "(max_squarings)");
  if (opts.squarings) {
    require_squarings(*opts.squarings, fn + "(squarings)");
    return *opts.squarings;
  }
  const norm_stats st = transform_reduce(be, v.points(), norm_stats{0.0, 0.0, 0},
                                         vector_norm_map<S, Dim>{v}, norm_stats_op{});
  if (st.nonfinite > 0)
    throw value_error(fn + "(v): " + std::to_string(st.nonfinite) +
                      " non-finite vector(s); the automatic number of squarings needs a finite "
                      "field");
  return auto_squarings(st.max, opts.max_squarings);
}

/// One squaring pass: out = compose(w, w).
template <class Boundary, class Backend, class S, int Dim>
void square_pass(Backend be, const_vector_view<S, Dim> w, vector_view<S, Dim> out) {
  for_each_point(be, w.ext, compose_kernel<Boundary, S, Dim>{w, w, out, S(1), S(1)});
}

/// `n` squarings of s·v, landing in `out`: pass k writes `out` when n − k is even.
template <class Boundary, class Backend, class S, int Dim>
void run_squarings(Backend be, const_vector_view<S, Dim> v, vector_view<S, Dim> out,
                   vector_view<S, Dim> scratch, int n, S s) {
  if (n == 0) {
    for_each_index(be, v.points(), scaled_copy_kernel<S, Dim>{v, out, s});
    return;
  }
  vector_view<S, Dim> dst = n % 2 == 1 ? out : scratch;
  for_each_point(be, v.ext, compose_kernel<Boundary, S, Dim>{v, v, dst, s, s});
  for (int k = 2; k <= n; ++k) {
    const vector_view<S, Dim> src = dst;
    dst = src.data == out.data ? scratch : out;
    square_pass<Boundary>(be, as_const(src), dst);
  }
}

/// ±2⁻ᴺ, exactly.
template <class S>
S exp_scale(int n, bool inverse) {
  const S s = std::ldexp(S(1), -n);
  return inverse ? -s : s;
}

/// One step of the backward pass: g_prev = ∂L/∂w_{k−1} from g = ∂L/∂w_k, where
/// w_k = compose(a, a): the pointwise term g + (∇a)ᵀg at p + a(p) plus the scatter of g.
template <class Boundary, class Backend, class S, int Dim>
void square_vjp(Backend be, const_vector_view<S, Dim> a, const_vector_view<S, Dim> g,
                vector_view<S, Dim> g_prev, scatter_mode mode) {
  for_each_point(be, a.ext, compose_grad_v_kernel<Boundary, S, Dim>{a, a, g, g_prev});
  compose_scatter<Boundary>(be, a, g, g_prev, mode);
}

}  // namespace detail

inline int auto_squarings(double max_norm, int max_squarings) {
  detail::require_squarings(max_squarings, "auto_squarings(max_squarings)");
  if (std::isnan(max_norm) || max_norm < 0)
    throw value_error("auto_squarings(max_norm): expected a length >= 0, got " +
                      std::to_string(max_norm));
  // ITK: numiter = (unsigned)(2 + 0.5·log₂(max|v|²) + 1) when that is >= 1, else 0.
  const double x = max_norm > 0 ? 3.0 + std::log2(max_norm) : 0.0;
  if (x < 1) return 0;
  return x >= max_squarings ? max_squarings : static_cast<int>(x);
}

template <class Backend, class V, int Dim>
int exp_squarings(Backend be, field_view<V, Dim> v, const exp_options& opts) {
  detail::require_vector_view(v, "exp_squarings(v)");
  return detail::exp_count(be, as_const(v), opts, "exp_squarings");
}

template <class Boundary, class Backend, class V, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<V>, vec<S, Dim>>
int exp(Backend be, field_view<V, Dim> v, vector_view<S, Dim> out, vector_view<S, Dim> scratch,
        const exp_options& opts, Boundary) {
  detail::require_vector_view(v, "exp(v)");
  detail::require_vector_view(out, "exp(out)");
  detail::require_vector_view(scratch, "exp(scratch)");
  require_same_extents(v, out, "exp(v, out)");
  require_same_extents(v, scratch, "exp(v, scratch)");
  detail::require_no_alias(out, v, "exp(v, out)");
  detail::require_no_alias(scratch, v, "exp(v, scratch)");
  detail::require_no_alias(out, scratch, "exp(out, scratch)");
  const int n = detail::exp_count(be, as_const(v), opts, "exp");
  detail::run_squarings<Boundary>(be, as_const(v), out, scratch, n,
                                  detail::exp_scale<S>(n, opts.inverse));
  return n;
}

template <class Boundary, class S, int Dim, class Backend>
vector_field<S, Dim, Backend> exp(const vector_field<S, Dim, Backend>& v,
                                  const exp_options& opts, Boundary) {
  vector_field<S, Dim, Backend> out(v.geometry()), scratch(v.geometry());
  exp(Backend{}, v.view(), out.view(), scratch.view(), opts, Boundary{});
  return out;
}

template <class Boundary, class S, int Dim, class Backend>
exp_result<S, Dim, Backend> exp_certified(const vector_field<S, Dim, Backend>& v,
                                          const exp_options& opts, Boundary) {
  using F = vector_field<S, Dim, Backend>;
  const Backend be{};
  detail::require_vector_view(v.view(), "exp_certified(v)");
  const int n = detail::exp_count(be, v.view(), opts, "exp_certified");
  exp_result<S, Dim, Backend> r{F(v.geometry()), {}};
  F opposite(v.geometry()), scratch(v.geometry());
  detail::run_squarings<Boundary>(be, v.view(), r.field.view(), scratch.view(), n,
                                  detail::exp_scale<S>(n, opts.inverse));
  detail::run_squarings<Boundary>(be, v.view(), opposite.view(), scratch.view(), n,
                                  detail::exp_scale<S>(n, !opts.inverse));
  const jacobian_stats jr = jacobian_stats_of(be, as_const(r.field.view()));
  const auto ic =
      detail::compose_norm_stats<Boundary>(be, as_const(r.field.view()), as_const(opposite.view()));
  const double nan = std::nan("");
  r.certificate.squarings = n;
  r.certificate.min_jacobian = jr.nonfinite ? nan : jr.min;
  r.certificate.max_jacobian = jr.nonfinite ? nan : jr.max;
  r.certificate.inverse_max_error = ic.nonfinite ? nan : ic.max;
  r.certificate.inverse_mean_error = ic.nonfinite ? nan : ic.sum / double(v.points());
  return r;
}

template <class Boundary, class Backend, class V, class G, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<V>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<G>, vec<S, Dim>>
void exp_vjp(Backend be, field_view<V, Dim> v, field_view<G, Dim> grad_out,
             vector_view<S, Dim> grad_v, const exp_options& opts, Boundary,
             scatter_mode mode) {
  using F = vector_field<S, Dim, Backend>;
  using view_t = vector_view<S, Dim>;
  detail::require_vector_view(v, "exp_vjp(v)");
  detail::require_vector_view(grad_out, "exp_vjp(grad_out)");
  detail::require_vector_view(grad_v, "exp_vjp(grad_v)");
  require_same_extents(v, grad_out, "exp_vjp(v, grad_out)");
  require_same_extents(v, grad_v, "exp_vjp(v, grad_v)");
  detail::require_no_alias(grad_v, v, "exp_vjp(v, grad_v)");
  detail::require_no_alias(grad_v, grad_out, "exp_vjp(grad_out, grad_v)");
  const int n = detail::exp_count(be, as_const(v), opts, "exp_vjp");
  const S s = detail::exp_scale<S>(n, opts.inverse);
  if (n == 0) {
    for_each_index(be, v.points(),
                   detail::scaled_copy_kernel<S, Dim>{as_const(grad_out), grad_v, s});
    return;
  }
  const grid<Dim> g = v.geometry();
  // Checkpoints hold w_{j·c}; the states between are rebuilt in two scratch fields.
  const int c = opts.memory == exp_memory::store       ? 1
                : opts.memory == exp_memory::recompute ? n
                                                       : static_cast<int>(std::ceil(std::sqrt(n)));
  const int last = (n - 1) / c * c;
  std::vector<F> checkpoints;
  checkpoints.reserve(static_cast<std::size_t>(last / c + 1));
  F tmp[2];
  if (c > 1) tmp[0] = F(g), tmp[1] = F(g);
  const auto other_tmp = [&](const view_t& cur) {
    return cur.data == tmp[0].data() ? tmp[1].view() : tmp[0].view();
  };
  view_t cur = checkpoints.emplace_back(g).view();
  for_each_index(be, v.points(), detail::scaled_copy_kernel<S, Dim>{as_const(v), cur, s});
  for (int k = 1; k <= last; ++k) {
    const view_t dst = k % c == 0 ? checkpoints.emplace_back(g).view() : other_tmp(cur);
    detail::square_pass<Boundary>(be, as_const(cur), dst);
    cur = dst;
  }

  F grads[2];
  if (n > 1) grads[0] = F(g), grads[1] = F(g);
  for (int k = n; k >= 1; --k) {
    // w_{k−1}, from the nearest checkpoint at or below it.
    const int j = (k - 1) / c;
    view_t a = checkpoints[static_cast<std::size_t>(j)].view();
    for (int m = j * c + 1; m <= k - 1; ++m) {
      const view_t dst = other_tmp(a);
      detail::square_pass<Boundary>(be, as_const(a), dst);
      a = dst;
    }
    const const_vector_view<S, Dim> gk = k == n ? as_const(grad_out) : grads[k % 2].view();
    const view_t g_prev = k == 1 ? grad_v : grads[(k - 1) % 2].view();
    detail::square_vjp<Boundary>(be, as_const(a), gk, g_prev, mode);
  }
  // w₀ = s·v, so ∂L/∂v = s·∂L/∂w₀.
  for_each_index(be, v.points(), detail::scaled_copy_kernel<S, Dim>{as_const(grad_v), grad_v, s});
}

template <class Boundary, class S, int Dim, class Backend>
vector_field<S, Dim, Backend> exp_vjp(const vector_field<S, Dim, Backend>& v,
                                      const vector_field<S, Dim, Backend>& grad_out,
                                      const exp_options& opts, Boundary, scatter_mode mode) {
  vector_field<S, Dim, Backend> grad_v(v.geometry());
  exp_vjp(Backend{}, v.view(), grad_out.view(), grad_v.view(), opts, Boundary{}, mode);
  return grad_v;
}

}  // namespace diffeo
