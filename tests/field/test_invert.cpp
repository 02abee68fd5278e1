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

namespace {

// ITK's iteration written out point by point (the slow, obvious form of `invert`'s fused
// passes): residual e = w + u(p + w) everywhere, its max and mean norm, then w ← w − f·e.
template <class Boundary, class S, int Dim>
invert_report invert_reference(const host_field<S, Dim>& u, host_field<S, Dim>& w,
                               const invert_options& o) {
  const auto e = u.ext();
  if (o.enforce_boundary)
    for (index_t i = 0; i < e.count(); ++i)
      if (detail::on_border(e, e.unravel(i))) w[i] = vec<S, Dim>::zero();
  host_field<S, Dim> res(e);
  invert_report r{0, 0.0, 0.0, false};
  for (;;) {
    double mx = 0, sum = 0;
    for (index_t i = 0; i < e.count(); ++i) {
      res[i] = w[i] + sample(u.view(), e.unravel(i).template cast<S>() + w[i], interp::linear{},
                             Boundary{});
      const double n = norm(res[i].template cast<double>());
      mx = std::max(mx, n);
      sum += n;
    }
    r.max_error = mx;
    r.mean_error = sum / double(e.count());
    r.converged = mx <= o.max_error_tolerance && r.mean_error <= o.mean_error_tolerance;
    if (r.converged || r.iterations == o.max_iterations) return r;
    const double step = r.iterations == 0 ? 0.75 : 0.5, bound = step * mx;
    for (index_t i = 0; i < e.count(); ++i) {
      if (o.enforce_boundary && detail::on_border(e, e.unravel(i))) continue;
      const double n = norm(res[i].template cast<double>());
      w[i] = w[i] - res[i] * S(n > bound ? step * bound / n : step);
    }
    ++r.iterations;
  }
}

template <class B, class Boundary, class S, int Dim>
void check_against_reference(const extents<Dim>& e, bool enforce_boundary) {
  const auto u = smooth_field<S, Dim>(e, 2.5, 5), start = smooth_field<S, Dim>(e, 0.4, 9);
  const invert_options opts{.max_iterations = 12,
                            .max_error_tolerance = 0,
                            .mean_error_tolerance = 0,
                            .enforce_boundary = enforce_boundary};
  auto w_ref = start;
  const invert_report ref = invert_reference<Boundary>(u, w_ref, opts);
  const auto got = invert(to_backend<B>(u), to_backend<B>(start), opts, Boundary{});
  const auto w = to_host(got.field);
  CHECK(got.report.iterations == ref.iterations);
  // Double: the same operations in the same order, but for the order of the mean's sum.
  // Float: the CPU backends' SIMD sampling rounds differently; twelve contracting updates
  // keep the difference within a few float ulps of |w| ≤ 3 (2.3e-6 seen).
  const bool is_float = std::is_same_v<S, float>;
  const double tol = is_float ? 6e-6 : 0.0;
  double worst = 0;
  for (index_t i = 0; i < e.count(); ++i)
    worst = std::max(worst, norm((w[i] - w_ref[i]).template cast<double>()));
  CHECK(worst <= tol);
  CHECK(got.report.max_error == doctest::Approx(ref.max_error).epsilon(is_float ? 1e-4 : 1e-15));
  CHECK(got.report.mean_error == doctest::Approx(ref.mean_error).epsilon(is_float ? 1e-4 : 1e-12));
  double moved = 0;  // the updates did something
  for (index_t i = 0; i < e.count(); ++i)
    moved = std::max(moved, norm((w_ref[i] - start[i]).template cast<double>()));
  CHECK(moved > 0.2);
}

}  // namespace

