// Forward splatting: translations, mass, normalization, stability of softmax, agreement
// with a slow reference, dropped sources, determinism and argument checks.
// The VJPs and the adjointness with warp are in test_splat_vjp.cpp.
#include <diffeo/sample/splat.hpp>
#include <diffeo/sample/warp.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "support/backends.hpp"
#include "support/splat_inputs.hpp"

using namespace diffeo;

namespace {

using host = backend::serial;
constexpr splat_mode all_modes[] = {splat_mode::sum, splat_mode::average, splat_mode::linear,
                                    splat_mode::softmax};

template <int Dim>
extents<Dim> test_extents() {
  if constexpr (Dim == 2)
    return make_extents(13, 11);
  else
    return make_extents(7, 6, 5);
}

using test::coord;
using test::make_flow;
using test::make_image;
using test::make_metric;

/// The obvious splat: loop over sources, push bilinear weights into long-double sums.
/// Positions are formed in the displacement's scalar type, as the library does; with
/// `shift` the softmax exponent is taken relative to the target's largest metric.
template <class T, int Dim>
std::vector<long double> reference_splat(const image<T, Dim, host>& src,
                                         const vector_field<T, Dim, host>& u,
                                         const std::type_identity_t<image<T, Dim, host>>* metric,
                                         splat_mode mode,
                                         bool shift = false) {
  const auto e = u.ext();
  const index_t n = e.count();
  const int C = src.channels();
  struct tap {
    index_t t;
    long double b;
  };
  // Taps of positive weight of every usable source.
  std::vector<std::vector<tap>> taps(static_cast<std::size_t>(n));
  for (index_t s = 0; s < n; ++s) {
    if (mode == splat_mode::linear || mode == splat_mode::softmax)
      if (!std::isfinite((*metric)[s])) continue;
    const auto p = e.unravel(s);
    long double q[Dim];
    bool ok = true;
    for (int a = 0; a < Dim; ++a) {
      q[a] = T(T(p[a]) + u[s][a]);
      ok = ok && std::isfinite(q[a]) && std::fabs(q[a]) < 1e6;
    }
    if (!ok) continue;
    for (int corner = 0; corner < (1 << Dim); ++corner) {
      index_vec<Dim> j{};
      long double b = 1;
      for (int a = 0; a < Dim; ++a) {
        const long double f = std::floor(q[a]), t = q[a] - f;
        const bool up = (corner >> a) & 1;
        j[a] = index_t(f) + (up ? 1 : 0);
        b *= up ? t : 1 - t;
      }
      if (e.contains(j) && b > 0) taps[s].push_back({e.linear(j), b});
    }
  }
  std::vector<long double> max(static_cast<std::size_t>(n), 0);
  if (mode == splat_mode::softmax && shift) {
    std::fill(max.begin(), max.end(), -std::numeric_limits<long double>::infinity());
    for (index_t s = 0; s < n; ++s)
      for (const tap& k : taps[s]) max[k.t] = std::max<long double>(max[k.t], (*metric)[s]);
  }
  std::vector<long double> num(static_cast<std::size_t>(n * C), 0), den(n, 0);
  for (index_t s = 0; s < n; ++s)
    for (const tap& k : taps[s]) {
      long double w = k.b;
      if (mode == splat_mode::linear) w *= std::max<long double>((*metric)[s], 0);
      if (mode == splat_mode::softmax) w *= std::exp((long double)(*metric)[s] - max[k.t]);
      for (int c = 0; c < C; ++c) num[k.t * C + c] += w * src[s * C + c];
      den[k.t] += w;
    }
  if (mode != splat_mode::sum)
    for (index_t t = 0; t < n; ++t)
      for (int c = 0; c < C; ++c) num[t * C + c] = den[t] > 0 ? num[t * C + c] / den[t] : 0;
  return num;
}

/// Runs the view-level splat on backend `B` and returns the result on the host.
template <class B, class T, int Dim>
image<T, Dim, host> run_splat(const image<T, Dim, host>& src, const vector_field<T, Dim, host>& u,
                              const std::type_identity_t<image<T, Dim, host>>* metric,
                              splat_options opts) {
  const auto s = to_backend<B>(src);
  const auto v = to_backend<B>(u);
  image<T, Dim, B> out(u.geometry(), src.channels());
  if (metric) {
    const auto z = to_backend<B>(*metric);
    splat(B{}, s.view(), v.view(), z.view(), out.view(), opts);
  } else {
    splat(B{}, s.view(), v.view(), out.view(), opts);
  }
  return to_host(out);
}

template <class T>
double tol() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

template <class T, int Dim>
bool bitwise_equal(const image<T, Dim, host>& a, const image<T, Dim, host>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(T) * a.size()) == 0;
}

