#pragma once
/// The standard benchmark workloads W1-W4 of the project's shared WORKLOADS.md (mirrored in
/// docs/benchmarks.md), generated in code from their closed formulas, and the harness the
/// benchmark binaries share: thread limits, the STREAM floor, counters, output checks and
/// the summary table printed after the Google Benchmark run.
///
///   const auto& img = diffeo_bench::inputs::w1_img2d(3);        // raw float32 buffer
///   auto src = diffeo_bench::to_image<diffeo::backend::tbb>(img); // as a diffeo field
///
/// Every formula is evaluated in float64 at integer coordinates and rounded once to
/// float32. Raw buffers are C order with x fastest and channels / vector components
/// interleaved last: exactly the buffers of OpenCV `CV_32FCn` and ITK images.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <numbers>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <diffeo/core.hpp>

#if defined(DIFFEO_ENABLE_TBB)
#  include <oneapi/tbb/global_control.h>
#endif
#if defined(DIFFEO_BENCH_HAVE_ITK)
#  include <itkImage.h>
#  include <itkMultiThreaderBase.h>
#  include <itkProcessObject.h>
#  include <itkVectorImage.h>
#endif

namespace diffeo_bench {

using diffeo::index_t;

// =========================================================================================
// Inputs
// =========================================================================================

/// A raw float32 array on a `Dim`-dimensional grid: `per_point` interleaved floats per grid
/// point (image channels, or the `Dim` components of a vector field).
template <int Dim>
struct raw {
  diffeo::extents<Dim> ext{};
  int per_point = 1;
  std::vector<float> data;

