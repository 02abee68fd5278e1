#include <diffeo/field/jacobian.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "support/backends.hpp"

using namespace diffeo;

using host = backend::serial;

template <int Dim>
extents<Dim> test_extents() {
  // 3D rows of 19: two blocks of the AVX2 determinant (where the CPU has it) and a tail.
  if constexpr (Dim == 2)
    return make_extents(7, 6);
  else
    return make_extents(19, 4, 5);
}

/// A smooth, non-affine field of moderate amplitude (some folding at amplitude > 0.5).
template <class S, int Dim>
vector_field<S, Dim, host> wavy_field(const extents<Dim>& e, double amp,
                                      vec<double, Dim> sp = vec<double, Dim>::filled(1)) {
  vector_field<S, Dim, host> u(grid<Dim>{e, sp});
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    for (int k = 0; k < Dim; ++k) {
      double s = 0;
      for (int a = 0; a < Dim; ++a) s += (0.7 + 0.3 * k + 0.2 * a) * double(p[a]);
      u[i][k] = S(amp * std::sin(s + k) + 0.1 * amp * double(p[(k + 1) % Dim]));
    }
  }
  return u;
}

/// u(p) = (A - I) p + b: an affine map with matrix A.
template <class S, int Dim>
vector_field<S, Dim, host> affine_disp(const extents<Dim>& e, const double (&a)[3][3]) {
  vector_field<S, Dim, host> u(e);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    for (int k = 0; k < Dim; ++k) {
      double s = 0.25 * (k + 1);
      for (int j = 0; j < Dim; ++j) s += (a[k][j] - (k == j)) * double(p[j]);
      u[i][k] = S(s);
    }
  }
  return u;
}

template <int Dim>
double det_of(const double (&a)[3][3]) {
  jacobian_matrix<double, Dim> m;
  for (int i = 0; i < Dim; ++i)
    for (int j = 0; j < Dim; ++j) m.m[i][j] = a[i][j];
  return determinant(m);
}

/// numpy.gradient(f, axis, edge_order=1) of component k, and the forward variant, at p.
template <class S, int Dim>
double reference_derivative(const vector_field<S, Dim, host>& u, index_vec<Dim> p, int axis,
                            int k, difference d) {
  const index_t n = u.ext()[axis], x = p[axis];
  if (n == 1) return 0;
  auto at = [&](index_t y) {
    index_vec<Dim> q = p;
    q[axis] = y;
    return double(u(q)[k]);
  };
  if (d == difference::forward) return x == n - 1 ? at(x) - at(x - 1) : at(x + 1) - at(x);
  if (x == 0) return at(1) - at(0);
  if (x == n - 1) return at(n - 1) - at(n - 2);
  return (at(x + 1) - at(x - 1)) / 2;
}

template <class B, class S, int Dim>
void check_affine_exact() {
  const auto e = test_extents<Dim>();
  // A shear-and-scale and a rotation (about z in 3D).
  const double shear[3][3] = {{1.3, 0.4, -0.2}, {-0.3, 0.8, 0.5}, {0.1, 0.2, 1.1}};
  const double c = std::cos(0.7), s = std::sin(0.7);
  const double rot[3][3] = {{c, -s, 0}, {s, c, 0}, {0, 0, 1}};
  const double tol = std::is_same_v<S, float> ? 2e-5 : 1e-12;
  for (const auto* a : {&shear, &rot}) {
    const auto u = to_backend<B>(affine_disp<S, Dim>(e, *a));
    for (difference d : {difference::central, difference::forward}) {
      const auto det = to_host(jacobian_det(u, d));
      const auto jac = to_host(jacobian(u, d));
      const double want = det_of<Dim>(*a);
      if (a == &rot) CHECK(want == doctest::Approx(1.0).epsilon(1e-14));
      for (index_t i = 0; i < det.points(); ++i) {
        CHECK(double(det[i]) == doctest::Approx(want).epsilon(tol));
        for (int r = 0; r < Dim; ++r)
          for (int q = 0; q < Dim; ++q)
            CHECK(double(jac[i](r, q)) == doctest::Approx((*a)[r][q]).epsilon(tol).scale(1));
      }
    }
  }
}

