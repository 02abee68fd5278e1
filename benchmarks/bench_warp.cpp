// W1 (backward warp, bilinear / trilinear, zeros outside) on diffeo's backends, next to the
// STREAM floor measured in the same binary and, when found at configure time, OpenCV's
// cv::remap and ITK's WarpImageFilter on the very same inputs. See docs/benchmarks.md.
//
//   bench_warp --benchmark_min_time=0.2           # all, then the summary table
//   THREADS=1 bench_warp --benchmark_filter=W1/2d # one thread count, 2D only

#include <sstream>

#include <diffeo/sample/warp.hpp>
#if __has_include(<diffeo/sample/splat.hpp>)
#  include <diffeo/sample/splat.hpp>
#  define DIFFEO_BENCH_SPLAT 1
#endif

#include "workloads.hpp"

#if defined(DIFFEO_BENCH_HAVE_OPENCV)
#  include <opencv2/core.hpp>
#  include <opencv2/core/utility.hpp>
#  include <opencv2/imgproc.hpp>
#endif
#if defined(DIFFEO_BENCH_HAVE_ITK)
#  include <itkImage.h>
#  include <itkLinearInterpolateImageFunction.h>
#  include <itkMultiThreaderBase.h>
#  include <itkVectorImage.h>
#  include <itkWarpImageFilter.h>
#endif

namespace db = diffeo_bench;
using diffeo::index_t;

