#include <diffeo/sample/interpolate.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/reference.hpp"

using namespace diffeo;
using test::ref_boundary;
using test::ref_interp;

template <class I, class B>
struct combo {
  using interp_t = I;
  using boundary_t = B;
  static constexpr ref_interp ri = std::is_same_v<I, interp::nearest> ? ref_interp::nearest
                                   : std::is_same_v<I, interp::linear> ? ref_interp::linear
                                                                       : ref_interp::cubic;
  static constexpr ref_boundary rb = std::is_same_v<B, boundary::zeros>    ? ref_boundary::zeros
                                     : std::is_same_v<B, boundary::border> ? ref_boundary::border
                                                                           : ref_boundary::reflection;
};

#define ALL_COMBOS                                                                            \
  combo<interp::nearest, boundary::zeros>, combo<interp::nearest, boundary::border>,          \
      combo<interp::nearest, boundary::reflection>, combo<interp::linear, boundary::zeros>,   \
      combo<interp::linear, boundary::border>, combo<interp::linear, boundary::reflection>,   \
      combo<interp::cubic, boundary::zeros>, combo<interp::cubic, boundary::border>,          \
      combo<interp::cubic, boundary::reflection>

// Fills a (…, C) array with smooth values and returns it with its view.
template <class T, int Dim>
struct test_image {
  extents<Dim> ext;
  int channels;
  std::vector<double> ref;
  std::vector<T> data;
  test_image(extents<Dim> e, int c) : ext(e), channels(c) {
    for (index_t i = 0; i < e.count(); ++i) {
      const auto p = e.unravel(i);
      for (int k = 0; k < c; ++k) {
        const double v = test::smooth_value(double(p[0]), double(p[1]), Dim == 3 ? double(p[2]) : 0, k);
        data.push_back(T(v));
        ref.push_back(double(T(v)));
      }
    }
  }
  field_view<const T, Dim> view() const { return make_view(data.data(), ext, channels); }
};

template <class C, class T, int Dim>
void check_against_reference(extents<Dim> e, int channels, double tol) {
  test_image<T, Dim> img(e, channels);
  long n[3] = {long(e[0]), long(e[1]), Dim == 3 ? long(e[2]) : 1};
  test::lcg rng(42 + Dim * 10 + channels);
  std::vector<T> out(channels);
  for (int trial = 0; trial < 400; ++trial) {
    vec<T, Dim> q;
    double qd[3];
    for (int a = 0; a < Dim; ++a) {
      q[a] = T(rng.uniform(-3.5, double(e[a]) + 2.5));
      qd[a] = double(q[a]);
    }
    sample_channels(img.view(), q, out.data(), typename C::interp_t{}, typename C::boundary_t{});
    for (int c = 0; c < channels; ++c) {
      const double want = test::ref_sample(img.ref, n, Dim, channels, c, qd, C::ri, C::rb);
      INFO("q = (" << qd[0] << ", " << qd[1] << (Dim == 3 ? ", " + std::to_string(qd[2]) : "")
                   << "), channel " << c);
      CHECK(std::fabs(double(out[c]) - want) <= tol);
    }
    if (channels == 1) CHECK(double(sample(img.view(), q, typename C::interp_t{}, typename C::boundary_t{})) == double(out[0]));
  }
}

TEST_CASE_TEMPLATE("sampling agrees with the slow reference for every kernel and boundary", C,
                   ALL_COMBOS) {
  check_against_reference<C, double, 2>(make_extents(9, 7), 1, 1e-13);
  check_against_reference<C, double, 2>(make_extents(6, 8), 3, 1e-13);
  check_against_reference<C, double, 3>(make_extents(6, 5, 4), 1, 1e-13);
  check_against_reference<C, double, 3>(make_extents(4, 5, 6), 2, 1e-13);
  check_against_reference<C, float, 2>(make_extents(9, 7), 3, 2e-6);
  check_against_reference<C, float, 3>(make_extents(6, 5, 4), 1, 2e-6);
  // Degenerate axes: one and two points.
  check_against_reference<C, double, 2>(make_extents(1, 5), 1, 1e-13);
  check_against_reference<C, double, 3>(make_extents(2, 1, 3), 2, 1e-13);
}