TEST_CASE_TEMPLATE("the Jacobian of an affine map is its matrix everywhere, border included", B,
                   DIFFEO_TEST_BACKENDS) {
  check_affine_exact<B, float, 2>();
  check_affine_exact<B, double, 2>();
  check_affine_exact<B, float, 3>();
  check_affine_exact<B, double, 3>();
}

template <class B, class S, int Dim>
void check_reference() {
  const auto e = test_extents<Dim>();
  const auto uh = wavy_field<S, Dim>(e, 0.8);
  const auto u = to_backend<B>(uh);
  const double tol = std::is_same_v<S, float> ? 1e-5 : 1e-13;
  for (difference d : {difference::central, difference::forward}) {
    const auto jac = to_host(jacobian(u, d));
    const auto det = to_host(jacobian_det(u, d));
    for (index_t i = 0; i < e.count(); ++i) {
      const auto p = e.unravel(i);
      jacobian_matrix<double, Dim> ref;
      for (int k = 0; k < Dim; ++k)
        for (int a = 0; a < Dim; ++a)
          ref.m[k][a] = (k == a) + reference_derivative(uh, p, a, k, d);
      for (int k = 0; k < Dim; ++k)
        for (int a = 0; a < Dim; ++a)
          CHECK(double(jac[i](k, a)) == doctest::Approx(ref.m[k][a]).epsilon(tol).scale(1));
      CHECK(double(det[i]) == doctest::Approx(determinant(ref)).epsilon(tol).scale(1));
    }
  }
}

TEST_CASE_TEMPLATE("central differences follow numpy.gradient (edge_order=1); forward the "
                   "Warping NODE scheme", B, DIFFEO_TEST_BACKENDS) {
  check_reference<B, float, 2>();
  check_reference<B, double, 2>();
  check_reference<B, float, 3>();
  check_reference<B, double, 3>();
}

TEST_CASE("spacing: voxel displacements give S(I + Du)S^-1, physical ones I + Du S^-1") {
  const auto e = make_extents(19, 5, 4);
  const vec3d sp{{0.5, 2.0, 1.5}};
  auto u = wavy_field<double, 3>(e, 0.3, sp);
  const auto det_unit = jacobian_det(wavy_field<double, 3>(e, 0.3));
  const auto det_vox = jacobian_det(u);
  const auto jac_vox = jacobian(u);
  const auto jac_phys = jacobian(u, difference::central, displacement_units::physical);
  const auto det_phys = jacobian_det(u, difference::central, displacement_units::physical);
  for (index_t i = 0; i < e.count(); ++i) {
    CHECK(det_vox[i] == det_unit[i]);  // voxel displacements: spacing-invariant
    const auto p = e.unravel(i);
    jacobian_matrix<double, 3> phys;
    for (int k = 0; k < 3; ++k)
      for (int a = 0; a < 3; ++a) {
        const double du = reference_derivative(u, p, a, k, difference::central);
        CHECK(jac_vox[i](k, a) == doctest::Approx((k == a) + sp[k] / sp[a] * du));
        phys.m[k][a] = (k == a) + du / sp[a];
        CHECK(jac_phys[i](k, a) == doctest::Approx(phys.m[k][a]));
      }
    CHECK(det_phys[i] == doctest::Approx(determinant(phys)));
    CHECK(determinant(jac_vox[i]) == doctest::Approx(det_vox[i]));
  }
  // float (the AVX2 rows where the CPU has them) against the double result
  vector_field<float, 3, host> uf(u.geometry());
  for (index_t i = 0; i < e.count(); ++i) uf[i] = u[i].cast<float>();
  const auto detf_phys = jacobian_det(uf, difference::central, displacement_units::physical);
  const auto detf_vox = jacobian_det(uf, difference::forward);
  const auto det_fwd = jacobian_det(u, difference::forward);
  for (index_t i = 0; i < e.count(); ++i) {
    CHECK(double(detf_phys[i]) == doctest::Approx(det_phys[i]).epsilon(1e-5));
    CHECK(double(detf_vox[i]) == doctest::Approx(det_fwd[i]).epsilon(1e-5));
  }
}

