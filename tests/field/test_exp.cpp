// Eigen is used on the host only here (matrix exponential, determinants); under nvcc its
// MatrixFunctions would otherwise warn about host calls from __host__ __device__ functions.
// No diffeo header in this file uses Eigen in device code.
#define EIGEN_NO_CUDA
#include <diffeo/field/exp.hpp>

#include <doctest/doctest.h>

#include <Eigen/Dense>
#include <unsupported/Eigen/MatrixFunctions>
#include <cmath>
#include <limits>

#include "support/backends.hpp"
#include "support/fields.hpp"

using namespace diffeo;

namespace {

using host = backend::serial;
template <class S, int Dim>
using host_field = vector_field<S, Dim, host>;
constexpr double two_pi = 6.283185307179586;

using test::smooth_field;

template <class S, int Dim>
double max_diff(const host_field<S, Dim>& a, const host_field<S, Dim>& b) {
  double m = 0;
  for (index_t i = 0; i < a.points(); ++i)
    m = std::max(m, max_abs((a[i] - b[i]).template cast<double>()));
  return m;
}

template <class B, class S, int Dim>
void check_w3(const extents<Dim>& e) {
  const auto vh = smooth_field<S, Dim>(e, 4.0, 3);
  const auto v = to_backend<B>(vh);
  const auto w = to_host(exp(v, {.squarings = 7}, boundary::zeros{}));
  // W3 written out: w = v / 2^7, then 7 times w <- w + w(x + w(x)), zero outside.
  auto manual = vh;
  for (index_t i = 0; i < e.count(); ++i) manual[i] = vh[i] * S(1.0 / 128);
  auto m = to_backend<B>(manual);
  for (int k = 0; k < 7; ++k) m = compose(m, m, boundary::zeros{});
  CHECK(max_diff(w, to_host(m)) == 0.0);  // powers of two scale exactly: fusing is free
  // exp(−v) by the option equals exp of the negated field.
  auto neg = vh;
  for (index_t i = 0; i < e.count(); ++i) neg[i] = -vh[i];
  const auto a = to_host(exp(v, {.inverse = true})), b = to_host(exp(to_backend<B>(neg)));
  CHECK(max_diff(a, b) == 0.0);
  // The same result as the serial backend.
  const auto ws = exp(vh, {.squarings = 7}, boundary::zeros{});
  if constexpr (test::bitwise_like_serial<B>)
    CHECK(max_diff(w, ws) == 0.0);
  else
    CHECK(max_diff(w, ws) <= (std::is_same_v<S, float> ? 1e-4 : 1e-12));
}

}  // namespace

TEST_CASE_TEMPLATE("exp is W3's scaling and squaring, on every backend", B, DIFFEO_TEST_BACKENDS) {
  check_w3<B, float, 2>(make_extents(24, 20));
  check_w3<B, double, 2>(make_extents(24, 20));
  check_w3<B, float, 3>(make_extents(10, 9, 8));
  check_w3<B, double, 3>(make_extents(10, 9, 8));
}