  index_t points() const { return ext.count(); }
  const float* at(index_t point) const { return data.data() + point * per_point; }
};

namespace formula {

inline constexpr double two_pi = 2.0 * std::numbers::pi;

/// phi(j, c, s) = 0.37 (j+1) + 1.3 c + 2.1 s
inline double phase(int j, int c, int s) { return 0.37 * (j + 1) + 1.3 * c + 2.1 * s; }

/// 2D image, channel c.
inline double image2d(double x, double y, int c) {
  return 0.5 +
         0.2 * std::sin(two_pi * x / 23 + 0.7 * c) * std::cos(two_pi * y / 31 - 0.3 * c) +
         0.1 * std::sin(two_pi * (x + 2 * y) / 97 + 1.1 * c) +
         0.05 * std::cos(two_pi * (3 * x - y) / 11);
}

/// 3D image.
inline double image3d(double x, double y, double z) {
  return 0.5 +
         0.2 * std::sin(two_pi * x / 23) * std::cos(two_pi * y / 31) * std::cos(two_pi * z / 19) +
         0.1 * std::sin(two_pi * (x + 2 * y + 3 * z) / 97) +
         0.05 * std::cos(two_pi * (3 * x - y + z) / 11);
}

/// 2D field of amplitude A and seed s, component c (0 = x, 1 = y); N = the x size.
inline double field2d(double x, double y, int c, double A, int s, double N) {
  return A * (0.6 * std::sin(two_pi * x / (0.9 * N) + phase(0, c, s)) *
                  std::cos(two_pi * y / (0.7 * N) + phase(1, c, s)) +
              0.4 * std::sin(two_pi * (x + y) / (0.5 * N) + phase(2, c, s)));
}

/// 3D field, component c (0 = x, 1 = y, 2 = z); |f_c| <= A.
inline double field3d(double x, double y, double z, int c, double A, int s, double N) {
  return A * (0.5 * std::sin(two_pi * x / (0.9 * N) + phase(0, c, s)) *
                  std::cos(two_pi * y / (0.7 * N) + phase(1, c, s)) *
                  std::cos(two_pi * z / (0.8 * N) + phase(3, c, s)) +
              0.3 * std::sin(two_pi * (x + y + z) / (0.5 * N) + phase(2, c, s)) +
              0.2 * std::cos(two_pi * (x - z) / (0.6 * N) + phase(4, c, s)));
}

}  // namespace formula

/// 2D image `(ny, nx, channels)` with channels I_0 .. I_{channels-1}.
inline raw<2> make_image2d(index_t nx, index_t ny, int channels) {
  raw<2> r{diffeo::make_extents(nx, ny), channels, {}};
  r.data.resize(static_cast<std::size_t>(nx * ny * channels));
  for (index_t y = 0; y < ny; ++y)
    for (index_t x = 0; x < nx; ++x)
      for (int c = 0; c < channels; ++c)
        r.data[(y * nx + x) * channels + c] =
            static_cast<float>(formula::image2d(double(x), double(y), c));
  return r;
}

/// 3D image `(n, n, n)`.
inline raw<3> make_image3d(index_t n) {
  raw<3> r{diffeo::make_extents(n, n, n), 1, {}};
  r.data.resize(static_cast<std::size_t>(n * n * n));
  for (index_t z = 0; z < n; ++z)
    for (index_t y = 0; y < n; ++y)
      for (index_t x = 0; x < n; ++x)
        r.data[(z * n + y) * n + x] =
            static_cast<float>(formula::image3d(double(x), double(y), double(z)));
  return r;
}

/// 2D vector field `(ny, nx, 2)`, components (x, y) interleaved.
inline raw<2> make_field2d(index_t nx, index_t ny, double A, int s) {
  raw<2> r{diffeo::make_extents(nx, ny), 2, {}};
  r.data.resize(static_cast<std::size_t>(nx * ny * 2));
  for (index_t y = 0; y < ny; ++y)
    for (index_t x = 0; x < nx; ++x)
      for (int c = 0; c < 2; ++c)
        r.data[(y * nx + x) * 2 + c] =
            static_cast<float>(formula::field2d(double(x), double(y), c, A, s, double(nx)));
  return r;
}

/// 3D vector field `(n, n, n, 3)`, components (x, y, z) interleaved.
inline raw<3> make_field3d(index_t n, double A, int s) {
  raw<3> r{diffeo::make_extents(n, n, n), 3, {}};
  r.data.resize(static_cast<std::size_t>(n * n * n * 3));
  for (index_t z = 0; z < n; ++z)
    for (index_t y = 0; y < n; ++y)
      for (index_t x = 0; x < n; ++x)
        for (int c = 0; c < 3; ++c)
          r.data[((z * n + y) * n + x) * 3 + c] = static_cast<float>(
              formula::field3d(double(x), double(y), double(z), c, A, s, double(n)));
  return r;
}

/// The named arrays of WORKLOADS.md, generated on first use and kept for the run.
namespace inputs {
// clang-format off
inline const raw<2>& w1_img2d(int channels) {
  static const raw<2> c1 = make_image2d(1024, 1024, 1);
  static const raw<2> c3 = make_image2d(1024, 1024, 3);
  return channels == 1 ? c1 : c3;
}
inline const raw<2>& w1_u2d()   { static const raw<2> r = make_field2d(1024, 1024, 8, 0); return r; }
inline const raw<3>& w1_img3d() { static const raw<3> r = make_image3d(128); return r; }
inline const raw<3>& w1_u3d()   { static const raw<3> r = make_field3d(128, 6, 0); return r; }
inline const raw<2>& w2_u2d()   { static const raw<2> r = make_field2d(1024, 1024, 5, 1); return r; }
inline const raw<2>& w2_v2d()   { static const raw<2> r = make_field2d(1024, 1024, 5, 2); return r; }
inline const raw<3>& w2_u3d()   { static const raw<3> r = make_field3d(128, 4, 1); return r; }
inline const raw<3>& w2_v3d()   { static const raw<3> r = make_field3d(128, 4, 2); return r; }
inline const raw<2>& w3_v2d()   { static const raw<2> r = make_field2d(512, 512, 6, 3); return r; }
inline const raw<3>& w3_v3d()   { static const raw<3> r = make_field3d(128, 3, 3); return r; }
inline const raw<2>& w4_u2d()   { static const raw<2> r = make_field2d(1024, 1024, 4, 4); return r; }
inline const raw<3>& w4_u3d()   { static const raw<3> r = make_field3d(128, 3, 4); return r; }
// clang-format on
}  // namespace inputs

/// The image `r` as a diffeo image on backend `B` (`r.per_point` channels).
template <class B, int Dim>
diffeo::image<float, Dim, B> to_image(const raw<Dim>& r) {
  diffeo::image<float, Dim, diffeo::backend::serial> h(r.ext, r.per_point);
  std::memcpy(h.data(), r.data.data(), r.data.size() * sizeof(float));
  if constexpr (std::is_same_v<B, diffeo::backend::serial>)
    return h;
  else
    return diffeo::to_backend<B>(h);
}

/// The vector field `r` (`r.per_point == Dim`) as a diffeo vector field on backend `B`.
template <class B, int Dim>
diffeo::vector_field<float, Dim, B> to_vector_field(const raw<Dim>& r) {
  diffeo::vector_field<float, Dim, diffeo::backend::serial> h(r.ext);
  static_assert(sizeof(diffeo::vec<float, Dim>) == Dim * sizeof(float));
  std::memcpy(static_cast<void*>(h.data()), r.data.data(), r.data.size() * sizeof(float));
  if constexpr (std::is_same_v<B, diffeo::backend::serial>)
    return h;
  else
    return diffeo::to_backend<B>(h);
}

/// A host copy of a diffeo field (image or vector field) as a raw buffer.
template <class T, int Dim, class B>
raw<Dim> to_raw(const diffeo::field<T, Dim, B>& f) {
  const auto h = diffeo::to_host(f);
  constexpr int comps = diffeo::detail::components<T>::count;
  raw<Dim> r{f.ext(), f.channels() * comps, {}};
  r.data.resize(static_cast<std::size_t>(f.points() * r.per_point));
  std::memcpy(r.data.data(), static_cast<const void*>(h.data()), r.data.size() * sizeof(float));
  return r;
}

/// Linear interpolation with zeros outside (WORKLOADS.md "Conventions"), in float64: the
/// `k` interleaved values per point of `data` on grid `ext`, at real position `q` (x first),
/// written to `out[0, k)`. The reference the benchmarks check diffeo against.
template <int Dim, class V>
void lerp_zeros(const diffeo::extents<Dim>& ext, int k, const V* data, const double* q,
                double* out) {
  index_t i0[Dim];
  double t[Dim];
  for (int j = 0; j < k; ++j) out[j] = 0;
  for (int a = 0; a < Dim; ++a) {
    if (!(q[a] > -1 && q[a] < double(ext[a]))) return;  // every corner off the grid (or NaN)
    const double x0 = std::floor(q[a]);
    i0[a] = static_cast<index_t>(x0);
    t[a] = q[a] - x0;
  }
  for (int corner = 0; corner < (1 << Dim); ++corner) {
    double w = 1;
    diffeo::index_vec<Dim> c{};
    bool in = true;
    for (int a = 0; a < Dim; ++a) {
      const int bit = (corner >> a) & 1;
      c[a] = i0[a] + bit;
      w *= bit ? t[a] : 1 - t[a];
      in = in && c[a] >= 0 && c[a] < ext[a];
    }
    if (!in) continue;
    const V* v = data + ext.linear(c) * k;
    for (int j = 0; j < k; ++j) out[j] += w * double(v[j]);
  }
}

// =========================================================================================
// Harness
// =========================================================================================

/// Runs the rest of its scope on at most `n` threads in every threaded library the
/// benchmarks use (oneTBB, hence diffeo's tbb backend and OpenCV's TBB framework; ITK and
/// OpenCV get their own calls in the peer code).
class thread_limit {
 public:
  explicit thread_limit(int n)
#if defined(DIFFEO_ENABLE_TBB)
      : m_gc(::tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(n))
#endif
  {
    (void)n;
  }

