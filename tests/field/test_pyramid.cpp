#include <diffeo/field/pyramid.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/backends.hpp"

using namespace diffeo;
using host = backend::serial;

template <int Dim>
extents<Dim> odd_even(bool odd) {
  if constexpr (Dim == 2)
    return odd ? make_extents(23, 17) : make_extents(24, 18);
  else
    return odd ? make_extents(17, 15, 13) : make_extents(18, 16, 14);
}

/// u(p) = M p + b, a smooth linear displacement in voxel units.
template <class S, int Dim>
vector_field<S, Dim, host> linear_field(const extents<Dim>& e) {
  vector_field<S, Dim, host> u(e);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    for (int k = 0; k < Dim; ++k) {
      double s = 0.5 - k;
      for (int a = 0; a < Dim; ++a) s += (0.05 * (k + 1) - 0.03 * a) * double(p[a]);
      u[i][k] = S(s);
    }
  }
  return u;
}

template <class B, class S, int Dim>
void check_constants_and_scaling(bool odd) {
  const auto e = odd_even<Dim>(odd);
  const auto ce = downsampled_extents(e);
  for (int a = 0; a < Dim; ++a) CHECK(ce[a] == (odd ? (e[a] + 1) / 2 : e[a] / 2));
  const double tol = std::is_same_v<S, float> ? 1e-6 : 1e-14;

  image<S, Dim, B> img(grid<Dim>{e, vec<double, Dim>::filled(0.75)}, 2);
  img.fill(S(3.5));
  const auto coarse = downsample(img);
  CHECK(coarse.ext() == ce);
  CHECK(coarse.spacing() == vec<double, Dim>::filled(1.5));
  const auto ch = to_host(coarse);
  for (index_t i = 0; i < ch.size(); ++i) CHECK(double(ch[i]) == doctest::Approx(3.5).epsilon(tol));
  const auto cb = to_host(downsample(img, 1.3, boundary::border{}));
  for (index_t i = 0; i < cb.size(); ++i) CHECK(double(cb[i]) == doctest::Approx(3.5).epsilon(tol));

  // Vectors are in voxel units: halved going down, doubled going up.
  vector_field<S, Dim, B> u(e);
  vec<S, Dim> c;
  for (int a = 0; a < Dim; ++a) c[a] = S(1.0 + a);
  u.fill(c);
  const auto ud = downsample(u);
  const auto udh = to_host(ud);
  for (index_t i = 0; i < udh.points(); ++i)
    for (int a = 0; a < Dim; ++a)
      CHECK(double(udh[i][a]) == doctest::Approx(0.5 * c[a]).epsilon(tol));
  const auto uu = to_host(upsample(ud, e));
  CHECK(uu.spacing() == u.spacing());
  for (index_t i = 0; i < uu.points(); ++i)
    for (int a = 0; a < Dim; ++a) CHECK(double(uu[i][a]) == doctest::Approx(c[a]).epsilon(tol));
}

TEST_CASE_TEMPLATE("downsampling keeps constants; vectors scale with the grid", B,
                   DIFFEO_TEST_BACKENDS) {
  for (bool odd : {true, false}) {
    check_constants_and_scaling<B, float, 2>(odd);
    check_constants_and_scaling<B, double, 2>(odd);
    check_constants_and_scaling<B, float, 3>(odd);
    check_constants_and_scaling<B, double, 3>(odd);
  }
}

template <class B, class S, int Dim>
void check_round_trip(bool odd) {
  const auto e = odd_even<Dim>(odd);
  const auto uh = linear_field<S, Dim>(e);
  const auto coarse = downsample(to_backend<B>(uh));
  const auto back = to_host(upsample(coarse, e));
  const auto ch = to_host(coarse);
  const double tol = std::is_same_v<S, float> ? 1e-5 : 1e-12;
  // Coarse voxel i sits on fine voxel 2i: away from the border it holds u(2i) / 2.
  // Reflection at the border reaches 4 fine voxels in (radius 4σ); linear interpolation
  // reads the coarse neighbours on both sides.
  const index_t margin = 5;
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    bool inside = true;
    for (int a = 0; a < Dim; ++a) inside = inside && p[a] >= margin && p[a] + margin < e[a];
    if (!inside) continue;
    for (int k = 0; k < Dim; ++k)
      CHECK(double(back[i][k]) == doctest::Approx(uh[i][k]).epsilon(tol));
    bool even = true;
    index_vec<Dim> q;
    for (int a = 0; a < Dim; ++a) even = even && p[a] % 2 == 0, q[a] = p[a] / 2;
    if (even)
      for (int k = 0; k < Dim; ++k)
        CHECK(double(ch(q)[k]) == doctest::Approx(0.5 * uh[i][k]).epsilon(tol));
  }
}