namespace {
/// Max error, over the points within `radius` of the centre, of exp(v) for v(p) = A·(p − c)
/// against `m − I` (m = the map's matrix); linear interpolation reproduces affine fields,
/// so only the scaling-and-squaring truncation remains.
template <int Dim>
using mat = Eigen::Matrix<double, Dim, Dim>;
template <int Dim>
double affine_error(const mat<Dim>& a, const mat<Dim>& m, int squarings, index_t n,
                    double radius) {
  extents<Dim> e{};
  for (int k = 0; k < Dim; ++k) e[k] = n;
  const double c = double(n - 1) / 2;
  host_field<double, Dim> v(e);
  for (index_t i = 0; i < e.count(); ++i) {
    Eigen::Matrix<double, Dim, 1> p;
    for (int k = 0; k < Dim; ++k) p[k] = double(e.unravel(i)[k]) - c;
    const Eigen::Matrix<double, Dim, 1> r = a * p;
    for (int k = 0; k < Dim; ++k) v[i][k] = r[k];
  }
  const auto w = exp(v, {.squarings = squarings});
  double err = 0;
  for (index_t i = 0; i < e.count(); ++i) {
    Eigen::Matrix<double, Dim, 1> p;
    for (int k = 0; k < Dim; ++k) p[k] = double(e.unravel(i)[k]) - c;
    if (p.norm() > radius) continue;
    const Eigen::Matrix<double, Dim, 1> r = (m - Eigen::Matrix<double, Dim, Dim>::Identity()) * p;
    for (int k = 0; k < Dim; ++k) err = std::max(err, std::abs(w[i][k] - r[k]));
  }
  return err;
}

template <int Dim>
void check_affine(const Eigen::Matrix<double, Dim, Dim>& a, index_t n, double radius) {
  using M = Eigen::Matrix<double, Dim, Dim>;
  const M expm = a.exp();
  double prev = 0;
  for (int sq = 4; sq <= 10; ++sq) {
    // Exactly the discrete scheme's matrix (I + A/2^N)^(2^N).
    M m = M::Identity() + a / std::ldexp(1.0, sq);
    for (int k = 0; k < sq; ++k) m = m * m;
    CHECK(affine_error<Dim>(a, m, sq, n, radius) < 1e-11);
    const double err = affine_error<Dim>(a, expm, sq, n, radius);
    if (sq > 4) {
      MESSAGE(Dim << "D affine, N = " << sq << ": max error " << err << " voxels, order "
                  << std::log2(prev / err) << " in 2^-N");
      CHECK(std::log2(prev / err) == doctest::Approx(1.0).epsilon(0.05));
    }
    prev = err;
  }
  CHECK(prev < 0.01);
}
}  // namespace

TEST_CASE("exp of an affine velocity matches the matrix exponential in the interior") {
  Eigen::Matrix2d a2;
  a2 << 0.08, -0.55, 0.45, -0.05;  // a rotation with some stretch
  check_affine<2>(a2, 41, 10.0);
  Eigen::Matrix3d a3;
  a3 << 0.05, -0.4, 0.1, 0.35, -0.02, -0.2, -0.1, 0.25, 0.03;
  check_affine<3>(a3, 25, 6.0);
}

namespace {
/// A smooth 2D velocity that vanishes towards the border (so the flow stays on the grid),
/// amplitude `amp` in units of the grid size.
host_field<double, 2> bump_field(index_t n, double amp) {
  host_field<double, 2> f(make_extents(n, n));
  for (index_t i = 0; i < f.points(); ++i) {
    const auto p = f.ext().unravel(i);
    const double x = double(p[0]) / double(n - 1), y = double(p[1]) / double(n - 1);
    const double bump = std::pow(std::sin(two_pi * x / 2) * std::sin(two_pi * y / 2), 2);
    f[i][0] = amp * double(n) * bump * std::sin(two_pi * (y + 0.2));
    f[i][1] = amp * double(n) * bump * std::cos(two_pi * (x - 0.1));
  }
  return f;
}
/// Max |exp(v) ∘ exp(−v)| in units of the grid size.
double inverse_error(index_t n, int squarings) {
  const auto c = exp_certified(bump_field(n, 0.15), {.squarings = squarings}).certificate;
  return c.inverse_max_error / double(n);
}
}  // namespace

TEST_CASE("exp(v) ∘ exp(−v) approaches the identity as N and the grid are refined") {
  // In N on a fine grid: the first-order start leaves O(2^-N).
  double prev = inverse_error(256, 2);
  for (int sq = 3; sq <= 6; ++sq) {
    const double err = inverse_error(256, sq);
    MESSAGE("inverse consistency on 256^2, N = " << sq << ": " << err << " (order "
                                                 << std::log2(prev / err) << " in 2^-N)");
    CHECK(std::log2(prev / err) > 0.8);
    prev = err;
  }
  // In the grid at large N: interpolation leaves O(h^2) (in units of the grid size).
  const double e64 = inverse_error(64, 16), e128 = inverse_error(128, 16),
               e256 = inverse_error(256, 16);
  MESSAGE("inverse consistency at N = 16 on 64^2, 128^2, 256^2: "
          << e64 << ", " << e128 << ", " << e256 << " (orders " << std::log2(e64 / e128) << ", "
          << std::log2(e128 / e256) << ")");
  CHECK(std::log2(e128 / e256) > 1.8);
  CHECK(e256 < 1e-4);
}

