#include <diffeo/sample/normalized_grid.hpp>
#include <diffeo/sample/warp.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/backends.hpp"
#include "support/reference.hpp"

using namespace diffeo;

namespace {

template <class T, int Dim>
image<T, Dim, backend::serial> smooth_image(extents<Dim> e, int channels) {
  image<T, Dim, backend::serial> img(e, channels);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    for (int c = 0; c < channels; ++c)
      img[i * channels + c] = T(test::smooth_value(double(p[0]), double(p[1]), Dim == 3 ? double(p[2]) : 0, c));
  }
  return img;
}

template <class S, int Dim>
vector_field<S, Dim, backend::serial> random_field(extents<Dim> e, double amplitude, std::uint64_t seed) {
  vector_field<S, Dim, backend::serial> u(e);
  test::lcg rng(seed);
  for (index_t i = 0; i < e.count(); ++i)
    for (int a = 0; a < Dim; ++a) u[i][a] = S(rng.uniform(-amplitude, amplitude));
  return u;
}

}  // namespace

TEST_CASE_TEMPLATE("zero displacement returns the image exactly; integer shifts are exact", B,
                   DIFFEO_TEST_BACKENDS) {
  const auto e = make_extents(13, 9);
  const auto img = smooth_image<float, 2>(e, 3);
  vector_field<float, 2, backend::serial> u(e);
  const auto id = to_host(warp(to_backend<B>(img), to_backend<B>(u), interp::cubic{}, boundary::zeros{}));
  for (index_t i = 0; i < img.size(); ++i) CHECK(id[i] == img[i]);

  u.fill(vec2f{{2.f, -1.f}});
  const auto ub = to_backend<B>(u);
  const auto lin = to_host(warp(to_backend<B>(img), ub, interp::linear{}, boundary::zeros{}));
  const auto near = to_host(warp(to_backend<B>(img), ub, interp::nearest{}, boundary::border{}));
  for (index_t y = 0; y < 9; ++y)
    for (index_t x = 0; x < 13; ++x)
      for (int c = 0; c < 3; ++c) {
        const index_t sx = x + 2, sy = y - 1;
        const bool inside = sx < 13 && sy >= 0;
        CHECK(lin({{x, y}}, c) == (inside ? img({{sx, sy}}, c) : 0.f));
        CHECK(near({{x, y}}, c) == img({{std::min<index_t>(sx, 12), std::max<index_t>(sy, 0)}}, c));
      }
}

template <class I, class Bd, class B, class T, int Dim>
void check_warp_reference(extents<Dim> e, int channels, double tol, test::ref_interp ri, test::ref_boundary rb,
                          double amplitude = 3.0) {
  const auto img = smooth_image<T, Dim>(e, channels);
  const auto u = random_field<T, Dim>(e, amplitude, 11);
  const auto out = to_host(warp(to_backend<B>(img), to_backend<B>(u), I{}, Bd{}));
  std::vector<double> ref(img.data(), img.data() + img.size());
  long n[3] = {long(e[0]), long(e[1]), Dim == 3 ? long(e[2]) : 1};
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    double q[3];
    for (int a = 0; a < Dim; ++a) q[a] = double(T(T(p[a]) + u[i][a]));
    for (int c = 0; c < channels; ++c)
      CHECK(std::fabs(double(out[i * channels + c]) - test::ref_sample(ref, n, Dim, channels, c, q, ri, rb)) <= tol);
  }
}

