#pragma once
/// AVX2 rows of the linear pull-back for float images: 8 output points at a time, corners
/// fetched with gathers. Only points whose corners all lie on the grid are computed here;
/// the caller finishes the others (the boundary policy) with the scalar sampler.
/// Compiled for AVX2 + FMA per function and chosen at run time on x86 with GCC or Clang
/// (the whole translation unit when it is built with -mavx2 -mfma or -march=native);
/// define DIFFEO_NO_RUNTIME_DISPATCH to keep only the scalar path.

#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDA_ARCH__)
#  define DIFFEO_HAVE_AVX2 1
#  define DIFFEO_TARGET_AVX2
#elif (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__CUDACC__) && !defined(DIFFEO_NO_RUNTIME_DISPATCH)
// Not compiled for AVX2, but the CPU may have it: the AVX2 code is compiled for that target
// per function and chosen at run time (as OpenCV and glibc do).
#  define DIFFEO_HAVE_AVX2 1
#  define DIFFEO_AVX2_RUNTIME 1
#  define DIFFEO_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

#if defined(DIFFEO_HAVE_AVX2)
#  include <immintrin.h>

#  include "../../core/field_view.hpp"

namespace diffeo::detail {

/// Whether this CPU runs the AVX2 + FMA paths (always true when compiled for them).
inline bool cpu_has_avx2() {
#  if defined(DIFFEO_AVX2_RUNTIME)
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#  else
  return true;
#  endif
}

/// Loads the displacement components of 8 consecutive points as one vector per axis.
template <int Dim>
DIFFEO_TARGET_AVX2 inline void load_displacements_avx2(const vec<float, Dim>* u, __m256 (&c)[Dim]) {
  const float* f = reinterpret_cast<const float*>(u);
  if constexpr (Dim == 2) {
    const __m256 a = _mm256_loadu_ps(f), b = _mm256_loadu_ps(f + 8);
    // a = x0 y0 x1 y1 | x2 y2 x3 y3, b = x4 y4 x5 y5 | x6 y6 x7 y7
    const __m256 xs = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // x0 x1 x4 x5 | x2 x3 x6 x7
    const __m256 ys = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    c[0] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(xs), _MM_SHUFFLE(3, 1, 2, 0)));
    c[1] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ys), _MM_SHUFFLE(3, 1, 2, 0)));
  } else {
    const __m256i stride = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
    for (int a = 0; a < 3; ++a) c[a] = _mm256_i32gather_ps(f + a, stride, 4);
  }
}

/// Linear pull-back of blocks of 8 consecutive output points of a row of a float image.
/// Points whose corners all lie on the grid are written; the others are returned as a bit
/// mask for the caller's scalar path (which applies the boundary policy). Needs
/// `src.size() < 2^31` (32-bit gather indices).
template <int Dim>
struct linear_block_avx2 {
  const field_view<const float, Dim>& src;
  __m256 lim[Dim];
  __m256i nx, ny, channels;
  index_t sy, sz;

  DIFFEO_TARGET_AVX2 explicit linear_block_avx2(const field_view<const float, Dim>& s) : src(s) {
    for (int a = 0; a < Dim; ++a) lim[a] = _mm256_set1_ps(float(s.ext[a] - 1));
    nx = _mm256_set1_epi32(int(s.ext[0]));
    ny = _mm256_set1_epi32(int(Dim == 3 ? s.ext[1] : 1));
    channels = _mm256_set1_epi32(s.channels);
    sy = s.ext[0] * s.channels;
    sz = Dim == 3 ? s.ext[1] * sy : 0;
  }

  /// Output points p .. p + 7 along x (displacements `u[0, 8)`, output `out[0, 8 C)`).
  DIFFEO_TARGET_AVX2 static __m256 lerp_x(const float* row, __m256i idx, int C, __m256 t) {
    const __m256 v0 = _mm256_i32gather_ps(row, idx, 4);
    const __m256 v1 = _mm256_i32gather_ps(row + C, idx, 4);
    return _mm256_fmadd_ps(_mm256_sub_ps(v1, v0), t, v0);
  }

  /// With `scale`, the displacements are `scale · u` (exp's fused scaling).
  DIFFEO_TARGET_AVX2 int operator()(const vec<float, Dim>* u, float* out, const index_vec<Dim>& p,
                                    float scale = 1.f) const {
    const int C = src.channels;
    __m256 q[Dim], t[Dim];
    load_displacements_avx2<Dim>(u, q);
    if (scale != 1.f)
      for (int a = 0; a < Dim; ++a) q[a] = _mm256_mul_ps(q[a], _mm256_set1_ps(scale));
    __m256 in = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int a = 0; a < Dim; ++a) {
      __m256 pa = _mm256_set1_ps(float(p[a]));
      if (a == 0) pa = _mm256_add_ps(pa, _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
      q[a] = _mm256_add_ps(q[a], pa);
      // Ordered compares: NaN lands outside.
      in = _mm256_and_ps(in, _mm256_and_ps(_mm256_cmp_ps(q[a], _mm256_setzero_ps(), _CMP_GE_OQ),
                                           _mm256_cmp_ps(q[a], lim[a], _CMP_LT_OQ)));
    }
    const int outside = ~_mm256_movemask_ps(in) & 0xff;
    if (outside == 0xff) return outside;
    __m256i cell[Dim];
    for (int a = 0; a < Dim; ++a) {
      const __m256 qa = _mm256_and_ps(q[a], in);  // outside lanes read voxel 0, unused
      const __m256 f = _mm256_floor_ps(qa);
      t[a] = _mm256_sub_ps(qa, f);
      cell[a] = _mm256_cvttps_epi32(f);
    }
    __m256i idx = cell[Dim - 1];
    if constexpr (Dim == 3) idx = _mm256_add_epi32(_mm256_mullo_epi32(idx, ny), cell[1]);
    idx = _mm256_mullo_epi32(_mm256_add_epi32(_mm256_mullo_epi32(idx, nx), cell[0]), channels);
    alignas(32) float lanes[8];
    for (int c = 0; c < C; ++c) {
      const float* r = src.data + c;
      const __m256 top = lerp_x(r, idx, C, t[0]), bottom = lerp_x(r + sy, idx, C, t[0]);
      __m256 v = _mm256_fmadd_ps(_mm256_sub_ps(bottom, top), t[1], top);
      if constexpr (Dim == 3) {
        const __m256 top2 = lerp_x(r + sz, idx, C, t[0]), bottom2 = lerp_x(r + sz + sy, idx, C, t[0]);
        const __m256 v2 = _mm256_fmadd_ps(_mm256_sub_ps(bottom2, top2), t[1], top2);
        v = _mm256_fmadd_ps(_mm256_sub_ps(v2, v), t[2], v);
      }
      if (C == 1) {
        _mm256_storeu_ps(out, v);
      } else {
        _mm256_store_ps(lanes, v);
        for (int l = 0; l < 8; ++l) out[l * C + c] = lanes[l];
      }
    }
    return outside;
  }
};

}  // namespace diffeo::detail
#endif