TEST_CASE_TEMPLATE("upsample(downsample(u)) reproduces a linear field inside", B,
                   DIFFEO_TEST_BACKENDS) {
  for (bool odd : {true, false}) {
    check_round_trip<B, float, 2>(odd);
    check_round_trip<B, double, 2>(odd);
    check_round_trip<B, float, 3>(odd);
    check_round_trip<B, double, 3>(odd);
  }
}

TEST_CASE("downsample is smoothing followed by keeping the even voxels") {
  const auto e = make_extents(11, 8);
  image<double, 2, host> f(e, 3);
  for (index_t i = 0; i < f.size(); ++i) f[i] = std::sin(0.9 * double(i)) + 0.01 * double(i);
  const auto s = smooth(f, gaussian_kernel<2>(1.0), boundary::reflection{});
  const auto d = downsample(f);
  for (index_t i = 0; i < d.points(); ++i) {
    const auto q = d.ext().unravel(i);
    for (int c = 0; c < 3; ++c) CHECK(d(q, c) == doctest::Approx(s({{2 * q[0], 2 * q[1]}}, c)));
  }
}

/// The CPU backends downsample (and its transpose) in one sweep, band by band: it equals the
/// passes one by one bit for bit, and smoothing followed by keeping the even voxels up to
/// rounding. (The transpose's values are checked by the adjoint test below.)
template <class B, class S, int Dim, class Boundary>
void check_downsample_bands(const extents<Dim>& e, double sigma) {
  image<S, Dim, host> fh(e, 3);
  for (index_t i = 0; i < fh.size(); ++i)
    fh[i] = S(std::sin(0.37 * double(i * i % 101) + 0.5 * double(i)));
  const auto f = to_backend<B>(fh);
  const auto swept = to_host(downsample(f, sigma, Boundary{}));
  image<S, Dim, B> passes(downsampled_extents(e), 3);
  detail::downsample_filter<S>(e, 3, sigma, "test")
      .template apply_in_passes<Boundary>(B{}, f.data(), passes.data(), false);
  const auto by_pass = to_host(passes);
  int differ = 0;
  for (index_t i = 0; i < swept.size(); ++i) differ += swept[i] != by_pass[i];
  CHECK(differ == 0);
  // The transpose (the coarse result as grad_coarse): its sweep against its passes.
  const auto g = to_backend<B>(swept);
  image<S, Dim, B> vjp(e, 3), vjp_passes(e, 3);
  downsample_vjp(B{}, g.view(), vjp.view(), sigma, Boundary{});
  detail::downsample_filter<S>(e, 3, sigma, "test")
      .template apply_in_passes<Boundary>(B{}, g.data(), vjp_passes.data(), true);
  const auto vjp_h = to_host(vjp), vjp_by_pass = to_host(vjp_passes);
  differ = 0;
  for (index_t i = 0; i < vjp_h.size(); ++i) differ += vjp_h[i] != vjp_by_pass[i];
  CHECK(differ == 0);
  const auto s = to_host(smooth(f, gaussian_kernel<Dim>(sigma), Boundary{}));
  const double tol = std::is_same_v<S, float> ? 1e-5 : 1e-13;
  int far = 0;
  for (index_t i = 0; i < swept.size(); ++i) {
    auto q = swept.ext().unravel(i / 3);
    for (int a = 0; a < Dim; ++a) q[a] *= 2;
    far += !(std::abs(double(swept[i]) - double(s[e.linear(q) * 3 + i % 3])) <= tol);
  }
  CHECK(far == 0);
}

template <class B>
void check_all_downsample_bands() {
  check_downsample_bands<B, float, 2, boundary::reflection>(make_extents(37, 61), 1.0);
  check_downsample_bands<B, double, 2, boundary::zeros>(make_extents(20, 44), 2.3);
  check_downsample_bands<B, float, 3, boundary::border>(make_extents(13, 29, 31), 1.0);
  check_downsample_bands<B, double, 3, boundary::reflection>(make_extents(14, 30, 23), 1.7);
  // Rows shorter than the kernel (17 and 25 taps); on eight threads, one coarse row per band.
  check_downsample_bands<B, double, 3, boundary::zeros>(make_extents(3, 5, 9), 2.0);
  check_downsample_bands<B, float, 2, boundary::border>(make_extents(4, 7), 3.0);
}

