#pragma once
/// AVX2 + FMA code paths of the CPU backends: compiled per function for that target and
/// chosen at run time on x86 with GCC or Clang (the whole translation unit when it is built
/// with -mavx2 -mfma or -march=native); define DIFFEO_NO_RUNTIME_DISPATCH to keep only the
/// portable paths. `DIFFEO_HAVE_AVX2` says whether the AVX2 code exists in this build,
/// `cpu_has_avx2()` whether this CPU may run it.

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
/// For the block kernels called once per block of a row loop: a call would spill the
/// block's constants on every block.
#  define DIFFEO_INLINE_AVX2 DIFFEO_TARGET_AVX2 __attribute__((always_inline)) inline
#  define DIFFEO_INLINE_AVX2_LAMBDA DIFFEO_TARGET_AVX2 __attribute__((always_inline))
#  include <immintrin.h>

#  include "../vec.hpp"

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

/// Splits 8 consecutive 3-vectors `a b d` (24 floats, components interleaved) into one
/// vector per component.
DIFFEO_TARGET_AVX2 inline void deinterleave3_avx2(__m256 a, __m256 b, __m256 d, __m256 (&c)[3]) {
  // a = x0 y0 z0 x1 y1 z1 x2 y2, b = z2 x3 y3 z3 x4 y4 z4 x5, d = y5 z5 x6 y6 z6 x7 y7 z7:
  // each component takes lanes from all three, put in place by one permute each and two
  // blends (indices of lanes a blend does not take are 0; yc's lane 5 and zb's lane 2 take 0).
  const __m256 xa = _mm256_permutevar8x32_ps(a, _mm256_setr_epi32(0, 3, 6, 0, 0, 0, 0, 0));
  const __m256 xb = _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(0, 0, 0, 1, 4, 7, 0, 0));
  const __m256 xc = _mm256_permutevar8x32_ps(d, _mm256_setr_epi32(0, 0, 0, 0, 0, 0, 2, 5));
  c[0] = _mm256_blend_ps(_mm256_blend_ps(xa, xb, 0x38), xc, 0xc0);
  const __m256 ya = _mm256_permutevar8x32_ps(a, _mm256_setr_epi32(1, 4, 7, 0, 0, 0, 0, 0));
  const __m256 yb = _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(0, 0, 0, 2, 5, 0, 0, 0));
  const __m256 yc = _mm256_permutevar8x32_ps(d, _mm256_setr_epi32(0, 0, 0, 0, 0, 0, 3, 6));
  c[1] = _mm256_blend_ps(_mm256_blend_ps(ya, yb, 0x18), yc, 0xe0);
  const __m256 za = _mm256_permutevar8x32_ps(a, _mm256_setr_epi32(2, 5, 0, 0, 0, 0, 0, 0));
  const __m256 zb = _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(0, 0, 0, 3, 6, 0, 0, 0));
  const __m256 zc = _mm256_permutevar8x32_ps(d, _mm256_setr_epi32(0, 0, 0, 0, 0, 1, 4, 7));
  c[2] = _mm256_blend_ps(_mm256_blend_ps(za, zb, 0x1c), zc, 0xe0);
}

/// The inverse of `deinterleave3_avx2`: 8 3-vectors, one vector per component `c`, as 24
/// interleaved floats in `a b d`.
DIFFEO_TARGET_AVX2 inline void interleave3_avx2(const __m256 (&c)[3], __m256& a, __m256& b, __m256& d) {
  // a = x0 y0 z0 x1 y1 z1 x2 y2, b = z2 x3 y3 z3 x4 y4 z4 x5, d = y5 z5 x6 y6 z6 x7 y7 z7.
  // Each output takes lanes from all three components: one permute each and two blends.
  const __m256i ax = _mm256_setr_epi32(0, 0, 0, 1, 0, 0, 2, 0), ay = _mm256_setr_epi32(0, 0, 0, 0, 1, 0, 0, 2),
                az = _mm256_setr_epi32(0, 0, 0, 0, 0, 1, 0, 0);
  a = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(c[0], ax), _mm256_permutevar8x32_ps(c[1], ay), 0x92),
                      _mm256_permutevar8x32_ps(c[2], az), 0x24);
  const __m256i bx = _mm256_setr_epi32(0, 3, 0, 0, 4, 0, 0, 5), by = _mm256_setr_epi32(0, 0, 3, 0, 0, 4, 0, 0),
                bz = _mm256_setr_epi32(2, 0, 0, 3, 0, 0, 4, 0);
  b = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(c[0], bx), _mm256_permutevar8x32_ps(c[1], by), 0x24),
                      _mm256_permutevar8x32_ps(c[2], bz), 0x49);
  const __m256i dx = _mm256_setr_epi32(0, 0, 6, 0, 0, 7, 0, 0), dy = _mm256_setr_epi32(5, 0, 0, 6, 0, 0, 7, 0),
                dz = _mm256_setr_epi32(0, 5, 0, 0, 6, 0, 0, 7);
  d = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(c[0], dx), _mm256_permutevar8x32_ps(c[1], dy), 0x49),
                      _mm256_permutevar8x32_ps(c[2], dz), 0x92);
}

/// Loads the components of 8 consecutive float vectors as one vector per component.
template <int Dim>
DIFFEO_TARGET_AVX2 inline void load_vectors_avx2(const vec<float, Dim>* u, __m256 (&c)[Dim]) {
  const float* f = reinterpret_cast<const float*>(u);
  if constexpr (Dim == 2) {
    const __m256 a = _mm256_loadu_ps(f), b = _mm256_loadu_ps(f + 8);
    // a = x0 y0 x1 y1 | x2 y2 x3 y3, b = x4 y4 x5 y5 | x6 y6 x7 y7
    const __m256 xs = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // x0 x1 x4 x5 | x2 x3 x6 x7
    const __m256 ys = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    c[0] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(xs), _MM_SHUFFLE(3, 1, 2, 0)));
    c[1] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ys), _MM_SHUFFLE(3, 1, 2, 0)));
  } else {
    deinterleave3_avx2(_mm256_loadu_ps(f), _mm256_loadu_ps(f + 8), _mm256_loadu_ps(f + 16), c);
  }
}

}  // namespace diffeo::detail
#endif
