#pragma once
/// AVX2 rows of the linear pull-back for float images: 8 output points at a time, the
/// `zeros` and `border` policies included; under `reflection` the points whose corners
/// leave the grid are left to the caller's scalar sampler. See core/detail/avx2.hpp for
/// when this code is compiled and run.

#include "../../core/detail/avx2.hpp"

#if defined(DIFFEO_HAVE_AVX2)
#  include <cstdint>
#  include <type_traits>

#  include "../../core/field_view.hpp"
#  include "../boundary.hpp"

namespace diffeo::detail {

/// Along one axis, each of 8 points reads the voxel pair (cell, cell + 1), always on the
/// grid, with weights w0 and w1: (1 − t, t) inside; at and past the edges the weights the
/// boundary policy gives the two taps of the point, moved onto the pair.
struct pair_weights {
  __m256i cell;
  __m256 w0, w1;
};

/// How `linear_block_avx2::finish` writes its results: as they are.
struct store_sampled {
  DIFFEO_INLINE_AVX2 void put(float* o, __m256 v) const { _mm256_storeu_ps(o, v); }
  DIFFEO_INLINE_AVX2 void put(float* o, __m128 v) const { _mm_storeu_ps(o, v); }
  DIFFEO_INLINE_AVX2 void put(float* o, __m128 v, __m128i lanes) const { _mm_maskstore_ps(o, lanes, v); }
};

/// Or as `a · base + b · sampled`, `base` laid out as the output and not overlapping it
/// (compose: w = v + u(p + v)). Fused here, the samples make no round trip through memory
/// (a scalar sum after each block cost a 2D compose 40 % of its time, a vector one 12 %).
struct store_affine {
  const float* out;  // the block's output
  const float* base;  // its counterpart
  float a, b;
  DIFFEO_INLINE_AVX2 void put(float* o, __m256 v) const {
    const __m256 x = _mm256_loadu_ps(base + (o - out));
    _mm256_storeu_ps(o, _mm256_fmadd_ps(x, _mm256_set1_ps(a), _mm256_mul_ps(v, _mm256_set1_ps(b))));
  }
  DIFFEO_INLINE_AVX2 void put(float* o, __m128 v) const {
    const __m128 x = _mm_loadu_ps(base + (o - out));
    _mm_storeu_ps(o, _mm_fmadd_ps(x, _mm_set1_ps(a), _mm_mul_ps(v, _mm_set1_ps(b))));
  }
  DIFFEO_INLINE_AVX2 void put(float* o, __m128 v, __m128i lanes) const {
    const __m128 x = _mm_maskload_ps(base + (o - out), lanes);
    _mm_maskstore_ps(o, lanes, _mm_fmadd_ps(x, _mm_set1_ps(a), _mm_mul_ps(v, _mm_set1_ps(b))));
  }
};

/// Linear pull-back of blocks of 8 consecutive output points of a row of a float image.
/// Needs `src.size() < 2^31` (32-bit offsets) and at least 2 voxels on every axis.
///
/// One channel: the two x-neighbours of a pair are adjacent floats, so each pair is one
/// 64-bit load. Two channels: a pair is 4 adjacent floats, four points per vector. Three:
/// a pair is 6 floats, one 8-float load per point. Four: two points share a vector, one
/// per half. More channels: point by point, 4 channels at a time. No gathers.
///
/// A row loop calls `locate` and `finish` per block (see `run_row`).
template <int Dim, class Boundary>
struct linear_block_avx2 {
  static constexpr bool in_vector = !std::is_same_v<Boundary, boundary::reflection>;
  field_view<const float, Dim> src;
  __m256 last[Dim];        // n − 1 per axis
  __m256i last_cell[Dim];  // n − 2 per axis: the last pair's cell
  __m256i nx, ny, channels;
  __m256i last_pair;       // the last cell's index: its rows end the image
  index_t sy, sz;
  // Prefetch distance from each block's pairs, in floats: the rows the next output row
  // (3D: the slice after next) reads first, which the hardware prefetchers miss.
  index_t ahead;

  DIFFEO_TARGET_AVX2 explicit linear_block_avx2(const field_view<const float, Dim>& s) : src(s) {
    for (int a = 0; a < Dim; ++a) {
      last[a] = _mm256_set1_ps(float(s.ext[a] - 1));
      last_cell[a] = _mm256_set1_epi32(int(s.ext[a] - 2));
    }
    index_t last = 0;
    for (int a = Dim - 1; a >= 0; --a) last = last * s.ext[a] + (s.ext[a] - 2);
    last_pair = _mm256_set1_epi32(int(last));
    nx = _mm256_set1_epi32(int(s.ext[0]));
    ny = _mm256_set1_epi32(int(Dim == 3 ? s.ext[1] : 1));
    channels = _mm256_set1_epi32(s.channels);
    sy = s.ext[0] * s.channels;
    sz = Dim == 3 ? s.ext[1] * sy : 0;
    ahead = 2 * sz + 2 * sy;
  }