TEST_CASE_TEMPLATE("downsampling in bands of rows equals the passes one by one", B,
                   DIFFEO_TEST_BACKENDS) {
  check_all_downsample_bands<B>();
#if defined(DIFFEO_ENABLE_TBB)
  // Eight threads make eight bands, thinner than the kernel along y.
  if constexpr (std::is_same_v<B, backend::tbb>)
    test::on_threads(8, [] {
      REQUIRE(thread_count(backend::tbb{}) == 8);
      check_all_downsample_bands<B>();
    });
#endif
}

/// Linear interpolation of `c` (extents `ce`, `n` scalars per point) at p / 2 along every
/// axis, the last coarse voxel repeated past the end: the definition, per axis, in double.
template <int Dim>
std::vector<double> upsample_reference(const std::vector<double>& c, const extents<Dim>& ce,
                                       const extents<Dim>& fe, int n, double scale) {
  std::vector<double> out(static_cast<std::size_t>(fe.count() * n), 0.0);
  for (index_t i = 0; i < fe.count(); ++i) {
    const auto p = fe.unravel(i);
    for (int corner = 0; corner < (1 << Dim); ++corner) {
      index_vec<Dim> q;
      double w = scale;
      for (int a = 0; a < Dim; ++a) {
        const double s = 0.5 * double(p[a]), lo = std::floor(s), f = s - lo;
        const bool upper = (corner >> a) & 1;
        q[a] = std::min<index_t>(index_t(lo) + (upper ? 1 : 0), ce[a] - 1);
        w *= upper ? f : 1 - f;
      }
      for (int k = 0; k < n; ++k) out[i * n + k] += w * c[ce.linear(q) * n + k];
    }
  }
  return out;
}

template <class B, class T, int Dim>
void check_upsample(const extents<Dim>& e) {
  using S = scalar_of<T>;
  constexpr int channels = detail::components<T>::count > 1 ? 1 : 2;  // images: two
  constexpr int per_point = detail::components<T>::count * channels;
  const auto ce = downsampled_extents(e);
  field<T, Dim, host> ch(ce, channels);
  std::vector<double> cd(static_cast<std::size_t>(ce.count() * per_point));
  auto* cs = reinterpret_cast<S*>(ch.data());
  for (std::size_t k = 0; k < cd.size(); ++k)
    cs[k] = S(std::sin(0.37 * double(k)) + 0.1), cd[k] = double(cs[k]);
  const auto fine = to_host(upsample(to_backend<B>(ch), e));
  const auto ref = upsample_reference(cd, ce, e, per_point, detail::vector_ratio<T, Dim>);
  const auto* fs = reinterpret_cast<const S*>(fine.data());
  // |ref| ≤ 2.2, so a rounding costs at most eps; the weights are powers of two and an
  // output takes at most three roundings (measured: 1.06 eps at worst).
  const double tol = 4 * std::numeric_limits<S>::epsilon();
  int far = 0;
  for (std::size_t k = 0; k < ref.size(); ++k) far += !(std::abs(double(fs[k]) - ref[k]) <= tol);
  CHECK(far == 0);
}

TEST_CASE_TEMPLATE("upsample interpolates linearly at p / 2", B, DIFFEO_TEST_BACKENDS) {
  for (bool odd : {true, false}) {
    check_upsample<B, float, 2>(odd_even<2>(odd));
    check_upsample<B, vec2d, 2>(odd_even<2>(odd));
    check_upsample<B, vec3f, 3>(odd_even<3>(odd));
    check_upsample<B, double, 3>(odd_even<3>(odd));
  }
  // Rows of one, two and three voxels.
  for (const auto& e : {make_extents(1, 5), make_extents(2, 3), make_extents(3, 2)})
    check_upsample<B, vec2f, 2>(e);
  for (const auto& e : {make_extents(2, 1, 3), make_extents(1, 2, 2), make_extents(3, 4, 1)})
    check_upsample<B, float, 3>(e);
}

