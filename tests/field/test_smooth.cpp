#include <diffeo/field/smooth.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/backends.hpp"

using namespace diffeo;
using host = backend::serial;

template <class S, int Dim>
image<S, Dim, host> wavy_image(const extents<Dim>& e, int channels) {
  image<S, Dim, host> f(e, channels);
  for (index_t i = 0; i < f.size(); ++i)
    f[i] = S(std::sin(0.37 * double(i * i % 101) + 0.5 * double(i)));
  return f;
}

/// Index `m` of an axis of `n` points under each boundary; -1 reads zero.
index_t fold(index_t m, index_t n, int bc) {
  if (m >= 0 && m < n) return m;
  if (bc == 0) return -1;
  if (bc == 1) return m < 0 ? 0 : n - 1;
  if (n == 1) return 0;
  const index_t period = 2 * (n - 1);
  m = ((m % period) + period) % period;
  return m > n - 1 ? period - m : m;
}

/// Direct nD convolution with the product kernel, weights computed from scratch.
template <class S, int Dim>
image<double, Dim, host> reference_smooth(const image<S, Dim, host>& f, vec<double, Dim> sigma,
                                          int bc) {
  const auto e = f.ext();
  std::vector<double> w[Dim];
  index_t r[Dim];
  for (int a = 0; a < Dim; ++a) {
    r[a] = index_t(std::ceil(4 * sigma[a]));
    double sum = 0;
    for (index_t k = -r[a]; k <= r[a]; ++k)
      sum += w[a].emplace_back(std::exp(-double(k * k) / (2 * sigma[a] * sigma[a])));
    for (double& x : w[a]) x /= sum;
  }
  image<double, Dim, host> out(e, f.channels());
  index_vec<Dim> box;
  for (int a = 0; a < Dim; ++a) box[a] = 2 * r[a] + 1;
  extents<Dim> kext{};
  for (int a = 0; a < Dim; ++a) kext[a] = box[a];
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    for (index_t t = 0; t < kext.count(); ++t) {
      const auto k = kext.unravel(t);
      double wt = 1;
      index_vec<Dim> q;
      bool valid = true;
      for (int a = 0; a < Dim; ++a) {
        wt *= w[a][k[a]];
        q[a] = fold(p[a] + k[a] - r[a], e[a], bc);
        valid = valid && q[a] >= 0;
      }
      if (!valid) continue;
      for (int c = 0; c < f.channels(); ++c) out(p, c) += wt * double(f(q, c));
    }
  }
  return out;
}

template <class B, class S, int Dim, class Boundary>
void check_reference(int bc) {
  extents<Dim> ext;
  vec<double, Dim> sigma;
  vec<double, Dim> spacing;
  // Rows long enough for the row paths: full register blocks, tails, and ends that read
  // through the boundary.
  if constexpr (Dim == 2) {
    ext = make_extents(45, 9);
    sigma = {{1.2, 0.8}};
    spacing = {{0.5, 2.0}};
  } else {
    ext = make_extents(40, 7, 5);
    sigma = {{0.9, 1.3, 0.6}};
    spacing = {{0.5, 2.0, 1.0}};
  }
  const auto fh = wavy_image<S, Dim>(ext, 2);
  const auto ref = reference_smooth(fh, sigma, bc);
  auto f = to_backend<B>(fh);
  const double tol = std::is_same_v<S, float> ? 1e-5 : 1e-13;
  const auto out = to_host(smooth(f, gaussian_kernel<Dim>(sigma), Boundary{}));
  for (index_t i = 0; i < out.size(); ++i)
    CHECK(double(out[i]) == doctest::Approx(ref[i]).epsilon(tol).scale(1));
  // The same kernel given in physical units on a grid with spacing.
  f.set_spacing(spacing);
  vec<double, Dim> phys;
  for (int a = 0; a < Dim; ++a) phys[a] = sigma[a] * spacing[a];
  const auto out_phys =
      to_host(smooth(f, gaussian_kernel<Dim>(phys, length_units::physical), Boundary{}));
  for (index_t i = 0; i < out.size(); ++i)
    CHECK(double(out_phys[i]) == doctest::Approx(ref[i]).epsilon(tol).scale(1));
  // In place.
  smooth(B{}, f.view(), f.view(), gaussian_kernel<Dim>(sigma), Boundary{});
  const auto inplace = to_host(f);
  for (index_t i = 0; i < out.size(); ++i) CHECK(inplace[i] == out[i]);
}

