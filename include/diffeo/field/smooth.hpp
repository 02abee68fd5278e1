#pragma once
/// Gaussian smoothing of images (any channel count) and vector fields, separable (one 1D
/// pass per axis), with its exact adjoint.
///
///   auto s = smooth(u, gaussian_kernel<2>(1.5));                         // σ = 1.5 voxels
///   smooth(be, in, out, gaussian_kernel<3>({{1, 1, 2}}, length_units::physical),
///          boundary::reflection{});
///
/// The kernel along axis a is w_k ∝ exp(-k² / (2σ_a²)) for |k| ≤ r_a = ceil(truncate σ_a),
/// normalized to sum 1, with σ_a in voxels (σ / spacing_a when given in physical units).
/// The default truncate = 4 is scipy.ndimage's. Taps off the grid follow the boundary
/// policy of sample/boundary.hpp: `zeros` reads 0 (the kernel is not renormalized, so
/// values fade near the border), `border` repeats the edge voxel (ITK's zero-flux Neumann,
/// scipy's 'nearest'), `reflection` mirrors about the edge voxel centres (scipy's
/// 'mirror'); the last two preserve constants.
///
/// Smoothing is linear; `smooth_vjp` applies its transpose S^T. With `zeros` the symmetric
/// kernel makes S self-adjoint; with `border` or `reflection` it is not, and the transpose
/// gathers the folded taps exactly. Vector fields are smoothed component by component.

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/backend.hpp"
#include "../core/detail/avx2.hpp"
#include "../core/detail/thread_scratch.hpp"
#include "../core/field.hpp"
#include "../sample/boundary.hpp"

namespace diffeo {

/// Units of a length given to a field op: voxels, or the grid's physical units (spacing).
enum class length_units { voxel, physical };

/// A Gaussian kernel: σ per axis (x first), its units, and the truncation radius in σ.
template <int Dim>
struct gaussian_kernel {
  vec<double, Dim> sigma;
  length_units units = length_units::voxel;
  double truncate = 4.0;