TEST_CASE_TEMPLATE("warp agrees with the slow reference on every backend", B, DIFFEO_TEST_BACKENDS) {
  using test::ref_boundary;
  using test::ref_interp;
  // Float linear runs the CPU backends' SIMD rows where the CPU has AVX2: rows of 17 and 35
  // points cover full blocks of 8, tails and boundary points inside blocks; the channel
  // counts each kind of row (1; 2 to 4; more, 4 at a time with a partial group), the
  // amplitudes points just off the grid and far off it, axes of 2 voxels the smallest grid
  // the rows take (1 voxel: the scalar path).
  check_warp_reference<interp::linear, boundary::zeros, B, float, 2>(make_extents(17, 12), 1, 2e-6, ref_interp::linear, ref_boundary::zeros);
  check_warp_reference<interp::linear, boundary::zeros, B, float, 2>(make_extents(35, 4), 4, 2e-6, ref_interp::linear, ref_boundary::zeros, 12.0);
  check_warp_reference<interp::linear, boundary::border, B, float, 2>(make_extents(17, 3), 5, 2e-6, ref_interp::linear, ref_boundary::border, 40.0);
  check_warp_reference<interp::linear, boundary::zeros, B, float, 2>(make_extents(16, 2), 8, 2e-6, ref_interp::linear, ref_boundary::zeros, 1.5);
  check_warp_reference<interp::linear, boundary::border, B, float, 2>(make_extents(24, 1), 2, 2e-6, ref_interp::linear, ref_boundary::border);
  check_warp_reference<interp::linear, boundary::reflection, B, float, 2>(make_extents(17, 12), 1, 2e-6, ref_interp::linear, ref_boundary::reflection, 9.0);
  check_warp_reference<interp::linear, boundary::reflection, B, float, 3>(make_extents(19, 4, 3), 3, 2e-6, ref_interp::linear, ref_boundary::reflection);
  check_warp_reference<interp::linear, boundary::border, B, float, 3>(make_extents(33, 2, 2), 3, 2e-6, ref_interp::linear, ref_boundary::border, 5.0);
  check_warp_reference<interp::linear, boundary::zeros, B, float, 3>(make_extents(8, 3, 4), 7, 2e-6, ref_interp::linear, ref_boundary::zeros);
  check_warp_reference<interp::linear, boundary::border, B, float, 2>(make_extents(35, 9), 3, 2e-6, ref_interp::linear, ref_boundary::border);
  check_warp_reference<interp::linear, boundary::zeros, B, float, 3>(make_extents(35, 6, 5), 2, 2e-6, ref_interp::linear, ref_boundary::zeros);
  check_warp_reference<interp::linear, boundary::reflection, B, double, 2>(make_extents(17, 12), 3, 1e-12, ref_interp::linear, ref_boundary::reflection);
  check_warp_reference<interp::cubic, boundary::border, B, double, 2>(make_extents(11, 10), 2, 1e-12, ref_interp::cubic, ref_boundary::border);
  check_warp_reference<interp::linear, boundary::border, B, float, 3>(make_extents(9, 8, 7), 1, 2e-6, ref_interp::linear, ref_boundary::border);
  check_warp_reference<interp::nearest, boundary::zeros, B, double, 3>(make_extents(9, 8, 7), 2, 0, ref_interp::nearest, ref_boundary::zeros);
  check_warp_reference<interp::cubic, boundary::reflection, B, double, 3>(make_extents(6, 7, 5), 1, 1e-12, ref_interp::cubic, ref_boundary::reflection);
}

TEST_CASE_TEMPLATE("backends agree: oneTBB bitwise with serial, Thrust within rounding", B,
                   DIFFEO_TEST_BACKENDS) {
  const auto e = make_extents(64, 48, 5);
  const auto img = smooth_image<float, 3>(e, 2);
  const auto u = random_field<float, 3>(e, 4.0, 5);
  const auto ref = warp(img, u, interp::linear{}, boundary::zeros{});
  const auto out = to_host(warp(to_backend<B>(img), to_backend<B>(u), interp::linear{}, boundary::zeros{}));
  for (index_t i = 0; i < out.size(); ++i) {
    if constexpr (test::bitwise_like_serial<B>)
      CHECK(out[i] == ref[i]);
    else
      CHECK(out[i] == doctest::Approx(ref[i]).epsilon(1e-6));
  }
}

// L(src, u) = Σ g · warp(src, u): checks both VJPs against central differences.
template <class I, class Bd, class B, int Dim>
void check_warp_vjp(extents<Dim> e, int channels) {
  auto img = smooth_image<double, Dim>(e, channels);
  auto u = random_field<double, Dim>(e, 2.5, 21);
  image<double, Dim, backend::serial> g(e, channels);
  test::lcg rng(99);
  for (index_t i = 0; i < g.size(); ++i) g[i] = rng.uniform(-1, 1);
  auto loss = [&](const auto& im, const auto& uu) {
    const auto out = warp(im, uu, I{}, Bd{});
    double s = 0;
    for (index_t i = 0; i < out.size(); ++i) s += out[i] * g[i];
    return s;
  };
  image<double, Dim, B> grad_src(e, channels);
  vector_field<double, Dim, B> grad_u(e);
  const auto img_b = to_backend<B>(img);
  const auto u_b = to_backend<B>(u);
  const auto g_b = to_backend<B>(g);
  warp_vjp(B{}, img_b.view(), u_b.view(), g_b.view(), grad_src.view(), grad_u.view(), I{}, Bd{});
  const auto gs = to_host(grad_src);
  const auto gu = to_host(grad_u);
  const double h = 1e-6;
  for (index_t i = 0; i < e.count(); i += 7) {
    for (int a = 0; a < Dim; ++a) {
      // Skip points whose sample position sits within h of a kink (grid or mirror line).
      const double q = double(e.unravel(i)[a]) + u[i][a];
      if (std::fabs(q - std::nearbyint(q)) < 1e-4) continue;
      auto up = u, um = u;
      up[i][a] += h;
      um[i][a] -= h;
      CHECK(gu[i][a] == doctest::Approx((loss(img, up) - loss(img, um)) / (2 * h)).epsilon(1e-6).scale(1.0));
    }
    // The loss is linear in the image, so one-sided unit differences are exact.
    for (int c = 0; c < channels; ++c) {
      auto ip = img;
      ip[i * channels + c] += 1.0;
      CHECK(gs[i * channels + c] == doctest::Approx(loss(ip, u) - loss(img, u)).epsilon(1e-9).scale(1.0));
    }
  }
}