namespace {
template <class B, class S, int Dim>
void check_certificate(const extents<Dim>& e, double amp) {
  const auto vh = smooth_field<S, Dim>(e, amp, 5);
  const auto v = to_backend<B>(vh);
  const auto r = exp_certified(v);
  const auto& c = r.certificate;
  CHECK(c.squarings == exp_squarings(B{}, v.view()));
  CHECK(c.min_jacobian > 0);
  CHECK(c.max_jacobian >= c.min_jacobian);
  const auto w = to_host(r.field);
  CHECK(max_diff(w, to_host(exp(v))) == 0.0);
  // Reference determinant: a plain loop, central inside, one-sided on the border.
  double jmin = 1e300, jmax = -1e300;
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    Eigen::Matrix<double, Dim, Dim> j = Eigen::Matrix<double, Dim, Dim>::Identity();
    for (int k = 0; k < Dim; ++k) {
      auto lo = p, hi = p;
      lo[k] = std::max<index_t>(0, p[k] - 1);
      hi[k] = std::min<index_t>(e[k] - 1, p[k] + 1);
      for (int m = 0; m < Dim; ++m)
        j(m, k) += (double(w(hi)[m]) - double(w(lo)[m])) / double(hi[k] - lo[k]);
    }
    jmin = std::min(jmin, j.determinant());
    jmax = std::max(jmax, j.determinant());
  }
  const double eps = std::is_same_v<S, float> ? 1e-5 : 1e-9;  // jacobian.hpp works in S
  CHECK(c.min_jacobian == doctest::Approx(jmin).epsilon(eps));
  CHECK(c.max_jacobian == doctest::Approx(jmax).epsilon(eps));
  // Inverse consistency: the norms of compose(exp(v), exp(−v)).
  const auto ic = to_host(compose(r.field, exp(v, {.inverse = true})));
  double mx = 0, sum = 0;
  for (index_t i = 0; i < e.count(); ++i) {
    mx = std::max(mx, norm(ic[i].template cast<double>()));
    sum += norm(ic[i].template cast<double>());
  }
  CHECK(c.inverse_max_error == doctest::Approx(mx).epsilon(1e-9));
  CHECK(c.inverse_mean_error == doctest::Approx(sum / double(e.count())).epsilon(1e-9));
  // Coarse grids and strong gradients: interpolation leaves a fraction of a voxel.
  CHECK(c.inverse_max_error < 0.3 * amp);
  CHECK(c.inverse_mean_error < 0.1 * amp);
}
}  // namespace

TEST_CASE_TEMPLATE("exp_certified: a smooth field's exponential has J > 0", B,
                   DIFFEO_TEST_BACKENDS) {
  check_certificate<B, float, 2>(make_extents(40, 36), 3.0);
  check_certificate<B, double, 3>(make_extents(16, 14, 12), 1.5);
  // Without squarings a large field folds, and the certificate says so.
  const auto v = to_backend<B>(smooth_field<double, 2>(make_extents(40, 36), 6.0, 5));
  CHECK(exp_certified(v, {.squarings = 0}).certificate.min_jacobian < 0);
  CHECK(exp_certified(v).certificate.min_jacobian > 0);
}

