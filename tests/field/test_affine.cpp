#include <diffeo/field/affine.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "support/backends.hpp"

using namespace diffeo;
using host = backend::serial;

template <int Dim>
affine_map<Dim> test_map(bool centred) {
  affine_map<Dim> m;
  for (int i = 0; i < Dim; ++i) {
    m.t(i) = 0.75 - 0.5 * i;
    for (int j = 0; j < Dim; ++j) m.A(i, j) = (i == j) + 0.1 * std::sin(1.0 + 3 * i + j);
    if (centred) m.centre(i) = 3.5 + i;
  }
  return m;
}

template <int Dim>
extents<Dim> test_extents() {
  if constexpr (Dim == 2)
    return make_extents(13, 10);
  else
    return make_extents(9, 7, 6);
}

template <class B, class S, int Dim>
void check_field_and_fit(bool centred) {
  const auto e = test_extents<Dim>();
  const auto m = test_map<Dim>(centred);
  const auto u = affine_field<S, B>(m, grid<Dim>{e});
  const auto uh = to_host(u);
  const double tol = std::is_same_v<S, float> ? 2e-6 : 1e-13;
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    Eigen::Matrix<double, Dim, 1> x;
    for (int k = 0; k < Dim; ++k) x(k) = double(p[k]);
    const auto y = m(x);
    for (int k = 0; k < Dim; ++k)
      CHECK(double(p[k]) + double(uh[i][k]) == doctest::Approx(y(k)).epsilon(tol).scale(1));
  }
  const auto fit = affine_fit(B{}, u.view(), m.centre);
  const double ftol = std::is_same_v<S, float> ? 1e-5 : 1e-12;
  CHECK((fit.A - m.A).norm() < ftol);
  CHECK((fit.t - m.t).norm() < ftol * 10);
  CHECK(fit.centre == m.centre);
  // The same map, described about the origin.
  const auto fit0 = affine_fit(B{}, u.view());
  CHECK((fit0.homogeneous() - m.homogeneous()).norm() < ftol * 10);
}

TEST_CASE_TEMPLATE("affine fields reproduce positions and fits recover the map", B,
                   DIFFEO_TEST_BACKENDS) {
  for (bool centred : {false, true}) {
    check_field_and_fit<B, float, 2>(centred);
    check_field_and_fit<B, double, 2>(centred);
    check_field_and_fit<B, float, 3>(centred);
    check_field_and_fit<B, double, 3>(centred);
  }
}

TEST_CASE_TEMPLATE("a weighted fit sees only the weighted points", B, DIFFEO_TEST_BACKENDS) {
  const auto e = make_extents(12, 11, 5);
  const auto m = test_map<3>(true);
  auto uh = affine_field<double, host>(m, grid<3>{e});
  image<float, 3, host> wh(e);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    if (p[0] < 6 || p[1] > 3) {  // garbage where the weight is zero
      uh[i] = vec3d{{std::sin(double(i)), 3.0, -2.0 * std::cos(double(i))}};
    } else {
      wh[i] = float(1 + (i % 3));
    }
  }
  const auto u = to_backend<B>(uh);
  const auto w = to_backend<B>(wh);
  const auto fit = affine_fit(B{}, u.view(), w.view(), m.centre);
  CHECK((fit.A - m.A).norm() < 1e-12);
  CHECK((fit.t - m.t).norm() < 1e-11);
  const auto plain = affine_fit(B{}, u.view(), m.centre);
  CHECK((plain.A - m.A).norm() > 1e-2);
}

TEST_CASE("homogeneous matrices round trip") {
  const auto m = test_map<3>(true);
  const auto h = m.homogeneous();
  const auto back = affine_map<3>::from_homogeneous(h);
  Eigen::Vector3d x(1.5, -2.0, 7.0);
  CHECK((back(x) - m(x)).norm() < 1e-13);
  Eigen::Vector4d xh(1.5, -2.0, 7.0, 1.0);
  CHECK(((h * xh).head<3>() - m(x)).norm() < 1e-13);
  auto bad = h;
  bad(3, 0) = 0.5;
  CHECK_THROWS_AS(affine_map<3>::from_homogeneous(bad), value_error);
}

