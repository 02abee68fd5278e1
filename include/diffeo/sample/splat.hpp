#pragma once
/// Forward warp (push-forward, splatting) of an image by a displacement field, and its
/// vector-Jacobian products with respect to the image, the displacement and the metric.
///
///   every source pixel p carries src(p) to q = p + u(p) and shares it among the grid
///   points around q with bilinear (2D) / trilinear (3D) weights b(q, t)
///
///   sum      out(t) = Σ_p b(p + u(p), t) src(p)
///   average  out(t) = Σ_p w_pt src(p) / Σ_p w_pt,  w_pt = b(p + u(p), t)
///   linear   the same with w_pt = b(p + u(p), t) · max(Z(p), 0)
///   softmax  the same with w_pt = b(p + u(p), t) · exp(Z(p) − M(t))
///
/// Source and target grids are one grid (that of `u`). `Z` is a one-channel importance
/// metric per source; `M(t)` is the largest `Z` among the sources that reach `t` (it
/// cancels, and keeps exp finite). Softmax splatting: Niklaus & Liu, "Softmax Splatting for
/// Video Frame Interpolation", CVPR 2020. Targets of zero total weight read 0; sources with
/// a non-finite displacement or metric are dropped. Details: docs/splat.md.

#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>

#include "../core/backend.hpp"
#include "../core/field.hpp"
#include "../core/scatter.hpp"
#include "interpolate.hpp"