/// Whether `B`'s deterministic scatter must match the serial one bit for bit: on the host
/// every backend runs the same arithmetic; a GPU may contract multiply-adds differently.
template <class B>
constexpr bool exact_like_serial() {
#if defined(DIFFEO_ENABLE_CUDA)
  return !std::is_same_v<B, backend::thrust>;
#else
  return true;
#endif
}

// --- translations ---------------------------------------------------------------------------

template <class B, class T, int Dim>
void check_integer_translation() {
  const auto e = test_extents<Dim>();
  const int C = 3;
  const auto src = make_image<T, Dim>(e, C);
  vector_field<T, Dim, host> u(e);
  vec<T, Dim> d{};
  for (int a = 0; a < Dim; ++a) d[a] = T(a % 2 == 0 ? 2 : -1);
  u.fill(d);
  auto z = make_metric<T, Dim>(e, 0, 3);  // softmax: one source per target, exp(0) = 1
  image<T, Dim, host> half(e);
  half.fill(T(0.5));  // linear: a power of two, so (0.5 v) / 0.5 == v exactly
  for (splat_mode mode : all_modes) {
    CAPTURE(to_string(mode));
    const auto* metric = mode == splat_mode::linear ? &half : &z;
    const auto out = run_splat<B>(src, u, metric, {mode});
    for (index_t t = 0; t < e.count(); ++t) {
      auto p = e.unravel(t);
      for (int a = 0; a < Dim; ++a) p[a] -= index_t(d[a]);
      for (int c = 0; c < C; ++c) {
        const T expect = e.contains(p) ? src[e.linear(p) * C + c] : T(0);
        REQUIRE(out[t * C + c] == expect);
      }
    }
  }
}

TEST_CASE_TEMPLATE("an integer translation moves every pixel exactly", B, DIFFEO_TEST_BACKENDS) {
  check_integer_translation<B, float, 2>();
  check_integer_translation<B, double, 3>();
}

template <class B, class T, int Dim>
void check_subpixel_translation() {
  const auto e = test_extents<Dim>();
  const int C = 2;
  const auto src = make_image<T, Dim>(e, C);
  // Binary fractions: the bilinear weights are exact and sum to exactly 1.
  vec<T, Dim> d{};
  for (int a = 0; a < Dim; ++a) d[a] = T(a == 0 ? 0.25 : (a == 1 ? -1.5 : 0.75));
  vector_field<T, Dim, host> u(e), back(e);
  u.fill(d);
  back.fill(-d);
  // The shifted image: src pulled back at p - d.
  const auto shifted = to_host(warp(to_backend<B>(src), to_backend<B>(back)));
  const auto z = make_metric<T, Dim>(e, 1.5, 0);  // constant metric: same as average
  for (splat_mode mode : all_modes) {
    CAPTURE(to_string(mode));
    const auto out = run_splat<B>(src, u, &z, {mode});
    for (index_t t = 0; t < e.count(); ++t) {
      const auto p = e.unravel(t);
      bool interior = true;  // every source that reaches t lies on the grid
      for (int a = 0; a < Dim; ++a) interior = interior && p[a] >= 2 && p[a] < e[a] - 2;
      if (!interior) continue;
      for (int c = 0; c < C; ++c)
        REQUIRE(double(out[t * C + c]) == doctest::Approx(shifted[t * C + c]).epsilon(tol<T>()));
    }
  }
}

TEST_CASE_TEMPLATE("a sub-pixel translation equals the bilinearly shifted image inside", B,
                   DIFFEO_TEST_BACKENDS) {
  check_subpixel_translation<B, float, 2>();
  check_subpixel_translation<B, double, 2>();
  check_subpixel_translation<B, double, 3>();
}

// --- conservation and normalization ---------------------------------------------------------

template <class B, class T, int Dim>
void check_mass() {
  const auto e = test_extents<Dim>();
  const int C = 2;
  auto src = make_image<T, Dim>(e, C);
  // Zero within 2 voxels of the border; |u| <= 1.4, so nothing leaves the grid.
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    bool inner = true;
    for (int a = 0; a < Dim; ++a) inner = inner && p[a] >= 2 && p[a] < e[a] - 2;
    if (!inner)
      for (int c = 0; c < C; ++c) src[i * C + c] = 0;
  }
  const auto u = make_flow<T, Dim>(e, 1.4);
  const auto out = run_splat<B>(src, u, nullptr, {splat_mode::sum});
  for (int c = 0; c < C; ++c) {
    double in_sum = 0, out_sum = 0, scale = 0;
    for (index_t i = 0; i < e.count(); ++i) {
      in_sum += src[i * C + c];
      out_sum += out[i * C + c];
      scale += std::fabs(double(src[i * C + c]));
    }
    CHECK(std::fabs(out_sum - in_sum) <= tol<T>() * scale);
  }
}