template <class B, int Dim>
void check_vjps() {
  const auto e = test_extents<Dim>();
  const auto m = test_map<Dim>(true);
  // An upstream gradient and a weight, both arbitrary.
  vector_field<double, Dim, host> gh(e);
  image<double, Dim, host> wh(e);
  for (index_t i = 0; i < e.count(); ++i) {
    wh[i] = 0.5 + 0.5 * std::sin(0.3 * double(i));
    for (int k = 0; k < Dim; ++k) gh[i][k] = std::cos(0.7 * double(i) + k);
  }
  const auto g = to_backend<B>(gh);
  const auto w = to_backend<B>(wh);

  // affine_field_vjp: L(A, t) = Σ g · u is linear, so central differences are exact.
  const auto grad = affine_field_vjp(B{}, m, g.view());
  const auto loss_map = [&](const affine_map<Dim>& mm) {
    const auto u = affine_field<double, host>(mm, grid<Dim>{e});
    double l = 0;
    for (index_t i = 0; i < e.count(); ++i) l += dot(u[i], gh[i]);
    return l;
  };
  const double h = 1e-3;
  for (int i = 0; i < Dim; ++i) {
    for (int j = 0; j < Dim; ++j) {
      auto mp = m, mm = m;
      mp.A(i, j) += h;
      mm.A(i, j) -= h;
      CHECK(grad.A(i, j) == doctest::Approx((loss_map(mp) - loss_map(mm)) / (2 * h)).epsilon(1e-9));
    }
    auto mp = m, mm = m;
    mp.t(i) += h;
    mm.t(i) -= h;
    CHECK(grad.t(i) == doctest::Approx((loss_map(mp) - loss_map(mm)) / (2 * h)).epsilon(1e-9));
  }

  // affine_fit_vjp: L(u) = <GA, A_fit(u)> + <gt, t_fit(u)>, linear in u.
  affine_gradient<Dim> up;
  for (int i = 0; i < Dim; ++i) {
    up.t(i) = 0.3 - i;
    for (int j = 0; j < Dim; ++j) up.A(i, j) = std::sin(2.0 * i + j);
  }
  auto uh = affine_field<double, host>(test_map<Dim>(false), grid<Dim>{e});
  for (index_t i = 0; i < e.count(); ++i) uh[i][0] += 0.2 * std::sin(double(i));
  for (bool weighted : {false, true}) {
    const auto loss_fit = [&](const vector_field<double, Dim, host>& v) {
      const auto f = weighted ? affine_fit(host{}, v.view(), wh.view(), m.centre)
                              : affine_fit(host{}, v.view(), m.centre);
      return (up.A.array() * f.A.array()).sum() + up.t.dot(f.t);
    };
    vector_field<double, Dim, B> gu(e);
    if (weighted)
      affine_fit_vjp(B{}, w.view(), up, gu.view(), m.centre);
    else
      affine_fit_vjp(B{}, up, gu.view(), m.centre);
    const auto guh = to_host(gu);
    for (index_t i = 0; i < e.count(); i += 3)
      for (int k = 0; k < Dim; ++k) {
        const double keep = uh[i][k];
        uh[i][k] = keep + h;
        const double lp = loss_fit(uh);
        uh[i][k] = keep - h;
        const double lm = loss_fit(uh);
        uh[i][k] = keep;
        CHECK(guh[i][k] == doctest::Approx((lp - lm) / (2 * h)).epsilon(1e-7).scale(1));
      }
  }
}

TEST_CASE_TEMPLATE("affine VJPs match central differences", B, DIFFEO_TEST_BACKENDS) {
  check_vjps<B, 2>();
  check_vjps<B, 3>();
}

TEST_CASE("bad arguments name the function and the argument") {
  const auto e = make_extents(6, 5);
  auto u = affine_field<float, host>(test_map<2>(false), grid<2>{e});
  image<float, 2, host> w(e), w_wrong(make_extents(5, 6));
  CHECK_THROWS_WITH_AS(affine_fit(host{}, u.view(), w_wrong.view()),
                       doctest::Contains("affine_fit(u, weight): extents differ"), shape_error);
  w.set_spacing({{1.0, 2.0}});
  CHECK_THROWS_WITH_AS(affine_fit(host{}, u.view(), w.view()),
                       doctest::Contains("affine_fit(u, weight): spacings differ"), shape_error);
  w.set_spacing({{1.0, 1.0}});
  CHECK_THROWS_WITH_AS(affine_fit(host{}, u.view(), w.view()),
                       doctest::Contains("do not determine an affine map"), value_error);
  w[3] = -1;
  CHECK_THROWS_WITH_AS(affine_fit(host{}, u.view(), w.view()),
                       doctest::Contains("negative or non-finite weight"), value_error);
  w.fill(1.0f);
  CHECK_NOTHROW(affine_fit(host{}, u.view(), w.view()));
  u[7][1] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(affine_fit(host{}, u.view()),
                       doctest::Contains("affine_fit(u): 1 points with a non-finite value"),
                       value_error);
  vector_field<float, 2, host> line(make_extents(7, 1));
  CHECK_THROWS_AS(affine_fit(host{}, line.view()), value_error);
  auto m = test_map<2>(false);
  m.A(0, 1) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS((affine_field<float, host>(m, grid<2>{e})),
                       doctest::Contains("affine_field(m)"), value_error);
  const_vector_view<float, 2> empty{};
  CHECK_THROWS_WITH_AS(affine_fit(host{}, empty), doctest::Contains("affine_fit(u): empty grid"),
                       shape_error);
}