TEST_CASE_TEMPLATE("grid points sample exactly, under every kernel and boundary", C, ALL_COMBOS) {
  test_image<float, 3> img(make_extents(5, 4, 3), 2);
  for (index_t i = 0; i < img.ext.count(); ++i) {
    const auto p = img.ext.unravel(i);
    float out[2];
    sample_channels(img.view(), p.cast<float>(), out, typename C::interp_t{}, typename C::boundary_t{});
    CHECK(out[0] == img.data[i * 2]);
    CHECK(out[1] == img.data[i * 2 + 1]);
  }
}

TEST_CASE("linear interpolation reproduces affine functions exactly") {
  // f = 3 + x/2 - 2y + z/4 with dyadic sample positions: every operation is exact.
  const auto e = make_extents(8, 6, 5);
  std::vector<double> f(e.count());
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    f[i] = 3 + p[0] / 2.0 - 2.0 * p[1] + p[2] / 4.0;
  }
  auto v = make_view<const double>(f.data(), e);
  test::lcg rng(7);
  for (int trial = 0; trial < 500; ++trial) {
    vec3d q;
    for (int a = 0; a < 3; ++a) q[a] = std::floor(rng.uniform(0, double(e[a] - 1)) * 64) / 64;
    CHECK(sample(v, q, interp::linear{}, boundary::zeros{}) == 3 + q[0] / 2 - 2 * q[1] + q[2] / 4);
    CHECK(sample(v, q, interp::linear{}, boundary::reflection{}) == 3 + q[0] / 2 - 2 * q[1] + q[2] / 4);
  }
}

TEST_CASE("linear values and gradients of multilinear fields are exact, scalar and vector") {
  // Bi/trilinear interpolation reproduces a multilinear function, and its gradient in
  // closed form; dyadic positions and coefficients keep every operation exact. Covers the
  // all-corners-inside paths of `sample_with_gradient` and `for_each_tap`.
  const auto f = [](const vec3d& p, int c) {
    const double x = p[0], y = p[1], z = p[2];
    return 1 + c + (2 - c) * x / 4 - y / 2 + z * (c + 1) / 8 + x * y / 8 - c * y * z / 4 + x * y * z / 16;
  };
  const auto df = [](const vec3d& p, int c) {
    const double x = p[0], y = p[1], z = p[2];
    return vec3d{{(2 - c) / 4.0 + y / 8 + y * z / 16, -0.5 + x / 8 - c * z / 4 + x * z / 16,
                  (c + 1) / 8.0 - c * y / 4 + x * y / 16}};
  };
  const auto e3 = make_extents(7, 6, 5);
  const auto e2 = make_extents(7, 6);
  std::vector<vec3d> v3(e3.count());
  std::vector<vec2d> v2(e2.count());
  std::vector<double> s3(e3.count());
  for (index_t i = 0; i < e3.count(); ++i) {
    const vec3d p = e3.unravel(i).cast<double>();
    v3[i] = vec3d{{f(p, 0), f(p, 1), f(p, 2)}};
    s3[i] = f(p, 1);
  }
  for (index_t i = 0; i < e2.count(); ++i) {
    const vec3d p{{double(e2.unravel(i)[0]), double(e2.unravel(i)[1]), 0.0}};
    v2[i] = vec2d{{f(p, 0), f(p, 2)}};
  }
  const auto u3 = make_view<const vec3d>(v3.data(), e3);
  const auto u2 = make_view<const vec2d>(v2.data(), e2);
  const auto w3 = make_view<const double>(s3.data(), e3);
  test::lcg rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    vec3d q;
    for (int a = 0; a < 3; ++a) q[a] = std::floor(rng.uniform(0, double(e3[a] - 1)) * 64) / 64;
    const auto g = sample_with_gradient(u3, q, interp::linear{}, boundary::border{});
    for (int c = 0; c < 3; ++c) {
      CHECK(g.value[c] == f(q, c));
      for (int k = 0; k < 3; ++k) CHECK(g.d[k][c] == df(q, c)[k]);
    }
    // The stencil walk: weights reproduce the value, weight derivatives the gradient.
    double value = 0;
    vec3d grad{};
    for_each_tap<interp::linear, boundary::zeros>(e3, q, [&](index_t i, double w, const vec3d& dw) {
      value += s3[i] * w;
      for (int k = 0; k < 3; ++k) grad[k] += s3[i] * dw[k];
    });
    CHECK(value == f(q, 1));
    for (int k = 0; k < 3; ++k) CHECK(grad[k] == df(q, 1)[k]);
    const vec3d q3{{q[0], q[1], 0.0}};
    const auto g2 = sample_with_gradient(u2, vec2d{{q[0], q[1]}}, interp::linear{}, boundary::zeros{});
    for (int c = 0; c < 2; ++c) {
      CHECK(g2.value[c] == f(q3, 2 * c));
      for (int k = 0; k < 2; ++k) CHECK(g2.d[k][c] == df(q3, 2 * c)[k]);
    }
    CHECK(sample_with_gradient(w3, q, interp::linear{}, boundary::zeros{}).value == f(q, 1));
  }
}

