#pragma once
// Slow, obvious reference implementations and deterministic test inputs, written
// independently of the library's kernels (no shared code paths).

#include <cmath>
#include <cstdint>
#include <vector>

namespace diffeo::test {

enum class ref_interp { nearest, linear, cubic };
enum class ref_boundary { zeros, border, reflection };

/// A deterministic pseudo-random stream (64-bit LCG); values in [lo, hi).
struct lcg {
  std::uint64_t state;
  explicit lcg(std::uint64_t seed) : state(seed * 6364136223846793005ULL + 1442695040888963407ULL) {}
  double uniform(double lo, double hi) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * double(state >> 11) * (1.0 / 9007199254740992.0);
  }
};

/// A smooth test function of position and channel.
inline double smooth_value(double x, double y, double z, int c) {
  return 0.5 + 0.3 * std::sin(0.37 * x + 0.11 * c) * std::cos(0.23 * y - 0.05 * c) +
         0.2 * std::sin(0.17 * (x + 2 * y + 3 * z) + 0.7 * c);
}

/// Keys' cubic convolution kernel with A = -0.75, as a function of distance.
inline double cubic_kernel(double d) {
  const double A = -0.75;
  d = std::fabs(d);
  if (d <= 1) return (A + 2) * d * d * d - (A + 3) * d * d + 1;
  if (d < 2) return A * d * d * d - 5 * A * d * d + 8 * A * d - 4 * A;
  return 0;
}

/// Index `i` under a boundary policy on an axis of `n` points; -1 means "reads zero".
inline long ref_index(long i, long n, ref_boundary b) {
  switch (b) {
    case ref_boundary::zeros:
      return (i < 0 || i >= n) ? -1 : i;
    case ref_boundary::border:
      return i < 0 ? 0 : (i >= n ? n - 1 : i);
    case ref_boundary::reflection:
      if (n == 1) return 0;
      while (i < 0 || i > n - 1) {
        if (i < 0) i = -i;
        if (i > n - 1) i = 2 * (n - 1) - i;
      }
      return i;
  }
  return -1;
}

/// Samples channel `c` of a row-major (…, C) array with extents `n[0..dim)` (x first) at
/// `q` by summing kernel(q - tap) · value(tap) over a generous window of taps.
inline double ref_sample(const std::vector<double>& data, const long* n, int dim, int channels,
                         int c, const double* q, ref_interp ip, ref_boundary b) {
  for (int a = 0; a < dim; ++a)
    if (!std::isfinite(q[a])) return 0;
  long lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0};
  for (int a = 0; a < dim; ++a) {
    if (ip == ref_interp::nearest) {
      lo[a] = hi[a] = long(std::nearbyint(q[a]));
    } else {
      lo[a] = long(std::floor(q[a])) - 2;
      hi[a] = long(std::floor(q[a])) + 3;
    }
  }
  auto weight = [&](int a, long i) {
    if (ip == ref_interp::nearest) return 1.0;
    const double d = q[a] - double(i);
    return ip == ref_interp::linear ? std::fmax(0.0, 1.0 - std::fabs(d)) : cubic_kernel(d);
  };
  double sum = 0;
  for (long k = (dim == 3 ? lo[2] : 0); k <= (dim == 3 ? hi[2] : 0); ++k)
    for (long j = lo[1]; j <= hi[1]; ++j)
      for (long i = lo[0]; i <= hi[0]; ++i) {
        const double w = weight(0, i) * weight(1, j) * (dim == 3 ? weight(2, k) : 1.0);
        if (w == 0) continue;
        const long ii = ref_index(i, n[0], b), jj = ref_index(j, n[1], b);
        const long kk = dim == 3 ? ref_index(k, n[2], b) : 0;
        if (ii < 0 || jj < 0 || kk < 0) continue;
        sum += w * data[((kk * n[1] + jj) * n[0] + ii) * channels + c];
      }
  return sum;
}

}  // namespace diffeo::test
