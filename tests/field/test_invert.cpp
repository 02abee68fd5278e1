#include <diffeo/field/exp.hpp>
#include <diffeo/field/invert.hpp>

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

template <class S, int Dim>
double max_norm(const host_field<S, Dim>& f) {
  double m = 0;
  for (index_t i = 0; i < f.points(); ++i) m = std::max(m, double(norm(f[i])));
  return m;
}

template <class B, class S, int Dim>
void check_inverse(const extents<Dim>& e, double amp) {
  const auto u = to_backend<B>(smooth_field<S, Dim>(e, amp, 4));
  const bool is_float = std::is_same_v<S, float>;
  const invert_options opts{.max_iterations = 100,
                            .max_error_tolerance = is_float ? 1e-4 : 1e-6,
                            .mean_error_tolerance = is_float ? 1e-5 : 1e-8,
                            .enforce_boundary = false};
  const auto r = invert(u, opts);
  CHECK(r.report.converged);
  CHECK(r.report.iterations > 0);
  CHECK(r.report.iterations < opts.max_iterations);
  CHECK(r.report.max_error <= opts.max_error_tolerance);
  CHECK(r.report.mean_error <= opts.mean_error_tolerance);
  // The report is the returned field's residual: recompute it through `compose`.
  const auto residual = to_host(compose(u, r.field));
  double mx = 0, sum = 0;
  for (index_t i = 0; i < e.count(); ++i) {
    mx = std::max(mx, norm(residual[i].template cast<double>()));
    sum += norm(residual[i].template cast<double>());
  }
  CHECK(mx == doctest::Approx(r.report.max_error).epsilon(1e-6));
  CHECK(sum / double(e.count()) == doctest::Approx(r.report.mean_error).epsilon(1e-6));
  // The other side, w ∘ u, is near zero only up to interpolation error (coarse grids here:
  // a tenth of the amplitude), away from the border.
  const auto other = to_host(compose(r.field, u));
  double inner = 0;
  for (index_t i = 0; i < e.count(); ++i) {
    const auto p = e.unravel(i);
    bool central = true;
    for (int a = 0; a < Dim; ++a) central = central && p[a] >= e[a] / 4 && p[a] < e[a] - e[a] / 4;
    if (central) inner = std::max(inner, norm(other[i].template cast<double>()));
  }
  CHECK(inner < 0.2 * amp);
  // Same iterations as the serial backend.
  CHECK(invert(to_host(u), opts).report.iterations == r.report.iterations);
}

}  // namespace

TEST_CASE_TEMPLATE("compose(u, invert(u)) vanishes within the requested tolerance", B,
                   DIFFEO_TEST_BACKENDS) {
  check_inverse<B, float, 2>(make_extents(32, 28), 1.5);
  check_inverse<B, double, 2>(make_extents(32, 28), 1.5);
  check_inverse<B, float, 3>(make_extents(24, 20, 16), 1.0);
  check_inverse<B, double, 3>(make_extents(24, 20, 16), 1.0);
}

TEST_CASE_TEMPLATE("invert keeps ITK's options: boundary, initial estimate, iteration cap", B,
                   DIFFEO_TEST_BACKENDS) {
  const auto e = make_extents(24, 20);
  const auto u = to_backend<B>(smooth_field<double, 2>(e, 2.0, 4));

  // The zero field inverts to itself at once.
  const auto z = invert(vector_field<double, 2, B>(e));
  CHECK(z.report.iterations == 0);
  CHECK(z.report.converged);
  CHECK(max_norm(to_host(z.field)) == 0.0);

  // ITK's default holds the outer voxels at zero.
  const auto r = invert(u, {.max_iterations = 30});
  const auto w = to_host(r.field), uh = to_host(u);
  double border_max = 0;  // there the residual is u itself, which bounds the error below
  for (index_t i = 0; i < e.count(); ++i)
    if (detail::on_border(e, e.unravel(i))) {
      CHECK(w[i] == vec2d::zero());
      border_max = std::max(border_max, norm(uh[i]));
    }
  CHECK(r.report.max_error >= border_max);
  CHECK_FALSE(r.report.converged);

  // The cap: three updates, not converged, the error already well below max|u|.
  const auto capped = invert(u, {.max_iterations = 3, .enforce_boundary = false});
  CHECK(capped.report.iterations == 3);
  CHECK_FALSE(capped.report.converged);
  CHECK(capped.report.max_error < 0.5 * max_norm(to_host(u)));

  // A good initial estimate (the exponential's inverse) converges in fewer iterations.
  const auto v = to_backend<B>(smooth_field<double, 2>(e, 1.5, 6));
  const auto phi = exp(v);
  const invert_options opts{.max_iterations = 100,
                            .max_error_tolerance = 1e-6,
                            .mean_error_tolerance = 1e-7,
                            .enforce_boundary = false};
  const auto cold = invert(phi, opts), warm = invert(phi, exp(v, {.inverse = true}), opts);
  CHECK(cold.report.converged);
  CHECK(warm.report.converged);
  CHECK(warm.report.iterations < cold.report.iterations);
  if constexpr (std::is_same_v<B, host>)
    MESSAGE("iterations to 1e-6 voxels from zero: "
            << cold.report.iterations << ", from exp(-v): " << warm.report.iterations);
}