TEST_CASE_TEMPLATE("separable smoothing matches a direct convolution, every boundary", B,
                   DIFFEO_TEST_BACKENDS) {
  check_reference<B, double, 2, boundary::zeros>(0);
  check_reference<B, float, 2, boundary::border>(1);
  check_reference<B, double, 2, boundary::reflection>(2);
  check_reference<B, double, 3, boundary::zeros>(0);
  check_reference<B, double, 3, boundary::border>(1);
  check_reference<B, float, 3, boundary::reflection>(2);
}

/// Grids of many bands of rows (the CPU backends smooth in one sweep, band by band): the
/// sweep equals the passes one by one bit for bit, in place too, and the direct
/// convolution.
template <class B, class S, int Dim, class Boundary>
void check_bands(int bc, bool short_rows, bool against_reference) {
  extents<Dim> ext;
  vec<double, Dim> sigma;
  if constexpr (Dim == 2) {
    ext = make_extents(short_rows ? 9 : 37, 90);
    sigma = {{1.1, 2.4}};
  } else {
    // z (17 taps): outputs in blocks of 4 and one by one, forward and transposed (whose
    // taps are plain 4r from the ends)
    ext = make_extents(short_rows ? 5 : 16, 37, 41);
    sigma = {{0.7, 1.9, 1.9}};
  }
  const auto fh = wavy_image<S, Dim>(ext, 3);
  auto f = to_backend<B>(fh);
  const auto out = to_host(smooth(f, gaussian_kernel<Dim>(sigma), Boundary{}));
  auto passes = to_backend<B>(fh);
  detail::gaussian_filter<S>(ext, f.channels(), sigma, 4.0)
      .template apply_in_passes<Boundary>(B{}, f.data(), passes.data(), false);
  const auto by_pass = to_host(passes);
  int differ = 0;
  for (index_t i = 0; i < out.size(); ++i) differ += by_pass[i] != out[i];
  CHECK(differ == 0);
  auto f_in_place = to_backend<B>(fh);
  smooth(B{}, f_in_place.view(), f_in_place.view(), gaussian_kernel<Dim>(sigma), Boundary{});
  const auto in_place = to_host(f_in_place);
  differ = 0;
  for (index_t i = 0; i < out.size(); ++i) differ += in_place[i] != out[i];
  CHECK(differ == 0);
  // The transpose (f as grad_out): the sweep against the passes, and in place.
  auto g = to_backend<B>(fh);
  smooth_vjp(B{}, f.view(), g.view(), gaussian_kernel<Dim>(sigma), Boundary{});
  const auto vjp = to_host(g);
  auto vjp_passes = to_backend<B>(fh);
  detail::gaussian_filter<S>(ext, f.channels(), sigma, 4.0)
      .template apply_in_passes<Boundary>(B{}, f.data(), vjp_passes.data(), true);
  const auto vjp_by_pass = to_host(vjp_passes);
  auto g_in_place = to_backend<B>(fh);
  smooth_vjp(B{}, g_in_place.view(), g_in_place.view(), gaussian_kernel<Dim>(sigma), Boundary{});
  const auto vjp_in_place = to_host(g_in_place);
  int vjp_differ = 0;
  for (index_t i = 0; i < out.size(); ++i)
    vjp_differ += (vjp_by_pass[i] != vjp[i]) + (vjp_in_place[i] != vjp[i]);
  CHECK(vjp_differ == 0);
  if (!against_reference) return;
  const auto ref = reference_smooth(fh, sigma, bc);
  const double tol = std::is_same_v<S, float> ? 1e-5 : 1e-13;
  int far = 0;
  for (index_t i = 0; i < out.size(); ++i)
    far += !(std::abs(double(out[i]) - ref[i]) <= tol * std::max(1.0, std::abs(ref[i])));
  CHECK(far == 0);
}

