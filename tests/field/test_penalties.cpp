#include <diffeo/field/penalties.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "support/backends.hpp"

using namespace diffeo;
using host = backend::serial;

template <int Dim>
extents<Dim> test_extents() {
  if constexpr (Dim == 2)
    return make_extents(7, 6);
  else
    return make_extents(5, 4, 6);
}

/// A wavy field that folds in places and pushes some points off the grid.
template <class S, int Dim>
vector_field<S, Dim, host> wavy_field(const extents<Dim>& e, double amp) {
  vector_field<S, Dim, host> u(e);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    for (int k = 0; k < Dim; ++k) {
      double s = 0;
      for (int a = 0; a < Dim; ++a) s += (0.9 + 0.4 * k - 0.3 * a) * double(p[a]);
      u[i][k] = S(amp * std::sin(s + 2 * k) + 0.3 * amp * std::cos(1.7 * double(p[k])));
    }
  }
  return u;
}

template <class S, int Dim>
vec<double, Dim> at(const vector_field<S, Dim, host>& u, index_vec<Dim> p) {
  return u(p).template cast<double>();
}

template <int Dim>
index_vec<Dim> shifted(index_vec<Dim> p, int a, index_t by) {
  p[a] += by;
  return p;
}

// Slow references: plain loops over the definitions in penalties.hpp.

template <class S, int Dim>
double reference_jd(const vector_field<S, Dim, host>& u, difference d) {
  const auto e = u.ext();
  double sum = 0;
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    jacobian_matrix<double, Dim> m;
    for (int a = 0; a < Dim; ++a) {
      const index_t n = e[a], x = p[a];
      index_t lo = x, hi = x;
      double w = 1;
      if (d == difference::forward) {
        lo = x == n - 1 ? x - 1 : x, hi = lo + 1;
      } else if (x == 0) {
        hi = 1;
      } else if (x == n - 1) {
        lo = n - 2;
      } else {
        lo = x - 1, hi = x + 1, w = 0.5;
      }
      const auto du = (at(u, shifted(p, a, hi - x)) - at(u, shifted(p, a, lo - x))) * w;
      for (int k = 0; k < Dim; ++k) m.m[k][a] = (k == a) + du[k];
    }
    const double j = determinant(m);
    sum += std::abs(j) - j;
  }
  return sum;
}

template <class S, int Dim>
double reference_og(const vector_field<S, Dim, host>& u) {
  double sum = 0;
  for (index_t i = 0; i < u.points(); ++i)
    for (int a = 0; a < Dim; ++a) {
      const double q = double(u.ext().unravel(i)[a]) + double(u[i][a]);
      const double n1 = double(u.ext()[a] - 1);
      sum += std::max(0.0, -q) + std::max(0.0, q - n1);
    }
  return sum;
}

template <class S, int Dim>
double reference_diffusion(const vector_field<S, Dim, host>& u) {
  double sum = 0;
  for (index_t i = 0; i < u.points(); ++i) {
    const auto p = u.ext().unravel(i);
    for (int a = 0; a < Dim; ++a)
      if (p[a] + 1 < u.ext()[a]) {
        const auto d = at(u, shifted(p, a, 1)) - at(u, p);
        sum += dot(d, d);
      }
  }
  return sum;
}

template <class S, int Dim>
double reference_bending(const vector_field<S, Dim, host>& u) {
  const auto e = u.ext();
  double sum = 0;
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    for (int a = 0; a < Dim; ++a) {
      if (p[a] >= 1 && p[a] + 1 < e[a]) {
        const auto d = at(u, shifted(p, a, 1)) - 2.0 * at(u, p) + at(u, shifted(p, a, -1));
        sum += dot(d, d);
      }
      for (int b = a + 1; b < Dim; ++b) {
        if (p[a] + 1 >= e[a] || p[b] + 1 >= e[b]) continue;
        const auto d = at(u, shifted(shifted(p, a, 1), b, 1)) - at(u, shifted(p, a, 1)) -
                       at(u, shifted(p, b, 1)) + at(u, p);
        sum += 2 * dot(d, d);
      }
    }
  }
  return sum;
}

template <class B, class S, int Dim>
void check_references() {
  const auto uh = wavy_field<S, Dim>(test_extents<Dim>(), 1.5);
  const auto u = to_backend<B>(uh);
  const double tol = std::is_same_v<S, float> ? 1e-5 : 1e-12;
  const double jd_f = negative_jacobian_penalty(u);
  CHECK(jd_f > 1);  // the field folds
  CHECK(jd_f == doctest::Approx(reference_jd(uh, difference::forward)).epsilon(tol));
  CHECK(negative_jacobian_penalty(u, difference::central) ==
        doctest::Approx(reference_jd(uh, difference::central)).epsilon(tol));
  const double og = out_of_grid_penalty(u);
  CHECK(og > 0.5);
  CHECK(og == doctest::Approx(reference_og(uh)).epsilon(tol));
  CHECK(diffusion_penalty(u) == doctest::Approx(reference_diffusion(uh)).epsilon(tol));
  CHECK(bending_energy(u) == doctest::Approx(reference_bending(uh)).epsilon(tol));
}

TEST_CASE_TEMPLATE("penalties match slow references", B, DIFFEO_TEST_BACKENDS) {
  check_references<B, float, 2>();
  check_references<B, double, 2>();
  check_references<B, float, 3>();
  check_references<B, double, 3>();
}