  /// Isotropic: σ on every axis.
  gaussian_kernel(double s, length_units u = length_units::voxel, double t = 4.0)
      : sigma(vec<double, Dim>::filled(s)), units(u), truncate(t) {}
  /// σ per axis.
  gaussian_kernel(const vec<double, Dim>& s, length_units u = length_units::voxel,
                  double t = 4.0)
      : sigma(s), units(u), truncate(t) {}
};

/// Smooths `in` into `out` (same extents and channels; `out` may be `in`).
template <class Boundary = boundary::border, class Backend, class In, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<In>, T>
void smooth(Backend be, field_view<In, Dim> in, field_view<T, Dim> out,
            const std::type_identity_t<gaussian_kernel<Dim>>& g, Boundary = {});

/// `in` smoothed, as a new field on its grid.
template <class Boundary = boundary::border, class T, int Dim, class Backend>
field<T, Dim, Backend> smooth(const field<T, Dim, Backend>& in,
                              const std::type_identity_t<gaussian_kernel<Dim>>& g,
                              Boundary = {});

/// The transpose of `smooth`: writes S^T grad_out into `grad_in` (`grad_in` may be
/// `grad_out`).
template <class Boundary = boundary::border, class Backend, class G, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<G>, T>
void smooth_vjp(Backend be, field_view<G, Dim> grad_out, field_view<T, Dim> grad_in,
                const std::type_identity_t<gaussian_kernel<Dim>>& g, Boundary = {});

/// Normalized 1D Gaussian weights w[0, 2r] for σ in voxels, r = ceil(truncate σ).
inline std::vector<double> gaussian_weights(double sigma, double truncate = 4.0);

// ------------------------------------------------------------------------------------------

inline std::vector<double> gaussian_weights(double sigma, double truncate) {
  const auto r = static_cast<index_t>(std::ceil(truncate * sigma));
  std::vector<double> w(static_cast<std::size_t>(2 * r + 1));
  double sum = 0;
  for (index_t k = -r; k <= r; ++k)
    sum += w[k + r] = std::exp(-0.5 * double(k * k) / (sigma * sigma));
  for (double& x : w) x /= sum;
  return w;
}

namespace detail {

/// out[t] = Σ_k w[k] · src[k][t] for t in [0, len): a weighted sum of `taps` rows.
template <class S>
void weighted_rows_portable(S* out, const S* const* src, const S* w, int taps, index_t len) {
  for (index_t t = 0; t < len; ++t) out[t] = w[0] * src[0][t];
  for (int k = 1; k < taps; ++k) {
    const S wk = w[k];
    const S* r = src[k];
    for (index_t t = 0; t < len; ++t) out[t] += wk * r[t];
  }
}

#if defined(DIFFEO_HAVE_AVX2)
// Overloads that let one body serve float and double.
DIFFEO_TARGET_AVX2 inline __m256 avx_set1(float x) { return _mm256_set1_ps(x); }
DIFFEO_TARGET_AVX2 inline __m256d avx_set1(double x) { return _mm256_set1_pd(x); }
DIFFEO_TARGET_AVX2 inline __m256 avx_load(const float* p) { return _mm256_loadu_ps(p); }
DIFFEO_TARGET_AVX2 inline __m256d avx_load(const double* p) { return _mm256_loadu_pd(p); }
DIFFEO_TARGET_AVX2 inline void avx_store(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
DIFFEO_TARGET_AVX2 inline void avx_store(double* p, __m256d v) { _mm256_storeu_pd(p, v); }
DIFFEO_TARGET_AVX2 inline __m256 avx_fmadd(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
DIFFEO_TARGET_AVX2 inline __m256d avx_fmadd(__m256d a, __m256d b, __m256d c) { return _mm256_fmadd_pd(a, b, c); }
/// The lanes below `n` (0 < n < lanes) of a vector of S, as a mask for the masked moves.
DIFFEO_TARGET_AVX2 inline __m256i avx_first_lanes(float, index_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
DIFFEO_TARGET_AVX2 inline __m256i avx_first_lanes(double, index_t n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
DIFFEO_TARGET_AVX2 inline __m256 avx_maskload(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }
DIFFEO_TARGET_AVX2 inline __m256d avx_maskload(const double* p, __m256i m) { return _mm256_maskload_pd(p, m); }
DIFFEO_TARGET_AVX2 inline void avx_maskstore(float* p, __m256i m, __m256 v) { _mm256_maskstore_ps(p, m, v); }
DIFFEO_TARGET_AVX2 inline void avx_maskstore(double* p, __m256i m, __m256d v) { _mm256_maskstore_pd(p, m, v); }

/// The same in blocks of 8 vectors that stay in registers while every row is added: one
/// store per output instead of a load and a store per tap. The rest runs a vector at a
/// time, the last one partial through masked moves: as scalars, each output was a chain
/// of dependent FMAs, and the rests of the x passes (row ends included) took a third of a
/// 3D smoothing.
template <class S>
DIFFEO_TARGET_AVX2 void weighted_rows_avx2(S* out, const S* const* src, const S* w, int taps,
                                           index_t len) {
  constexpr int L = 32 / sizeof(S), B = 8 * L;
  index_t t0 = 0;
  for (; t0 + B <= len; t0 += B) {
    const auto w0 = avx_set1(w[0]);
    decltype(avx_set1(w[0])) acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = avx_fmadd(w0, avx_load(src[0] + t0 + j * L), avx_set1(S(0)));
    for (int k = 1; k < taps; ++k) {
      const auto wk = avx_set1(w[k]);
      const S* r = src[k] + t0;
      for (int j = 0; j < 8; ++j) acc[j] = avx_fmadd(wk, avx_load(r + j * L), acc[j]);
    }
    for (int j = 0; j < 8; ++j) avx_store(out + t0 + j * L, acc[j]);
  }
  for (; t0 + L <= len; t0 += L) {
    auto acc = avx_fmadd(avx_set1(w[0]), avx_load(src[0] + t0), avx_set1(S(0)));
    for (int k = 1; k < taps; ++k) acc = avx_fmadd(avx_set1(w[k]), avx_load(src[k] + t0), acc);
    avx_store(out + t0, acc);
  }
  if (t0 < len) {
    const __m256i m = avx_first_lanes(S(0), len - t0);
    auto acc = avx_fmadd(avx_set1(w[0]), avx_maskload(src[0] + t0, m), avx_set1(S(0)));
    for (int k = 1; k < taps; ++k)
      acc = avx_fmadd(avx_set1(w[k]), avx_maskload(src[k] + t0, m), acc);
    avx_maskstore(out + t0, m, acc);
  }
}
#endif

/// Asks for the `len` scalars at `p` in cache: the next input row of a sweep, which comes
/// from memory while the rows before it are summed from cache (the hardware prefetchers
/// follow it late: one input row among 2r + 1 read in lockstep).
template <class S>
void prefetch_row(const S* p, index_t len) {
#if defined(__GNUC__)
  const char* c = reinterpret_cast<const char*>(p);
  for (index_t o = 0; o < len * index_t(sizeof(S)); o += 64) __builtin_prefetch(c + o);
#else
  (void)p, (void)len;
#endif
}

/// Rows of more taps (σ > 15 voxels) take the point paths.
inline constexpr int max_row_taps = 128;

/// out[t] = Σ_k w[k] · src[k][t]; zeros when there is no tap (all off the grid under
/// `zeros`).
template <class S>
void weighted_rows(S* out, const S* const* src, const S* w, int taps, index_t len) {
  if (taps == 0) return std::fill(out, out + len, S(0));
#if defined(DIFFEO_HAVE_AVX2)
  if (cpu_has_avx2()) return weighted_rows_avx2(out, src, w, taps, len);
#endif
  weighted_rows_portable(out, src, w, taps, len);
}

#if defined(DIFFEO_HAVE_AVX2)
/// Vectors [t0, t0 + V·L) of `weighted_rows_blocked` (the last masked by `m` if Masked).
template <int Z, int V, bool Masked, class S>
DIFFEO_INLINE_AVX2 void blocked_step_avx2(S* const* out, const S* const* src, const S* w,
                                          int taps, index_t t0, __m256i m) {
  constexpr int L = 32 / sizeof(S);
  using vec_t = decltype(avx_set1(S(0)));
  vec_t acc[Z][V];
  for (int j = 0; j < Z; ++j)
    for (int v = 0; v < V; ++v) acc[j][v] = avx_set1(S(0));
  for (int s = 0; s < taps + Z - 1; ++s) {
    vec_t x[V];
    for (int v = 0; v < V; ++v)
      x[v] = Masked && v == V - 1 ? avx_maskload(src[s] + t0 + v * L, m)
                                  : avx_load(src[s] + t0 + v * L);
    for (int j = 0; j < Z; ++j) {
      const int k = s - j;  // the tap of output j that reads source s
      if (k < 0 || k >= taps) continue;
      const vec_t wk = avx_set1(w[k]);
      for (int v = 0; v < V; ++v) acc[j][v] = avx_fmadd(wk, x[v], acc[j][v]);
    }
  }
  for (int j = 0; j < Z; ++j)
    for (int v = 0; v < V; ++v) {
      if (Masked && v == V - 1)
        avx_maskstore(out[j] + t0 + v * L, m, acc[j][v]);
      else
        avx_store(out[j] + t0 + v * L, acc[j][v]);
    }
}

template <int Z, class S>
DIFFEO_TARGET_AVX2 void weighted_rows_blocked_avx2(S* const* out, const S* const* src,
                                                   const S* w, int taps, index_t len) {
  constexpr int L = 32 / sizeof(S), V = 2;
  const __m256i all = _mm256_set1_epi32(-1);
  index_t t0 = 0;
  for (; t0 + V * L <= len; t0 += V * L)
    blocked_step_avx2<Z, V, false>(out, src, w, taps, t0, all);
  for (; t0 + L <= len; t0 += L) blocked_step_avx2<Z, 1, false>(out, src, w, taps, t0, all);
  if (t0 < len)
    blocked_step_avx2<Z, 1, true>(out, src, w, taps, t0, avx_first_lanes(S(0), len - t0));
}
#endif

/// Z outputs of one filter at consecutive positions: out[j][t] = Σ_k w[k] · src[j + k][t]
/// for j < Z, from the taps + Z − 1 rows `src`. Each output is the same sum, in the same
/// order, as `weighted_rows(out[j], src + j, w, taps, len)`; the AVX2 form loads each
/// source vector once for all the outputs it reaches, instead of once per output (the
/// sources of a 3D sweep's z sums come from L3: a quarter of the reads with Z = 4).
template <int Z, class S>
void weighted_rows_blocked(S* const* out, const S* const* src, const S* w, int taps,
                           index_t len) {
#if defined(DIFFEO_HAVE_AVX2)
  if (cpu_has_avx2() && taps > 0) return weighted_rows_blocked_avx2<Z>(out, src, w, taps, len);
#endif
  for (int j = 0; j < Z; ++j) weighted_rows(out[j], src + j, w, taps, len);
}

/// Linear index (in `ext`) of `p` with its coordinate along `axis` set to 0, and the
/// stride of that axis.
template <int Dim>
DIFFEO_HD void axis_line(const extents<Dim>& ext, index_vec<Dim> p, int axis, index_t& base,
                         index_t& stride) {
  p[axis] = 0;
  base = ext.linear(p);
  stride = 1;
  for (int a = 0; a < axis; ++a) stride *= ext[a];
}

/// The taps on the grid of a filter window along one axis: the indices that taps
/// first .. first + count − 1 read under `Boundary` (zeros drops those off the grid) and
/// their weights w[k].
template <class Boundary, class S>
struct window_taps {
  index_t src[max_row_taps];
  S weight[max_row_taps];
  int count = 0;
  window_taps(index_t first, index_t n, const S* w, index_t taps) {
    for (index_t k = 0; k < taps; ++k) {
      bool valid;
      const index_t m = boundary_map<Boundary>::apply(first + k, n, valid);
      if (valid) src[count] = m, weight[count++] = w[k];
    }
  }
};

/// Points 0, step, 2 step, … of a row of `width` scalars per point: `n` of them into `out`.
/// Strided, one scalar of each point at a time: a loop over a point's scalars compiles to
/// a `memcpy` call per point (half of a 3D downsample's time).
template <class S>
void keep_every(index_t step, int width, const S* row, index_t n, S* out) {
  for (int c = 0; c < width; ++c)
    for (index_t xo = 0; xo < n; ++xo) out[xo * width + c] = row[step * xo * width + c];
}

/// One 1D pass along `axis`: y(p) = Σ_k w_k x(p with coordinate step·p_axis - r + k),
/// taps mapped by `Boundary`. `x` and `y` differ in extent along `axis` only; each holds
/// `width` interleaved scalars per point.
template <class Boundary, class S, int Dim>
struct conv_axis_kernel {
  const S* x;
  S* y;
  extents<Dim> x_ext;
  int axis;
  int width;
  index_t step;
  const S* w;
  index_t radius;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    index_t base, stride;
    axis_line(x_ext, p, axis, base, stride);
    const index_t n = x_ext[axis], first = step * p[axis] - radius, taps = 2 * radius + 1;
    const S* src = x + base * width;
    const index_t sw = stride * width;
    S* out = y + i * width;
    if (first >= 0 && first + taps <= n) {
      for (int c = 0; c < width; ++c) {
        S acc = 0;
        for (index_t k = 0; k < taps; ++k) acc += w[k] * src[(first + k) * sw + c];
        out[c] = acc;
      }
    } else {
      for (int c = 0; c < width; ++c) {
        S acc = 0;
        for (index_t k = 0; k < taps; ++k) {
          bool valid;
          const index_t m = boundary_map<Boundary>::apply(first + k, n, valid);
          if (valid) acc += w[k] * src[m * sw + c];
        }
        out[c] = acc;
      }
    }
  }
  /// The CPU backends' form (see `row_kernel`): the output row starting at point `i`
  /// (coordinates `p`, `p[0] == 0`) of `n` points, as weighted sums of shifted input rows,
  /// so the inner loops run over contiguous memory.
  void row(index_t i, index_vec<Dim> p, index_t n) const {
    S* out = y + i * width;
    const index_t taps = 2 * radius + 1;
    if (axis != 0 && taps <= max_row_taps) {
      const window_taps<Boundary, S> t(step * p[axis] - radius, x_ext[axis], w, taps);
      const S* rows[max_row_taps];
      for (int k = 0; k < t.count; ++k) {
        index_vec<Dim> q = p;
        q[axis] = t.src[k];
        rows[k] = x + x_ext.linear(q) * width;
      }
      weighted_rows(out, rows, t.weight, t.count, n * width);
      return;
    }
    if (axis != 0 || taps > max_row_taps) {
      for (index_t xo = 0; xo < n; ++xo) p[0] = xo, (*this)(i + xo, p);
      return;
    }
    p[0] = 0;
    const S* src = x + x_ext.linear(p) * width;
    if (step == 1) return x_row(src, out);
    // A stride (downsampling): output xo is the unit-step output step · xo, so the whole
    // row is filtered in vector code and every step-th point kept (step× the sums, but
    // 8 lanes instead of 1).
    const thread_scratch<S, struct strided_row> full(static_cast<std::size_t>(x_ext[0] * width));
    x_row(src, full.data());
    keep_every(step, width, full.data(), n, out);
  }
  /// The pass along x (unit step) of the row at `src` into `out`. Outputs [r, n − r) have
  /// all their taps on the row; the few near the ends read a copy of the row's ends with
  /// the boundary applied.
  void x_row(const S* src, S* out) const {
    const index_t nx = x_ext[0], taps = 2 * radius + 1, r = radius;
    if (taps > max_row_taps) {  // point by point
      for (index_t xo = 0; xo < nx; ++xo)
        for (int c = 0; c < width; ++c) {
          S acc = 0;
          for (index_t k = 0; k < taps; ++k) {
            bool valid;
            const index_t m = boundary_map<Boundary>::apply(xo - r + k, nx, valid);
            if (valid) acc += w[k] * src[m * width + c];
          }
          out[xo * width + c] = acc;
        }
      return;
    }
    if (nx < 2 * taps) {  // short rows: through a copy with room for the boundary
      const thread_scratch<S, struct short_row> row(std::size_t((nx + 2 * r) * width));
      std::copy_n(src, nx * width, row.data() + r * width);
      return x_row_padded(row.data(), out);
    }
    const S* rows[max_row_taps];
    for (index_t k = 0; k < taps; ++k) rows[k] = src + k * width;  // output r + t reads t .. t + 2r
    weighted_rows(out + r * width, rows, w, int(taps), (nx - 2 * r) * width);
    // Each end: inputs [-r, 2r) (or [n - 2r, n + r)) through the boundary; zeros reads 0.
    const thread_scratch<S, struct row_ends> edge_store(std::size_t(3 * r * width));
    S* const edge = edge_store.data();
    for (const bool left : {true, false}) {
      const index_t first = left ? -r : nx - 2 * r;
      for (index_t j = 0; j < 3 * r; ++j) {
        bool valid;
        const index_t m = boundary_map<Boundary>::apply(first + j, nx, valid);
        if (valid)
          std::copy_n(src + m * width, width, edge + j * width);
        else
          std::fill_n(edge + j * width, width, S(0));
      }
      for (index_t k = 0; k < taps; ++k) rows[k] = edge + k * width;
      weighted_rows(out + (left ? 0 : nx - r) * width, rows, w, int(taps), r * width);
    }
  }
  /// The same for a row whose nx points start r points into `row`, which has room for r
  /// more after them: fills the 2r points off the row through the boundary (zeros: 0), so
  /// every output is one weighted sum of 2r + 1 neighbours, the row ends included.
  void x_row_padded(S* row, S* out) const {
    const index_t nx = x_ext[0], taps = 2 * radius + 1, r = radius;
    const auto pad = [&](index_t j) {
      bool valid;
      const index_t m = boundary_map<Boundary>::apply(j, nx, valid);
      S* to = row + (j + r) * width;
      if (valid)
        std::copy_n(row + (m + r) * width, width, to);
      else
        std::fill_n(to, width, S(0));
    };
    for (index_t j = -r; j < 0; ++j) pad(j);
    for (index_t j = nx; j < nx + r; ++j) pad(j);
    const S* rows[max_row_taps];
    for (index_t k = 0; k < taps; ++k) rows[k] = row + k * width;  // output t reads t .. t + 2r
    weighted_rows(out, rows, w, int(taps), nx * width);
  }
};

/// The transpose of `conv_axis_kernel`, as a gather over x's points: every output whose
/// taps reach x(p). Boundary maps are 1-Lipschitz and fix the grid, so a tap centred at c
/// reaches p only if |c - p_axis| ≤ r; outputs whose taps all lie on the grid use the
/// kernel directly, the others sum the weights of the taps that fold onto p.
template <class Boundary, class S, int Dim>
struct conv_axis_adjoint_kernel {
  const S* y;
  S* x;
  extents<Dim> y_ext;
  index_t n;  // x's extent along `axis`
  int axis;
  int width;
  index_t step;
  const S* w;
  index_t radius;
  bool symmetric;  // w[k] == w[2r − k]: away from the border the transpose is the filter
  /// On the CPU backends (else null): for each index xp along the axis, the outputs o and
  /// weights a of `gather(xp)`, entries [gather_first[xp], gather_first[xp + 1]).
  const index_t* gather_first = nullptr;
  const index_t* gather_output = nullptr;
  const S* gather_weight = nullptr;

  /// The outputs o (along the axis) whose taps reach index xp, in increasing order, with
  /// the summed weight a ≠ 0 of those taps: `visit(o, a)`.
  template <class Visit>
  DIFFEO_HD void gather(index_t xp, const Visit& visit) const {
    const index_t m = y_ext[axis], taps = 2 * radius + 1;
    const index_t lo_c = xp - radius, hi_c = xp + radius;
    const index_t o_lo = lo_c <= 0 ? 0 : (lo_c + step - 1) / step;
    const index_t o_hi = hi_c / step < m - 1 ? hi_c / step : m - 1;
    for (index_t o = o_lo; o <= o_hi; ++o) {
      const index_t first = step * o - radius;
      S a = 0;
      if (first >= 0 && first + taps <= n) {
        a = w[xp - first];
      } else {
        for (index_t k = 0; k < taps; ++k) {
          bool valid;
          const index_t mk = boundary_map<Boundary>::apply(first + k, n, valid);
          if (valid && mk == xp) a += w[k];
        }
      }
      if (a != S(0)) visit(o, a);
    }
  }
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    index_t base, stride;
    axis_line(y_ext, p, axis, base, stride);
    const S* src = y + base * width;
    const index_t sw = stride * width;
    S* out = x + i * width;
    for (int c = 0; c < width; ++c) out[c] = S(0);
    gather(p[axis], [&](index_t o, S a) {
      for (int c = 0; c < width; ++c) out[c] += a * src[o * sw + c];
    });
  }
  /// The CPU backends' form (see `row_kernel`). With a symmetric kernel and no stride, a
  /// point at least 2r from the border gathers exactly the forward filter's taps (every
  /// output reaching it keeps all its taps on the grid), so those run as `conv_axis_kernel`'s
  /// weighted row sums. The others read their outputs and weights from the gather table:
  /// as weighted row sums too along y and z, point by point along x.
  void row(index_t i, index_vec<Dim> p, index_t count) const {
    const index_t taps = 2 * radius + 1, r = radius;
    const bool fast = step == 1 && symmetric && taps <= max_row_taps;
    const S* rows[max_row_taps];
    if (axis != 0) {
      const index_t xp = p[axis];
      if (fast && xp >= 2 * r && xp + 2 * r < n) {
        for (index_t k = 0; k < taps; ++k) {
          index_vec<Dim> q = p;
          q[axis] = xp - r + k;
          rows[k] = y + y_ext.linear(q) * width;
        }
        weighted_rows(x + i * width, rows, w, int(taps), count * width);
        return;
      }
      const index_t e0 = gather_first ? gather_first[xp] : 0;
      const index_t entries = gather_first ? gather_first[xp + 1] - e0 : 0;
      if (gather_first && entries <= max_row_taps) {
        for (index_t e = 0; e < entries; ++e) {
          index_vec<Dim> q = p;
          q[axis] = gather_output[e0 + e];
          rows[e] = y + y_ext.linear(q) * width;
        }
        weighted_rows(x + i * width, rows, gather_weight + e0, int(entries), count * width);
        return;
      }
      for (index_t xo = 0; xo < count; ++xo) p[0] = xo, (*this)(i + xo, p);
      return;
    }
    p[0] = 0;
    const S* src = y + y_ext.linear(p) * width;
    if (symmetric && taps <= max_row_taps) {  // through a copy with room for the ends
      // With a stride, the transpose of keeping every step-th point of the unit-step filter:
      // the unit-step transpose of the row spread out with zeros in between, in vector
      // code (the gather point by point took nine tenths of `downsample_vjp`).
      const thread_scratch<S, struct adjoint_row> row(std::size_t((n + 4 * r) * width));
      S* const spread = row.data() + 2 * r * width;
      if (step == 1) {
        std::copy_n(src, n * width, spread);
      } else {
        std::fill_n(spread, n * width, S(0));
        for (int c = 0; c < width; ++c)
          for (index_t o = 0; o < y_ext[0] && step * o < n; ++o)
            spread[step * o * width + c] = src[o * width + c];
      }
      return x_row_padded(row.data(), x + i * width);
    }
    const auto rest = [&](index_t xo) {
      if (!gather_first) {
        p[0] = xo;
        return (*this)(i + xo, p);
      }
      S* out = x + (i + xo) * width;
      for (int c = 0; c < width; ++c) out[c] = S(0);
      for (index_t e = gather_first[xo]; e < gather_first[xo + 1]; ++e) {
        const S a = gather_weight[e];
        const S* in = src + gather_output[e] * width;
        for (int c = 0; c < width; ++c) out[c] += a * in[c];
      }
    };
    for (index_t xo = 0; xo < count; ++xo) rest(xo);
  }
  /// The transpose along x (unit step, symmetric kernel) of the row whose n points start
  /// 2r points into `row`, which has room for 2r more after them. With zeros in that room
  /// the filter gives e[j] = Σ_o w[j − o + r] y[o] for j in [−r, n + r): what the taps of
  /// all outputs o put on j. x[p] is e[p] plus the e[j] off the row that the boundary maps
  /// onto p — one weighted row sum and 2r folds, instead of a gather per point near the ends.
  void x_row_padded(S* row, S* out) const {
    const index_t r = radius, taps = 2 * r + 1;
    std::fill_n(row, 2 * r * width, S(0));
    std::fill_n(row + (2 * r + n) * width, 2 * r * width, S(0));
    const S* rows[max_row_taps] = {};  // (GCC cannot see that taps <= max_row_taps here)
    // e[j] reads y[j − r + k], at row + (j + r + k) · width.
    for (index_t k = 0; k < taps; ++k) rows[k] = row + (r + k) * width;
    weighted_rows(out, rows, w, int(taps), n * width);
    const thread_scratch<S, struct adjoint_row_ends> ends(std::size_t(2 * r * width));
    for (index_t k = 0; k < taps; ++k) rows[k] = row + k * width;  // e[−r ..)
    weighted_rows(ends.data(), rows, w, int(taps), r * width);
    for (index_t k = 0; k < taps; ++k) rows[k] = row + (n + r + k) * width;  // e[n ..)
    weighted_rows(ends.data() + r * width, rows, w, int(taps), r * width);
    for (index_t e = 0; e < 2 * r; ++e) {
      bool valid;
      const index_t j = e < r ? e - r : n + e - r;
      const index_t m = boundary_map<Boundary>::apply(j, n, valid);
      if (!valid) continue;
      for (int c = 0; c < width; ++c) out[m * width + c] += ends.data()[e * width + c];
    }
  }
};

/// A separable linear filter: one 1D pass per axis (kernel `w[a]`, stride `step` along
/// every axis) from `x_ext` to `y_ext`, forward or transposed.
template <class S, int Dim>
struct separable_filter {
  extents<Dim> x_ext, y_ext;
  int width;
  index_t step;
  std::vector<double> w[Dim];

  static bool is_symmetric(const std::vector<double>& k) {
    for (std::size_t j = 0; j < k.size(); ++j)
      if (k[j] != k[k.size() - 1 - j]) return false;
    return true;
  }

  /// The axis of pass `s`: y, x, z at unit step, forward and transposed alike (as the sweep
  /// does, `apply_in_one_sweep`; passes along different axes commute); with a stride, in
  /// axis order, whose stages shrink one axis at a time (`stage`), and the transpose in
  /// reverse.
  int pass_axis(int s, bool transposed = false) const {
    if (step == 1 && s < 2) return 1 - s;
    return step != 1 && transposed ? Dim - 1 - s : s;
  }

  /// Extents after the passes along axes [0, a).
  extents<Dim> stage(int a) const {
    extents<Dim> e = x_ext;
    for (int b = 0; b < a; ++b) e[b] = y_ext[b];
    return e;
  }

  /// y = F x (forward) or x = F^T y (transposed); `from` and `to` may alias.
  template <class Boundary, class Backend>
  void apply(Backend be, const S* from, S* to, bool transposed) const {
    if constexpr (is_host_backend<Backend> && (Dim == 2 || Dim == 3)) {
      bool rows = true;
      for (int a = 0; a < Dim; ++a) rows = rows && w[a].size() <= std::size_t(max_row_taps);
      if (rows && step == 1 && x_ext.count() == y_ext.count())
        return apply_in_one_sweep<Boundary>(be, from, to, transposed);
      const std::less<const S*> before;
      const bool apart = !before(from, to + y_ext.count() * width) ||
                         !before(to, from + x_ext.count() * width);
      if (rows && step > 1 && apart)
        return transposed ? apply_strided_transpose_sweep<Boundary>(be, from, to)
                          : apply_strided_sweep<Boundary>(be, from, to);
    }
    apply_in_passes<Boundary>(be, from, to, transposed);
  }

  /// The same as one 1D pass per axis (every backend, stride and kernel): the CPU
  /// backends' sweep is pinned to it bit for bit by the tests.
  template <class Boundary, class Backend>
  void apply_in_passes(Backend be, const S* from, S* to, bool transposed) const {
    field<S, 2, Backend> weights[Dim];
    for (int a = 0; a < Dim; ++a) {
      const auto n = static_cast<index_t>(w[a].size());
      std::vector<S> h(w[a].begin(), w[a].end());
      weights[a] = field<S, 2, Backend>(make_extents(n, 1));
      copy_between(backend::serial{}, h.data(), n, Backend{}, weights[a].data());
    }
    // A pass never writes what it reads. When every stage has the size of `to` and `to`
    // is not `from`, the 3D passes go `from` → `to` → scratch → `to` (one scratch field, not
    // two: fresh memory costs page faults at about the price of a pass).
    bool same_size = true;
    for (int a = 0; a <= Dim; ++a) same_size = same_size && stage(a).count() == x_ext.count();
    const bool through_to = Dim == 3 && same_size && from != to;
    field<S, Dim, Backend> tmp[Dim - 1];
    const S* src = from;
    for (int s = 0; s < Dim; ++s) {
      const int a = pass_axis(s, transposed);
      const extents<Dim> out_ext = transposed ? stage(a) : stage(a + 1);
      S* dst = to;
      if (s + 1 < Dim && !(through_to && s == 0)) {
        tmp[s] = field<S, Dim, Backend>(out_ext, width);
        dst = tmp[s].data();
      }
      const index_t r = (static_cast<index_t>(w[a].size()) - 1) / 2;
      if (transposed) {
        conv_axis_adjoint_kernel<Boundary, S, Dim> k{src, dst, stage(a + 1), x_ext[a], a,
                                                     width, step, weights[a].data(), r,
                                                     is_symmetric(w[a])};
        gather_table table;
        if constexpr (is_host_backend<Backend>) table.fill(k), table.attach(k);
        run_pass(be, out_ext, a, k);
      } else
        run_pass(be, out_ext, a,
                 conv_axis_kernel<Boundary, S, Dim>{src, dst, stage(a), a, width, step,
                                                    weights[a].data(), r});
      src = dst;
    }
  }

  /// The gather of every index along an axis of the transpose (see
  /// `conv_axis_adjoint_kernel::gather`), computed once per pass instead of per point.
  struct gather_table {
    std::vector<index_t> first, output;
    std::vector<S> weight;
    template <class K>
    void fill(const K& k) {
      first.assign(1, 0);
      for (index_t xp = 0; xp < k.n; ++xp) {
        k.gather(xp, [&](index_t o, S a) { output.push_back(o), weight.push_back(a); });
        first.push_back(static_cast<index_t>(output.size()));
      }
    }
    template <class K>
    void attach(K& k) const {
      k.gather_first = first.data(), k.gather_output = output.data();
      k.gather_weight = weight.data();
    }
  };

  /// The kernels in S and their radii, per axis (the CPU sweeps).
  struct axis_taps {
    std::vector<S> h[Dim];
    index_t r[Dim];
  };
  axis_taps taps_per_axis() const {
    axis_taps k;
    for (int a = 0; a < Dim; ++a) {
      k.h[a].assign(w[a].begin(), w[a].end());
      k.r[a] = (static_cast<index_t>(w[a].size()) - 1) / 2;
    }
    return k;
  }

  /// The taps along axis a (y or z) of every output index, for the CPU sweeps: forward,
  /// the window at step·o through the boundary; transposed, the inputs that reach o
  /// (`conv_axis_adjoint_kernel::gather`: one entry per input, at most 2r / step + 1 ≤
  /// max_row_taps). `plain` marks the unit-step outputs whose taps are o − r + k with
  /// weight w[k].
  struct tap_list {
    std::vector<index_t> first{0}, src;
    std::vector<S> weight;
    std::vector<char> plain;
    struct span {
      const index_t* src;
      const S* weight;
      int count;
    };
    span operator[](index_t o) const {
      return {src.data() + first[o], weight.data() + first[o], int(first[o + 1] - first[o])};
    }
  };
  template <class Boundary>
  tap_list taps_along(int a, const axis_taps& k, bool transposed) const {
    tap_list l;
    const index_t r = k.r[a], taps = 2 * r + 1, outputs = transposed ? x_ext[a] : y_ext[a];
    const S* h = k.h[a].data();
    const auto add = [&](index_t m, S wt) { l.src.push_back(m), l.weight.push_back(wt); };
    const conv_axis_adjoint_kernel<Boundary, S, Dim> adjoint{
        nullptr, nullptr, y_ext, x_ext[a], a, width, step, h, r, is_symmetric(w[a])};
    for (index_t o = 0; o < outputs; ++o) {
      if (transposed) {
        adjoint.gather(o, add);
      } else {
        const window_taps<Boundary, S> t(step * o - r, x_ext[a], h, taps);
        for (int j = 0; j < t.count; ++j) add(t.src[j], t.weight[j]);
      }
      const index_t e0 = l.first.back(), e1 = static_cast<index_t>(l.src.size());
      bool plain = step == 1 && e1 - e0 == taps;
      for (index_t j = 0; plain && j < taps; ++j)
        plain = l.src[e0 + j] == o - r + j && l.weight[e0 + j] == h[j];
      l.first.push_back(e1);
      l.plain.push_back(plain);
    }
    return l;
  }

  /// y = F x with every pass in one sweep over memory (CPU backends, unit step; `from` may
  /// be `to`): each task takes a band of rows (the y range [y0, y1)); each of its rows is
  /// the input rows around it summed along y, then filtered along x, into the output (2D) or
  /// into a ring of slabs of the band, which the pass along z reads (3D). The ring stays in
  /// cache, so the field is read once and written once instead of once per pass, and no
  /// scratch field is allocated. Each output is the same sum of the same terms as in the
  /// passes (which run in the same order, y first). y before x: a band's margin rows are
  /// then only read, not filtered along x again by each band that reads them.
  ///
  /// In place, a band reads each input row (slab, in 3D) of its own before it writes that
  /// row's output: the rows of output y read input rows [y − r, y + r], so in 2D output y
  /// waits in a ring of r_y + 1 rows until output y + r_y is done; in 3D slab z is in the z
  /// ring before output slab z is written. The margin rows a band reads from its
  /// neighbours are copied first, before any band writes.
  static constexpr int z_block = 4;

  template <class Boundary, class Backend>
  void apply_in_one_sweep(Backend be, const S* from, S* to, bool transposed) const {
    const index_t nx = x_ext[0], ny = x_ext[1], nz = Dim == 3 ? x_ext[Dim - 1] : 1;
    const index_t len = nx * width;  // scalars per row
    // Slabs of the ring (and the summed row) one cache line more apart than whole lines:
    // slabs 4 KiB apart would fall into the same L1 sets, and the 2r + 1 read at once
    // would evict each other.
    constexpr index_t line = 64 / sizeof(S);
    const auto padded = [](index_t n) { return (n + line - 1) / line * line + line; };
    const axis_taps kernels = taps_per_axis();
    const auto& h = kernels.h;
    const auto& r = kernels.r;
    const conv_axis_kernel<Boundary, S, Dim> along_x{from, nullptr, x_ext, 0, width, 1,
                                                     h[0].data(), r[0]};
    // Transposed, the x pass of a row is `conv_axis_adjoint_kernel::x_row_padded` (a
    // symmetric kernel), else its `row` on a grid of one row, with its gather table.
    extents<Dim> row_ext = x_ext;
    for (int a = 1; a < Dim; ++a) row_ext[a] = 1;
    conv_axis_adjoint_kernel<Boundary, S, Dim> along_x_t{nullptr, nullptr, row_ext, nx, 0,
                                                        width, 1, h[0].data(), r[0],
                                                        is_symmetric(w[0])};
    gather_table x_table;
    if (transposed && !along_x_t.symmetric) x_table.fill(along_x_t), x_table.attach(along_x_t);
    // Bands: one per thread. Each reads its 2r_y margin rows from memory again, so more
    // bands cost more (3D 128³, two threads: two per thread took 3–5 % longer); rings
    // beyond L2 measured no slower than thinner bands.
    // 3D: the ring holds the slabs filtered along y and x that z_block consecutive
    // outputs read (`weighted_rows_blocked`).
    const index_t ring_slabs = Dim == 3 ? 2 * r[Dim - 1] + z_block : 0;
    const index_t bands = std::min<index_t>(ny, thread_count(be));
    // The taps along y and z of each output index: forward, the window through the
    // boundary; transposed, the outputs that reach it (`conv_axis_adjoint_kernel::gather`).
    // Boundary maps are 1-Lipschitz, so the sources of output o lie in [o − r, o + r], and
    // those of z_block outputs span 2r + z_block indices: a ring of 2r + z_block slabs keyed
    // by index mod 2r + z_block holds them. `plain` marks the outputs whose taps are
    // o − r + k with weight w[k], which the z pass sums z_block at a time.
    tap_list lists[Dim];
    for (int a = 1; a < Dim; ++a) lists[a] = taps_along<Boundary>(a, kernels, transposed);
    // Band b: rows [y0, y1); it reads rows [m0, y0) and [y1, m1) of its neighbours.
    const auto band = [&](index_t b, index_t& y0, index_t& y1, index_t& m0, index_t& m1) {
      y0 = b * ny / bands, y1 = (b + 1) * ny / bands;
      m0 = std::max<index_t>(0, y0 - r[1]), m1 = std::min(ny, y1 + r[1]);
    };
    const bool in_place = from == to;
    std::vector<std::vector<S>> margins(in_place && bands > 1 ? bands : 0);
    if (!margins.empty())
      for_each_task(be, bands, [&](index_t b) {
        index_t y0, y1, m0, m1;
        band(b, y0, y1, m0, m1);
        margins[b].resize(static_cast<std::size_t>(nz * (m1 - m0 - (y1 - y0)) * len));
        S* m = margins[b].data();
        for (index_t z = 0; z < nz; ++z) {
          m = std::copy_n(from + (z * ny + m0) * len, (y0 - m0) * len, m);
          m = std::copy_n(from + (z * ny + y1) * len, (m1 - y1) * len, m);
        }
      });
    for_each_task(be, bands, [&](index_t b) {
      index_t y0, y1, m0, m1;
      band(b, y0, y1, m0, m1);
      const index_t slab = padded((y1 - y0) * len);  // a slab's rows are contiguous
      const index_t summed_len = padded(len + 4 * r[0] * width);
      const index_t held = Dim == 2 && in_place ? r[1] + 1 : 0;  // output rows held back
      const thread_scratch<S, struct sweep_rings> store(
          static_cast<std::size_t>(summed_len + ring_slabs * slab + held * padded(len)));
      // One row summed along y, 2r_x points into `summed`: room for x's ends.
      S* const summed = store.data();
      const S* rows[max_row_taps];
      // Input row y of slab z: a neighbour's row from its copy when in place.
      const auto input_row = [&](index_t z, index_t y) -> const S* {
        if (margins.empty() || (y >= y0 && y < y1)) return from + (z * ny + y) * len;
        const index_t saved = m1 - m0 - (y1 - y0);
        return margins[b].data() + (z * saved + (y < y0 ? y - m0 : y0 - m0 + y - y1)) * len;
      };
      // Output row y of slab z (0 in 2D), filtered along y and x, into `out`.
      const auto filter_yx = [&](index_t z, index_t y, S* out) {
        const auto t = lists[1][y];
        for (int k = 0; k < t.count; ++k) rows[k] = input_row(z, t.src[k]);
        if (y + r[1] + 1 < ny) prefetch_row(from + (z * ny + y + r[1] + 1) * len, len);
        weighted_rows(summed + 2 * r[0] * width, rows, t.weight, t.count, len);
        if (!transposed) return along_x.x_row_padded(summed + r[0] * width, out);
        if (along_x_t.symmetric) return along_x_t.x_row_padded(summed, out);
        auto k = along_x_t;
        k.y = summed + 2 * r[0] * width, k.x = out;
        k.row(0, index_vec<Dim>{}, nx);
      };
      if constexpr (Dim == 2) {
        if (!in_place) {
          for (index_t y = y0; y < y1; ++y) filter_yx(0, y, to + y * len);
        } else {
          S* const ring = summed + summed_len;
          const auto slot = [&](index_t y) { return ring + (y % held) * padded(len); };
          for (index_t y = y0; y < y1; ++y) {
            filter_yx(0, y, slot(y));
            if (y - r[1] >= y0) std::copy_n(slot(y - r[1]), len, to + (y - r[1]) * len);
          }
          for (index_t y = std::max(y0, y1 - r[1]); y < y1; ++y)
            std::copy_n(slot(y), len, to + y * len);
        }
      } else {
        S* const z_ring = summed + summed_len;
        index_t z_tag[max_row_taps + z_block];
        std::fill(z_tag, z_tag + ring_slabs, index_t(-1));
        const auto slab_of = [&](index_t m) {  // slab m filtered along y and x, in the ring
          const index_t slot = m % ring_slabs;
          if (z_tag[slot] != m) {
            for (index_t y = y0; y < y1; ++y)
              filter_yx(m, y, z_ring + slot * slab + (y - y0) * len);
            z_tag[slot] = m;
          }
          return z_ring + slot * slab;
        };
        const S* slabs[max_row_taps + z_block];
        const index_t band_len = (y1 - y0) * len;  // each z sum takes the band at once
        for (index_t z = 0; z < nz;) {
          bool plain = z + z_block <= nz;
          for (int j = 0; plain && j < z_block; ++j) plain = lists[2].plain[z + j];
          if (plain) {  // z_block outputs at once
            for (index_t s = 0; s < 2 * r[2] + z_block; ++s) slabs[s] = slab_of(z - r[2] + s);
            S* outs[z_block];
            for (int j = 0; j < z_block; ++j) outs[j] = to + ((z + j) * ny + y0) * len;
            weighted_rows_blocked<z_block>(outs, slabs, h[2].data(), int(2 * r[2] + 1), band_len);
            z += z_block;
          } else {
            const auto t = lists[2][z];
            for (int k = 0; k < t.count; ++k) slabs[k] = slab_of(t.src[k]);
            weighted_rows(to + (z * ny + y0) * len, slabs, t.weight, t.count, band_len);
            ++z;
          }
        }
      }
    });
  }

  /// y = F x with a stride (downsampling) in one sweep over memory (CPU backends, forward,
  /// `to` apart from `from`), in the passes' order: each task takes a band of output rows
  /// [y0, y1); each input row it reads is filtered along x (every step-th output kept) into
  /// a ring of rows, which the sums along y read; in 3D those sums land in a ring of slabs,
  /// which the sums along z read. Every output is the sum the passes make, so the same
  /// bits, without their two scratch fields (3D 128³ vector field: half the time).
  template <class Boundary, class Backend>
  void apply_strided_sweep(Backend be, const S* from, S* to) const {
    const index_t ny = x_ext[1], my = y_ext[1];
    const index_t in_len = x_ext[0] * width, len = y_ext[0] * width;  // scalars per row
    const index_t input_rows = x_ext.count() / x_ext[0];
    constexpr index_t line = 64 / sizeof(S);  // as in `apply_in_one_sweep`
    const auto padded = [](index_t n) { return (n + line - 1) / line * line + line; };
    const axis_taps kernels = taps_per_axis();
    const auto& h = kernels.h;
    const auto& r = kernels.r;
    const conv_axis_kernel<Boundary, S, Dim> along_x{from, nullptr, x_ext, 0, width, step,
                                                     h[0].data(), r[0]};
    // Boundary maps are 1-Lipschitz: the taps of output o lie in [step o − r, step o + r],
    // so rings of 2r + 1 rows (slabs) keyed by index mod 2r + 1 hold every tap of the
    // output being summed, and outputs in order only evict what no later one reads.
    const index_t ring_rows = 2 * r[1] + 1, ring_slabs = Dim == 3 ? 2 * r[Dim - 1] + 1 : 0;
    tap_list lists[Dim];
    for (int a = 1; a < Dim; ++a) lists[a] = taps_along<Boundary>(a, kernels, false);
    const index_t bands = std::min<index_t>(my, thread_count(be));
    for_each_task(be, bands, [&](index_t b) {
      const index_t y0 = b * my / bands, y1 = (b + 1) * my / bands;
      const index_t slab = padded((y1 - y0) * len), row = padded(len);
      const thread_scratch<S, struct strided_sweep_rings> store(
          static_cast<std::size_t>(in_len + ring_rows * row + ring_slabs * slab));
      S* const full = store.data();  // an input row filtered along x at unit step
      S* const row_ring = full + in_len;
      std::vector<index_t> row_tag(static_cast<std::size_t>(ring_rows));
      const S* rows[max_row_taps];
      // Output rows [y0, y1) of input slab z summed along y into `out`.
      const auto filter_xy = [&](index_t z, S* out) {
        std::fill(row_tag.begin(), row_tag.end(), index_t(-1));
        for (index_t y = y0; y < y1; ++y) {
          const auto t = lists[1][y];
          for (int k = 0; k < t.count; ++k) {
            const index_t m = t.src[k], slot = m % ring_rows;
            S* const dst = row_ring + slot * row;
            if (row_tag[slot] != m) {
              const index_t at = z * ny + m;  // the input row; the next one is read next
              if (at + 1 < input_rows) prefetch_row(from + (at + 1) * in_len, in_len);
              along_x.x_row(from + at * in_len, full);
              keep_every(step, width, full, len / width, dst);
              row_tag[slot] = m;
            }
            rows[k] = dst;
          }
          weighted_rows(out + (y - y0) * len, rows, t.weight, t.count, len);
        }
      };
      if constexpr (Dim == 2) {
        filter_xy(0, to + y0 * len);
      } else {
        S* const z_ring = row_ring + ring_rows * row;
        std::vector<index_t> z_tag(static_cast<std::size_t>(ring_slabs), index_t(-1));
        const S* slabs[max_row_taps];
        for (index_t z = 0; z < y_ext[Dim - 1]; ++z) {
          const auto t = lists[2][z];
          for (int k = 0; k < t.count; ++k) {
            const index_t m = t.src[k], slot = m % ring_slabs;
            if (z_tag[slot] != m) filter_xy(m, z_ring + slot * slab), z_tag[slot] = m;
            slabs[k] = z_ring + slot * slab;
          }
          weighted_rows(to + (z * my + y0) * len, slabs, t.weight, t.count, (y1 - y0) * len);
        }
      }
    });
  }

  /// x = Fᵀ y with a stride (`downsample_vjp`) in one sweep (CPU backends, `to` apart from
  /// `from`), in the transposed passes' order z, y, x: each task takes a band of output rows
  /// [y0, y1); per output slab, the input rows the band reads are summed along z (the
  /// inputs that reach the slab, with their weights) into a buffer, and each output row is
  /// those rows summed along y the same way, then spread along x by the transpose of the x
  /// pass (`conv_axis_adjoint_kernel::row`). The same sums as the passes, so the same bits.
  template <class Boundary, class Backend>
  void apply_strided_transpose_sweep(Backend be, const S* from, S* to) const {
    const index_t ny = x_ext[1], my = y_ext[1];
    const index_t out_len = x_ext[0] * width, len = y_ext[0] * width;  // scalars per row
    const axis_taps kernels = taps_per_axis();
    const auto& h = kernels.h;
    const auto& r = kernels.r;
    tap_list lists[Dim];
    for (int a = 1; a < Dim; ++a) lists[a] = taps_along<Boundary>(a, kernels, true);
    extents<Dim> row_ext = y_ext;
    for (int a = 1; a < Dim; ++a) row_ext[a] = 1;
    conv_axis_adjoint_kernel<Boundary, S, Dim> along_x{nullptr, nullptr, row_ext, x_ext[0], 0,
                                                      width, step, h[0].data(), r[0],
                                                      is_symmetric(w[0])};
    gather_table x_table;
    if (!along_x.symmetric) x_table.fill(along_x), x_table.attach(along_x);
    const index_t bands = std::min<index_t>(ny, thread_count(be));
    for_each_task(be, bands, [&](index_t b) {
      const index_t y0 = b * ny / bands, y1 = (b + 1) * ny / bands;
      const tap_list& ly = lists[1];
      index_t c0 = my, c1 = 0;  // the input rows the band reads: [c0, c1)
      for (index_t e = ly.first[y0]; e < ly.first[y1]; ++e)
        c0 = std::min(c0, ly.src[e]), c1 = std::max(c1, ly.src[e] + 1);
      c1 = std::max(c0, c1);
      const thread_scratch<S, struct strided_transpose_rows> store(
          static_cast<std::size_t>(len + (Dim == 3 ? (c1 - c0) * len : 0)));
      S* const summed = store.data();  // an output row summed along z and y
      S* const slab = summed + len;     // 3D: the band's input rows summed along z
      const S* rows[max_row_taps];
      for (index_t z = 0; z < (Dim == 3 ? x_ext[Dim - 1] : 1); ++z) {
        const S* in = from;  // input row c of the z sum: in + (c − c0) len
        if constexpr (Dim == 3) {
          const auto t = lists[2][z];
          for (int e = 0; e < t.count; ++e) rows[e] = from + (t.src[e] * my + c0) * len;
          weighted_rows(slab, rows, t.weight, t.count, (c1 - c0) * len);
          in = slab;
        } else {
          in = from + c0 * len;
        }
        for (index_t y = y0; y < y1; ++y) {
          const auto t = ly[y];
          for (int e = 0; e < t.count; ++e) rows[e] = in + (t.src[e] - c0) * len;
          weighted_rows(summed, rows, t.weight, t.count, len);
          auto k = along_x;
          k.y = summed, k.x = to + (z * ny + y) * out_len;
          k.row(0, index_vec<Dim>{}, x_ext[0]);
        }
      }
    });
  }

  /// Runs the pass along `axis` over `ext`. On the CPU backends a 3D pass along z takes
  /// the rows z first: consecutive rows then share all but one of their 2r + 1 input
  /// rows, which stay in cache (in y-first order they are a slice apart, and a 128³
  /// field's 13 slices do not fit in L2).
  template <class Backend, class K>
  static void run_pass(Backend be, const extents<Dim>& ext, int axis, const K& kernel) {
    constexpr bool cpu = std::is_same_v<Backend, backend::serial> || std::is_same_v<Backend, backend::tbb>;
    if constexpr (Dim == 3 && cpu) {
      if (axis == 2) {
        const index_t ny = ext[1], nz = ext[2];
        for_each_index(be, ny * nz, [&](index_t r) { run_row(ext, (r % nz) * ny + r / nz, kernel); });
        return;
      }
    }
    for_each_point(be, ext, kernel);
  }
};

/// σ per axis in voxels, checked; `where` names the function.
template <int Dim>
vec<double, Dim> sigma_in_voxels(const gaussian_kernel<Dim>& g, const vec<double, Dim>& spacing,
                                 const std::string& where) {
  if (!(g.truncate > 0) || !std::isfinite(g.truncate))
    throw value_error(where + ": truncate must be positive and finite, got " +
                      std::to_string(g.truncate));
  vec<double, Dim> s;
  for (int a = 0; a < Dim; ++a) {
    if (!(g.sigma[a] > 0) || !std::isfinite(g.sigma[a]))
      throw value_error(where + ": sigma must be positive and finite, got " +
                        std::to_string(g.sigma[a]) + " along axis " + std::to_string(a));
    s[a] = g.units == length_units::physical ? g.sigma[a] / spacing[a] : g.sigma[a];
  }
  return s;
}

template <class A, class B>
void require_filter_args(const A& a, const B& b, const std::string& f, const char* an,
                         const char* bn) {
  require_valid(a, f + "(" + an + ")");
  require_same_extents(a, b, f + "(" + an + ", " + bn + ")");
  require_same_channels(a, b, f + "(" + an + ", " + bn + ")");
  if (b.data == nullptr) throw value_error(f + "(" + bn + "): null data pointer");
}

template <class T, int Dim>
separable_filter<scalar_of<T>, Dim> gaussian_filter(const extents<Dim>& ext, int channels,
                                                    const vec<double, Dim>& sigma_vox,
                                                    double truncate) {
  separable_filter<scalar_of<T>, Dim> f{ext, ext, channels * components<T>::count, 1, {}};
  for (int a = 0; a < Dim; ++a) f.w[a] = gaussian_weights(sigma_vox[a], truncate);
  return f;
}

}  // namespace detail

template <class Boundary, class Backend, class In, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<In>, T>
void smooth(Backend be, field_view<In, Dim> in, field_view<T, Dim> out,
            const std::type_identity_t<gaussian_kernel<Dim>>& g, Boundary) {
  using S = scalar_of<T>;
  detail::require_filter_args(in, out, "smooth", "in", "out");
  const auto sigma = detail::sigma_in_voxels(g, in.spacing, "smooth(g)");
  detail::gaussian_filter<T>(in.ext, in.channels, sigma, g.truncate)
      .template apply<Boundary>(be, reinterpret_cast<const S*>(in.data),
                                reinterpret_cast<S*>(out.data), false);
}

template <class Boundary, class T, int Dim, class Backend>
field<T, Dim, Backend> smooth(const field<T, Dim, Backend>& in,
                              const std::type_identity_t<gaussian_kernel<Dim>>& g, Boundary) {
  field<T, Dim, Backend> out(in.geometry(), in.channels());
  smooth<Boundary>(Backend{}, in.view(), out.view(), g);
  return out;
}

template <class Boundary, class Backend, class G, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<G>, T>
void smooth_vjp(Backend be, field_view<G, Dim> grad_out, field_view<T, Dim> grad_in,
                const std::type_identity_t<gaussian_kernel<Dim>>& g, Boundary) {
  using S = scalar_of<T>;
  detail::require_filter_args(grad_out, grad_in, "smooth_vjp", "grad_out", "grad_in");
  const auto sigma = detail::sigma_in_voxels(g, grad_out.spacing, "smooth_vjp(g)");
  detail::gaussian_filter<T>(grad_out.ext, grad_out.channels, sigma, g.truncate)
      .template apply<Boundary>(be, reinterpret_cast<const S*>(grad_out.data),
                                reinterpret_cast<S*>(grad_in.data), true);
}

}  // namespace diffeo