TEST_CASE("the image gradient's taps of a run of sources equal those found one by one") {
  // `warp_taps::run` steps from point to point without dividing: runs start anywhere and
  // cross rows and slices of odd extents; positions leave the grid, so all tap paths run.
  const auto check = [](auto e, auto interp) {
    constexpr int Dim = decltype(e)::rank;
    using taps_t = detail::warp_taps<decltype(interp), boundary::reflection, float, Dim>;
    constexpr int K = taps_t::K;
    const auto u = random_field<float, Dim>(e, 3.0, 17);
    const taps_t taps{e, e, u.data()};
    constexpr index_t count = 23;
    index_t idx[count][K], one_idx[K];
    float w[count][K], one_w[K];
    index_t mismatches = 0;
    for (index_t s0 = 0; s0 < e.count(); s0 += count - 4) {
      const index_t n = std::min(count, e.count() - s0);
      taps.run(s0, n, idx, w);
      for (index_t m = 0; m < n; ++m) {
        taps(s0 + m, one_idx, one_w);
        for (int k = 0; k < K; ++k)
          mismatches += idx[m][k] != one_idx[k] || w[m][k] != one_w[k];
      }
    }
    CHECK(mismatches == 0);
  };
  check(make_extents(13, 7), interp::linear{});
  check(make_extents(13, 7), interp::cubic{});
  check(make_extents(9, 5, 4), interp::linear{});
  check(make_extents(9, 5, 4), interp::cubic{});
}

TEST_CASE_TEMPLATE("warp VJPs match finite differences", B, DIFFEO_TEST_BACKENDS) {
  check_warp_vjp<interp::linear, boundary::zeros, B, 2>(make_extents(9, 8), 2);
  check_warp_vjp<interp::linear, boundary::reflection, B, 2>(make_extents(7, 9), 1);
  check_warp_vjp<interp::cubic, boundary::border, B, 2>(make_extents(8, 7), 1);
  check_warp_vjp<interp::linear, boundary::border, B, 3>(make_extents(6, 5, 4), 1);
  check_warp_vjp<interp::cubic, boundary::zeros, B, 3>(make_extents(5, 5, 4), 2);
}

TEST_CASE_TEMPLATE("the deterministic image gradient is reproducible bit for bit", B,
                   DIFFEO_TEST_BACKENDS) {
  const auto e = make_extents(96, 80);
  const auto img = smooth_image<float, 2>(e, 3);
  // Strong contraction: many outputs land on the same source voxels.
  auto u = random_field<float, 2>(e, 1.0, 8);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    u[i] += vec2f{{-0.7f * float(p[0] - 48), -0.7f * float(p[1] - 40)}};
  }
  const auto g = smooth_image<float, 2>(e, 3);
  auto run = [&](auto be, scatter_mode mode) {
    using Be = decltype(be);
    const auto ib = to_backend<Be>(img);
    const auto ub = to_backend<Be>(u);
    const auto gb = to_backend<Be>(g);
    image<float, 2, Be> gs(e, 3);
    warp_vjp(be, ib.view(), ub.view(), gb.view(), gs.view(), vector_view<float, 2>{},
             interp::linear{}, boundary::border{}, mode);
    return to_host(gs);
  };
  const auto serial = run(backend::serial{}, scatter_mode::deterministic);
  const auto d1 = run(B{}, scatter_mode::deterministic);
  const auto d2 = run(B{}, scatter_mode::deterministic);
  const auto fast = run(B{}, scatter_mode::atomic);
  for (index_t i = 0; i < serial.size(); ++i) {
    CHECK(d1[i] == d2[i]);
    if constexpr (test::bitwise_like_serial<B>) CHECK(d1[i] == serial[i]);
    CHECK(fast[i] == doctest::Approx(serial[i]).epsilon(1e-5));
  }
}