namespace {
template <class S>
void check_one_slice() {
  // Rows of 19: the float determinant's AVX2 blocks (where the CPU has them) see the axis too.
  const auto u2 = wavy_field<S, 2>(make_extents(19, 5), 0.4);
  vector_field<S, 3, host> u3(make_extents(19, 5, 1));
  for (index_t i = 0; i < u2.points(); ++i)
    u3[i] = vec<S, 3>{{u2[i][0], u2[i][1], S(std::sin(double(i)))}};
  for (auto d : {difference::central, difference::forward}) {
    const auto det2 = jacobian_det(u2, d);
    const auto det3 = jacobian_det(u3, d);
    for (index_t i = 0; i < u2.points(); ++i)
      CHECK(det3[i] == doctest::Approx(det2[i]).epsilon(std::is_same_v<S, float> ? 1e-6 : 1e-14));
  }
}
}  // namespace

TEST_CASE("an axis of one point has zero derivative: a one-slice volume is a 2D field") {
  check_one_slice<double>();
  check_one_slice<float>();
}

template <class B, class S, int Dim>
void check_folding() {
  // u_x = -3 clamp(x, 10, 20): det J = -2 inside the strip, 1 away from it.
  extents<Dim> e;
  if constexpr (Dim == 2)
    e = make_extents(32, 5);
  else
    e = make_extents(32, 3, 4);
  vector_field<S, Dim, host> uh(e);
  for (index_t i = 0; i < e.count(); ++i) {
    const double x = double(e.unravel(i)[0]);
    uh[i] = vec<S, Dim>::zero();
    uh[i][0] = S(-3 * std::min(20.0, std::max(10.0, x)));
  }
  const auto u = to_backend<B>(uh);
  const index_t rows = e.rows();
  const auto central = jacobian_stats_of(B{}, u.view());
  CHECK(central.points == e.count());
  CHECK(central.folded == 11 * rows);  // x = 10 and x = 20 straddle the strip: det = -0.5
  CHECK(central.folded_fraction() == doctest::Approx(11.0 / 32));
  CHECK(central.min == doctest::Approx(-2));
  CHECK(central.max == doctest::Approx(1));
  CHECK(central.nonfinite == 0);
  const auto fwd = jacobian_stats_of(B{}, u.view(), difference::forward);
  CHECK(fwd.folded == 10 * rows);
  CHECK(fwd.sum == doctest::Approx(double(rows) * (22 - 20)));
  CHECK(fwd.mean() == doctest::Approx(2.0 / 32));

  uh[3][1] = std::numeric_limits<S>::quiet_NaN();  // poisons its neighbours' determinants
  const auto bad = jacobian_stats_of(B{}, to_backend<B>(uh).view());
  CHECK(bad.nonfinite > 0);
  CHECK(bad.points + bad.nonfinite == e.count());
  CHECK(std::isfinite(bad.min));
}

TEST_CASE_TEMPLATE("folding statistics count a known folded strip in one pass", B,
                   DIFFEO_TEST_BACKENDS) {
  check_folding<B, float, 2>();
  check_folding<B, double, 3>();
  check_folding<B, float, 3>();
}