namespace {
/// WORKLOADS.md's W3 inputs: amplitude A, seed s = 3, rounded once to float.
template <int Dim>
host_field<float, Dim> w3_field(index_t n, double amp) {
  extents<Dim> e{};
  for (int k = 0; k < Dim; ++k) e[k] = n;
  host_field<float, Dim> f(e);
  const auto phi = [](int j, int c) { return 0.37 * (j + 1) + 1.3 * c + 2.1 * 3; };
  const double N = double(n);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    const double x = double(p[0]), y = double(p[1]), z = double(p[Dim - 1]);
    for (int c = 0; c < Dim; ++c) {
      double r;
      if constexpr (Dim == 2)
        r = 0.6 * std::sin(two_pi * x / (0.9 * N) + phi(0, c)) *
                std::cos(two_pi * y / (0.7 * N) + phi(1, c)) +
            0.4 * std::sin(two_pi * (x + y) / (0.5 * N) + phi(2, c));
      else
        r = 0.5 * std::sin(two_pi * x / (0.9 * N) + phi(0, c)) *
                std::cos(two_pi * y / (0.7 * N) + phi(1, c)) *
                std::cos(two_pi * z / (0.8 * N) + phi(3, c)) +
            0.3 * std::sin(two_pi * (x + y + z) / (0.5 * N) + phi(2, c)) +
            0.2 * std::cos(two_pi * (x - z) / (0.6 * N) + phi(4, c));
      f[i][c] = float(amp * r);
    }
  }
  return f;
}
}  // namespace

TEST_CASE("the automatic number of squarings follows ITK's rule") {
  CHECK(auto_squarings(6.10) == 5);
  CHECK(auto_squarings(3.92) == 4);
  CHECK(auto_squarings(0.0) == 0);
  CHECK(auto_squarings(0.2) == 0);
  CHECK(auto_squarings(0.25) == 1);
  CHECK(auto_squarings(1.0) == 3);
  CHECK(auto_squarings(1e30) == 20);
  CHECK(auto_squarings(1e30, 7) == 7);
  CHECK(auto_squarings(std::numeric_limits<double>::infinity(), 60) == 60);
  CHECK_THROWS_AS(auto_squarings(-1.0), value_error);
  // W3's fields: max|v| = 6.10 (2D) and 3.92 (3D), so ITK (capped at 7) picks 5 and 4.
  const auto v2 = w3_field<2>(512, 6.0);
  const auto v3 = w3_field<3>(128, 3.0);
  double m2 = 0, m3 = 0;
  for (index_t i = 0; i < v2.points(); ++i) m2 = std::max(m2, double(norm(v2[i])));
  for (index_t i = 0; i < v3.points(); ++i) m3 = std::max(m3, double(norm(v3[i])));
  CHECK(m2 == doctest::Approx(6.10).epsilon(0.002));
  CHECK(m3 == doctest::Approx(3.92).epsilon(0.002));
  CHECK(exp_squarings(host{}, v2.view(), {.max_squarings = 7}) == 5);
  CHECK(exp_squarings(host{}, v3.view(), {.max_squarings = 7}) == 4);
}

namespace {
template <class B, int Dim>
void check_exp_vjp(const extents<Dim>& e, exp_options opts) {
  const auto vh = smooth_field<double, Dim>(e, 1.8, 1), gh = smooth_field<double, Dim>(e, 1.0, 2);
  const auto v = to_backend<B>(vh), g = to_backend<B>(gh);
  const auto loss = [&](const host_field<double, Dim>& a) {
    const auto w = to_host(exp(to_backend<B>(a), opts));
    double s = 0;
    for (index_t i = 0; i < e.count(); ++i) s += dot(w[i], gh[i]);
    return s;
  };
  host_field<double, Dim> grads[3];
  const exp_memory strategies[3] = {exp_memory::store, exp_memory::recompute,
                                    exp_memory::checkpoint};
  for (int s = 0; s < 3; ++s) {
    opts.memory = strategies[s];
    grads[s] = to_host(exp_vjp(v, g, opts, boundary::border{}, scatter_mode::deterministic));
  }
  // The three strategies replay the same operations: identical gradients.
  CHECK(max_diff(grads[0], grads[1]) == 0.0);
  CHECK(max_diff(grads[0], grads[2]) == 0.0);
  const double h = 1e-6;
  for (index_t i = 0; i < e.count(); ++i)
    for (int k = 0; k < Dim; ++k) {
      auto vp = vh, vm = vh;
      vp[i][k] += h, vm[i][k] -= h;
      CHECK(grads[0][i][k] == doctest::Approx((loss(vp) - loss(vm)) / (2 * h)).epsilon(1e-6));
    }
}
}  // namespace