TEST_CASE_TEMPLATE("sum splatting conserves mass when nothing leaves the grid", B,
                   DIFFEO_TEST_BACKENDS) {
  check_mass<B, double, 2>();
  check_mass<B, double, 3>();
  check_mass<B, float, 2>();
}

template <class B, class T, int Dim>
void check_constant_average() {
  const auto e = test_extents<Dim>();
  const int C = 3;
  image<T, Dim, host> src(e, C), ones(e);
  src.fill(T(0.7));
  ones.fill(T(1));
  const auto u = make_flow<T, Dim>(e, 2.3);  // leaves holes and collisions
  const auto z = make_metric<T, Dim>(e, 1.0, 0.8);
  const auto weight = run_splat<B>(ones, u, nullptr, {splat_mode::sum});
  int holes = 0;
  for (splat_mode mode : {splat_mode::average, splat_mode::linear, splat_mode::softmax}) {
    CAPTURE(to_string(mode));
    const auto out = run_splat<B>(src, u, &z, {mode});
    for (index_t t = 0; t < e.count(); ++t)
      for (int c = 0; c < C; ++c) {
        if (weight[t] > 0)
          REQUIRE(double(out[t * C + c]) == doctest::Approx(0.7).epsilon(tol<T>()));
        else
          REQUIRE(out[t * C + c] == T(0));
      }
  }
  for (index_t t = 0; t < e.count(); ++t) holes += weight[t] == 0;
  CHECK(holes > 0);  // the zero-weight rule was exercised
}

TEST_CASE_TEMPLATE("normalized modes keep a constant image constant wherever weight arrives", B,
                   DIFFEO_TEST_BACKENDS) {
  check_constant_average<B, float, 2>();
  check_constant_average<B, double, 3>();
}

// --- against the slow reference -------------------------------------------------------------

template <class B, class T, int Dim>
void check_reference(double amp) {
  const auto e = test_extents<Dim>();
  const int C = Dim == 2 ? 3 : 2;
  const auto src = make_image<T, Dim>(e, C);
  const auto u = make_flow<T, Dim>(e, amp);
  // Linear: mostly positive, some negative (counted as 0). Softmax: moderate, unshifted
  // reference.
  const auto zl = make_metric<T, Dim>(e, 0.8, 1.0);
  const auto zs = make_metric<T, Dim>(e, 0.5, 4.0);
  for (splat_mode mode : all_modes) {
    for (scatter_mode sm : {scatter_mode::atomic, scatter_mode::deterministic}) {
      CAPTURE(to_string(mode));
      CAPTURE(int(sm));
      const auto* z = mode == splat_mode::linear ? &zl : &zs;
      const auto ref = reference_splat(src, u, z, mode);
      const auto out = run_splat<B>(src, u, z, {mode, sm});
      for (index_t i = 0; i < out.size(); ++i)
        REQUIRE(double(out[i]) == doctest::Approx(double(ref[i])).epsilon(tol<T>()));
    }
  }
}

TEST_CASE_TEMPLATE("every mode matches a slow reference", B, DIFFEO_TEST_BACKENDS) {
  check_reference<B, float, 2>(2.2);
  check_reference<B, double, 2>(2.2);
  check_reference<B, float, 3>(1.7);
  check_reference<B, double, 3>(1.7);
}

template <class B, class T, int Dim>
void check_softmax_large(double offset, double scale) {
  const auto e = test_extents<Dim>();
  const int C = 2;
  const auto src = make_image<T, Dim>(e, C);
  const auto u = make_flow<T, Dim>(e, 1.8);
  const auto z = make_metric<T, Dim>(e, offset, scale);
  const auto ref = reference_splat(src, u, &z, splat_mode::softmax, /*shift=*/true);
  for (scatter_mode sm : {scatter_mode::atomic, scatter_mode::deterministic}) {
    const auto out = run_splat<B>(src, u, &z, {splat_mode::softmax, sm});
    for (index_t i = 0; i < out.size(); ++i) {
      REQUIRE(std::isfinite(out[i]));
      REQUIRE(double(out[i]) == doctest::Approx(double(ref[i])).epsilon(tol<T>()));
    }
  }
}

