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
  // Regrouped so that each 128-bit lane holds 4 vectors (vectors 0–3 low, 4–7 high), the
  // split is in-lane shuffles: one lane-crossing op instead of nine permutes (Zen 4: 3D
  // compose 3–5 % faster).
  const __m256 m03 = _mm256_blend_ps(a, b, 0xf0);            // x0 y0 z0 x1 | x4 y4 z4 x5
  const __m256 m14 = _mm256_permute2f128_ps(a, d, 0x21);     // y1 z1 x2 y2 | y5 z5 x6 y6
  const __m256 m25 = _mm256_blend_ps(b, d, 0xf0);            // z2 x3 y3 z3 | z6 x7 y7 z7
  const __m256 xy = _mm256_shuffle_ps(m14, m25, _MM_SHUFFLE(2, 1, 3, 2));  // x2 y2 x3 y3
  const __m256 yz = _mm256_shuffle_ps(m03, m14, _MM_SHUFFLE(1, 0, 2, 1));  // y0 z0 y1 z1
  c[0] = _mm256_shuffle_ps(m03, xy, _MM_SHUFFLE(2, 0, 3, 0));
  c[1] = _mm256_shuffle_ps(yz, xy, _MM_SHUFFLE(3, 1, 2, 0));
  c[2] = _mm256_shuffle_ps(yz, m25, _MM_SHUFFLE(3, 0, 3, 1));
}

/// The inverse of `deinterleave3_avx2`: 8 3-vectors, one vector per component `c`, as 24
/// interleaved floats in `a b d`.
DIFFEO_TARGET_AVX2 inline void interleave3_avx2(const __m256 (&c)[3], __m256& a, __m256& b, __m256& d) {
  // In-lane shuffles to the lane groups of `deinterleave3_avx2`, then three lane swaps.
  const __m256 xy = _mm256_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0));  // x0 x2 y0 y2
  const __m256 yz = _mm256_shuffle_ps(c[1], c[2], _MM_SHUFFLE(3, 1, 3, 1));  // y1 y3 z1 z3
  const __m256 zx = _mm256_shuffle_ps(c[2], c[0], _MM_SHUFFLE(3, 1, 2, 0));  // z0 z2 x1 x3
  const __m256 m03 = _mm256_shuffle_ps(xy, zx, _MM_SHUFFLE(2, 0, 2, 0));     // x0 y0 z0 x1
  const __m256 m14 = _mm256_shuffle_ps(yz, xy, _MM_SHUFFLE(3, 1, 2, 0));     // y1 z1 x2 y2
  const __m256 m25 = _mm256_shuffle_ps(zx, yz, _MM_SHUFFLE(3, 1, 3, 1));     // z2 x3 y3 z3
  a = _mm256_permute2f128_ps(m03, m14, 0x20);
  b = _mm256_permute2f128_ps(m25, m03, 0x30);
  d = _mm256_permute2f128_ps(m14, m25, 0x31);
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