 private:
#if defined(DIFFEO_ENABLE_TBB)
  ::tbb::global_control m_gc;
#endif
};

/// The thread counts to run: the `THREADS` environment variable ("1,2" by default).
inline std::vector<int> thread_counts() {
  std::vector<int> t;
  const char* env = std::getenv("THREADS");
  const std::string list = env && *env ? env : "1,2";
  std::size_t pos = 0;
  while (pos <= list.size()) {
    const std::size_t end = std::min(list.find(',', pos), list.size());
    const std::string item = list.substr(pos, end - pos);
    if (!item.empty()) t.push_back(std::max(1, std::atoi(item.c_str())));
    pos = end + 1;
  }
  return t;
}

/// What the summary table needs to know about one registered benchmark.
struct bench_meta {
  std::string workload;  ///< e.g. "W1 warp 2d_1024x1024_c1"; rows of the summary
  std::string impl;      ///< e.g. "diffeo_tbb", "opencv_remap", "itk_warp", "stream_triad"
  int threads = 1;
  double elements = 0;        ///< output elements per call
  double bytes_per_elem = 0;  ///< compulsory bytes per output element (WORKLOADS.md floor)
  bool is_diffeo = false;
  bool is_peer = false;
};

/// One check of an output against a reference.
struct check_result {
  std::string what;  ///< "diffeo_tbb vs definition", "opencv_remap vs diffeo"
  std::string mask;  ///< which elements were compared
  double max_abs = 0;
  double fraction = 0;  ///< fraction of elements in the mask
  double tolerance = 0;
  bool ok() const { return max_abs <= tolerance; }
};

/// Process-wide registry: benchmark metadata by name, measured times and checks.
struct registry {
  std::map<std::string, bench_meta> meta;
  std::vector<std::string> order;
  std::map<std::string, double> seconds;      ///< real seconds per call, by name
  std::map<std::string, double> cpu_seconds;  ///< process CPU seconds per call, by name
  std::map<std::string, std::vector<double>> samples, cpu_samples;
  std::map<std::string, check_result> checks;  ///< by `what`
  std::vector<std::string> check_order;
  std::vector<std::string> notes;

