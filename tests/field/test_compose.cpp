#include <diffeo/field/compose.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "support/backends.hpp"
#include "support/fields.hpp"

using namespace diffeo;

namespace {

using host = backend::serial;
template <class S, int Dim>
using host_field = vector_field<S, Dim, host>;

using test::smooth_field;

/// The slow reference: its own (bi/tri)linear interpolation over the 2^Dim corners.
template <class S, int Dim>
vec<double, Dim> ref_sample(const host_field<S, Dim>& u, const vec<double, Dim>& q,
                            bool border) {
  vec<double, Dim> acc = vec<double, Dim>::zero();
  for (int corner = 0; corner < (1 << Dim); ++corner) {
    double w = 1;
    index_vec<Dim> idx{};
    bool inside = true;
    for (int a = 0; a < Dim; ++a) {
      const double x0 = std::floor(q[a]), t = q[a] - x0;
      const int bit = (corner >> a) & 1;
      index_t k = index_t(x0) + bit;
      w *= bit ? t : 1 - t;
      if (k < 0 || k >= u.ext()[a]) {
        inside = false;
        k = k < 0 ? 0 : u.ext()[a] - 1;
      }
      idx[a] = k;
    }
    if (inside || border) acc += u(idx).template cast<double>() * w;
  }
  return acc;
}

template <class S, int Dim>
double max_diff(const host_field<S, Dim>& a, const host_field<S, Dim>& b) {
  double m = 0;
  for (index_t i = 0; i < a.points(); ++i)
    m = std::max(m, max_abs((a[i] - b[i]).template cast<double>()));
  return m;
}

template <class B, class S, int Dim>
void check_identity(const extents<Dim>& e) {
  const auto u = to_backend<B>(smooth_field<S, Dim>(e, 3.0, 1));
  const vector_field<S, Dim, B> zero(e);
  const auto left = to_host(compose(zero, u));   // id ∘ φ_u
  const auto right = to_host(compose(u, zero));  // φ_u ∘ id
  const auto uh = to_host(u);
  for (index_t i = 0; i < e.count(); ++i) {
    CHECK(left[i] == uh[i]);
    CHECK(right[i] == uh[i]);
  }
}

template <class B, class Boundary, class S, int Dim>
void check_reference(const extents<Dim>& e) {
  // Amplitude 3 on a small grid: many samples leave the grid, so the boundary matters.
  const auto uh = smooth_field<S, Dim>(e, 2.0, 1), vh = smooth_field<S, Dim>(e, 3.0, 2);
  const auto w = to_host(compose(to_backend<B>(uh), to_backend<B>(vh), Boundary{}));
  const double tol = std::is_same_v<S, float> ? 2e-5 : 1e-12;
  for (index_t i = 0; i < e.count(); ++i) {
    const vec<double, Dim> b = vh[i].template cast<double>();
    const auto ref = b + ref_sample(uh, e.unravel(i).template cast<double>() + b,
                                    std::is_same_v<Boundary, boundary::border>);
    CHECK(max_abs(w[i].template cast<double>() - ref) <= tol);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("compose with the zero field is the identity on both sides, exactly", B,
                   DIFFEO_TEST_BACKENDS) {
  check_identity<B, float, 2>(make_extents(13, 9));
  check_identity<B, double, 2>(make_extents(13, 9));
  check_identity<B, float, 3>(make_extents(7, 6, 5));
  check_identity<B, double, 3>(make_extents(7, 6, 5));
  check_identity<B, float, 3>(make_extents(19, 4, 3));  // rows of 8 and more: SIMD blocks
}

TEST_CASE_TEMPLATE("compose matches a plain loop with its own interpolation", B,
                   DIFFEO_TEST_BACKENDS) {
  check_reference<B, boundary::border, float, 2>(make_extents(13, 9));
  check_reference<B, boundary::zeros, double, 2>(make_extents(13, 9));
  check_reference<B, boundary::border, double, 3>(make_extents(7, 6, 5));
  check_reference<B, boundary::zeros, float, 3>(make_extents(7, 6, 5));
  // Rows of 8 and more run the SIMD blocks (where the CPU has AVX2), boundary points included.
  check_reference<B, boundary::zeros, float, 2>(make_extents(21, 9));
  check_reference<B, boundary::border, float, 3>(make_extents(19, 6, 5));
  check_reference<B, boundary::zeros, float, 3>(make_extents(17, 3, 2));
}

namespace {
template <class B, class S, int Dim>
void check_in_place(const extents<Dim>& e) {
  const auto u = to_backend<B>(smooth_field<S, Dim>(e, 2.0, 1));
  auto v = to_backend<B>(smooth_field<S, Dim>(e, 2.0, 2));
  const auto expected = to_host(compose(u, v));
  compose(B{}, u.view(), v.view(), v.view());
  CHECK(max_diff(to_host(v), expected) == 0.0);
}
}  // namespace

TEST_CASE_TEMPLATE("compose writes in place over v", B, DIFFEO_TEST_BACKENDS) {
  check_in_place<B, double, 2>(make_extents(11, 8));
  // Float rows of 8 and more: the SIMD blocks sum in place apart from the fused path.
  check_in_place<B, float, 2>(make_extents(21, 9));
  check_in_place<B, float, 3>(make_extents(19, 6, 5));
}

namespace {
/// Max |(u∘v)∘w − u∘(v∘w)| over the central half of an n-point grid, in units of the grid
/// size (the fields are the same continuous maps at every n).
template <int Dim>
double associativity_error(index_t n) {
  extents<Dim> e{};
  for (int a = 0; a < Dim; ++a) e[a] = n;
  const double amp = 0.04 * double(n);
  const auto u = smooth_field<double, Dim>(e, amp, 1), v = smooth_field<double, Dim>(e, amp, 2),
             w = smooth_field<double, Dim>(e, amp, 3);
  const auto left = compose(compose(u, v), w), right = compose(u, compose(v, w));
  double m = 0;
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    bool central = true;
    for (int a = 0; a < Dim; ++a) central = central && p[a] >= n / 4 && p[a] < n - n / 4;
    if (central) m = std::max(m, norm(left[i] - right[i]));
  }
  return m / double(n);
}
}  // namespace

TEST_CASE("composition is associative up to interpolation error, which falls as h^2") {
  const double e32 = associativity_error<2>(32), e64 = associativity_error<2>(64),
               e128 = associativity_error<2>(128);
  const double order2 = std::log2(e64 / e128);
  MESSAGE("2D associativity error / n: " << e32 << ", " << e64 << ", " << e128
                                         << "; order " << std::log2(e32 / e64) << ", " << order2);
  CHECK(e128 < 2e-4);
  CHECK(order2 > 1.8);
  const double f16 = associativity_error<3>(16), f32 = associativity_error<3>(32),
               f64 = associativity_error<3>(64);
  const double order3 = std::log2(f32 / f64);
  MESSAGE("3D associativity error / n: " << f16 << ", " << f32 << ", " << f64 << "; order "
                                         << std::log2(f16 / f32) << ", " << order3);
  CHECK(f64 < 1.5e-3);
  CHECK(order3 > 1.6);
}

namespace {
template <class B, class Boundary, int Dim>
void check_vjp(const extents<Dim>& e) {
  using F = vector_field<double, Dim, B>;
  const auto uh = smooth_field<double, Dim>(e, 1.5, 1), vh = smooth_field<double, Dim>(e, 1.7, 2),
             gh = smooth_field<double, Dim>(e, 1.0, 3);
  const F u = to_backend<B>(uh), v = to_backend<B>(vh), g = to_backend<B>(gh);
  const auto loss = [&](const host_field<double, Dim>& a, const host_field<double, Dim>& b) {
    const auto w = to_host(compose(to_backend<B>(a), to_backend<B>(b), Boundary{}));
    double s = 0;
    for (index_t i = 0; i < e.count(); ++i) s += dot(w[i], gh[i]);
    return s;
  };
  const auto grads = compose_vjp(u, v, g, Boundary{});
  const auto gu = to_host(grads.u), gv = to_host(grads.v);
  const double h = 1e-6;
  for (index_t i = 0; i < e.count(); ++i)
    for (int k = 0; k < Dim; ++k) {
      auto up = uh, um = uh, vp = vh, vm = vh;
      up[i][k] += h, um[i][k] -= h, vp[i][k] += h, vm[i][k] -= h;
      CHECK(gu[i][k] == doctest::Approx((loss(up, vh) - loss(um, vh)) / (2 * h)).epsilon(1e-6));
      CHECK(gv[i][k] == doctest::Approx((loss(uh, vp) - loss(uh, vm)) / (2 * h)).epsilon(1e-6));
    }
  // The deterministic scatter agrees (to rounding: atomic adds run in any order).
  const auto det = to_host(compose_vjp(u, v, g, Boundary{}, scatter_mode::deterministic).u);
  CHECK(max_diff(det, gu) < 1e-12);
}
}  // namespace

TEST_CASE_TEMPLATE("compose_vjp matches central differences", B, DIFFEO_TEST_BACKENDS) {
  check_vjp<B, boundary::border, 2>(make_extents(7, 6));
  check_vjp<B, boundary::zeros, 2>(make_extents(7, 6));
  check_vjp<B, boundary::border, 3>(make_extents(5, 4, 3));
}

namespace {
/// Float `compose_vjp` (its AVX2 rows where they apply: blocks of 8 points whose corners
/// all lie on the grid) against double on the same inputs.
template <class B, class Boundary, int Dim>
void check_vjp_float(const extents<Dim>& e) {
  const auto uf = smooth_field<float, Dim>(e, 1.5, 1), vf = smooth_field<float, Dim>(e, 2.5, 2),
             gf = smooth_field<float, Dim>(e, 1.0, 3);
  const auto f = compose_vjp(to_backend<B>(uf), to_backend<B>(vf), to_backend<B>(gf), Boundary{});
  const auto d = compose_vjp(to_backend<B>(test::cast_field<double>(uf)),
                             to_backend<B>(test::cast_field<double>(vf)),
                             to_backend<B>(test::cast_field<double>(gf)), Boundary{});
  const auto fu = to_host(f.u), fv = to_host(f.v);  // float
  const auto du = to_host(d.u), dv = to_host(d.v);  // double
  for (index_t i = 0; i < e.count(); ++i) {
    INFO("point " << i);
    CHECK(max_abs(fv[i].template cast<double>() - dv[i]) <= 2e-5);
    CHECK(max_abs(fu[i].template cast<double>() - du[i]) <= 2e-5);
  }
}
}  // namespace

TEST_CASE_TEMPLATE("float compose_vjp agrees with double, inside and at the border", B,
                   DIFFEO_TEST_BACKENDS) {
  check_vjp_float<B, boundary::border, 2>(make_extents(37, 11));
  check_vjp_float<B, boundary::zeros, 2>(make_extents(29, 7));
  check_vjp_float<B, boundary::border, 3>(make_extents(27, 9, 7));
  check_vjp_float<B, boundary::zeros, 3>(make_extents(19, 6, 5));
}

TEST_CASE("compose rejects bad input, naming the argument") {
  const host_field<float, 2> a(make_extents(8, 8)), b(make_extents(8, 7));
  CHECK_THROWS_WITH_AS(compose(a, b), doctest::Contains("compose(u, v): extents differ"),
                       shape_error);
  host_field<float, 2> c(make_extents(8, 8));
  c.set_spacing({{1.0, 2.0}});
  CHECK_THROWS_WITH_AS(compose(a, c), doctest::Contains("compose(u, v): spacings differ"),
                       shape_error);
  host_field<float, 2> w(make_extents(8, 8));
  CHECK_THROWS_WITH_AS(compose(host{}, w.view(), a.view(), w.view()),
                       doctest::Contains("compose(u, w)"), value_error);
  CHECK_THROWS_WITH_AS(compose(host{}, a.view(), a.view(), vector_view<float, 2>{}),
                       doctest::Contains("compose(w)"), shape_error);
  CHECK_THROWS_WITH_AS(compose_vjp(a, a, b), doctest::Contains("compose_vjp(v, grad_w)"),
                       shape_error);

  host_field<double, 3> f(make_extents(4, 3, 2));
  CHECK_NOTHROW(validate_finite(f, "validate_finite(f)"));
  f({{2, 1, 1}})[1] = std::numeric_limits<double>::quiet_NaN();
  f({{3, 2, 1}})[0] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(validate_finite(f, "validate_finite(f)"),
                       doctest::Contains("2 non-finite value(s), the first at point (2, 1, 1)"),
                       value_error);
}