/// <D x, y> = <x, D^T y> and <U y, x> = <y, U^T x> for images and vector fields.
template <class B, class T, int Dim>
void check_adjoints(bool odd) {
  const auto e = odd_even<Dim>(odd);
  const auto ce = downsampled_extents(e);
  field<T, Dim, host> xh(e), yh(ce);
  constexpr int n = detail::components<T>::count;
  auto* xs = reinterpret_cast<double*>(xh.data());
  auto* ys = reinterpret_cast<double*>(yh.data());
  for (index_t i = 0; i < xh.size() * n; ++i) xs[i] = std::sin(0.7 * double(i) + 0.2);
  for (index_t i = 0; i < yh.size() * n; ++i) ys[i] = std::cos(1.3 * double(i));
  const auto x = to_backend<B>(xh), y = to_backend<B>(yh);
  const auto dot = [&](const field<T, Dim, host>& a, const field<T, Dim, host>& b) {
    const auto* as = reinterpret_cast<const double*>(a.data());
    const auto* bs = reinterpret_cast<const double*>(b.data());
    double s = 0;
    for (index_t i = 0; i < a.size() * n; ++i) s += as[i] * bs[i];
    return s;
  };
  field<T, Dim, B> dty(e), uty(ce);
  downsample_vjp(B{}, y.view(), dty.view(), 1.2, boundary::border{});
  upsample_vjp(B{}, x.view(), uty.view());
  const double lhs_d = dot(to_host(downsample(x, 1.2, boundary::border{})), yh);
  CHECK(lhs_d == doctest::Approx(dot(xh, to_host(dty))).epsilon(1e-13));
  const double lhs_u = dot(to_host(upsample(y, e)), xh);
  CHECK(lhs_u == doctest::Approx(dot(yh, to_host(uty))).epsilon(1e-13));
  field<T, Dim, B> rty(e);
  downsample_vjp(B{}, y.view(), rty.view());
  CHECK(dot(to_host(downsample(x)), yh) == doctest::Approx(dot(xh, to_host(rty))).epsilon(1e-13));
}

TEST_CASE_TEMPLATE("pyramid VJPs are the exact transposes", B, DIFFEO_TEST_BACKENDS) {
  for (bool odd : {true, false}) {
    check_adjoints<B, double, 2>(odd);
    check_adjoints<B, vec2d, 2>(odd);
    check_adjoints<B, vec3d, 3>(odd);
  }
}

TEST_CASE_TEMPLATE("make_pyramid halves the grid per level", B, DIFFEO_TEST_BACKENDS) {
  image<float, 3, B> f(make_extents(9, 8, 5));
  f.fill(1.0f);
  const auto levels = make_pyramid(f, 4);
  REQUIRE(levels.size() == 4);
  CHECK(levels[0].ext() == f.ext());
  CHECK(levels[1].ext() == make_extents(5, 4, 3));
  CHECK(levels[2].ext() == make_extents(3, 2, 2));
  CHECK(levels[3].ext() == make_extents(2, 1, 1));
  CHECK(levels[3].spacing() == vec3d::filled(8.0));
  CHECK(to_host(levels[3])[1] == doctest::Approx(1.0f));
}

TEST_CASE("bad arguments name the function and the argument") {
  image<float, 2, host> fine(make_extents(9, 6)), wrong(make_extents(4, 3)), ok(make_extents(5, 3));
  CHECK_THROWS_WITH_AS(downsample(host{}, fine.view(), wrong.view()),
                       doctest::Contains("downsample(fine, coarse): coarse must have extents 5x3"),
                       shape_error);
  CHECK_THROWS_WITH_AS(upsample(host{}, wrong.view(), fine.view()),
                       doctest::Contains("upsample(fine, coarse)"), shape_error);
  CHECK_THROWS_WITH_AS(downsample(host{}, fine.view(), ok.view(), 0.0),
                       doctest::Contains("downsample(sigma)"), value_error);
  CHECK_THROWS_AS(downsample(fine, -1.0), value_error);
  image<float, 2, host> two(make_extents(5, 3), 2);
  CHECK_THROWS_AS(downsample(host{}, fine.view(), two.view()), shape_error);
  CHECK_THROWS_WITH_AS(make_pyramid(fine, 0), doctest::Contains("make_pyramid(levels)"),
                       value_error);
  field_view<const float, 2> empty{};
  CHECK_THROWS_WITH_AS(upsample_vjp(host{}, empty, ok.view()), doctest::Contains("empty grid"),
                       shape_error);
}