TEST_CASE_TEMPLATE("softmax splatting stays finite and exact for metrics up to 1e4", B,
                   DIFFEO_TEST_BACKENDS) {
  check_softmax_large<B, float, 2>(5e3, 5e3);   // Z in [0, 1e4]
  check_softmax_large<B, float, 2>(1e4, 20);    // all near 1e4: exp(Z) overflows unshifted
  check_softmax_large<B, double, 2>(-5e3, 5e3); // Z in [-1e4, 0]
  check_softmax_large<B, double, 3>(1e4, 50);
}

// --- bad values -----------------------------------------------------------------------------

template <class B, class T, int Dim>
void check_dropped_sources() {
  const auto e = test_extents<Dim>();
  const int C = 2;
  const auto src = make_image<T, Dim>(e, C);
  auto u = make_flow<T, Dim>(e, 1.5);
  auto z = make_metric<T, Dim>(e, 1.0, 2.0);
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  u[3][0] = nan;
  u[7][Dim - 1] = inf;
  u[11][1] = -inf;
  u[15][0] = T(1e30);
  u[19][0] = T(-1e30);
  z[5] = nan;
  z[9] = inf;
  z[13] = -inf;
  z[21] = T(1e3);  // large but finite: exp overflows unless shifted
  z[23] = T(-1e3);
  for (splat_mode mode : all_modes) {
    for (scatter_mode sm : {scatter_mode::atomic, scatter_mode::deterministic}) {
      CAPTURE(to_string(mode));
      CAPTURE(int(sm));
      const auto out = run_splat<B>(src, u, &z, {mode, sm});
      // The reference drops the same sources.
      const auto ref = reference_splat(src, u, &z, mode, /*shift=*/true);
      for (index_t i = 0; i < out.size(); ++i) {
        REQUIRE(std::isfinite(out[i]));
        REQUIRE(double(out[i]) == doctest::Approx(double(ref[i])).epsilon(tol<T>()));
      }
    }
  }
}

TEST_CASE_TEMPLATE("sources with a non-finite displacement or metric are dropped", B,
                   DIFFEO_TEST_BACKENDS) {
  check_dropped_sources<B, float, 2>();
  check_dropped_sources<B, double, 3>();
}

// --- determinism ----------------------------------------------------------------------------

template <class B, class T, int Dim>
void check_determinism() {
  // A contracting flow: many sources meet at every target near the centre.
  extents<Dim> e{};
  if constexpr (Dim == 2)
    e = make_extents(64, 48);
  else
    e = make_extents(20, 18, 16);
  const int C = 2;
  const auto src = make_image<T, Dim>(e, C);
  auto u = make_flow<T, Dim>(e, 0.4);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    for (int a = 0; a < Dim; ++a) u[i][a] += T(-0.8 * (double(p[a]) - 0.5 * double(e[a] - 1)));
  }
  const auto z = make_metric<T, Dim>(e, 0.5, 3.0);
  for (splat_mode mode : all_modes) {
    CAPTURE(to_string(mode));
    const splat_options det{mode, scatter_mode::deterministic};
    const auto a = run_splat<B>(src, u, &z, det);
    const auto b = run_splat<B>(src, u, &z, det);
    CHECK(bitwise_equal(a, b));
    const auto serial_atomic = run_splat<host>(src, u, &z, {mode, scatter_mode::atomic});
    const auto serial_det = run_splat<host>(src, u, &z, det);
    CHECK(bitwise_equal(serial_atomic, serial_det));
    if constexpr (exact_like_serial<B>()) CHECK(bitwise_equal(a, serial_atomic));
    const auto atomic = run_splat<B>(src, u, &z, {mode, scatter_mode::atomic});
    for (index_t i = 0; i < a.size(); ++i)
      REQUIRE(double(atomic[i]) == doctest::Approx(double(serial_atomic[i])).epsilon(tol<T>()));
  }
}

TEST_CASE_TEMPLATE("deterministic splatting is bitwise reproducible and equals serial", B,
                   DIFFEO_TEST_BACKENDS) {
  check_determinism<B, float, 2>();
  check_determinism<B, double, 3>();
}

// --- the field-level API and argument checks ------------------------------------------------