TEST_CASE_TEMPLATE("position gradients match central differences", C, ALL_COMBOS) {
  if constexpr (!std::is_same_v<typename C::interp_t, interp::nearest>) {
    test_image<double, 2> img2(make_extents(7, 6), 1);
    test_image<double, 3> img3(make_extents(5, 6, 4), 1);
    test::lcg rng(3);
    const double h = 1e-6;
    for (int trial = 0; trial < 200; ++trial) {
      vec3d q;
      for (int a = 0; a < 3; ++a) q[a] = rng.uniform(-2.4, 7.3);
      // Stay away from grid lines (and mirror lines), where the kernels have kinks.
      bool near_line = false;
      for (int a = 0; a < 3; ++a) near_line |= std::fabs(q[a] - std::nearbyint(q[a])) < 1e-3;
      if (near_line) continue;
      const auto g3 = sample_with_gradient(img3.view(), q, typename C::interp_t{}, typename C::boundary_t{});
      const vec2d q2{{q[0], q[1]}};
      const auto g2 = sample_with_gradient(img2.view(), q2, typename C::interp_t{}, typename C::boundary_t{});
      CHECK(g3.value == doctest::Approx(sample(img3.view(), q, typename C::interp_t{}, typename C::boundary_t{})).epsilon(1e-14));
      for (int k = 0; k < 3; ++k) {
        vec3d a = q, b = q;
        a[k] += h;
        b[k] -= h;
        const double fd = (sample(img3.view(), a, typename C::interp_t{}, typename C::boundary_t{}) -
                           sample(img3.view(), b, typename C::interp_t{}, typename C::boundary_t{})) / (2 * h);
        CHECK(g3.d[k] == doctest::Approx(fd).epsilon(1e-6).scale(1.0));
        if (k < 2) {
          vec2d a2 = q2, b2 = q2;
          a2[k] += h;
          b2[k] -= h;
          const double fd2 = (sample(img2.view(), a2, typename C::interp_t{}, typename C::boundary_t{}) -
                              sample(img2.view(), b2, typename C::interp_t{}, typename C::boundary_t{})) / (2 * h);
          CHECK(g2.d[k] == doctest::Approx(fd2).epsilon(1e-6).scale(1.0));
        }
      }
    }
  }
}

TEST_CASE_TEMPLATE("non-finite and far-away positions never read out of bounds", C, ALL_COMBOS) {
  test_image<float, 2> img(make_extents(5, 4), 1);
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const vec2f q : {vec2f{{nan, 1.f}}, vec2f{{1.f, inf}}, vec2f{{-inf, 2.f}}}) {
    CHECK(sample(img.view(), q, typename C::interp_t{}, typename C::boundary_t{}) == 0.0f);
    const auto g = sample_with_gradient(img.view(), q, typename C::interp_t{}, typename C::boundary_t{});
    CHECK(g.d[0] == 0.0f);
    CHECK(g.d[1] == 0.0f);
  }
  // Finite but huge positions follow the boundary policy without overflowing an index.
  for (const float big : {1e30f, -1e30f, 3e9f}) {
    const float v = sample(img.view(), vec2f{{big, 1.5f}}, typename C::interp_t{}, typename C::boundary_t{});
    CHECK(std::isfinite(v));
    if constexpr (std::is_same_v<typename C::boundary_t, boundary::zeros>) CHECK(v == 0.0f);
  }
}