TEST_CASE("invert rejects bad input, naming the argument") {
  const host_field<double, 2> u(make_extents(8, 8)), other(make_extents(8, 7));
  CHECK_THROWS_WITH_AS(invert(u, other), doctest::Contains("invert(u, initial): extents differ"),
                       shape_error);
  CHECK_THROWS_WITH_AS(invert(u, {.max_iterations = -1}),
                       doctest::Contains("invert(max_iterations)"), value_error);
  CHECK_THROWS_WITH_AS(invert(u, {.max_error_tolerance = -1.0}),
                       doctest::Contains("invert(max_error_tolerance)"), value_error);
  CHECK_THROWS_WITH_AS(
      invert(u, {.mean_error_tolerance = std::numeric_limits<double>::quiet_NaN()}),
      doctest::Contains("invert(mean_error_tolerance)"), value_error);
  host_field<double, 2> w(make_extents(8, 8));
  CHECK_THROWS_WITH_AS(invert(host{}, w.view(), w.view()), doctest::Contains("invert(u, w)"),
                       value_error);
  auto bad = u;
  bad({{5, 2}})[0] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(invert(bad), doctest::Contains("invert(u): the residual"), value_error);
}

// L(u) = Σ g · invert(u): the implicit-function VJP against central differences of
// inversions run to 1e-13 voxels.
template <class B, int Dim>
void check_invert_vjp(const extents<Dim>& e, bool enforce_boundary) {
  const auto u = smooth_field<double, Dim>(e, 0.9, 3);
  const auto g = smooth_field<double, Dim>(e, 1.0, 8);
  const invert_options opts{.max_iterations = 400,
                            .max_error_tolerance = 1e-13,
                            .mean_error_tolerance = 1e-14,
                            .enforce_boundary = enforce_boundary};
  auto loss = [&](const host_field<double, Dim>& uu) {
    const auto w = invert(uu, opts).field;
    double s = 0;
    for (index_t i = 0; i < w.points(); ++i) s += dot(g[i], w[i]);
    return s;
  };
  const auto r = invert(to_backend<B>(u), opts);
  if (!enforce_boundary) CHECK(r.report.max_error < 1e-12);
  const auto grad = to_host(invert_vjp(to_backend<B>(u), r.field, to_backend<B>(g), opts));
  const double h = 1e-6;
  int checked = 0;
  for (index_t i = 0; i < e.count(); i += 5)
    for (int a = 0; a < Dim; ++a) {
      auto up = u, um = u;
      up[i][a] += h;
      um[i][a] -= h;
      const double fd = (loss(up) - loss(um)) / (2 * h);
      CHECK(grad[i][a] == doctest::Approx(fd).epsilon(1e-5).scale(1.0));
      ++checked;
    }
  CHECK(checked > 10);
}

TEST_CASE_TEMPLATE("invert_vjp matches central differences", B, DIFFEO_TEST_BACKENDS) {
  check_invert_vjp<B, 2>(make_extents(9, 7), false);
  check_invert_vjp<B, 2>(make_extents(8, 8), true);
  check_invert_vjp<B, 3>(make_extents(5, 4, 4), false);
}

TEST_CASE("invert_vjp rejects a folding field and bad shapes, naming the argument") {
  const auto e = make_extents(8, 8);
  host_field<double, 2> u(e), w(e), g(e), other(make_extents(8, 7));
  // u = (−x, 0): I + Du has a zero row everywhere (every column collapses onto x = 0).
  for (index_t i = 0; i < e.count(); ++i) u[i] = vec2d{{-1.0 * double(e.unravel(i)[0]), 0.0}};
  g.fill(vec2d{{1.0, 0.0}});
  CHECK_THROWS_WITH_AS(invert_vjp(u, w, g, {.enforce_boundary = false}),
                       doctest::Contains("invert_vjp(u): I + Du is singular"), value_error);
  CHECK_THROWS_WITH_AS(invert_vjp(u, other, g), doctest::Contains("invert_vjp(u, w)"), shape_error);
  CHECK_THROWS_WITH_AS(invert_vjp(u, w, other), doctest::Contains("invert_vjp(w, grad_w)"),
                       shape_error);
}