namespace diffeo {

/// How splatted contributions that meet at a target combine.
enum class splat_mode {
  sum,      ///< plain sum of bilinearly weighted values (mass-conserving; adjoint of warp)
  average,  ///< weighted values divided by the sum of weights
  linear,   ///< weights times a per-source metric Z ≥ 0 (negative Z counts as 0), normalized
  softmax   ///< weights times exp(Z), normalized; stable for large Z (Niklaus & Liu 2020)
};

/// Options of `splat` and `splat_vjp`.
struct splat_options {
  splat_mode mode = splat_mode::sum;
  /// `deterministic` gives bitwise-reproducible results on every backend (slower).
  scatter_mode scatter = scatter_mode::atomic;
};

/// Name of a splat mode ("sum", "average", "linear", "softmax").
inline const char* to_string(splat_mode m);

/// Splats `src` forward through `u` into `out` (all three on one grid; `out` has the
/// channels of `src`) in mode `sum` or `average`. Views may be const or not; `out` must not
/// overlap the inputs.
template <class Backend, class Src, class U, class T, int Dim>
  requires std::is_floating_point_v<T> && std::is_same_v<std::remove_const_t<Src>, T> &&
           is_vector_element<U, Dim>
void splat(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u, field_view<T, Dim> out,
           splat_options opts = {});

/// Splats `src` forward through `u` into `out`, weighting sources by the one-channel
/// `metric` in modes `linear` and `softmax` (`sum` and `average` ignore it).
template <class Backend, class Src, class U, class Z, class T, int Dim>
  requires std::is_floating_point_v<T> && std::is_same_v<std::remove_const_t<Src>, T> &&
           std::is_same_v<std::remove_const_t<Z>, T> && is_vector_element<U, Dim>
void splat(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u, field_view<Z, Dim> metric,
           field_view<T, Dim> out, splat_options opts = {});

/// `src` splatted through `u` (mode `sum` or `average`), as a new field on `u`'s grid.
template <class T, class S, int Dim, class Backend>
field<T, Dim, Backend> splat(const field<T, Dim, Backend>& src,
                             const vector_field<S, Dim, Backend>& u, splat_options opts = {});

/// `src` splatted through `u` with the per-source `metric`, as a new field on `u`'s grid.
template <class T, class S, int Dim, class Backend>
field<T, Dim, Backend> splat(const field<T, Dim, Backend>& src,
                             const vector_field<S, Dim, Backend>& u,
                             const field<T, Dim, Backend>& metric, splat_options opts = {});

/// Vector-Jacobian products of `splat`: given `grad_out` = ∂L/∂out, overwrites `grad_src`
/// with ∂L/∂src, `grad_u` with ∂L/∂u and `grad_metric` with ∂L/∂Z (each may be an empty
/// view to skip it). The forward's normalizers are recomputed (with `opts.scatter`); the
/// gradients themselves are per-source gathers, deterministic on every backend.
template <class Backend, class Src, class U, class Z, class G, class T, class S, int Dim>
  requires std::is_floating_point_v<T> && std::is_same_v<std::remove_const_t<Src>, T> &&
           std::is_same_v<std::remove_const_t<Z>, T> && std::is_same_v<std::remove_const_t<G>, T> &&
           std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void splat_vjp(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u,
               field_view<Z, Dim> metric, field_view<G, Dim> grad_out,
               field_view<T, Dim> grad_src, vector_view<S, Dim> grad_u,
               field_view<T, Dim> grad_metric, splat_options opts = {});

/// Vector-Jacobian products of `splat` in mode `sum` or `average` (no metric).
template <class Backend, class Src, class U, class G, class T, class S, int Dim>
  requires std::is_floating_point_v<T> && std::is_same_v<std::remove_const_t<Src>, T> &&
           std::is_same_v<std::remove_const_t<G>, T> &&
           std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void splat_vjp(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u,
               field_view<G, Dim> grad_out, field_view<T, Dim> grad_src,
               vector_view<S, Dim> grad_u, splat_options opts = {});

// ------------------------------------------------------------------------------------------

inline const char* to_string(splat_mode m) {
  switch (m) {
    case splat_mode::sum: return "sum";
    case splat_mode::average: return "average";
    case splat_mode::linear: return "linear";
    case splat_mode::softmax: return "softmax";
  }
  return "invalid";
}

namespace detail {

/// `*p = max(*p, v)` safely against concurrent updates. Max is order-independent, so the
/// result is the same whatever the interleaving.
template <class T>
DIFFEO_HD void atomic_max(T* p, T v) {
#if defined(__CUDA_ARCH__)
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomic_max on float or double");
  if constexpr (sizeof(T) == 4) {
    auto* a = reinterpret_cast<unsigned int*>(p);
    unsigned int old = *a, assumed;
    do {
      assumed = old;
      if (!(__uint_as_float(assumed) < v)) return;
      old = atomicCAS(a, assumed, __float_as_uint(v));
    } while (old != assumed);
  } else {
    auto* a = reinterpret_cast<unsigned long long*>(p);
    unsigned long long old = *a, assumed;
    do {
      assumed = old;
      if (!(__longlong_as_double(static_cast<long long>(assumed)) < v)) return;
      old = atomicCAS(a, assumed, static_cast<unsigned long long>(__double_as_longlong(v)));
    } while (old != assumed);
  }
#else
  std::atomic_ref<T> a(*p);
  T cur = a.load(std::memory_order_relaxed);
  while (cur < v && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
#endif
}

/// What a source's metric does to its weights; one struct for every mode so that the
/// forward, the max pass and the VJP agree on which sources count.
template <class T>
struct splat_metric {
  splat_mode mode;
  const T* z;    // null in modes sum and average
  const T* max;  // M(t); null unless softmax
  /// False for a source that is dropped (non-finite metric).
  DIFFEO_HD bool usable(index_t s) const {
    using std::isfinite;
    return z == nullptr || isfinite(z[s]);
  }
  /// The factor e_st multiplying the bilinear weight of source s at target t. In softmax
  /// mode the exponent is clamped at 0: it is ≤ 0 anyway for every tap of positive weight
  /// (M(t) includes s); only zero-weight taps in the VJP (on grid lines) can exceed it.
  DIFFEO_HD T factor(index_t s, index_t t) const {
    using std::exp;
    switch (mode) {
      case splat_mode::linear: return z[s] > T(0) ? z[s] : T(0);
      case splat_mode::softmax: {
        const T d = z[s] - max[t];
        return d < T(0) ? exp(d) : T(1);
      }
      default: return T(1);
    }
  }
  /// ∂e_st/∂Z_s, given e = e_st (linear: 1 where Z ≥ 0; softmax: e itself).
  DIFFEO_HD T dfactor(index_t s, T e) const {
    switch (mode) {
      case splat_mode::linear: return z[s] >= T(0) ? T(1) : T(0);
      case splat_mode::softmax: return e;
      default: return T(0);
    }
  }
};

/// Position of source `s` after displacement.
template <class S, int Dim>
DIFFEO_HD vec<S, Dim> splat_position(const extents<Dim>& ext, const vec<S, Dim>* u, index_t s) {
  return ext.unravel(s).template cast<S>() + u[s];
}

/// Pass 1 of softmax: M(t) = max Z(s) over the sources s whose bilinear weight at t is > 0.
template <class T, class S, int Dim, bool Atomic>
struct splat_max_kernel {
  extents<Dim> ext;
  const vec<S, Dim>* u;
  const T* z;
  T* max;
  DIFFEO_HD void operator()(index_t s) const {
    using std::isfinite;
    const T zs = z[s];
    if (!isfinite(zs)) return;
    for_each_tap<interp::linear, boundary::zeros>(
        ext, splat_position(ext, u, s), [&](index_t t, S b) {
          if (!(T(b) > T(0))) return;
          if constexpr (Atomic)
            atomic_max(max + t, zs);
          else if (max[t] < zs)
            max[t] = zs;
        });
  }
};

/// The taps of source `s` for `scatter_add`: bilinear weight times the metric factor;
/// zero-weight taps are left out, so no 0·inf reaches a target nobody splats to.
template <class T, class S, int Dim>
struct splat_taps {
  static constexpr int K = 1 << Dim;
  extents<Dim> ext;
  const vec<S, Dim>* u;
  splat_metric<T> metric;
  DIFFEO_HD void operator()(index_t s, index_t* idx, T* w) const {
    for (int k = 0; k < K; ++k) idx[k] = -1, w[k] = T(0);
    if (!metric.usable(s)) return;
    int k = 0;
    for_each_tap<interp::linear, boundary::zeros>(
        ext, splat_position(ext, u, s), [&](index_t t, S b) {
          const T bt = T(b);
          if (!(bt > T(0))) return;
          const T wt = bt * metric.factor(s, t);
          if (!(wt > T(0))) return;
          idx[k] = t;
          w[k] = wt;
          ++k;
        });
  }
};

/// Channel `c` of source `s`; one channel past the last reads 1, so that in the normalized
/// modes the same scatter accumulates the normalizer Σ w beside the weighted values.
template <class T>
struct splat_values {
  const T* data;
  int channels;
  DIFFEO_HD T operator()(index_t s, int c) const {
    return c < channels ? data[s * channels + c] : T(1);
  }
};

/// out(t) = N(t) / D(t), or 0 where D(t) = 0; `acc` holds N then D per target.
template <class T>
struct splat_normalize_kernel {
  const T* acc;
  T* out;
  int channels;
  DIFFEO_HD void operator()(index_t t) const {
    const T* a = acc + t * (channels + 1);
    const T d = a[channels];
    T* o = out + t * channels;
    for (int c = 0; c < channels; ++c) o[c] = d > T(0) ? a[c] / d : T(0);
  }
};

/// VJP preparation for the normalized modes, in place on the accumulator: with
/// out = N / D, writes H_c = G_c / D and h = Σ_c H_c out_c (both 0 where D = 0), so that
/// ∂L/∂w_st = Σ_c H_tc src_sc − h_t.
template <class T>
struct splat_vjp_prepare_kernel {
  T* acc;
  const T* grad_out;
  int channels;
  DIFFEO_HD void operator()(index_t t) const {
    T* a = acc + t * (channels + 1);
    const T* g = grad_out + t * channels;
    const T d = a[channels];
    T h = 0;
    for (int c = 0; c < channels; ++c) {
      const T hc = d > T(0) ? g[c] / d : T(0);
      h += hc * (d > T(0) ? a[c] / d : T(0));
      a[c] = hc;
    }
    a[channels] = h;
  }
};

/// Per-source gradients. With weights w_st = b_st e_st and A_st = Σ_c H_tc src_sc − h_t:
///   ∂L/∂src_sc = Σ_t w_st H_tc,  ∂L/∂u_s = Σ_t A_st e_st ∂b_st/∂q,  ∂L/∂Z_s = Σ_t A_st b_st ∂e_st/∂Z_s.
/// (Sum mode: H = grad_out, h = 0, e = 1.) Every output of source s is written by s alone.
template <class T, class S, int Dim>
struct splat_vjp_kernel {
  field_view<const T, Dim> src;
  const vec<S, Dim>* u;
  splat_metric<T> metric;
  const T* H;
  int stride;  // per target: H at [t * stride, + channels), h at [t * stride + channels]
  bool has_h;
  T* grad_src;
  vec<S, Dim>* grad_u;
  T* grad_metric;
  DIFFEO_HD void operator()(index_t s, const index_vec<Dim>& p) const {
    const int C = src.channels;
    const T* I = src.at(s);
    T* gs = grad_src ? grad_src + s * C : nullptr;
    if (gs)
      for (int c = 0; c < C; ++c) gs[c] = T(0);
    vec<S, Dim> gu = vec<S, Dim>::zero();
    T gz = 0;
    if (metric.usable(s)) {
      // Zero-weight taps (on grid lines) still carry ∂b/∂q: the one-sided derivative, as in
      // warp_vjp.
      for_each_tap<interp::linear, boundary::zeros>(
          src.ext, p.template cast<S>() + u[s], [&](index_t t, S b, const vec<S, Dim>& db) {
            const T* Ht = H + t * stride;
            const T e = metric.factor(s, t);
            const T w = T(b) * e;
            T A = has_h ? -Ht[C] : T(0);
            for (int c = 0; c < C; ++c) A += Ht[c] * I[c];
            if (gs)
              for (int c = 0; c < C; ++c) gs[c] += w * Ht[c];
            const T Ae = A * e;
            for (int k = 0; k < Dim; ++k) gu[k] += S(Ae * T(db[k]));
            gz += A * T(b) * metric.dfactor(s, e);
          });
    }
    if (grad_u) grad_u[s] = gu;
    if (grad_metric) grad_metric[s] = gz;
  }
};

inline bool splat_normalized(splat_mode m) { return m != splat_mode::sum; }
inline bool splat_uses_metric(splat_mode m) {
  return m == splat_mode::linear || m == splat_mode::softmax;
}

/// True when the element ranges of two views overlap (std::less: a total order on pointers).
template <class A, class B>
bool views_overlap(const A& a, const B& b) {
  if (a.data == nullptr || b.data == nullptr) return false;
  const auto* a0 = reinterpret_cast<const unsigned char*>(a.data);
  const auto* b0 = reinterpret_cast<const unsigned char*>(b.data);
  const auto* a1 = a0 + a.size() * sizeof(*a.data);
  const auto* b1 = b0 + b.size() * sizeof(*b.data);
  const std::less<const unsigned char*> lt;
  return lt(a0, b1) && lt(b0, a1);
}

template <class V>
void require_splat_metric(const V& metric, const extents<V::rank>& ext, splat_mode mode,
                          const std::string& fn) {
  if (!splat_uses_metric(mode)) return;
  if (metric.data == nullptr)
    throw value_error(fn + "(metric): mode " + to_string(mode) +
                      " needs a one-channel metric per source, got an empty view");
  if (!(metric.ext == ext))
    throw shape_error(fn + "(u, metric): extents differ (" + to_string(ext) + " vs " +
                      to_string(metric.ext) + ")");
  if (metric.channels != 1)
    throw shape_error(fn + "(metric): expected one channel, got " +
                      std::to_string(metric.channels));
}

inline void require_splat_mode(splat_mode mode, const std::string& fn) {
  if (mode != splat_mode::sum && mode != splat_mode::average && mode != splat_mode::linear &&
      mode != splat_mode::softmax)
    throw value_error(fn + "(options): unknown splat_mode " +
                      std::to_string(static_cast<int>(mode)));
}

/// The forward's scatter passes. Sum mode adds into `target` (`channels` per point, zeroed
/// here); the normalized modes add values and the normalizer into `target` with
/// `channels + 1` per point. `max` (softmax) receives M(t).
template <class Backend, class T, class S, int Dim>
void splat_accumulate(Backend be, const T* src, int channels, const extents<Dim>& ext,
                      const vec<S, Dim>* u, const T* z, T* max, T* target,
                      const splat_options& opts) {
  const index_t n = ext.count();
  const bool normalized = splat_normalized(opts.mode);
  const int width = channels + (normalized ? 1 : 0);
  fill_n(be, target, n * width, T(0));
  if (opts.mode == splat_mode::softmax) {
    fill_n(be, max, n, -std::numeric_limits<T>::infinity());
    constexpr bool atomic = !std::is_same_v<Backend, backend::serial>;
    for_each_index(be, n, splat_max_kernel<T, S, Dim, atomic>{ext, u, z, max});
  }
  const splat_metric<T> metric{opts.mode, splat_uses_metric(opts.mode) ? z : nullptr,
                               opts.mode == splat_mode::softmax ? max : nullptr};
  using taps_t = splat_taps<T, S, Dim>;
  scatter_add<taps_t::K>(be, n, taps_t{ext, u, metric}, splat_values<T>{src, channels}, target,
                         n, width, opts.scatter);
}

}  // namespace detail

template <class Backend, class Src, class U, class Z, class T, int Dim>
  requires std::is_floating_point_v<T> && std::is_same_v<std::remove_const_t<Src>, T> &&
           std::is_same_v<std::remove_const_t<Z>, T> && is_vector_element<U, Dim>
void splat(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u, field_view<Z, Dim> metric,
           field_view<T, Dim> out, splat_options opts) {
  using S = scalar_of<U>;
  detail::require_splat_mode(opts.mode, "splat");
  require_valid(u, "splat(u)");
  require_valid(src, "splat(src)");
  require_valid(out, "splat(out)");
  require_same_extents(u, src, "splat(u, src)");
  require_same_extents(u, out, "splat(u, out)");
  require_same_channels(src, out, "splat(src, out)");
  detail::require_splat_metric(metric, u.ext, opts.mode, "splat");
  if (detail::views_overlap(out, src) || detail::views_overlap(out, u) ||
      (detail::splat_uses_metric(opts.mode) && detail::views_overlap(out, metric)))
    throw value_error("splat(out): overlaps an input; splatting cannot run in place");

  const auto* uu = reinterpret_cast<const vec<S, Dim>*>(u.data);
  const T* z = detail::splat_uses_metric(opts.mode) ? metric.data : nullptr;
  const index_t n = u.points();
  const int C = src.channels;
  field<T, 2, Backend> max;
  if (opts.mode == splat_mode::softmax) max = field<T, 2, Backend>(make_extents(n, 1));
  if (!detail::splat_normalized(opts.mode)) {
    detail::splat_accumulate(be, src.data, C, u.ext, uu, z, max.data(), out.data, opts);
    return;
  }
  field<T, 2, Backend> acc(make_extents(n, 1), C + 1);
  detail::splat_accumulate(be, src.data, C, u.ext, uu, z, max.data(), acc.data(), opts);
  for_each_index(be, n, detail::splat_normalize_kernel<T>{acc.data(), out.data, C});
}

template <class Backend, class Src, class U, class T, int Dim>
  requires std::is_floating_point_v<T> && std::is_same_v<std::remove_const_t<Src>, T> &&
           is_vector_element<U, Dim>
void splat(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u, field_view<T, Dim> out,
           splat_options opts) {
  splat(be, src, u, field_view<const T, Dim>{}, out, opts);
}

template <class T, class S, int Dim, class Backend>
field<T, Dim, Backend> splat(const field<T, Dim, Backend>& src,
                             const vector_field<S, Dim, Backend>& u,
                             const field<T, Dim, Backend>& metric, splat_options opts) {
  // Checked before allocating, so a bad src reports itself rather than the output.
  require_same_extents(u.view(), src.view(), "splat(u, src)");
  field<T, Dim, Backend> out(u.geometry(), src.channels());
  splat(Backend{}, src.view(), u.view(), metric.view(), out.view(), opts);
  return out;
}

template <class T, class S, int Dim, class Backend>
field<T, Dim, Backend> splat(const field<T, Dim, Backend>& src,
                             const vector_field<S, Dim, Backend>& u, splat_options opts) {
  require_same_extents(u.view(), src.view(), "splat(u, src)");
  field<T, Dim, Backend> out(u.geometry(), src.channels());
  splat(Backend{}, src.view(), u.view(), field_view<const T, Dim>{}, out.view(), opts);
  return out;
}

template <class Backend, class Src, class U, class Z, class G, class T, class S, int Dim>
  requires std::is_floating_point_v<T> && std::is_same_v<std::remove_const_t<Src>, T> &&
           std::is_same_v<std::remove_const_t<Z>, T> && std::is_same_v<std::remove_const_t<G>, T> &&
           std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void splat_vjp(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u,
               field_view<Z, Dim> metric, field_view<G, Dim> grad_out,
               field_view<T, Dim> grad_src, vector_view<S, Dim> grad_u,
               field_view<T, Dim> grad_metric, splat_options opts) {
  detail::require_splat_mode(opts.mode, "splat_vjp");
  require_valid(u, "splat_vjp(u)");
  require_valid(src, "splat_vjp(src)");
  require_valid(grad_out, "splat_vjp(grad_out)");
  require_same_extents(u, src, "splat_vjp(u, src)");
  require_same_extents(u, grad_out, "splat_vjp(u, grad_out)");
  require_same_channels(src, grad_out, "splat_vjp(src, grad_out)");
  detail::require_splat_metric(metric, u.ext, opts.mode, "splat_vjp");
  if (grad_src.data != nullptr) {
    require_same_extents(u, grad_src, "splat_vjp(u, grad_src)");
    require_same_channels(src, grad_src, "splat_vjp(src, grad_src)");
  }
  if (grad_u.data != nullptr) require_same_extents(u, grad_u, "splat_vjp(u, grad_u)");
  if (grad_metric.data != nullptr) {
    require_same_extents(u, grad_metric, "splat_vjp(u, grad_metric)");
    if (grad_metric.channels != 1)
      throw shape_error("splat_vjp(grad_metric): expected one channel, got " +
                        std::to_string(grad_metric.channels));
  }
  const bool uses_metric = detail::splat_uses_metric(opts.mode);
  const auto overlaps_input = [&](const auto& g) {
    return detail::views_overlap(g, src) || detail::views_overlap(g, u) ||
           detail::views_overlap(g, grad_out) || (uses_metric && detail::views_overlap(g, metric));
  };
  if (overlaps_input(grad_src) || overlaps_input(grad_u) || overlaps_input(grad_metric) ||
      detail::views_overlap(grad_src, grad_u) || detail::views_overlap(grad_src, grad_metric) ||
      detail::views_overlap(grad_u, grad_metric))
    throw value_error("splat_vjp(grad_src, grad_u, grad_metric): outputs overlap each other or "
                      "an input");
  if (!grad_src.data && !grad_u.data && !grad_metric.data) return;

  const auto* uu = reinterpret_cast<const vec<S, Dim>*>(u.data);
  const T* z = uses_metric ? metric.data : nullptr;
  const index_t n = u.points();
  const int C = src.channels;
  field<T, 2, Backend> max, acc;
  if (opts.mode == splat_mode::softmax) max = field<T, 2, Backend>(make_extents(n, 1));
  const T* H = grad_out.data;
  int stride = C;
  if (detail::splat_normalized(opts.mode)) {
    acc = field<T, 2, Backend>(make_extents(n, 1), C + 1);
    detail::splat_accumulate(be, src.data, C, u.ext, uu, z, max.data(), acc.data(), opts);
    for_each_index(be, n, detail::splat_vjp_prepare_kernel<T>{acc.data(), grad_out.data, C});
    H = acc.data();
    stride = C + 1;
  }
  const detail::splat_metric<T> m{opts.mode, z,
                                  opts.mode == splat_mode::softmax ? max.data() : nullptr};
  // Sum and average have no metric: their metric gradient is zero.
  for_each_point(be, u.ext,
                 detail::splat_vjp_kernel<T, S, Dim>{as_const(src), uu, m, H, stride,
                                                     detail::splat_normalized(opts.mode),
                                                     grad_src.data, grad_u.data,
                                                     grad_metric.data});
}

template <class Backend, class Src, class U, class G, class T, class S, int Dim>
  requires std::is_floating_point_v<T> && std::is_same_v<std::remove_const_t<Src>, T> &&
           std::is_same_v<std::remove_const_t<G>, T> &&
           std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void splat_vjp(Backend be, field_view<Src, Dim> src, field_view<U, Dim> u,
               field_view<G, Dim> grad_out, field_view<T, Dim> grad_src,
               vector_view<S, Dim> grad_u, splat_options opts) {
  splat_vjp(be, src, u, field_view<const T, Dim>{}, grad_out, grad_src, grad_u,
            field_view<T, Dim>{}, opts);
}

}  // namespace diffeo