TEST_CASE_TEMPLATE("exp_vjp matches central differences with every memory strategy", B,
                   DIFFEO_TEST_BACKENDS) {
  check_exp_vjp<B, 2>(make_extents(7, 6), {.squarings = 3});
  check_exp_vjp<B, 2>(make_extents(6, 5), {.squarings = 5, .inverse = true});
  check_exp_vjp<B, 3>(make_extents(5, 4, 3), {.squarings = 4});
}

namespace {
/// Float `exp_vjp` (each backward step's gather runs the AVX2 rows of `compose_vjp` where
/// they apply) against double on the same inputs.
template <class B, int Dim>
void check_exp_vjp_float(const extents<Dim>& e) {
  const auto vf = smooth_field<float, Dim>(e, 3.0, 1), gf = smooth_field<float, Dim>(e, 1.0, 2);
  const exp_options opts{.squarings = 4};
  const auto f = to_host(exp_vjp(to_backend<B>(vf), to_backend<B>(gf), opts, boundary::border{}));
  const auto d = to_host(exp_vjp(to_backend<B>(test::cast_field<double>(vf)),
                                 to_backend<B>(test::cast_field<double>(gf)), opts,
                                 boundary::border{}));
  for (index_t i = 0; i < e.count(); ++i) {
    INFO("point " << i);
    CHECK(max_abs(f[i].template cast<double>() - d[i]) <= 1e-5);
  }
}
}  // namespace

TEST_CASE_TEMPLATE("float exp_vjp agrees with double", B, DIFFEO_TEST_BACKENDS) {
  check_exp_vjp_float<B, 2>(make_extents(35, 12));
  check_exp_vjp_float<B, 3>(make_extents(21, 8, 6));
}

TEST_CASE("exp rejects bad input, naming the argument") {
  host_field<float, 2> v(make_extents(8, 8)), w(make_extents(8, 7));
  CHECK_THROWS_WITH_AS(exp(v, {.squarings = -1}), doctest::Contains("exp(squarings)"),
                       value_error);
  CHECK_THROWS_WITH_AS(exp(v, {.squarings = 61}), doctest::Contains("exp(squarings)"),
                       value_error);
  CHECK_THROWS_WITH_AS(exp(v, {.max_squarings = 100}), doctest::Contains("exp(max_squarings)"),
                       value_error);
  CHECK_NOTHROW(exp(v, {.squarings = 60}));
  CHECK_THROWS_WITH_AS(exp(host{}, v.view(), w.view(), w.view()),
                       doctest::Contains("exp(v, out): extents differ"), shape_error);
  host_field<float, 2> out(make_extents(8, 8));
  CHECK_THROWS_WITH_AS(exp(host{}, v.view(), out.view(), out.view()),
                       doctest::Contains("exp(out, scratch)"), value_error);
  CHECK_THROWS_WITH_AS(exp_vjp(v, w), doctest::Contains("exp_vjp(v, grad_out)"), shape_error);
  // The automatic N reduces over v anyway, so it rejects non-finite values; a fixed N does
  // not scan (validate_finite is the explicit check).
  v({{3, 4}})[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(exp(v), doctest::Contains("exp(v): 1 non-finite vector(s)"), value_error);
  CHECK_THROWS_WITH_AS(exp_certified(v), doctest::Contains("exp_certified(v)"), value_error);
  CHECK_NOTHROW(exp(v, {.squarings = 2}));
  CHECK_THROWS_AS(validate_finite(v, "exp(v)"), value_error);
}