  /// Whether `src` suits these rows (see above).
  static bool applies(const field_view<const float, Dim>& s) {
    for (int a = 0; a < Dim; ++a)
      if (s.ext[a] < 2) return false;
    return s.size() < (index_t(1) << 31);
  }

  /// Pairs and weights along an axis for positions `q` all in [0, n − 1).
  DIFFEO_TARGET_AVX2 static pair_weights inside(__m256 q) {
    const __m256 f = _mm256_floor_ps(q), t = _mm256_sub_ps(q, f);
    return {_mm256_cvttps_epi32(f), _mm256_sub_ps(_mm256_set1_ps(1.f), t), t};
  }

  /// Pairs and weights along axis `a` for any finite positions `q`.
  DIFFEO_TARGET_AVX2 pair_weights anywhere(__m256 q, int a) const {
    // Far out, every position gives the same taps: clamp to keep the cells small.
    q = _mm256_min_ps(_mm256_max_ps(q, _mm256_set1_ps(-2.f)), _mm256_add_ps(last[a], _mm256_set1_ps(2.f)));
    const __m256 f = _mm256_floor_ps(q), t = _mm256_sub_ps(q, f), s = _mm256_sub_ps(_mm256_set1_ps(1.f), t);
    const __m256i c = _mm256_cvttps_epi32(f);
    const __m256i cell = _mm256_min_epi32(_mm256_max_epi32(c, _mm256_setzero_si256()), last_cell[a]);
    const __m256i d = _mm256_sub_epi32(c, cell);  // where the taps (c, c + 1) sit on the pair
    const __m256 same = _mm256_castsi256_ps(_mm256_cmpeq_epi32(d, _mm256_setzero_si256()));
    __m256 w0, w1;
    if constexpr (std::is_same_v<Boundary, boundary::zeros>) {
      // d = −1: tap c + 1 is the pair's first voxel; d = 1: tap c is its second.
      const __m256 before = _mm256_castsi256_ps(_mm256_cmpeq_epi32(d, _mm256_set1_epi32(-1)));
      const __m256 after = _mm256_castsi256_ps(_mm256_cmpeq_epi32(d, _mm256_set1_epi32(1)));
      w0 = _mm256_blendv_ps(_mm256_and_ps(before, t), s, same);
      w1 = _mm256_blendv_ps(_mm256_and_ps(after, s), t, same);
    } else {  // border: both taps read the edge voxel
      const __m256 before = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_setzero_si256(), d));
      const __m256 after = _mm256_castsi256_ps(_mm256_cmpgt_epi32(d, _mm256_setzero_si256()));
      const __m256 one = _mm256_set1_ps(1.f);
      w0 = _mm256_blendv_ps(_mm256_and_ps(before, one), s, same);
      w1 = _mm256_blendv_ps(_mm256_and_ps(after, one), t, same);
    }
    return {cell, w0, w1};
  }

  /// w0 · row[k] + w1 · row[k + 1] for the 8 pairs at offsets k = `at[0, 8)`; the result
  /// is in point order. Each pair is one 64-bit load: plain loads, not gathers, which are
  /// slow on AMD (Zen 4: 2.3–3.8 → 1.2–1.5 ns per point on W1's one channel).
  DIFFEO_INLINE_AVX2 static __m256 blend_pairs(const float* row, const int (&at)[8], __m256 w0, __m256 w1) {
    const auto two = [&](int i, int j) DIFFEO_TARGET_AVX2 {  // pairs i and j: ai bi aj bj
      // A pair starts at any float: loads that need no alignment (not _mm_load_sd).
      const __m128d lo = _mm_castsi128_pd(_mm_loadu_si64(row + at[i]));
      return _mm_castpd_ps(_mm_loadh_pd(lo, reinterpret_cast<const double*>(row + at[j])));
    };
    const __m256 g0 = _mm256_insertf128_ps(_mm256_castps128_ps256(two(0, 1)), two(4, 5), 1);  // a0 b0 a1 b1 | a4 b4 a5 b5
    const __m256 g1 = _mm256_insertf128_ps(_mm256_castps128_ps256(two(2, 3)), two(6, 7), 1);  // a2 b2 a3 b3 | a6 b6 a7 b7
    const __m256 v0 = _mm256_shuffle_ps(g0, g1, _MM_SHUFFLE(2, 0, 2, 0));
    const __m256 v1 = _mm256_shuffle_ps(g0, g1, _MM_SHUFFLE(3, 1, 3, 1));
    return _mm256_fmadd_ps(v1, w1, _mm256_mul_ps(v0, w0));
  }

  /// The same for channels [c, c + 4) of the voxel at `a` and of its x-neighbour `C` floats
  /// on. Without `full` (the last, partial group of r = C mod 4 channels) only lanes [0, r)
  /// are right, and no load leaves the pair `a[0, 2C)`: the neighbour's group is read
  /// `shift` = 4 − r floats early and rotated into place by `rotate`.
  DIFFEO_TARGET_AVX2 static __m128 blend_channels(const float* a, int C, int c, __m128 w0, __m128 w1,
                                                  bool full, int shift, __m128i rotate) {
    const __m128 v0 = _mm_loadu_ps(a + c);  // a[c + 3] < a[2C): C >= 2 and c <= C - r
    const __m128 v1 = full ? _mm_loadu_ps(a + C + c)
                           : _mm_permutevar_ps(_mm_loadu_ps(a + C + c - shift), rotate);
    return _mm_fmadd_ps(v1, w1, _mm_mul_ps(v0, w0));
  }

  /// The same for two voxels at once, `a0` (low half) and `a1` (high half), C <= 4.
  template <int C>
  DIFFEO_TARGET_AVX2 static __m256 blend_two(const float* a0, const float* a1, __m256 w0, __m256 w1) {
    constexpr int shift = (4 - C % 4) % 4;
    const __m256 v0 = _mm256_loadu2_m128(a1, a0);
    __m256 v1 = _mm256_loadu2_m128(a1 + C - shift, a0 + C - shift);
    if constexpr (shift != 0)
      v1 = _mm256_permutevar_ps(v1, _mm256_setr_epi32(shift, shift + 1, shift + 2, shift + 3,
                                                      shift, shift + 1, shift + 2, shift + 3));
    return _mm256_fmadd_ps(v1, w1, _mm256_mul_ps(v0, w0));
  }

  /// a · p + b · q.
  DIFFEO_TARGET_AVX2 static __m256 mix(__m256 a, __m256 b, __m256 p, __m256 q) {
    return _mm256_fmadd_ps(b, q, _mm256_mul_ps(a, p));
  }
  DIFFEO_TARGET_AVX2 static __m128 mix(__m128 a, __m128 b, __m128 p, __m128 q) {
    return _mm_fmadd_ps(b, q, _mm_mul_ps(a, p));
  }

  /// Combines the pair values of a cell's rows (and slices) with the y (and z) weights;
  /// `row(d)` gives the x-blended values of the row `d` floats on from the cell.
  template <class Row, class V>
  DIFFEO_TARGET_AVX2 V combine(const Row& row, const V (&w0)[Dim], const V (&w1)[Dim]) const {
    V v = mix(row(0), row(sy), w0[1], w1[1]);
    if constexpr (Dim == 3) v = mix(v, mix(row(sz), row(sz + sy), w0[1], w1[1]), w0[2], w1[2]);
    return v;
  }

  /// Prefetches the lines of a block's pairs (float offsets `at`, `C` channels: 1 to 3
  /// lines for C <= 3) `ahead` floats on.
  DIFFEO_INLINE_AVX2 void prefetch(const int (&at)[8], int C) const {
    // Addresses as integers: past the last slices they leave the image (a prefetch does
    // not fault, but pointer arithmetic there would be undefined).
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(src.data) + 4 * std::uintptr_t(ahead);
    _mm_prefetch(reinterpret_cast<const char*>(a + 4 * std::uintptr_t(at[0])), _MM_HINT_T0);
    if (C > 2) _mm_prefetch(reinterpret_cast<const char*>(a + 4 * std::uintptr_t(at[4])), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(a + 4 * std::uintptr_t(at[7] + 2 * C)), _MM_HINT_T0);
  }

  /// Where a block's 8 points read: their cells (as voxel indices) and per-axis pair
  /// weights, and which points are left to the caller (see `finish`).
  struct located {
    __m256 w0[Dim], w1[Dim];
    __m256i idx;
    int outside;
    int off_grid;  // the points with a corner off the grid (as bits), whatever the policy
  };

  /// Locates output points p .. p + 7 along x, displaced by `scale · u[0, 8)` (`scale`:
  /// exp's fused scaling). Apart from `finish` so that a row loop can locate the next
  /// block before it reads the taps of this one, overlapping the two dependency chains.
  DIFFEO_INLINE_AVX2 located locate(const vec<float, Dim>* u, const index_vec<Dim>& p,
                                    float scale = 1.f) const {
    __m256 q[Dim];
    load_vectors_avx2<Dim>(u, q);
    if (scale != 1.f)
      for (int a = 0; a < Dim; ++a) q[a] = _mm256_mul_ps(q[a], _mm256_set1_ps(scale));
    __m256 in = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int a = 0; a < Dim; ++a) {
      __m256 pa = _mm256_set1_ps(float(p[a]));
      if (a == 0) pa = _mm256_add_ps(pa, _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
      q[a] = _mm256_add_ps(q[a], pa);
      // Ordered compares: NaN (and ±∞) lands outside.
      in = _mm256_and_ps(in, _mm256_and_ps(_mm256_cmp_ps(q[a], _mm256_setzero_ps(), _CMP_GE_OQ),
                                           _mm256_cmp_ps(q[a], last[a], _CMP_LT_OQ)));
    }
    located b;
    pair_weights w[Dim];
    b.outside = b.off_grid = ~_mm256_movemask_ps(in) & 0xff;
    if (b.outside == 0) {
      for (int a = 0; a < Dim; ++a) w[a] = inside(q[a]);
    } else if constexpr (in_vector) {
      // Non-finite positions sample 0: zero weights on a pair at the origin.
      __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
      for (int a = 0; a < Dim; ++a) {
        const __m256 magnitude = _mm256_andnot_ps(_mm256_set1_ps(-0.f), q[a]);
        finite = _mm256_and_ps(finite, _mm256_cmp_ps(magnitude, _mm256_set1_ps(INFINITY), _CMP_LT_OQ));
      }
      for (int a = 0; a < Dim; ++a) w[a] = anywhere(_mm256_and_ps(q[a], finite), a);
      w[0].w0 = _mm256_and_ps(w[0].w0, finite);
      w[0].w1 = _mm256_and_ps(w[0].w1, finite);
      b.outside = 0;
    } else {
      for (int a = 0; a < Dim; ++a) w[a] = inside(_mm256_and_ps(q[a], in));  // outside: voxel 0
    }
    __m256i idx = w[Dim - 1].cell;
    if constexpr (Dim == 3) idx = _mm256_add_epi32(_mm256_mullo_epi32(idx, ny), w[1].cell);
    b.idx = _mm256_add_epi32(_mm256_mullo_epi32(idx, nx), w[0].cell);
    for (int a = 0; a < Dim; ++a) b.w0[a] = w[a].w0, b.w1[a] = w[a].w1;
    return b;
  }

  /// The weights of a cell's rows (y, y + 1, then in 3D the same at z + 1): products of
  /// the y and z pair weights.
  DIFFEO_INLINE_AVX2 static void row_weights(const located& b, __m256 (&wr)[Dim == 3 ? 4 : 2]) {
    if constexpr (Dim == 3) {
      wr[0] = _mm256_mul_ps(b.w0[1], b.w0[2]);
      wr[1] = _mm256_mul_ps(b.w1[1], b.w0[2]);
      wr[2] = _mm256_mul_ps(b.w0[1], b.w1[2]);
      wr[3] = _mm256_mul_ps(b.w1[1], b.w1[2]);
    } else {
      wr[0] = b.w0[1];
      wr[1] = b.w1[1];
    }
  }

  /// Per-point rows of a three-channel pair, `[A0 A1 A2 B0 | B1 B2 . .]` for the pair's
  /// voxels A and B, transposed to one vector per channel of each voxel, points in order
  /// (points l and l + 4 share a 4 × 4 in-lane transpose).
  DIFFEO_INLINE_AVX2 static void split_pairs3(const __m256 (&rows)[8], __m256 (&a)[3], __m256 (&b)[3]) {
    __m256 lo[4], hi[4];
    for (int l = 0; l < 4; ++l) {
      lo[l] = _mm256_permute2f128_ps(rows[l], rows[l + 4], 0x20);  // A0 A1 A2 B0 of l | of l + 4
      hi[l] = _mm256_permute2f128_ps(rows[l], rows[l + 4], 0x31);  // B1 B2 . .
    }
    const __m256 t0 = _mm256_unpacklo_ps(lo[0], lo[1]), t1 = _mm256_unpackhi_ps(lo[0], lo[1]);
    const __m256 t2 = _mm256_unpacklo_ps(lo[2], lo[3]), t3 = _mm256_unpackhi_ps(lo[2], lo[3]);
    const __m256 h0 = _mm256_unpacklo_ps(hi[0], hi[1]), h1 = _mm256_unpacklo_ps(hi[2], hi[3]);
    a[0] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    a[1] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    a[2] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    b[0] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    b[1] = _mm256_shuffle_ps(h0, h1, _MM_SHUFFLE(1, 0, 1, 0));
    b[2] = _mm256_shuffle_ps(h0, h1, _MM_SHUFFLE(3, 2, 3, 2));
  }

  /// For a block whose corners all lie on the grid (`off_grid == 0`) of a `Dim`-channel
  /// `src` (a vector field): `out = op(∇src(q), g)` at its 8 points, `g` and `out`
  /// interleaved (8 · Dim floats, `out` may be `g`). Along an axis, the derivative of a lerp
  /// is the difference of its pair. 2D: `op(dx, dy, g)` on four points per vector, channels
  /// interleaved as in `g` ([c0 c1 of l, of l + 1 | …]; dx = ∂src/∂q_x, dy = ∂src/∂q_y);
  /// 3D: `op(d, g, out)` with d[a][k] = ∂src_k/∂q_a and one vector per channel, points in
  /// order. False (nothing written) when the block has a point off the grid or reads the
  /// grid's last pair (whose 8-float loads would leave the image). The `op`s below capture
  /// (`[&]`) though they need nothing: a capture-less lambda also gets a conversion to a
  /// plain function, compiled without AVX2 (GCC's -Wpsabi).
  template <class Op>
  DIFFEO_INLINE_AVX2 bool with_gradient(const located& b, const float* g, float* out, const Op& op) const {
    if (b.off_grid != 0) return false;
    alignas(32) int offset[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(offset), _mm256_mullo_epi32(b.idx, channels));
    prefetch(offset, Dim);
    const float* r = src.data;
    if constexpr (Dim == 2) {
      for (int l = 0; l < 8; l += 4) {
        const __m256i pick = _mm256_setr_epi32(l, l, l + 1, l + 1, l + 2, l + 2, l + 3, l + 3);
        const auto at = [&](__m256 w) DIFFEO_INLINE_AVX2_LAMBDA { return _mm256_permutevar8x32_ps(w, pick); };
        const float *p0 = r + offset[l], *p1 = r + offset[l + 1], *p2 = r + offset[l + 2],
                    *p3 = r + offset[l + 3];
        __m256 first[2], second[2];  // per row: the pair's voxels A and B
        for (int j = 0; j < 2; ++j) {
          const index_t d = j * sy;
          const __m256 x = _mm256_loadu2_m128(p2 + d, p0 + d), y = _mm256_loadu2_m128(p3 + d, p1 + d);
          first[j] = _mm256_shuffle_ps(x, y, _MM_SHUFFLE(1, 0, 1, 0));
          second[j] = _mm256_shuffle_ps(x, y, _MM_SHUFFLE(3, 2, 3, 2));
        }
        const __m256 dx = mix(_mm256_sub_ps(second[0], first[0]), _mm256_sub_ps(second[1], first[1]),
                              at(b.w0[1]), at(b.w1[1]));
        const __m256 dy = mix(_mm256_sub_ps(first[1], first[0]), _mm256_sub_ps(second[1], second[0]),
                              at(b.w0[0]), at(b.w1[0]));
        _mm256_storeu_ps(out + 2 * l, op(dx, dy, _mm256_loadu_ps(g + 2 * l)));
      }
      return true;
    } else {
      if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(b.idx, last_pair)) != 0) return false;
      __m256 wr[4];
      row_weights(b, wr);
      // Per point, rows [A0 A1 A2 B0 | B1 B2 . .] summed three ways: with the y and z
      // weights (for ∂/∂x: B − A), their differences along y weighted in z (for ∂/∂y: a
      // lerp in x) and along z weighted in y (∂/∂z).
      __m256 sum[8], along_y[8], along_z[8];
      for (int l = 0; l < 8; ++l) {
        const float* a = r + offset[l];
        const __m256i lane = _mm256_set1_epi32(l);
        const auto at = [&](__m256 w) DIFFEO_INLINE_AVX2_LAMBDA { return _mm256_permutevar8x32_ps(w, lane); };
        const __m256 r00 = _mm256_loadu_ps(a), r10 = _mm256_loadu_ps(a + sy);
        const __m256 r01 = _mm256_loadu_ps(a + sz), r11 = _mm256_loadu_ps(a + sz + sy);
        sum[l] = _mm256_add_ps(mix(r00, r10, at(wr[0]), at(wr[1])), mix(r01, r11, at(wr[2]), at(wr[3])));
        along_y[l] = mix(_mm256_sub_ps(r10, r00), _mm256_sub_ps(r11, r01), at(b.w0[2]), at(b.w1[2]));
        along_z[l] = mix(_mm256_sub_ps(r01, r00), _mm256_sub_ps(r11, r10), at(b.w0[1]), at(b.w1[1]));
      }
      __m256 d[3][3], first[3], second[3];  // d[a][k] = ∂src_k/∂q_a
      split_pairs3(sum, first, second);
      for (int k = 0; k < 3; ++k) d[0][k] = _mm256_sub_ps(second[k], first[k]);
      split_pairs3(along_y, first, second);
      for (int k = 0; k < 3; ++k) d[1][k] = mix(first[k], second[k], b.w0[0], b.w1[0]);
      split_pairs3(along_z, first, second);
      for (int k = 0; k < 3; ++k) d[2][k] = mix(first[k], second[k], b.w0[0], b.w1[0]);
      __m256 gs[3], o[3];
      load_vectors_avx2<3>(reinterpret_cast<const vec<float, 3>*>(g), gs);
      op(d, gs, o);
      __m256 v[3];
      interleave3_avx2(o, v[0], v[1], v[2]);
      for (int k = 0; k < 3; ++k) _mm256_storeu_ps(out + 8 * k, v[k]);
      return true;
    }
  }

  /// `out = g + (∇src)(q)ᵀ g` (see `with_gradient`): the pointwise part of compose's VJP.
  DIFFEO_INLINE_AVX2 bool add_gradient_dot(const located& b, const float* g, float* out) const {
    if constexpr (Dim == 2)
      return with_gradient(b, g, out, [&](__m256 dx, __m256 dy, __m256 gv) DIFFEO_INLINE_AVX2_LAMBDA {
        // hadd: [dx·g of l, of l + 1, dy·g of l, of l + 1 | …], reordered to points.
        const __m256 dots = _mm256_hadd_ps(_mm256_mul_ps(dx, gv), _mm256_mul_ps(dy, gv));
        return _mm256_add_ps(gv, _mm256_permute_ps(dots, _MM_SHUFFLE(3, 1, 2, 0)));
      });
    else
      return with_gradient(b, g, out, [&](const __m256 (&d)[3][3], const __m256 (&gs)[3], __m256 (&o)[3])
                                           DIFFEO_INLINE_AVX2_LAMBDA {
        for (int a = 0; a < 3; ++a)
          o[a] = _mm256_fmadd_ps(d[a][2], gs[2], _mm256_fmadd_ps(d[a][1], gs[1], _mm256_fmadd_ps(d[a][0], gs[0], gs[a])));
      });
  }

  /// `out = −(I + ∇src(q))⁻ᵀ g`, i.e. −λ with (I + Du)ᵀ λ = g (see `with_gradient`): the
  /// adjoint of `invert`'s VJP, by cofactors. A singular matrix gives ±inf or NaN.
  DIFFEO_INLINE_AVX2 bool minus_adjoint_solve(const located& b, const float* g, float* out) const {
    const __m256 one = _mm256_set1_ps(1.f);
    if constexpr (Dim == 2)
      return with_gradient(b, g, out, [one](__m256 dx, __m256 dy, __m256 gv) DIFFEO_INLINE_AVX2_LAMBDA {
        // a = (I + Du)ᵀ, a(k, m) = δ + ∂u_m/∂q_k: rows dx + e0 and dy + e1 of each point's
        // lane pair; aλ = g gives λ = (a11 g0 − a01 g1, a00 g1 − a10 g0)/det, built from the
        // vectors with each pair's lanes swapped.
        const auto swap = [&](__m256 v) DIFFEO_INLINE_AVX2_LAMBDA { return _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)); };
        const __m256 sdx = swap(dx), sdy = swap(dy);
        const __m256 diag_other = _mm256_add_ps(one, _mm256_blend_ps(sdy, sdx, 0xaa));  // a11, a00
        const __m256 off = _mm256_blend_ps(sdx, sdy, 0xaa);                             // a01, a10
        const __m256 det = _mm256_moveldup_ps(_mm256_fmsub_ps(_mm256_add_ps(one, dx), _mm256_add_ps(one, sdy),
                                                              _mm256_mul_ps(sdx, dy)));
        return _mm256_div_ps(_mm256_fmsub_ps(off, swap(gv), _mm256_mul_ps(diag_other, gv)), det);
      });
    else
      return with_gradient(b, g, out, [one](const __m256 (&d)[3][3], const __m256 (&gs)[3], __m256 (&o)[3])
                                           DIFFEO_INLINE_AVX2_LAMBDA {
        __m256 a[3][3];  // a = (I + Du)ᵀ: a(k, m) = δ + ∂u_m/∂q_k
        for (int k = 0; k < 3; ++k)
          for (int m = 0; m < 3; ++m) a[k][m] = k == m ? _mm256_add_ps(one, d[k][m]) : d[k][m];
        __m256 c[3][3];  // cofactors, in the cyclic form of a 3 × 3
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 3; ++j)
            c[i][j] = _mm256_fmsub_ps(a[(i + 1) % 3][(j + 1) % 3], a[(i + 2) % 3][(j + 2) % 3],
                                      _mm256_mul_ps(a[(i + 1) % 3][(j + 2) % 3], a[(i + 2) % 3][(j + 1) % 3]));
        const __m256 det = _mm256_fmadd_ps(a[0][2], c[0][2], _mm256_fmadd_ps(a[0][1], c[0][1], _mm256_mul_ps(a[0][0], c[0][0])));
        const __m256 minus_inv_det = _mm256_div_ps(_mm256_set1_ps(-1.f), det);
        for (int k = 0; k < 3; ++k)  // λ_k = Σ_m c(m, k) g_m / det
          o[k] = _mm256_mul_ps(minus_inv_det,
                               _mm256_fmadd_ps(c[2][k], gs[2], _mm256_fmadd_ps(c[1][k], gs[1], _mm256_mul_ps(c[0][k], gs[0]))));
      });
  }

  /// Reads and blends the taps of a located block: the output points (`out[0, 8 C)`).
  /// `Channels` is the image's channel count when it is 1 to 4, else 0 (any count, read at
  /// run time). `store` writes the results (see `store_affine`). Returns the points left
  /// to the caller (as bits): under `reflection`, those whose corners leave the grid;
  /// their outputs may hold anything.
  template <int Channels, class Store = store_sampled>
  DIFFEO_INLINE_AVX2 int finish(const located& b, float* out, const Store& store = {}) const {
    const int outside = b.outside;
    if (outside == 0xff) return outside;
    const int C = Channels != 0 ? Channels : src.channels;
    const __m256i idx = b.idx;
    const float* r = src.data;
    if constexpr (Channels == 1) {
      alignas(32) int at[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(at), idx);
      prefetch(at, 1);
      store.put(out, combine([&](index_t d) DIFFEO_TARGET_AVX2 { return blend_pairs(r + d, at, b.w0[0], b.w1[0]); },
                             b.w0, b.w1));
      return outside;
    }
    alignas(32) int offset[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(offset), _mm256_mullo_epi32(idx, channels));
    prefetch(offset, C);
    if constexpr (Channels == 3) {
      // Both voxels of a pair (6 floats) in one 8-float load, one point per vector: half
      // the loads of two points per vector, and no rotation. The loads read 2 floats past
      // the pair, which stay in the image except past the last cell's last row.
      if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(idx, last_pair)) == 0) {
        __m256 wr[Dim == 3 ? 4 : 2];
        row_weights(b, wr);
        // Per point, its rows summed with their y (and z) weights: [A0 A1 A2 B0 | B1 B2 . .]
        // for the pair's voxels A and B.
        __m256 rows[8];
        for (int l = 0; l < 8; ++l) {
          const float* a = r + offset[l];
          const __m256i lane = _mm256_set1_epi32(l);
          const auto at = [&](__m256 x) DIFFEO_TARGET_AVX2 { return _mm256_permutevar8x32_ps(x, lane); };
          rows[l] = mix(_mm256_loadu_ps(a), _mm256_loadu_ps(a + sy), at(wr[0]), at(wr[1]));
          if constexpr (Dim == 3)  // two short chains rather than one long one
            rows[l] = _mm256_add_ps(rows[l], mix(_mm256_loadu_ps(a + sz), _mm256_loadu_ps(a + sz + sy),
                                                 at(wr[2]), at(wr[3])));
        }
        // Transposed to one vector per voxel channel, blended along x, interleaved back.
        __m256 first[3], second[3], c[3];
        split_pairs3(rows, first, second);
        for (int k = 0; k < 3; ++k) c[k] = mix(first[k], second[k], b.w0[0], b.w1[0]);
        __m256 v[3];
        interleave3_avx2(c, v[0], v[1], v[2]);
        for (int k = 0; k < 3; ++k) store.put(out + 8 * k, v[k]);
        return outside;
      }
    }
    if constexpr (Channels == 2) {
      // A voxel pair is 4 adjacent floats: four points per vector, the pairs of points
      // (l, l + 1) and (l + 2, l + 3) split into first and second voxels by two shuffles.
      for (int l = 0; l < 8; l += 4) {
        const __m256i pick = _mm256_setr_epi32(l, l, l + 1, l + 1, l + 2, l + 2, l + 3, l + 3);
        __m256 w0[Dim], w1[Dim];
        for (int a = 0; a < Dim; ++a) {
          w0[a] = _mm256_permutevar8x32_ps(b.w0[a], pick);
          w1[a] = _mm256_permutevar8x32_ps(b.w1[a], pick);
        }
        const float *p0 = r + offset[l], *p1 = r + offset[l + 1], *p2 = r + offset[l + 2],
                    *p3 = r + offset[l + 3];
        const __m256 v = combine(
            [&](index_t d) DIFFEO_TARGET_AVX2 {
              const __m256 a = _mm256_loadu2_m128(p2 + d, p0 + d), b = _mm256_loadu2_m128(p3 + d, p1 + d);
              const __m256 first = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0));
              const __m256 second = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2));
              return mix(first, second, w0[0], w1[0]);
            },
            w0, w1);
        store.put(out + 2 * l, v);
      }
    } else if constexpr (Channels >= 2) {
      constexpr int shift = (4 - Channels % 4) % 4;
      for (int l = 0; l < 8; l += 2) {
        const __m256i pick = _mm256_setr_epi32(l, l, l, l, l + 1, l + 1, l + 1, l + 1);
        __m256 w0[Dim], w1[Dim];
        for (int a = 0; a < Dim; ++a) {
          w0[a] = _mm256_permutevar8x32_ps(b.w0[a], pick);
          w1[a] = _mm256_permutevar8x32_ps(b.w1[a], pick);
        }
        const float *a0 = r + offset[l], *a1 = r + offset[l + 1];
        const __m256 v = combine(
            [&](index_t d) DIFFEO_TARGET_AVX2 { return blend_two<Channels>(a0 + d, a1 + d, w0[0], w1[0]); }, w0, w1);
        // Each store spills `shift` floats into the next point's channels, written after it.
        float* o = out + l * Channels;
        store.put(o, _mm256_castps256_ps128(v));
        if (shift == 0 || l + 1 < 7)
          store.put(o + Channels, _mm256_extractf128_ps(v, 1));
        else
          store.put(o + Channels, _mm256_extractf128_ps(v, 1),
                    _mm_setr_epi32(-1, -(Channels > 1), -(Channels > 2), 0));
      }
    } else {
      alignas(32) float weight[2][Dim][8];
      for (int a = 0; a < Dim; ++a) {
        _mm256_store_ps(weight[0][a], b.w0[a]);
        _mm256_store_ps(weight[1][a], b.w1[a]);
      }
      const int shift = (4 - (C & 3)) & 3;
      const __m128i rotate = _mm_add_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(shift));
      alignas(16) static constexpr int lanes[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
      const __m128i tail = _mm_loadu_si128(reinterpret_cast<const __m128i*>(lanes + shift));
      for (int l = 0; l < 8; ++l) {
        const float* a = r + offset[l];
        float* o = out + l * C;
        __m128 w0[Dim], w1[Dim];
        for (int k = 0; k < Dim; ++k) {
          w0[k] = _mm_set1_ps(weight[0][k][l]);
          w1[k] = _mm_set1_ps(weight[1][k][l]);
        }
        for (int c = 0; c < C; c += 4) {
          const bool full = c + 4 <= C;
          const __m128 v = combine(
              [&](index_t d) DIFFEO_TARGET_AVX2 { return blend_channels(a + d, C, c, w0[0], w1[0], full, shift, rotate); },
              w0, w1);
          // A partial group spills `shift` floats into the next point's channels, which
          // are written after it; the block's last point stores only its own lanes.
          if (full || l < 7)
            store.put(o + c, v);
          else
            store.put(o + c, v, tail);
        }
      }
    }
    return outside;
  }
};

/// The blocks of a row of `n` points from x = 0 while 8 remain, each located one block
/// ahead (see `linear_block_avx2::locate`). `finish(x, located)` reads and writes block x
/// and returns the points it left (as bits); `point(x)` computes point x instead. Returns
/// where it stopped.
template <int Dim, class Boundary, class Finish, class Point>
DIFFEO_INLINE_AVX2 index_t run_row(const linear_block_avx2<Dim, Boundary>& block,
                                   const vec<float, Dim>* u, index_vec<Dim> p, index_t n,
                                   float scale, const Finish& finish, const Point& point) {
  if (n < 8) return 0;
  p[0] = 0;
  auto next = block.locate(u, p, scale);
  index_t x = 0;
  for (; x + 8 <= n; x += 8) {
    const auto here = next;
    if (x + 16 <= n) {
      p[0] = x + 8;
      next = block.locate(u + x + 8, p, scale);
    }
    for (int rest = finish(x, here); rest != 0; rest &= rest - 1)
      point(x + __builtin_ctz(static_cast<unsigned>(rest)));
  }
  return x;
}

}  // namespace diffeo::detail
#endif
