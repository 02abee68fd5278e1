// Splatting's vector-Jacobian products: adjointness of sum splatting and bilinear warping,
// every VJP against central differences, determinism and argument checks.
#include <diffeo/sample/splat.hpp>
#include <diffeo/sample/warp.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "support/backends.hpp"
#include "support/splat_inputs.hpp"

using namespace diffeo;

namespace {

using host = backend::serial;
constexpr splat_mode all_modes[] = {splat_mode::sum, splat_mode::average, splat_mode::linear,
                                    splat_mode::softmax};

using test::coord;
using test::make_flow;
using test::make_image;
using test::make_metric;

template <class T, int Dim>
double inner(const image<T, Dim, host>& a, const image<T, Dim, host>& b) {
  double s = 0;
  for (index_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

template <class B, class T, int Dim>
image<T, Dim, host> run_splat(const image<T, Dim, host>& src, const vector_field<T, Dim, host>& u,
                              const image<T, Dim, host>& z, splat_options opts) {
  const auto s = to_backend<B>(src);
  const auto v = to_backend<B>(u);
  const auto m = to_backend<B>(z);
  image<T, Dim, B> out(u.geometry(), src.channels());
  splat(B{}, s.view(), v.view(), m.view(), out.view(), opts);
  return to_host(out);
}

/// ∂L/∂src, ∂L/∂u, ∂L/∂Z of L = <splat(src, u, z), g>, computed on `B`, back on the host.
template <class T, int Dim>
struct gradients {
  image<T, Dim, host> src;
  vector_field<T, Dim, host> u;
  image<T, Dim, host> z;
};

template <class B, class T, int Dim>
gradients<T, Dim> run_vjp(const image<T, Dim, host>& src, const vector_field<T, Dim, host>& u,
                          const image<T, Dim, host>& z, const image<T, Dim, host>& g,
                          splat_options opts) {
  const auto s = to_backend<B>(src);
  const auto v = to_backend<B>(u);
  const auto m = to_backend<B>(z);
  const auto go = to_backend<B>(g);
  image<T, Dim, B> gs(u.geometry(), src.channels()), gz(u.geometry());
  vector_field<T, Dim, B> gu(u.geometry());
  splat_vjp(B{}, s.view(), v.view(), m.view(), go.view(), gs.view(), gu.view(), gz.view(), opts);
  return {to_host(gs), to_host(gu), to_host(gz)};
}

template <class T, int Dim>
bool bitwise_equal(const field<T, Dim, host>& a, const field<T, Dim, host>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(T) * a.size()) == 0;
}

template <class B>
constexpr bool exact_like_serial() {
#if defined(DIFFEO_ENABLE_CUDA)
  return !std::is_same_v<B, backend::thrust>;
#else
  return true;
#endif
}

// --- adjointness ----------------------------------------------------------------------------

template <class B, class T, int Dim>
void check_adjoint(const extents<Dim>& e) {
  const int C = 3;
  const auto img = make_image<T, Dim>(e, C);
  const auto g = make_image<T, Dim>(e, C, 1.7);
  const auto u = make_flow<T, Dim>(e, 2.1);  // some mass leaves the grid
  const auto z = make_metric<T, Dim>(e, 0, 1);
  const auto splatted = run_splat<B>(img, u, z, {splat_mode::sum});
  const auto pulled = to_host(warp(to_backend<B>(g), to_backend<B>(u), interp::linear{},
                                   boundary::zeros{}));
  const double lhs = inner(splatted, g), rhs = inner(img, pulled);
  CHECK(lhs == doctest::Approx(rhs).epsilon(std::is_same_v<T, float> ? 1e-5 : 1e-12));
  // The image VJP of sum splatting is that same pull-back.
  const auto grads = run_vjp<B>(img, u, z, g, {splat_mode::sum});
  for (index_t i = 0; i < pulled.size(); ++i)
    REQUIRE(double(grads.src[i]) ==
            doctest::Approx(double(pulled[i])).epsilon(std::is_same_v<T, float> ? 1e-5 : 1e-12));
}

TEST_CASE_TEMPLATE("sum splatting is the adjoint of bilinear warping with zeros boundary", B,
                   DIFFEO_TEST_BACKENDS) {
  check_adjoint<B, float>(make_extents(17, 12));
  check_adjoint<B, double>(make_extents(17, 12));
  check_adjoint<B, double>(make_extents(8, 7, 6));
}

// --- finite differences ---------------------------------------------------------------------

template <int Dim>
void require_off_grid_lines(const vector_field<double, Dim, host>& u) {
  for (index_t s = 0; s < u.points(); ++s) {
    const auto p = u.ext().unravel(s);
    for (int a = 0; a < Dim; ++a) {
      const double q = double(p[a]) + u[s][a];
      REQUIRE(std::fabs(q - std::round(q)) > 1e-3);
    }
  }
}

template <class B, int Dim>
void check_fd(const extents<Dim>& e, splat_mode mode) {
  CAPTURE(to_string(mode));
  const int C = 2;
  const auto src = make_image<double, Dim>(e, C);
  const auto u = make_flow<double, Dim>(e, 1.6);
  // Linear: clear of the kink at 0 (some negative, whose gradient is 0). Softmax: moderate.
  const auto z = mode == splat_mode::linear ? make_metric<double, Dim>(e, 0.6, 1.0)
                                            : make_metric<double, Dim>(e, 0.5, 2.5);
  const auto g = make_image<double, Dim>(e, C, 2.3);
  require_off_grid_lines(u);
  for (index_t i = 0; i < z.size(); ++i) REQUIRE(std::fabs(z[i]) > 1e-3);

  const splat_options opts{mode};
  const auto grads = run_vjp<B>(src, u, z, g, opts);
  const auto loss = [&](const auto& s, const auto& v, const auto& m) {
    return inner(run_splat<B>(s, v, m, opts), g);
  };
  const double h = 1e-6;
  const auto fd_check = [&](double analytic, auto&& perturbed_loss) {
    const double fd = (perturbed_loss(h) - perturbed_loss(-h)) / (2 * h);
    REQUIRE(analytic == doctest::Approx(fd).epsilon(1e-6));
  };
  for (index_t i = 0; i < src.size(); ++i)
    fd_check(grads.src[i], [&](double d) {
      auto s = src;
      s[i] += d;
      return loss(s, u, z);
    });
  for (index_t i = 0; i < u.points(); ++i)
    for (int k = 0; k < Dim; ++k)
      fd_check(grads.u[i][k], [&](double d) {
        auto v = u;
        v[i][k] += d;
        return loss(src, v, z);
      });
  bool metric_matters = false;
  for (index_t i = 0; i < z.size(); ++i) {
    metric_matters = metric_matters || grads.z[i] != 0;
    fd_check(grads.z[i], [&](double d) {
      auto m = z;
      m[i] += d;
      return loss(src, u, m);
    });
  }
  CHECK(metric_matters == (mode == splat_mode::linear || mode == splat_mode::softmax));
}

TEST_CASE_TEMPLATE("splat VJPs match central differences in 2D", B, DIFFEO_TEST_BACKENDS) {
  for (splat_mode mode : all_modes) check_fd<B>(make_extents(7, 6), mode);
}

TEST_CASE_TEMPLATE("splat VJPs match central differences in 3D", B, DIFFEO_TEST_BACKENDS) {
  for (splat_mode mode : all_modes) check_fd<B>(make_extents(5, 4, 4), mode);
}

TEST_CASE_TEMPLATE("softmax VJPs stay accurate for metrics near 1e4", B, DIFFEO_TEST_BACKENDS) {
  // exp(1e4) overflows; the shifted weights give the same gradients as moderate metrics
  // shifted by a constant (softmax splatting is invariant to Z + c).
  const auto e = make_extents(7, 6);
  const auto src = make_image<double, 2>(e, 2);
  const auto u = make_flow<double, 2>(e, 1.6);
  const auto g = make_image<double, 2>(e, 2, 2.3);
  const auto z = make_metric<double, 2>(e, 0.5, 2.5);
  auto zbig = z;
  for (index_t i = 0; i < z.size(); ++i) zbig[i] += 1e4;
  const splat_options opts{splat_mode::softmax};
  const auto a = run_vjp<B>(src, u, z, g, opts), b = run_vjp<B>(src, u, zbig, g, opts);
  // Adding 1e4 rounds each metric by ~1e4 * eps; the gradients move by about as much.
  for (index_t i = 0; i < a.src.size(); ++i)
    REQUIRE(b.src[i] == doctest::Approx(a.src[i]).epsilon(1e-9));
  for (index_t i = 0; i < a.u.points(); ++i)
    for (int k = 0; k < 2; ++k) REQUIRE(b.u[i][k] == doctest::Approx(a.u[i][k]).epsilon(1e-9));
  for (index_t i = 0; i < a.z.size(); ++i)
    REQUIRE(b.z[i] == doctest::Approx(a.z[i]).epsilon(1e-9));
}

// --- determinism, skipped outputs, bad values -----------------------------------------------

template <class B, class T, int Dim>
void check_vjp_determinism(const extents<Dim>& e) {
  const int C = 2;
  const auto src = make_image<T, Dim>(e, C);
  auto u = make_flow<T, Dim>(e, 0.4);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    for (int a = 0; a < Dim; ++a) u[i][a] += T(-0.8 * (double(p[a]) - 0.5 * double(e[a] - 1)));
  }
  const auto z = make_metric<T, Dim>(e, 0.5, 3.0);
  const auto g = make_image<T, Dim>(e, C, 0.9);
  for (splat_mode mode : all_modes) {
    CAPTURE(to_string(mode));
    const splat_options det{mode, scatter_mode::deterministic};
    const auto a = run_vjp<B>(src, u, z, g, det), b = run_vjp<B>(src, u, z, g, det);
    CHECK(bitwise_equal(a.src, b.src));
    CHECK(bitwise_equal(a.u, b.u));
    CHECK(bitwise_equal(a.z, b.z));
    const auto s = run_vjp<host>(src, u, z, g, {mode, scatter_mode::atomic});
    if constexpr (exact_like_serial<B>()) {
      CHECK(bitwise_equal(a.src, s.src));
      CHECK(bitwise_equal(a.u, s.u));
      CHECK(bitwise_equal(a.z, s.z));
    }
  }
}

TEST_CASE_TEMPLATE("deterministic VJPs are bitwise reproducible and equal serial", B,
                   DIFFEO_TEST_BACKENDS) {
  check_vjp_determinism<B, float>(make_extents(40, 32));
  check_vjp_determinism<B, double>(make_extents(12, 10, 9));
}

TEST_CASE_TEMPLATE("VJP outputs can be skipped with empty views", B, DIFFEO_TEST_BACKENDS) {
  const auto e = make_extents(9, 7);
  const auto src = make_image<double, 2>(e, 2);
  const auto u = make_flow<double, 2>(e, 1.3);
  const auto z = make_metric<double, 2>(e, 0.5, 2.0);
  const auto g = make_image<double, 2>(e, 2, 0.4);
  // Deterministic: atomic recomputation of the normalizers may round differently per call.
  const splat_options opts{splat_mode::softmax, scatter_mode::deterministic};
  const auto all = run_vjp<B>(src, u, z, g, opts);
  const auto s = to_backend<B>(src);
  const auto v = to_backend<B>(u);
  const auto m = to_backend<B>(z);
  const auto go = to_backend<B>(g);
  vector_field<double, 2, B> gu(e);
  splat_vjp(B{}, s.view(), v.view(), m.view(), go.view(), field_view<double, 2>{}, gu.view(),
            field_view<double, 2>{}, opts);
  CHECK(bitwise_equal(to_host(gu), all.u));
  image<double, 2, B> gs(e, 2);
  splat_vjp(B{}, s.view(), v.view(), go.view(), gs.view(), vector_view<double, 2>{},
            splat_options{splat_mode::average, scatter_mode::deterministic});
  const auto avg = run_vjp<B>(src, u, z, g, {splat_mode::average, scatter_mode::deterministic});
  CHECK(bitwise_equal(to_host(gs), avg.src));
}

template <class B, class T, int Dim>
void check_vjp_bad_values(const extents<Dim>& e) {
  const int C = 2;
  const auto src = make_image<T, Dim>(e, C);
  auto u = make_flow<T, Dim>(e, 1.5);
  auto z = make_metric<T, Dim>(e, 1.0, 2.0);
  const auto g = make_image<T, Dim>(e, C, 0.3);
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  u[3][0] = nan;
  u[7][Dim - 1] = inf;
  u[15][0] = T(1e30);
  z[5] = nan;
  z[9] = -inf;
  z[21] = T(1e3);
  for (splat_mode mode : all_modes) {
    CAPTURE(to_string(mode));
    const auto r = run_vjp<B>(src, u, z, g, {mode});
    for (index_t i = 0; i < r.src.size(); ++i) REQUIRE(std::isfinite(r.src[i]));
    for (index_t i = 0; i < r.z.size(); ++i) {
      REQUIRE(std::isfinite(r.z[i]));
      for (int k = 0; k < Dim; ++k) REQUIRE(std::isfinite(r.u[i][k]));
    }
    // A dropped source moves nothing, so nothing depends on it.
    for (index_t s : {index_t(3), index_t(7), index_t(15)}) {
      for (int c = 0; c < C; ++c) CHECK(r.src[s * C + c] == T(0));
      CHECK(r.z[s] == T(0));
    }
    if (mode == splat_mode::linear || mode == splat_mode::softmax)
      for (index_t s : {index_t(5), index_t(9)}) {
        for (int c = 0; c < C; ++c) CHECK(r.src[s * C + c] == T(0));
        for (int k = 0; k < Dim; ++k) CHECK(r.u[s][k] == T(0));
      }
  }
}

TEST_CASE_TEMPLATE("VJPs of dropped sources are zero and everything stays finite", B,
                   DIFFEO_TEST_BACKENDS) {
  check_vjp_bad_values<B, float>(make_extents(9, 8));
  check_vjp_bad_values<B, double>(make_extents(6, 5, 4));
}

TEST_CASE("splat_vjp rejects bad arguments, naming them") {
  using img = image<double, 2, host>;
  const auto e = make_extents(6, 5);
  const img src = make_image<double, 2>(e, 2), g = make_image<double, 2>(e, 2, 1.0);
  const auto u = make_flow<double, 2>(e, 1.0);
  const auto z = make_metric<double, 2>(e, 0, 1);
  img gs(e, 2), gs1(e, 1), gz(e), gz2(e, 2), small(make_extents(5, 5), 2);
  vector_field<double, 2, host> gu(e), gu_small(make_extents(6, 4));
  const host be{};
  const splat_options soft{splat_mode::softmax};
  CHECK_THROWS_WITH_AS(splat_vjp(be, src.view(), u.view(), z.view(), small.view(), gs.view(),
                                 gu.view(), gz.view(), soft),
                       doctest::Contains("splat_vjp(u, grad_out)"), shape_error);
  CHECK_THROWS_WITH_AS(splat_vjp(be, src.view(), u.view(), z.view(), g.view(), gs1.view(),
                                 gu.view(), gz.view(), soft),
                       doctest::Contains("splat_vjp(src, grad_src)"), shape_error);
  CHECK_THROWS_WITH_AS(splat_vjp(be, src.view(), u.view(), z.view(), g.view(), gs.view(),
                                 gu_small.view(), gz.view(), soft),
                       doctest::Contains("splat_vjp(u, grad_u)"), shape_error);
  CHECK_THROWS_WITH_AS(splat_vjp(be, src.view(), u.view(), z.view(), g.view(), gs.view(),
                                 gu.view(), gz2.view(), soft),
                       doctest::Contains("splat_vjp(grad_metric): expected one channel"),
                       shape_error);
  CHECK_THROWS_WITH_AS(splat_vjp(be, src.view(), u.view(), g.view(), gs.view(), gu.view(), soft),
                       doctest::Contains("splat_vjp(metric): mode softmax needs"), value_error);
  img inplace = src;
  CHECK_THROWS_WITH_AS(splat_vjp(be, inplace.view(), u.view(), z.view(), g.view(), inplace.view(),
                                 gu.view(), gz.view(), soft),
                       doctest::Contains("splat_vjp(grad_src, grad_u, grad_metric): outputs overlap"),
                       value_error);
  CHECK_THROWS_WITH_AS(splat_vjp(be, src.view(), u.view(), z.view(), g.view(), gs.view(),
                                 gu.view(), make_view(gs.data() + 1, e), soft),
                       doctest::Contains("overlap"), value_error);
}

}  // namespace