/// L(u) = Σ g · J(u) (matrix or determinant) against its VJP, by central differences.
template <class B, int Dim>
void check_vjp(displacement_units units, difference d) {
  const auto e = test_extents<Dim>();
  vec<double, Dim> sp;
  for (int a = 0; a < Dim; ++a) sp[a] = 0.6 + 0.5 * a;
  auto uh = wavy_field<double, Dim>(e, 0.6, sp);
  image<double, Dim, host> gdet(e);
  field<jacobian_matrix<double, Dim>, Dim, host> gjac(e);
  for (index_t i = 0; i < e.count(); ++i) {
    gdet[i] = std::cos(1.3 * double(i));
    for (int r = 0; r < Dim; ++r)
      for (int c = 0; c < Dim; ++c) gjac[i](r, c) = std::sin(0.7 * double(i) + r - 2 * c);
  }
  const auto loss = [&](const vector_field<double, Dim, host>& v) {
    const auto det = jacobian_det(v, d, units);
    const auto jac = jacobian(v, d, units);
    double l = 0;
    for (index_t i = 0; i < e.count(); ++i) {
      l += gdet[i] * det[i];
      for (int r = 0; r < Dim; ++r)
        for (int c = 0; c < Dim; ++c) l += gjac[i](r, c) * jac[i](r, c);
    }
    return l;
  };
  const auto u = to_backend<B>(uh);
  const auto gd = to_backend<B>(gdet);
  const auto gj = to_backend<B>(gjac);
  vector_field<double, Dim, B> g1(u.geometry()), g2(u.geometry());
  jacobian_det_vjp(B{}, u.view(), gd.view(), g1.view(), d, units);
  jacobian_vjp(B{}, u.view(), gj.view(), g2.view(), d, units);
  const auto h1 = to_host(g1), h2 = to_host(g2);
  const double h = 1e-5;
  for (index_t i = 0; i < e.count(); ++i)
    for (int k = 0; k < Dim; ++k) {
      const double keep = uh[i][k];
      uh[i][k] = keep + h;
      const double lp = loss(uh);
      uh[i][k] = keep - h;
      const double lm = loss(uh);
      uh[i][k] = keep;
      CHECK(h1[i][k] + h2[i][k] == doctest::Approx((lp - lm) / (2 * h)).epsilon(1e-6).scale(1));
    }
}

TEST_CASE_TEMPLATE("Jacobian and determinant VJPs match central differences", B,
                   DIFFEO_TEST_BACKENDS) {
  for (auto units : {displacement_units::voxel, displacement_units::physical})
    for (auto d : {difference::central, difference::forward}) {
      check_vjp<B, 2>(units, d);
      check_vjp<B, 3>(units, d);
    }
}

TEST_CASE("bad arguments name the function and the argument") {
  vector_field<float, 2, host> u(make_extents(4, 3));
  image<float, 2, host> wrong(make_extents(3, 4));
  CHECK_THROWS_WITH_AS(jacobian_det(host{}, u.view(), wrong.view()),
                       doctest::Contains("jacobian_det(u, out): extents differ"), shape_error);
  image<float, 2, host> two(make_extents(4, 3), 2);
  CHECK_THROWS_WITH_AS(jacobian_det(host{}, u.view(), two.view()),
                       doctest::Contains("jacobian_det(out): expected one channel"), shape_error);
  const_vector_view<float, 2> empty{};
  field_view<float, 2> none{};
  CHECK_THROWS_WITH_AS(jacobian_det(host{}, empty, none), doctest::Contains("empty grid"),
                       shape_error);
  CHECK_THROWS_WITH_AS(jacobian_stats_of(host{}, empty),
                       doctest::Contains("jacobian_stats_of(u)"), shape_error);
  auto bad_spacing = u.view();
  bad_spacing.spacing[1] = 0;
  field<jacobian_matrix<float, 2>, 2, host> jac(u.ext());
  CHECK_THROWS_AS(jacobian(host{}, bad_spacing, jac.view()), value_error);
  CHECK_THROWS_AS(jacobian_det(host{}, bad_spacing, image<float, 2, host>(u.ext()).view()),
                  value_error);
  vector_field<float, 2, host> g(make_extents(4, 4));
  field<jacobian_matrix<float, 2>, 2, host> gj(u.ext());
  CHECK_THROWS_WITH_AS(jacobian_vjp(host{}, u.view(), gj.view(), g.view()),
                       doctest::Contains("jacobian_vjp(u, grad_u)"), shape_error);
}