namespace {

// ---- W1 inputs, reference and diffeo's own result ----------------------------------------

template <int Dim>
const db::raw<Dim>& w1_image(int channels) {
  if constexpr (Dim == 2)
    return db::inputs::w1_img2d(channels);
  else
    return db::inputs::w1_img3d();
}
template <int Dim>
const db::raw<Dim>& w1_field() {
  if constexpr (Dim == 2)
    return db::inputs::w1_u2d();
  else
    return db::inputs::w1_u3d();
}

/// W1 by its definition, in float64: out(p) = sum_c w_c I[c], corners off the grid read 0.
template <int Dim>
db::raw<Dim> reference_warp(const db::raw<Dim>& img, const db::raw<Dim>& u) {
  const int C = img.per_point;
  db::raw<Dim> out{u.ext, C, std::vector<float>(static_cast<std::size_t>(u.points() * C))};
  std::vector<double> acc(static_cast<std::size_t>(C));
  for (index_t p = 0; p < u.points(); ++p) {
    const auto g = u.ext.unravel(p);
    double q[Dim];
    for (int a = 0; a < Dim; ++a) q[a] = double(g[a]) + double(u.data[p * Dim + a]);
    db::lerp_zeros(img.ext, C, img.data.data(), q, acc.data());
    for (int k = 0; k < C; ++k) out.data[p * C + k] = static_cast<float>(acc[k]);
  }
  return out;
}

template <int Dim>
const db::raw<Dim>& w1_reference(int channels) {
  static std::map<int, db::raw<Dim>> cache;
  auto it = cache.find(channels);
  if (it == cache.end())
    it = cache.emplace(channels, reference_warp(w1_image<Dim>(channels), w1_field<Dim>())).first;
  return it->second;
}

/// diffeo's result on the serial backend: what the peers are checked against.
template <int Dim>
const db::raw<Dim>& w1_diffeo_output(int channels) {
  static std::map<int, db::raw<Dim>> cache;
  auto it = cache.find(channels);
  if (it == cache.end()) {
    using B = diffeo::backend::serial;
    auto src = db::to_image<B>(w1_image<Dim>(channels));
    auto u = db::to_vector_field<B>(w1_field<Dim>());
    diffeo::image<float, Dim, B> out(u.ext(), channels);
    diffeo::warp(B{}, src.view(), u.view(), out.view(), diffeo::interp::linear{},
                 diffeo::boundary::zeros{});
    it = cache.emplace(channels, db::to_raw(out)).first;
  }
  return it->second;
}

template <int Dim>
const std::vector<char>& w1_interior() {
  static const std::vector<char> m = db::interior_mask(w1_field<Dim>());
  return m;
}

/// Checks a peer's output against diffeo's on the W1 interior mask (recorded once).
template <int Dim>
void check_peer(const std::string& impl, const std::string& workload, int channels,
                const db::raw<Dim>& out, double tol) {
  const std::string what = impl + " vs diffeo (" + workload + ")";
  if (db::has_check(what)) return;
  const auto& mask = w1_interior<Dim>();
  db::record_check(db::compare(what, "interior (p+u in [0,n-1])", out,
                               w1_diffeo_output<Dim>(channels), tol,
                               [&](index_t p) { return mask[p] != 0; }));
}

// ---- diffeo -------------------------------------------------------------------------------

template <class B, int Dim>
void bm_diffeo_warp(benchmark::State& st, int channels, int threads, double bytes,
                    const std::string& impl, const std::string& workload) {
  db::thread_limit limit(threads);
  auto src = db::to_image<B>(w1_image<Dim>(channels));
  auto u = db::to_vector_field<B>(w1_field<Dim>());
  diffeo::image<float, Dim, B> out(u.ext(), channels);
  auto call = [&] {
    diffeo::warp(B{}, src.view(), u.view(), out.view(), diffeo::interp::linear{},
                 diffeo::boundary::zeros{});
    diffeo::synchronize(B{});
  };
  call();  // warm-up
  const double secs = db::timed_loop(st, call);
  db::set_counters(st, double(u.points()), bytes, secs);
  const std::string what = impl + " vs definition (" + workload + ")";
  if (!db::has_check(what))
    db::record_check(db::compare(
        what, "all", db::to_raw(out), w1_reference<Dim>(channels),
        db::position_tolerance(db::max_abs(w1_image<Dim>(channels)), double(u.ext()[0])),
        [](index_t) { return true; }));
}

// ---- OpenCV -------------------------------------------------------------------------------

#if defined(DIFFEO_BENCH_HAVE_OPENCV)
/// map(x, y) = (x + ux, y + uy) as CV_32FC2, rows in parallel on OpenCV's thread pool.
void build_map(const db::raw<2>& u, cv::Mat& map) {
  const int nx = int(u.ext[0]);
  cv::parallel_for_(cv::Range(0, int(u.ext[1])), [&](const cv::Range& r) {
    for (int y = r.start; y < r.end; ++y) {
      float* m = map.ptr<float>(y);
      const float* d = u.at(index_t(y) * nx);
      for (int x = 0; x < nx; ++x) {
        m[2 * x] = float(x) + d[2 * x];
        m[2 * x + 1] = float(y) + d[2 * x + 1];
      }
    }
  });
}

enum class cv_variant { remap, remap_only, remap_fixedmaps };

void bm_opencv_remap(benchmark::State& st, int channels, int threads, double bytes,
                     cv_variant variant, const std::string& impl, const std::string& workload) {
  db::thread_limit limit(threads);
  cv::setNumThreads(threads);
  const auto& img = w1_image<2>(channels);
  const auto& u = w1_field<2>();
  const int nx = int(img.ext[0]), ny = int(img.ext[1]);
  const cv::Mat src =
      cv::Mat(ny, nx, CV_32FC(channels), const_cast<float*>(img.data.data())).clone();
  cv::Mat map(ny, nx, CV_32FC2), dst(ny, nx, CV_32FC(channels)), m1, m2;
  build_map(u, map);
  if (variant == cv_variant::remap_fixedmaps) cv::convertMaps(map, cv::noArray(), m1, m2, CV_16SC2);
  auto call = [&] {
    switch (variant) {
      case cv_variant::remap:
        build_map(u, map);
        cv::remap(src, dst, map, cv::noArray(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar());
        break;
      case cv_variant::remap_only:
        cv::remap(src, dst, map, cv::noArray(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar());
        break;
      case cv_variant::remap_fixedmaps:
        cv::remap(src, dst, m1, m2, cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar());
        break;
    }
  };
  call();  // warm-up
  const double secs = db::timed_loop(st, call);
  db::set_counters(st, double(nx) * ny, bytes, secs);
  db::raw<2> out{img.ext, channels, std::vector<float>(img.data.size())};
  std::memcpy(out.data.data(), dst.ptr<float>(0), out.data.size() * sizeof(float));
  // Positions quantised to 1/32 voxel: |diff| <= |grad I|_1 / 64 ~ 3.5e-3 for these images.
  check_peer<2>(impl, workload, channels, out, 5e-3);
}
#endif

// ---- ITK ----------------------------------------------------------------------------------

#if defined(DIFFEO_BENCH_HAVE_ITK)
template <int Dim, class ImageT>
void bm_itk_warp(benchmark::State& st, int channels, int threads, double bytes,
                 const std::string& impl, const std::string& workload) {
  db::thread_limit limit(threads);
  namespace ip = db::itk_peer;
  ip::set_global_threads(threads);
  using field_t = ip::field_t<Dim>;
  using filter_t = itk::WarpImageFilter<ImageT, ImageT, field_t>;
  auto img = ip::make_image<ImageT, Dim>(w1_image<Dim>(channels));
  auto u = ip::make_image<field_t, Dim>(w1_field<Dim>());
  auto f = filter_t::New();
  f->SetInterpolator(itk::LinearInterpolateImageFunction<ImageT, double>::New());
  f->SetOutputParametersFromImage(img);
  f->SetDisplacementField(u);
  f->SetInput(img);
  if constexpr (std::is_same_v<ImageT, itk::Image<float, Dim>>) f->SetEdgePaddingValue(0.0f);
  ip::set_filter_threads(f, threads);
  f->Update();  // warm-up
  const double secs = db::timed_loop(st, [&] {
    f->Modified();
    f->Update();
  });
  db::set_counters(st, double(w1_field<Dim>().points()), bytes, secs);
  check_peer<Dim>(impl, workload, channels,
                  ip::to_raw<ImageT, Dim>(f->GetOutput(), w1_field<Dim>().ext, channels), 1e-4);
}
#endif

// ---- warp_vjp: the image gradient (a scatter), atomic vs deterministic -------------------------

/// grad_src of W1 (grad_out = the W1 image itself, grad_u skipped): the scatter of each
/// output point's gradient onto the taps it read; `mode` picks atomic or deterministic.
template <class B, int Dim>
void bm_diffeo_warp_vjp(benchmark::State& st, int threads, double bytes, diffeo::scatter_mode mode,
                        const std::string& impl, const std::string& workload) {
  db::thread_limit limit(threads);
  auto src = db::to_image<B>(w1_image<Dim>(1));
  auto u = db::to_vector_field<B>(w1_field<Dim>());
  auto grad_out = db::to_image<B>(w1_image<Dim>(1));
  diffeo::image<float, Dim, B> grad_src(src.ext(), 1);
  auto call = [&] {
    diffeo::warp_vjp(B{}, src.view(), u.view(), grad_out.view(), grad_src.view(),
                     diffeo::vector_view<float, Dim>{}, diffeo::interp::linear{},
                     diffeo::boundary::zeros{}, mode);
    diffeo::synchronize(B{});
  };
  call();  // warm-up
  const double secs = db::timed_loop(st, call);
  db::set_counters(st, double(u.points()), bytes, secs);
  if (mode == diffeo::scatter_mode::atomic) return;
  // The deterministic result equals the atomic one within the rounding of a few adds.
  const std::string what = impl + " vs atomic (" + workload + ")";
  if (db::has_check(what)) return;
  diffeo::image<float, Dim, B> atomic(src.ext(), 1);
  diffeo::warp_vjp(B{}, src.view(), u.view(), grad_out.view(), atomic.view(),
                   diffeo::vector_view<float, Dim>{}, diffeo::interp::linear{},
                   diffeo::boundary::zeros{}, diffeo::scatter_mode::atomic);
  db::record_check(db::compare(what, "all", db::to_raw(grad_src), db::to_raw(atomic), 1e-5,
                               [](index_t) { return true; }));
}

// ---- splatting (forward warp) on the W1 inputs -----------------------------------------------

#if defined(DIFFEO_BENCH_SPLAT)
/// The softmax metric Z: the W1 image's channel 0 (I_0 in 2D, the 3D image in 3D).
template <int Dim>
const db::raw<Dim>& splat_metric() {
  return w1_image<Dim>(1);
}

/// Splatting by its definition, in float64: sum, or softmax with w = b * exp(Z).
template <int Dim>
db::raw<Dim> reference_splat(const db::raw<Dim>& img, const db::raw<Dim>& u, bool softmax) {
  const int C = img.per_point;
  const index_t n = u.points();
  std::vector<double> acc(static_cast<std::size_t>(n * (C + 1)), 0.0);
  const auto& z = splat_metric<Dim>();
  for (index_t p = 0; p < n; ++p) {
    const auto g = u.ext.unravel(p);
    index_t i0[Dim];
    double t[Dim];
    bool finite = true;
    for (int a = 0; a < Dim; ++a) {
      const double x = double(g[a]) + double(u.data[p * Dim + a]);
      finite = finite && std::isfinite(x);
      const double x0 = std::floor(x);
      i0[a] = static_cast<index_t>(x0);
      t[a] = x - x0;
    }
    if (!finite) continue;
    const double m = softmax ? std::exp(double(z.data[p])) : 1.0;
    for (int corner = 0; corner < (1 << Dim); ++corner) {
      double w = m;
      diffeo::index_vec<Dim> c{};
      bool in = true;
      for (int a = 0; a < Dim; ++a) {
        const int bit = (corner >> a) & 1;
        c[a] = i0[a] + bit;
        w *= bit ? t[a] : 1 - t[a];
        in = in && c[a] >= 0 && c[a] < u.ext[a];
      }
      if (!in) continue;
      double* o = acc.data() + u.ext.linear(c) * (C + 1);
      for (int k = 0; k < C; ++k) o[k] += w * double(img.data[p * C + k]);
      o[C] += w;
    }
  }
  db::raw<Dim> out{u.ext, C, std::vector<float>(static_cast<std::size_t>(n * C))};
  for (index_t t = 0; t < n; ++t) {
    const double* o = acc.data() + t * (C + 1);
    for (int k = 0; k < C; ++k)
      out.data[t * C + k] =
          static_cast<float>(softmax ? (o[C] > 0 ? o[k] / o[C] : 0.0) : o[k]);
  }
  return out;
}

template <class B, int Dim>
void bm_diffeo_splat(benchmark::State& st, int channels, int threads, double bytes,
                     diffeo::splat_mode mode, const std::string& impl,
                     const std::string& workload) {
  db::thread_limit limit(threads);
  auto src = db::to_image<B>(w1_image<Dim>(channels));
  auto u = db::to_vector_field<B>(w1_field<Dim>());
  auto z = db::to_image<B>(splat_metric<Dim>());
  diffeo::image<float, Dim, B> out(u.ext(), channels);
  diffeo::splat_options opts;
  opts.mode = mode;
  auto call = [&] {
    if (mode == diffeo::splat_mode::softmax)
      diffeo::splat(B{}, src.view(), u.view(), z.view(), out.view(), opts);
    else
      diffeo::splat(B{}, src.view(), u.view(), out.view(), opts);
    diffeo::synchronize(B{});
  };
  call();  // warm-up
  const double secs = db::timed_loop(st, call);
  db::set_counters(st, double(u.points()), bytes, secs);
  const std::string what = impl + " vs definition (" + workload + ")";
  if (!db::has_check(what)) {
    const bool softmax = mode == diffeo::splat_mode::softmax;
    // Float positions move each bilinear weight by up to n 2^-24 (position_tolerance), and a
    // target sums a few sources. Softmax divides by the total weight, which is ill-conditioned
    // where only slivers of weight arrive (near the border): a looser bound there.
    const double tol =
        softmax ? 1e-3
                : db::position_tolerance(4 * db::max_abs(w1_image<Dim>(channels)), double(u.ext()[0]));
    db::record_check(db::compare(what, "all", db::to_raw(out),
                                 reference_splat(w1_image<Dim>(channels), w1_field<Dim>(), softmax),
                                 tol, [](index_t) { return true; }));
  }
}
#endif

// ---- registration -------------------------------------------------------------------------

struct w1_case {
  std::string size;  // "2d_1024x1024_c1"
  int dim;
  int channels;
  double bytes;  // compulsory bytes per output element
};

template <int Dim>
void register_case(const w1_case& c, const std::vector<int>& threads) {
  const std::string workload = "W1 warp " + c.size;
  const double elems = double(w1_field<Dim>().points());
  auto name = [&](const std::string& impl, int t) {
    return "W1/" + c.size + "/" + impl + "/threads:" + std::to_string(t);
  };
  auto meta = [&](const std::string& impl, int t, bool diffeo) {
    return db::bench_meta{workload, impl, t, elems, c.bytes, diffeo, !diffeo};
  };
  const int C = c.channels;
  const double B = c.bytes;
  db::add(name("diffeo_serial", 1), meta("diffeo_serial", 1, true), [=](benchmark::State& st) {
    bm_diffeo_warp<diffeo::backend::serial, Dim>(st, C, 1, B, "diffeo_serial", workload);
  });
  for (int t : threads) {
    (void)t;  // unused when neither tbb nor thrust is enabled
#if defined(DIFFEO_ENABLE_TBB)
    db::add(name("diffeo_tbb", t), meta("diffeo_tbb", t, true), [=](benchmark::State& st) {
      bm_diffeo_warp<diffeo::backend::tbb, Dim>(st, C, t, B, "diffeo_tbb", workload);
    });
#endif
#if defined(DIFFEO_ENABLE_THRUST)
    db::add(name("diffeo_thrust", t), meta("diffeo_thrust", t, true), [=](benchmark::State& st) {
      bm_diffeo_warp<diffeo::backend::thrust, Dim>(st, C, t, B, "diffeo_thrust", workload);
    });
#endif
  }
  for (int t : threads) {
    (void)t;  // unused without peers
#if defined(DIFFEO_BENCH_HAVE_OPENCV)
    if constexpr (Dim == 2) {
      const std::pair<cv_variant, const char*> variants[] = {
          {cv_variant::remap, "opencv_remap"},
          {cv_variant::remap_only, "opencv_remap_only"},
          {cv_variant::remap_fixedmaps, "opencv_remap_fixedmaps"}};
      for (auto [v, impl] : variants) {
        const std::string im = impl;
        db::add(name(im, t), meta(im, t, false), [=](benchmark::State& st) {
          bm_opencv_remap(st, C, t, B, v, im, workload);
        });
      }
    }
#endif
#if defined(DIFFEO_BENCH_HAVE_ITK)
    db::add(name("itk_warp", t), meta("itk_warp", t, false), [=](benchmark::State& st) {
      // WarpImageFilter does not compile for Image<Vector<float,3>,2> in ITK 5.2.
      if constexpr (Dim == 2)
        if (C == 3)
          return bm_itk_warp<2, itk::VectorImage<float, 2>>(st, C, t, B, "itk_warp", workload);
      bm_itk_warp<Dim, itk::Image<float, Dim>>(st, C, t, B, "itk_warp", workload);
    });
#endif
  }
}


/// warp_vjp's image gradient on the one-channel W1 inputs (no peer); bytes as W1's.
template <int Dim>
void register_warp_vjp(const w1_case& c, [[maybe_unused]] const std::vector<int>& threads) {
  const double elems = double(w1_field<Dim>().points());
  for (auto mode : {diffeo::scatter_mode::atomic, diffeo::scatter_mode::deterministic}) {
    const std::string m = mode == diffeo::scatter_mode::atomic ? "atomic" : "deterministic";
    const std::string workload = "warp_vjp_" + m + " " + c.size;
    const double B = c.bytes;
    auto add = [&](const std::string& impl, int t, auto backend) {
      using BE = decltype(backend);
      db::add("warp_vjp_" + m + "/" + c.size + "/" + impl + "/threads:" + std::to_string(t),
              db::bench_meta{workload, impl, t, elems, B, true, false},
              [=](benchmark::State& st) {
                bm_diffeo_warp_vjp<BE, Dim>(st, t, B, mode, impl, workload);
              });
    };
    add("diffeo_serial", 1, diffeo::backend::serial{});
#if defined(DIFFEO_ENABLE_TBB)
    for (int t : threads) add("diffeo_tbb", t, diffeo::backend::tbb{});
#endif
  }
}

#if defined(DIFFEO_BENCH_SPLAT)
/// Splatting the W1 inputs (no peer): sum and softmax (metric Z = I_0), bytes = W1's
/// (+ 4 B for Z in softmax mode).
template <int Dim>
void register_splat(const w1_case& c, [[maybe_unused]] const std::vector<int>& threads) {
  const double elems = double(w1_field<Dim>().points());
  const int C = c.channels;
  for (auto mode : {diffeo::splat_mode::sum, diffeo::splat_mode::softmax}) {
    const std::string m = diffeo::to_string(mode);
    const std::string workload = "splat_" + m + " " + c.size;
    const double B = c.bytes + (mode == diffeo::splat_mode::softmax ? 4 : 0);
    auto add = [&](const std::string& impl, int t, auto backend) {
      using BE = decltype(backend);
      db::add("splat_" + m + "/" + c.size + "/" + impl + "/threads:" + std::to_string(t),
              db::bench_meta{workload, impl, t, elems, B, true, false},
              [=](benchmark::State& st) {
                bm_diffeo_splat<BE, Dim>(st, C, t, B, mode, impl, workload);
              });
    };
    add("diffeo_serial", 1, diffeo::backend::serial{});
#  if defined(DIFFEO_ENABLE_TBB)
    for (int t : threads) add("diffeo_tbb", t, diffeo::backend::tbb{});
#  endif
  }
}
#endif
}  // namespace

int main(int argc, char** argv) {
  const auto threads = db::thread_counts();
  db::stream::register_floor(256, 1, threads);  // DRAM: the floor
  db::stream::register_floor(4, 64, threads);   // cache-resident, for reference
  register_case<2>({"2d_1024x1024_c1", 2, 1, 16}, threads);
  register_case<2>({"2d_1024x1024_c3", 2, 3, 32}, threads);
  register_case<3>({"3d_128", 3, 1, 20}, threads);
  register_warp_vjp<2>({"2d_1024x1024_c1", 2, 1, 16}, threads);
  register_warp_vjp<3>({"3d_128", 3, 1, 20}, threads);
#if defined(DIFFEO_BENCH_SPLAT)
  register_splat<2>({"2d_1024x1024_c1", 2, 1, 16}, threads);
  register_splat<2>({"2d_1024x1024_c3", 2, 3, 32}, threads);
  register_splat<3>({"3d_128", 3, 1, 20}, threads);
#endif
#if defined(DIFFEO_BENCH_HAVE_OPENCV)
  {
    std::string info = cv::getBuildInformation(), line;
    std::stringstream ss(info);
    while (std::getline(ss, line))
      if (line.find("Parallel framework") != std::string::npos)
        db::registry::get().notes.push_back("OpenCV " CV_VERSION ": " + line.substr(line.find(':') + 1));
  }
#endif
  return db::run_main(argc, argv);
}