/// The direct convolution is slow (the sanitizer build runs it too), and the bit-for-bit
/// checks pin every backend and thread count to the serial passes: one reference suffices.
template <class B>
void check_all_bands(bool ref) {
  check_bands<B, float, 2, boundary::zeros>(0, false, ref);
  check_bands<B, double, 2, boundary::border>(1, false, ref);
  check_bands<B, float, 2, boundary::reflection>(2, false, ref);
  check_bands<B, double, 3, boundary::zeros>(0, false, ref);
  check_bands<B, float, 3, boundary::border>(1, false, ref);
  check_bands<B, double, 3, boundary::reflection>(2, false, ref);
  // Rows shorter than two kernels (11 and 7 taps along x).
  check_bands<B, float, 2, boundary::reflection>(2, true, ref);
  check_bands<B, double, 3, boundary::zeros>(0, true, ref);
}

TEST_CASE_TEMPLATE("smoothing in bands of rows equals the passes one by one", B,
                   DIFFEO_TEST_BACKENDS) {
  check_all_bands<B>(std::is_same_v<B, backend::serial>);
#if defined(DIFFEO_ENABLE_TBB)
  // Eight threads make eight bands, thinner than the kernel along y (21 and 17 taps).
  if constexpr (std::is_same_v<B, backend::tbb>)
    test::on_threads(8, [] {
      REQUIRE(thread_count(backend::tbb{}) == 8);
      check_all_bands<B>(false);
    });
#endif
}

template <class B, class S, int Dim>
void check_constants() {
  extents<Dim> e;
  if constexpr (Dim == 2)
    e = make_extents(10, 7);
  else
    e = make_extents(6, 5, 4);
  vector_field<S, Dim, B> u(e);
  vec<S, Dim> c;
  for (int a = 0; a < Dim; ++a) c[a] = S(1.5 - a);
  u.fill(c);
  image<S, Dim, B> img(e, 3);
  img.fill(S(-2.25));
  const double tol = std::is_same_v<S, float> ? 1e-6 : 1e-14;
  const auto ub = to_host(smooth(u, gaussian_kernel<Dim>(2.5), boundary::border{}));
  const auto ur = to_host(smooth(u, gaussian_kernel<Dim>(7.0), boundary::reflection{}));
  const auto ib = to_host(smooth(img, gaussian_kernel<Dim>(1.0), boundary::border{}));
  const auto ir = to_host(smooth(img, gaussian_kernel<Dim>(0.3), boundary::reflection{}));
  for (index_t i = 0; i < ub.points(); ++i)
    for (int a = 0; a < Dim; ++a) {
      CHECK(double(ub[i][a]) == doctest::Approx(c[a]).epsilon(tol));
      CHECK(double(ur[i][a]) == doctest::Approx(c[a]).epsilon(tol));
    }
  for (index_t i = 0; i < ib.size(); ++i) {
    CHECK(double(ib[i]) == doctest::Approx(-2.25).epsilon(tol));
    CHECK(double(ir[i]) == doctest::Approx(-2.25).epsilon(tol));
  }
  // Zeros fades towards the border but keeps the centre of a wide grid.
  const auto iz = to_host(smooth(img, gaussian_kernel<Dim>(0.5), boundary::zeros{}));
  CHECK(double(iz[0]) > -2.25 * 0.9);
}

TEST_CASE_TEMPLATE("border and reflection smoothing preserve constants", B,
                   DIFFEO_TEST_BACKENDS) {
  check_constants<B, float, 2>();
  check_constants<B, double, 2>();
  check_constants<B, float, 3>();
  check_constants<B, double, 3>();
}

TEST_CASE_TEMPLATE("a smoothed delta has variance sigma^2 along each axis", B,
                   DIFFEO_TEST_BACKENDS) {
  const auto e = make_extents(41, 37);
  image<double, 2, host> delta(e);
  const index_vec<2> c{{20, 18}};
  delta(c) = 1;
  const vec2d sigma{{1.5, 3.0}};
  const auto out = to_host(smooth(to_backend<B>(delta), gaussian_kernel<2>(sigma)));
  double mass = 0, var[2] = {0, 0};
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    mass += out[i];
    for (int a = 0; a < 2; ++a) var[a] += out[i] * double((p[a] - c[a]) * (p[a] - c[a]));
  }
  CHECK(mass == doctest::Approx(1).epsilon(1e-14));
  // Truncation at 4 sigma removes 0.1% of the variance; sampling changes it far less.
  CHECK(var[0] == doctest::Approx(sigma[0] * sigma[0]).epsilon(2e-3));
  CHECK(var[1] == doctest::Approx(sigma[1] * sigma[1]).epsilon(2e-3));
}