  static registry& get() {
    static registry r;
    return r;
  }
};

/// Records a check once (the first time `what` is seen) and returns whether it passed.
inline bool record_check(check_result c) {
  auto& reg = registry::get();
  auto [it, fresh] = reg.checks.try_emplace(c.what, c);
  if (fresh) reg.check_order.push_back(c.what);
  return it->second.ok();
}
inline bool has_check(const std::string& what) { return registry::get().checks.count(what) > 0; }

/// Max |a - b| over the points where `mask(point)` is true (all `per_point` values of each).
template <int Dim, class Mask>
check_result compare(std::string what, std::string mask_name, const raw<Dim>& a,
                     const raw<Dim>& b, double tolerance, const Mask& mask) {
  check_result c{std::move(what), std::move(mask_name), 0, 0, tolerance};
  index_t in = 0;
  const index_t n = a.points();
  const int k = a.per_point;
  if (b.points() != n || b.per_point != k) {
    c.max_abs = INFINITY;
    return c;
  }
  for (index_t p = 0; p < n; ++p) {
    if (!mask(p)) continue;
    ++in;
    for (int j = 0; j < k; ++j) {
      const double d = std::fabs(double(a.data[p * k + j]) - double(b.data[p * k + j]));
      if (!(d <= c.max_abs)) c.max_abs = std::isnan(d) ? INFINITY : d;
    }
  }
  c.fraction = n > 0 ? double(in) / double(n) : 0;
  return c;
}

/// Tolerance of a float32 result against the float64 definition of an op that samples
/// values of size up to `max_abs` at positions up to `n` voxels: p + u(p) is rounded to
/// float (half an ulp, at most n 2^-24 voxels), and within a voxel of the border the zero
/// padding makes the sampled value ramp from max_abs to 0 over one voxel, so the error there
/// reaches max_abs n 2^-24; twice that, plus 1e-5 for the arithmetic.
inline double position_tolerance(double max_abs, double n) {
  return 1e-5 + max_abs * n * std::ldexp(1.0, -23);
}

/// Largest |value| of a raw array.
template <int Dim>
double max_abs(const raw<Dim>& r) {
  double m = 0;
  for (float v : r.data) m = std::max(m, double(std::fabs(v)));
  return m;
}

/// The W1/W2 interior mask: every interpolation corner of `p + u(p)` is on the grid,
/// i.e. `p + u(p)` lies in `[0, n-1]` on every axis.
template <int Dim>
std::vector<char> interior_mask(const raw<Dim>& u) {
  std::vector<char> m(static_cast<std::size_t>(u.points()));
  for (index_t p = 0; p < u.points(); ++p) {
    const auto q = u.ext.unravel(p);
    bool in = true;
    for (int a = 0; a < Dim; ++a) {
      const double x = double(q[a]) + double(u.data[p * Dim + a]);
      in = in && x >= 0 && x <= double(u.ext[a] - 1);
    }
    m[p] = in;
  }
  return m;
}

/// Points at least `margin` voxels from every face.
template <int Dim>
std::vector<char> margin_mask(const diffeo::extents<Dim>& e, index_t margin) {
  std::vector<char> m(static_cast<std::size_t>(e.count()));
  for (index_t p = 0; p < e.count(); ++p) {
    const auto q = e.unravel(p);
    bool in = true;
    for (int a = 0; a < Dim; ++a) in = in && q[a] >= margin && q[a] < e[a] - margin;
    m[p] = in;
  }
  return m;
}

/// Runs the benchmark loop, one `call()` per iteration; returns the wall seconds it took.
template <class F>
double timed_loop(benchmark::State& st, F&& call) {
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) call();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Sets items / bytes processed and the "ns/elem" and "B/elem" counters, from the wall
/// time `seconds` of the whole loop (see `timed_loop`).
inline void set_counters(benchmark::State& st, double elements, double bytes_per_elem,
                         double seconds) {
  const auto it = static_cast<double>(st.iterations());
  st.SetItemsProcessed(static_cast<int64_t>(it * elements));
  st.SetBytesProcessed(static_cast<int64_t>(it * elements * bytes_per_elem));
  st.counters["ns/elem"] = benchmark::Counter(it > 0 ? seconds * 1e9 / (it * elements) : 0);
  st.counters["B/elem"] = benchmark::Counter(bytes_per_elem);
}

/// Registers `fn` as benchmark `name` (real time, milliseconds) with its metadata.
inline benchmark::internal::Benchmark* add(const std::string& name, bench_meta m,
                                           std::function<void(benchmark::State&)> fn) {
  auto& reg = registry::get();
  reg.meta[name] = std::move(m);
  reg.order.push_back(name);
  // Wall time is what the tables report; the CPU column is the process's CPU time (all
  // threads), a steadier estimate of single-thread cost on a machine shared with others.
  return benchmark::RegisterBenchmark(name.c_str(), [fn](benchmark::State& st) { fn(st); })
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Unit(benchmark::kMillisecond);
}

// ---- STREAM floor (W9) -------------------------------------------------------------------

namespace stream {

/// Runs `body(first, last)` over `[0, n)` split statically into `threads` equal parts.
template <class F>
void static_for(index_t n, int threads, const F& body) {
  if (threads <= 1) {
    body(index_t(0), n);
    return;
  }
  std::vector<std::thread> pool;
  const index_t chunk = (n + threads - 1) / threads;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back([&, t] { body(std::min(n, t * chunk), std::min(n, (t + 1) * chunk)); });
  body(0, std::min(n, chunk));
  for (auto& th : pool) th.join();
}

struct arrays {
  index_t n = 0;
  std::unique_ptr<double[]> a, b, c;
  explicit arrays(index_t count)
      : n(count), a(new double[count]), b(new double[count]), c(new double[count]) {
    // First touch by the same static partition the kernels use (2 threads).
    static_for(n, 2, [&](index_t f, index_t l) {
      for (index_t i = f; i < l; ++i) a[i] = 1.0, b[i] = 2.0, c[i] = 0.0;
    });
  }
};

/// STREAM copy `c = a` (16 B per index) and triad `a = b + 3 c` (24 B per index).
inline void copy(arrays& s, int threads) {
  double* __restrict c = s.c.get();
  const double* __restrict a = s.a.get();
  static_for(s.n, threads, [=](index_t f, index_t l) {
    for (index_t i = f; i < l; ++i) c[i] = a[i];
  });
}
inline void triad(arrays& s, int threads) {
  double* __restrict a = s.a.get();
  const double* __restrict b = s.b.get();
  const double* __restrict c = s.c.get();
  static_for(s.n, threads, [=](index_t f, index_t l) {
    for (index_t i = f; i < l; ++i) a[i] = b[i] + 3.0 * c[i];
  });
}

/// Registers STREAM copy and triad on `mib` MiB arrays (swept `sweeps` times per call).
inline void register_floor(int mib, int sweeps, const std::vector<int>& threads) {
  const index_t n = index_t(mib) * 1024 * 1024 / index_t(sizeof(double));
  const std::string size = std::to_string(mib) + "MiB";
  for (const char* kind : {"copy", "triad"}) {
    const bool is_triad = std::string(kind) == "triad";
    const double bytes = is_triad ? 24.0 : 16.0;
    for (int t : threads) {
      const std::string name = std::string("STREAM/") + kind + "_" + size + "/threads:" +
                               std::to_string(t);
      bench_meta m{"STREAM " + std::string(kind) + " " + size, std::string("stream_") + kind,
                   t,  double(n) * sweeps, bytes, false, false};
      add(name, m, [n, t, is_triad, sweeps, bytes](benchmark::State& st) {
        static std::map<index_t, std::unique_ptr<arrays>> cache;
        auto& slot = cache[n];
        if (!slot) slot = std::make_unique<arrays>(n);
        arrays& s = *slot;
        for (int w = 0; w < sweeps; ++w) is_triad ? triad(s, t) : copy(s, t);  // warm-up
        const double secs = timed_loop(st, [&] {
          for (int w = 0; w < sweeps; ++w) is_triad ? triad(s, t) : copy(s, t);
          benchmark::ClobberMemory();
        });
        set_counters(st, double(n) * sweeps, bytes, secs);
      });
    }
  }
}

}  // namespace stream

// ---- ITK helpers ---------------------------------------------------------------------------

#if defined(DIFFEO_BENCH_HAVE_ITK)
namespace itk_peer {

/// Unit spacing, zero origin, identity direction (ITK physical coordinates = voxel indices).
template <class ImageT, int Dim>
typename ImageT::Pointer make_image(const raw<Dim>& r) {
  auto img = ImageT::New();
  typename ImageT::SizeType size;
  typename ImageT::IndexType start;
  for (int a = 0; a < Dim; ++a) size[a] = static_cast<itk::SizeValueType>(r.ext[a]), start[a] = 0;
  img->SetRegions(typename ImageT::RegionType(start, size));
  if constexpr (std::is_same_v<ImageT, itk::VectorImage<float, Dim>>)
    img->SetNumberOfComponentsPerPixel(static_cast<unsigned>(r.per_point));
  img->Allocate();
  std::memcpy(static_cast<void*>(img->GetBufferPointer()), r.data.data(),
              r.data.size() * sizeof(float));
  return img;
}

/// The buffer of an ITK image as a raw array (`per_point` floats per pixel).
template <class ImageT, int Dim>
raw<Dim> to_raw(const ImageT* img, const diffeo::extents<Dim>& ext, int per_point) {
  raw<Dim> r{ext, per_point, std::vector<float>(static_cast<std::size_t>(ext.count() * per_point))};
  std::memcpy(r.data.data(), static_cast<const void*>(img->GetBufferPointer()),
              r.data.size() * sizeof(float));
  return r;
}

/// WORKLOADS.md's thread settings: the global default (before the filter is made, and for
/// the filters a filter makes inside), then the filter's threader and work units.
inline void set_global_threads(int n) {
  itk::MultiThreaderBase::SetGlobalDefaultNumberOfThreads(static_cast<itk::ThreadIdType>(n));
}
inline void set_filter_threads(itk::ProcessObject* f, int n) {
  f->GetMultiThreader()->SetMaximumNumberOfThreads(static_cast<itk::ThreadIdType>(n));
  f->SetNumberOfWorkUnits(static_cast<itk::ThreadIdType>(n));
}

/// The vector field type of ITK for `Dim`: Image<Vector<float, Dim>, Dim>.
template <int Dim>
using field_t = itk::Image<itk::Vector<float, Dim>, Dim>;

}  // namespace itk_peer
#endif

// ---- reporting ---------------------------------------------------------------------------

/// Whether the summary's derived columns (GB/s, multiple of the floor, ratios, speed-up)
/// use process CPU time (SUMMARY_TIME=cpu) instead of wall time. CPU time sums all threads,
/// so it suits one-thread comparisons on a loaded machine, not speed-ups.
inline bool summary_uses_cpu() {
  const char* e = std::getenv("SUMMARY_TIME");
  return e != nullptr && std::string(e) == "cpu";
}

/// Whether the summary takes the minimum over repetitions (SUMMARY_STAT=min) instead of
/// the median.
inline bool summary_uses_min() {
  const char* e = std::getenv("SUMMARY_STAT");
  return e != nullptr && std::string(e) == "min";
}

/// The console reporter, also recording each run's real time per call for the summary.
class recording_reporter : public benchmark::ConsoleReporter {
 public:
  recording_reporter() : benchmark::ConsoleReporter(OO_Tabular) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    auto& reg = registry::get();
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      const double unit = benchmark::GetTimeUnitMultiplier(r.time_unit);
      const double s = r.GetAdjustedRealTime() / unit, c = r.GetAdjustedCPUTime() / unit;
      if (r.run_type == Run::RT_Aggregate) {
        // Only aggregates are reported (--benchmark_report_aggregates_only): their median.
        if (r.aggregate_name == "median" && !reg.samples.count(r.run_name.function_name)) {
          reg.seconds[r.run_name.function_name] = s;
          reg.cpu_seconds[r.run_name.function_name] = c;
        }
        continue;
      }
      // The registered name (without the "/real_time" suffix). With repetitions, the
      // median of them, or the minimum with SUMMARY_STAT=min (on a shared, noisy machine
      // the best repetition is the one least disturbed by other processes).
      const std::string& name = r.run_name.function_name;
      auto& v = reg.samples[name];
      v.push_back(s);
      std::vector<double> sorted = v;
      std::sort(sorted.begin(), sorted.end());
      reg.seconds[name] = summary_uses_min() ? sorted.front() : sorted[(sorted.size() - 1) / 2];
      auto& cv = reg.cpu_samples[name];
      cv.push_back(c);
      sorted = cv;
      std::sort(sorted.begin(), sorted.end());
      reg.cpu_seconds[name] = summary_uses_min() ? sorted.front() : sorted[(sorted.size() - 1) / 2];
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

namespace detail {
inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
}  // namespace detail

/// Prints the summary (plain text, a Markdown table): per workload, implementation and
/// thread count: ns/elem, B/elem, effective GB/s, the floor (W1-W4 bytes / STREAM triad
/// bandwidth at the same thread count), the multiple of the floor, diffeo / peer time
/// ratios and the speed-up over one thread; then the output checks.
inline void print_summary(std::FILE* out = stdout) {
  auto& reg = registry::get();
  const auto& basis = summary_uses_cpu() ? reg.cpu_seconds : reg.seconds;
  auto secs = [&](const std::string& name) -> double {
    auto it = basis.find(name);
    return it == basis.end() ? -1 : it->second;
  };
  auto other_ns = [&](const std::string& name) -> double {  // the other time basis
    const auto& o = summary_uses_cpu() ? reg.seconds : reg.cpu_seconds;
    auto it = o.find(name);
    return it == o.end() ? -1 : it->second * 1e9 / reg.meta.at(name).elements;
  };
  auto ns_per_elem = [&](const std::string& name) {
    const double s = secs(name);
    return s < 0 ? -1 : s * 1e9 / reg.meta.at(name).elements;
  };
  // Triad bandwidth (bytes / s) per thread count, from the DRAM-sized arrays.
  std::map<int, double> triad_bw;
  for (const auto& name : reg.order) {
    const auto& m = reg.meta.at(name);
    const double s = secs(name);
    if (s <= 0 || m.workload.find("256MiB") == std::string::npos) continue;
    if (m.impl == "stream_triad") triad_bw[m.threads] = m.elements * m.bytes_per_elem / s;
  }
  std::fprintf(out, "\n== Memory bandwidth (STREAM; the floor below uses the 256 MiB triad) ==\n");
  std::fprintf(out, "| kernel | arrays | threads | GB/s |\n|---|---|---:|---:|\n");
  for (const auto& name : reg.order) {
    const auto& m = reg.meta.at(name);
    const double s = secs(name);
    if (s <= 0 || m.workload.rfind("STREAM", 0) != 0) continue;
    std::fprintf(out, "| %s | %s | %d | %.1f |\n", m.impl.c_str(),
                 m.workload.substr(m.workload.rfind(' ') + 1).c_str(), m.threads,
                 m.elements * m.bytes_per_elem / s * 1e-9);
  }

  // Workloads in registration order.
  std::vector<std::string> workloads;
  for (const auto& name : reg.order) {
    const auto& m = reg.meta.at(name);
    if (m.workload.rfind("STREAM", 0) == 0) continue;
    if (std::find(workloads.begin(), workloads.end(), m.workload) == workloads.end())
      workloads.push_back(m.workload);
  }
  const char* basis_name = summary_uses_cpu() ? "process CPU" : "wall";
  const char* other_name = summary_uses_cpu() ? "wall" : "cpu";
  std::fprintf(out,
               "\n== Summary (%s %s time per call over repetitions; floor = W bytes / triad "
               "bandwidth at the same thread count, same time basis) ==\n",
               summary_uses_min() ? "minimum" : "median", basis_name);
  std::fprintf(out,
               "| workload | impl | thr | ns/elem | %s ns/elem | B/elem | GB/s | floor ns/elem | "
               "x floor | vs peers (diffeo/peer) | speed-up 2 vs 1 thr |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n",
               other_name);
  for (const auto& w : workloads) {
    for (const auto& name : reg.order) {
      const auto& m = reg.meta.at(name);
      if (m.workload != w) continue;
      const double ns = ns_per_elem(name);
      if (ns < 0) continue;
      const double gbs = m.bytes_per_elem / ns;
      const double floor_ns =
          triad_bw.count(m.threads) ? m.bytes_per_elem / triad_bw[m.threads] * 1e9 : -1;
      std::string peers;
      if (m.is_diffeo) {
        for (const auto& pn : reg.order) {
          const auto& pm = reg.meta.at(pn);
          if (!pm.is_peer || pm.workload != w || pm.threads != m.threads) continue;
          const double pns = ns_per_elem(pn);
          if (pns <= 0) continue;
          if (!peers.empty()) peers += ", ";
          peers += pm.impl + " " + detail::fmt("%.2f", ns / pns);
        }
      }
      std::string speedup = "";
      if (m.threads == 2) {
        for (const auto& on : reg.order) {
          const auto& om = reg.meta.at(on);
          if (om.workload == w && om.impl == m.impl && om.threads == 1 && ns_per_elem(on) > 0)
            speedup = detail::fmt("%.2f", ns_per_elem(on) / ns);
        }
      }
      const double ons = other_ns(name);
      std::fprintf(out, "| %s | %s | %d | %.3f | %s | %.0f | %.1f | %s | %s | %s | %s |\n",
                   w.c_str(), m.impl.c_str(), m.threads, ns,
                   ons > 0 ? detail::fmt("%.3f", ons).c_str() : "-", m.bytes_per_elem, gbs,
                   floor_ns > 0 ? detail::fmt("%.3f", floor_ns).c_str() : "-",
                   floor_ns > 0 ? detail::fmt("%.2f", ns / floor_ns).c_str() : "-",
                   peers.empty() ? "-" : peers.c_str(), speedup.empty() ? "-" : speedup.c_str());
    }
  }
  if (!reg.check_order.empty()) {
    std::fprintf(out, "\n== Output checks (max |diff| over the mask, per element and component) ==\n");
    std::fprintf(out, "| check | mask | in mask | max abs diff | tolerance | result |\n"
                      "|---|---|---:|---:|---:|---|\n");
    for (const auto& what : reg.check_order) {
      const auto& c = reg.checks.at(what);
      std::fprintf(out, "| %s | %s | %.1f%% | %.3g | %.3g | %s |\n", c.what.c_str(),
                   c.mask.c_str(), 100 * c.fraction, c.max_abs, c.tolerance,
                   c.ok() ? "ok" : "FAIL");
    }
  }
  for (const auto& n : reg.notes) std::fprintf(out, "note: %s\n", n.c_str());
  std::fflush(out);
}

/// The shared `main`: runs the selected benchmarks with the recording console reporter
/// and prints the summary. Returns 1 when an output check failed.
inline int run_main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  recording_reporter rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  benchmark::Shutdown();
  print_summary();
  for (const auto& [what, c] : registry::get().checks)
    if (!c.ok()) return 1;
  return 0;
}

}  // namespace diffeo_bench