TEST_CASE_TEMPLATE("field-level splat returns a field on u's grid", B, DIFFEO_TEST_BACKENDS) {
  const auto e = make_extents(9, 8);
  const auto src = make_image<float, 2>(e, 3);
  const auto u = make_flow<float, 2>(e, 1.2);
  const auto z = make_metric<float, 2>(e, 0, 2);
  const auto out = to_host(splat(to_backend<B>(src), to_backend<B>(u), to_backend<B>(z),
                                 {splat_mode::softmax}));
  CHECK(out.ext() == e);
  CHECK(out.channels() == 3);
  const auto ref = run_splat<host>(src, u, &z, {splat_mode::softmax});
  for (index_t i = 0; i < out.size(); ++i)
    CHECK(out[i] == doctest::Approx(ref[i]).epsilon(1e-6));
  const auto sum = to_host(splat(to_backend<B>(src), to_backend<B>(u)));
  const auto sum_ref = run_splat<host>(src, u, nullptr, {});
  for (index_t i = 0; i < sum.size(); ++i)
    CHECK(sum[i] == doctest::Approx(sum_ref[i]).epsilon(1e-6));
}

TEST_CASE("a float displacement splats a double image") {
  const auto e = make_extents(10, 9);
  const auto src = make_image<double, 2>(e, 2);
  const auto ud = make_flow<double, 2>(e, 1.7);
  const auto z = make_metric<double, 2>(e, 0, 2);
  vector_field<float, 2, host> uf(e);
  for (index_t i = 0; i < e.count(); ++i) uf[i] = ud[i].cast<float>();
  for (splat_mode mode : all_modes) {
    image<double, 2, host> out(e, 2);
    splat(host{}, src.view(), uf.view(), z.view(), out.view(), {mode});
    const auto ref = run_splat<host>(src, ud, &z, {mode});
    // Positions are formed in float: about 1e-6 voxels off.
    for (index_t i = 0; i < out.size(); ++i) CHECK(out[i] == doctest::Approx(ref[i]).epsilon(1e-5));
  }
}

TEST_CASE("bad arguments are rejected with the argument named") {
  using img = image<float, 2, host>;
  const auto e = make_extents(6, 5);
  const img src = make_image<float, 2>(e, 2);
  const auto u = make_flow<float, 2>(e, 1.0);
  const auto z = make_metric<float, 2>(e, 0, 1);
  img out(e, 2), out1(e, 1), small(make_extents(6, 4), 2), z2(e, 2), zsmall(make_extents(5, 5));
  const host be{};
  CHECK_THROWS_WITH_AS(splat(be, small.view(), u.view(), out.view()),
                       doctest::Contains("splat(u, src): extents differ (6x5 vs 6x4)"),
                       shape_error);
  CHECK_THROWS_WITH_AS(splat(be, src.view(), u.view(), small.view()),
                       doctest::Contains("splat(u, out)"), shape_error);
  CHECK_THROWS_WITH_AS(splat(be, src.view(), u.view(), out1.view()),
                       doctest::Contains("splat(src, out): channel counts differ"), shape_error);
  CHECK_THROWS_WITH_AS(splat(be, src.view(), u.view(), out.view(), {splat_mode::softmax}),
                       doctest::Contains("splat(metric): mode softmax needs"), value_error);
  CHECK_THROWS_WITH_AS(splat(src, u, {splat_mode::linear}),
                       doctest::Contains("splat(metric): mode linear needs"), value_error);
  CHECK_THROWS_WITH_AS(
      splat(be, src.view(), u.view(), zsmall.view(), out.view(), {splat_mode::softmax}),
      doctest::Contains("splat(u, metric)"), shape_error);
  CHECK_THROWS_WITH_AS(splat(be, src.view(), u.view(), z2.view(), out.view(), {splat_mode::linear}),
                       doctest::Contains("splat(metric): expected one channel, got 2"),
                       shape_error);
  CHECK_THROWS_WITH_AS(splat(small, u), doctest::Contains("splat(u, src)"), shape_error);
  CHECK_THROWS_WITH_AS(splat(be, src.view(), u.view(), field_view<float, 2>{}),
                       doctest::Contains("splat(out)"), shape_error);
  img inplace = src;
  CHECK_THROWS_WITH_AS(splat(be, inplace.view(), u.view(), inplace.view()),
                       doctest::Contains("splat(out): overlaps"), value_error);
  CHECK_THROWS_WITH_AS(splat(be, src.view(), u.view(), out.view(), {splat_mode(7)}),
                       doctest::Contains("splat(options): unknown splat_mode 7"), value_error);
  // Sum and average ignore the metric, even a mismatched one.
  CHECK_NOTHROW(splat(be, src.view(), u.view(), zsmall.view(), out.view(), {splat_mode::average}));
}

}  // namespace