TEST_CASE_TEMPLATE("invert's fused passes equal ITK's iteration written out point by point", B,
                   DIFFEO_TEST_BACKENDS) {
  for (const bool enforce : {true, false}) {
    CAPTURE(enforce);
    check_against_reference<B, boundary::border, double, 2>(make_extents(37, 23), enforce);
    check_against_reference<B, boundary::zeros, double, 2>(make_extents(37, 23), enforce);
    check_against_reference<B, boundary::border, float, 2>(make_extents(37, 23), enforce);
    check_against_reference<B, boundary::zeros, float, 2>(make_extents(2, 9), enforce);
    check_against_reference<B, boundary::border, double, 3>(make_extents(19, 11, 9), enforce);
    check_against_reference<B, boundary::border, float, 3>(make_extents(19, 11, 9), enforce);
    check_against_reference<B, boundary::zeros, float, 3>(make_extents(17, 3, 5), enforce);
  }
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

// Float runs the CPU backends' AVX2 blocks (the λ solve by cofactors, 8 points at a time);
// double the scalar path. Same inputs, rows long enough for several blocks.
template <class B, int Dim>
void check_invert_vjp_float(const extents<Dim>& e, bool enforce_boundary) {
  const auto u = smooth_field<double, Dim>(e, 1.2, 3), g = smooth_field<double, Dim>(e, 1.0, 8);
  const invert_options opts{.max_iterations = 30, .enforce_boundary = enforce_boundary};
  const auto w = invert(u, opts).field;
  const auto cast = [](const host_field<double, Dim>& f) {
    host_field<float, Dim> r(f.ext());
    for (index_t i = 0; i < f.points(); ++i) r[i] = f[i].template cast<float>();
    return r;
  };
  const auto exact = invert_vjp(u, w, g, opts);
  const auto got = to_host(invert_vjp(to_backend<B>(cast(u)), to_backend<B>(cast(w)),
                                      to_backend<B>(cast(g)), opts));
  double scale = 0, worst = 0;
  for (index_t i = 0; i < e.count(); ++i) {
    scale = std::max(scale, norm(exact[i]));
    worst = std::max(worst, norm(got[i].template cast<double>() - exact[i]));
  }
  CHECK(scale > 0.5);
  CHECK(worst <= 3e-6 * scale);
}

TEST_CASE_TEMPLATE("invert_vjp in float matches double", B, DIFFEO_TEST_BACKENDS) {
  for (const bool enforce : {false, true}) {
    CAPTURE(enforce);
    check_invert_vjp_float<B, 2>(make_extents(37, 11), enforce);
    check_invert_vjp_float<B, 3>(make_extents(21, 9, 7), enforce);
  }
}

TEST_CASE("invert_vjp rejects a folding field and bad shapes, naming the argument") {
  const auto e = make_extents(8, 8);
  host_field<double, 2> u(e), w(e), g(e), other(make_extents(8, 7));
  // u = (−x, 0): I + Du has a zero row everywhere (every column collapses onto x = 0).
  for (index_t i = 0; i < e.count(); ++i) u[i] = vec2d{{-1.0 * double(e.unravel(i)[0]), 0.0}};
  g.fill(vec2d{{1.0, 0.0}});
  CHECK_THROWS_WITH_AS(invert_vjp(u, w, g, {.enforce_boundary = false}),
                       doctest::Contains("invert_vjp(u): I + Du is singular"), value_error);
  // The same in float, long rows: the AVX2 blocks' division by a zero determinant.
  const auto e32 = make_extents(32, 8);
  host_field<float, 2> u32(e32), w32(e32), g32(e32);
  for (index_t i = 0; i < e32.count(); ++i) u32[i] = vec2f{{-1.0f * float(e32.unravel(i)[0]), 0.0f}};
  g32.fill(vec2f{{1.0f, 0.0f}});
  CHECK_THROWS_WITH_AS(invert_vjp(u32, w32, g32, {.enforce_boundary = false}),
                       doctest::Contains("invert_vjp(u): I + Du is singular"), value_error);
  CHECK_THROWS_WITH_AS(invert_vjp(u, other, g), doctest::Contains("invert_vjp(u, w)"), shape_error);
  CHECK_THROWS_WITH_AS(invert_vjp(u, w, other), doctest::Contains("invert_vjp(w, grad_w)"),
                       shape_error);
}