TEST_CASE_TEMPLATE("penalties vanish where they should", B, DIFFEO_TEST_BACKENDS) {
  // An orientation-preserving affine map inside the grid: no folding, nothing leaves the
  // grid, no bending; diffusion is the squared gradient summed over neighbour pairs.
  const auto e = make_extents(9, 8, 7);
  vector_field<double, 3, host> uh(e);
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i).cast<double>();
    uh[i] = vec3d{{-0.1 * p[0] + 0.05 * p[1] + 0.4, 0.05 * p[2] - 0.05 * p[1], -0.1 * p[2] + 0.3}};
  }
  const auto u = to_backend<B>(uh);
  CHECK(negative_jacobian_penalty(u) == 0);
  CHECK(negative_jacobian_penalty(u, difference::central) == 0);
  CHECK(out_of_grid_penalty(u) == 0);
  CHECK(bending_energy(u) == doctest::Approx(0).scale(1e-12));
  // |Du e_x|² = 0.01 on 8·8·7 pairs, |Du e_y|² = 0.005 on 9·7·7,
  // |Du e_z|² = 0.0125 on 9·8·6.
  CHECK(diffusion_penalty(u) == doctest::Approx(0.01 * 448 + 0.005 * 441 + 0.0125 * 432));
  const auto g = to_host(bending_energy_vjp(u));
  for (index_t i = 0; i < g.points(); ++i) CHECK(max_abs(g[i]) < 1e-12);

  vector_field<double, 3, B> nan_u(e);
  nan_u.fill(vec3d{{std::numeric_limits<double>::quiet_NaN(), 0, 0}});
  CHECK(std::isnan(negative_jacobian_penalty(nan_u)));
  CHECK(std::isnan(out_of_grid_penalty(nan_u)));
}

/// Every VJP against central differences of its penalty, in double. JD and OG are piecewise
/// smooth: components whose two one-sided differences disagree sit on a kink and are skipped.
template <class B, int Dim>
void check_vjps() {
  auto uh = wavy_field<double, Dim>(test_extents<Dim>(), 1.5);
  struct penalty {
    const char* name;
    bool piecewise;  // piecewise linear in each component: skip kinks
    double (*value)(const vector_field<double, Dim, host>&);
    vector_field<double, Dim, B> (*grad)(const vector_field<double, Dim, B>&);
  };
  const penalty all[] = {
      {"jd forward", true, [](const vector_field<double, Dim, host>& v) {
         return negative_jacobian_penalty(v);
       },
       [](const vector_field<double, Dim, B>& v) { return negative_jacobian_penalty_vjp(v, 0.7); }},
      {"jd central", true, [](const vector_field<double, Dim, host>& v) {
         return negative_jacobian_penalty(v, difference::central);
       },
       [](const vector_field<double, Dim, B>& v) {
         return negative_jacobian_penalty_vjp(v, 0.7, difference::central);
       }},
      {"out of grid", true,
       [](const vector_field<double, Dim, host>& v) { return out_of_grid_penalty(v); },
       [](const vector_field<double, Dim, B>& v) { return out_of_grid_penalty_vjp(v, 0.7); }},
      {"diffusion", false,
       [](const vector_field<double, Dim, host>& v) { return diffusion_penalty(v); },
       [](const vector_field<double, Dim, B>& v) { return diffusion_penalty_vjp(v, 0.7); }},
      {"bending", false, [](const vector_field<double, Dim, host>& v) { return bending_energy(v); },
       [](const vector_field<double, Dim, B>& v) { return bending_energy_vjp(v, 0.7); }},
  };
  const double h = 1e-6;
  for (const auto& pen : all) {
    CAPTURE(pen.name);
    const auto g = to_host(pen.grad(to_backend<B>(uh)));
    int checked = 0;
    for (index_t i = 0; i < uh.points(); ++i)
      for (int k = 0; k < Dim; ++k) {
        const double keep = uh[i][k], l0 = pen.value(uh);
        uh[i][k] = keep + h;
        const double lp = pen.value(uh);
        uh[i][k] = keep - h;
        const double lm = pen.value(uh);
        uh[i][k] = keep;
        if (pen.piecewise && std::abs((lp - l0) - (l0 - lm)) > 1e-6 * h) continue;  // a kink
        ++checked;
        CHECK(g[i][k] == doctest::Approx(0.7 * (lp - lm) / (2 * h)).epsilon(1e-5).scale(1e-3));
      }
    CHECK(checked > int(uh.points()) * Dim * 3 / 4);
  }
}

TEST_CASE_TEMPLATE("penalty VJPs match central differences", B, DIFFEO_TEST_BACKENDS) {
  check_vjps<B, 2>();
  check_vjps<B, 3>();
}

TEST_CASE("bad arguments name the function and the argument") {
  vector_field<float, 2, host> u(make_extents(4, 3)), g(make_extents(3, 4));
  CHECK_THROWS_WITH_AS(diffusion_penalty_vjp(host{}, u.view(), g.view()),
                       doctest::Contains("diffusion_penalty_vjp(u, grad_u): extents differ"),
                       shape_error);
  CHECK_THROWS_WITH_AS(negative_jacobian_penalty_vjp(host{}, u.view(), g.view()),
                       doctest::Contains("negative_jacobian_penalty_vjp(u, grad_u)"), shape_error);
  const_vector_view<float, 2> empty{};
  CHECK_THROWS_WITH_AS(bending_energy(host{}, empty), doctest::Contains("bending_energy(u)"),
                       shape_error);
  CHECK_THROWS_AS(out_of_grid_penalty(host{}, empty), shape_error);
  auto bad = u.view();
  bad.spacing[0] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(negative_jacobian_penalty(host{}, bad),
                       doctest::Contains("negative_jacobian_penalty(u): spacing"), value_error);
}