TEST_CASE_TEMPLATE("non-finite displacements sample as outside, without a crash", B, DIFFEO_TEST_BACKENDS) {
  // 19 points a row: the SIMD rows (where the CPU has them) see these points too.
  const auto e = make_extents(19, 5);
  const auto img = smooth_image<float, 2>(e, 1);
  vector_field<float, 2, backend::serial> u(e);
  u[3] = vec2f{{std::numeric_limits<float>::quiet_NaN(), 0.f}};
  u[7] = vec2f{{0.f, std::numeric_limits<float>::infinity()}};
  u[9] = vec2f{{-std::numeric_limits<float>::infinity(), 1e30f}};
  u[21] = vec2f{{1e30f, -1e30f}};
  const auto ib = to_backend<B>(img);
  const auto ub = to_backend<B>(u);
  for (const bool border : {true, false}) {
    const auto out = to_host(border ? warp(ib, ub, interp::linear{}, boundary::border{})
                                    : warp(ib, ub, interp::linear{}, boundary::zeros{}));
    CHECK(out[3] == 0.f);
    CHECK(out[7] == 0.f);
    CHECK(out[9] == 0.f);
    CHECK(out[21] == (border ? img[18] : 0.f));  // the corner (n-1, 0)
    CHECK(out[4] == img[4]);
    CHECK(out[20] == img[20]);
  }
  image<float, 2, B> gs(e);
  vector_field<float, 2, B> gu(e);
  warp_vjp(B{}, ib.view(), ub.view(), ib.view(), gs.view(), gu.view(), interp::cubic{}, boundary::reflection{});
  const auto gsh = to_host(gs);
  const auto guh = to_host(gu);
  for (index_t i = 0; i < gsh.size(); ++i) CHECK(std::isfinite(gsh[i]));
  CHECK(guh[3] == vec2f::zero());
}

TEST_CASE("bad arguments are rejected with the argument named") {
  using img_t = image<float, 2, backend::serial>;
  using vf_t = vector_field<float, 2, backend::serial>;
  img_t src(make_extents(8, 8), 3), out1(make_extents(8, 7), 3), out3(make_extents(8, 8), 1);
  vf_t u(make_extents(8, 8));
  CHECK_THROWS_WITH_AS(warp(backend::serial{}, src.view(), u.view(), out1.view()),
                       doctest::Contains("warp(u, out): extents differ (8x8 vs 8x7)"), shape_error);
  CHECK_THROWS_WITH_AS(warp(backend::serial{}, src.view(), u.view(), out3.view()),
                       doctest::Contains("warp(src, out): channel counts differ (3 vs 1)"), shape_error);
  CHECK_THROWS_WITH_AS(warp(backend::serial{}, field_view<const float, 2>{}, u.view(), out3.view()),
                       doctest::Contains("warp(src): empty grid"), shape_error);
  img_t g(make_extents(8, 7), 3);
  CHECK_THROWS_WITH_AS(warp_vjp(backend::serial{}, src.view(), u.view(), g.view(), src.view(), u.view()),
                       doctest::Contains("warp_vjp(u, grad_out)"), shape_error);
}

TEST_CASE_TEMPLATE("normalized grids match PyTorch's formulas and round-trip", B, DIFFEO_TEST_BACKENDS) {
  const auto e = make_extents(5, 4, 3);
  const auto u = random_field<double, 3>(e, 2.0, 4);
  const auto ub = to_backend<B>(u);
  for (const auto ac : {align_corners::yes, align_corners::no}) {
    const auto g = to_host(displacement_to_grid(ub, ac));
    for (index_t i = 0; i < e.count(); ++i) {
      const auto p = e.unravel(i);
      for (int a = 0; a < 3; ++a) {
        const double x = double(p[a]) + u[i][a], n = double(e[a]);
        const double want = ac == align_corners::yes ? x * 2 / (n - 1) - 1 : (2 * x + 1) / n - 1;
        CHECK(g[i][a] == doctest::Approx(want).epsilon(1e-14));
      }
    }
    const auto back = to_host(grid_to_displacement(to_backend<B>(g), ac));
    for (index_t i = 0; i < e.count(); ++i)
      for (int a = 0; a < 3; ++a) CHECK(back[i][a] == doctest::Approx(u[i][a]).epsilon(1e-12).scale(1.0));
  }
  // Corners: voxel centres 0 and n-1 map to ±1 with align_corners, the outer edges without.
  CHECK(normalize_coordinate(0.0, 5, align_corners::yes) == -1.0);
  CHECK(normalize_coordinate(4.0, 5, align_corners::yes) == 1.0);
  CHECK(normalize_coordinate(-0.5, 5, align_corners::no) == -1.0);
  CHECK(normalize_coordinate(4.5, 5, align_corners::no) == 1.0);
}