/// <S x, y> = <x, S^T y>, with kernels longer than the grid (reflection folds many times).
template <class B, int Dim, class Boundary>
void check_adjoint(double sigma, bool large = false) {
  // Large grids reach the transpose's row path (points 2r from every border).
  extents<Dim> e;
  if constexpr (Dim == 2)
    e = large ? make_extents(40, 30) : make_extents(9, 4);
  else
    e = large ? make_extents(30, 19, 20) : make_extents(5, 3, 4);
  const auto xh = wavy_image<double, Dim>(e, 2);
  image<double, Dim, host> yh(e, 2);
  for (index_t i = 0; i < yh.size(); ++i) yh[i] = std::cos(1.1 * double(i) + 0.3);
  const auto x = to_backend<B>(xh), y = to_backend<B>(yh);
  const gaussian_kernel<Dim> g(sigma);
  const auto sx = to_host(smooth(x, g, Boundary{}));
  image<double, Dim, B> sty(e, 2);
  smooth_vjp(B{}, y.view(), sty.view(), g, Boundary{});
  const auto styh = to_host(sty);
  double lhs = 0, rhs = 0;
  for (index_t i = 0; i < xh.size(); ++i) {
    lhs += sx[i] * yh[i];
    rhs += xh[i] * styh[i];
  }
  CHECK(lhs == doctest::Approx(rhs).epsilon(1e-13));
}

TEST_CASE_TEMPLATE("the smoothing VJP is the exact transpose", B, DIFFEO_TEST_BACKENDS) {
  for (double sigma : {0.7, 2.0}) {
    CAPTURE(sigma);
    check_adjoint<B, 2, boundary::zeros>(sigma);
    check_adjoint<B, 2, boundary::border>(sigma);
    check_adjoint<B, 2, boundary::reflection>(sigma);
    check_adjoint<B, 3, boundary::border>(sigma);
    check_adjoint<B, 3, boundary::reflection>(sigma);
  }
  check_adjoint<B, 2, boundary::border>(1.0, true);
  check_adjoint<B, 2, boundary::zeros>(1.5, true);
  check_adjoint<B, 3, boundary::reflection>(1.0, true);
  // With border handling S is not symmetric, so the check above has teeth.
  const auto e = make_extents(6, 1);
  image<double, 2, host> d0(e), d1(e);
  d0[0] = 1;
  d1[1] = 1;
  const gaussian_kernel<2> g(vec2d{{1.0, 1.0}});
  const auto s0 = smooth(d0, g), s1 = smooth(d1, g);
  CHECK(s0[1] != doctest::Approx(s1[0]));
}

TEST_CASE("bad arguments name the function and the argument") {
  image<float, 2, host> a(make_extents(5, 4)), b(make_extents(4, 5)), c(make_extents(5, 4), 2);
  CHECK_THROWS_WITH_AS(smooth(host{}, a.view(), b.view(), 1.0),
                       doctest::Contains("smooth(in, out): extents differ"), shape_error);
  CHECK_THROWS_WITH_AS(smooth(host{}, a.view(), c.view(), 1.0),
                       doctest::Contains("smooth(in, out): channel counts differ"), shape_error);
  CHECK_THROWS_WITH_AS(smooth(a, 0.0), doctest::Contains("smooth(g): sigma must be positive"),
                       value_error);
  CHECK_THROWS_AS(smooth(a, -1.0), value_error);
  CHECK_THROWS_AS(smooth(a, std::numeric_limits<double>::quiet_NaN()), value_error);
  CHECK_THROWS_AS(smooth(a, gaussian_kernel<2>(1.0, length_units::voxel, 0.0)), value_error);
  CHECK_THROWS_WITH_AS(smooth_vjp(host{}, a.view(), b.view(), 1.0),
                       doctest::Contains("smooth_vjp(grad_out, grad_in)"), shape_error);
  field_view<const float, 2> empty{};
  CHECK_THROWS_WITH_AS(smooth(host{}, empty, a.view(), 1.0), doctest::Contains("empty grid"),
                       shape_error);
}
