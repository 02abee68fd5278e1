#include <diffeo/ode/algebra.hpp>

#include <doctest/doctest.h>

#include <Eigen/Core>

#include <array>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "support/backends.hpp"

using namespace diffeo;
using namespace diffeo::ode;

namespace {

/// A small vector field with distinct values at every component.
template <class S, class B>
vector_field<S, 2, B> ramp(index_t nx, index_t ny, double scale, double offset) {
  vector_field<S, 2, backend::serial> h(make_extents(nx, ny));
  for (index_t i = 0; i < h.points(); ++i)
    h[i] = vec<S, 2>{{S(scale * std::sin(0.1 * double(i) + offset)),
                      S(scale * std::cos(0.07 * double(i) - offset))}};
  return to_backend<B>(h);
}

/// A composite state: an Eigen vector and a field, as the adjoint method combines them.
struct pair_state {
  Eigen::VectorXd p;
  std::vector<double> q;
};

}  // namespace

template <>
struct diffeo::ode::composite_traits<pair_state> {
  static auto parts(pair_state& s) { return std::tie(s.p, s.q); }
  static auto parts(const pair_state& s) { return std::tie(s.p, s.q); }
};

static_assert(contiguous_state<std::array<double, 3>>);
static_assert(contiguous_state<vec3f>);
static_assert(contiguous_state<std::vector<float>>);
static_assert(contiguous_state<Eigen::VectorXd>);
static_assert(contiguous_state<Eigen::Vector3f>);
static_assert(contiguous_state<vector_field<float, 3, backend::serial>>);
static_assert(contiguous_state<image<double, 2, backend::serial>>);
static_assert(composite_state<pair_state>);
static_assert(ode_state<no_parameters>);
static_assert(!ode_state<int>);

TEST_CASE_TEMPLATE("scale_sum on fields is one fused combination on every backend", B,
                   DIFFEO_TEST_BACKENDS) {
  using S = double;
  const auto x0 = ramp<S, B>(37, 5, 1.0, 0.0), x1 = ramp<S, B>(37, 5, 2.0, 0.3),
             x2 = ramp<S, B>(37, 5, -0.5, 1.1);
  vector_field<S, 2, B> out;  // empty: sized by the call
  scale_sum(out, 0.5, x0, -2.0, x1, 3.0, x2);
  CHECK(out.ext() == x0.ext());
  const auto h = to_host(out), h0 = to_host(x0), h1 = to_host(x1), h2 = to_host(x2);
  for (index_t i = 0; i < h.points(); ++i)
    for (int c = 0; c < 2; ++c)
      CHECK(h[i][c] == doctest::Approx(0.5 * h0[i][c] - 2.0 * h1[i][c] + 3.0 * h2[i][c]).epsilon(1e-14));

  // Aliasing the output with an input is allowed (y ← a·y + b·k).
  auto y = ramp<S, B>(37, 5, 1.0, 0.0);
  scale_sum(y, 2.0, y, 1.0, x1);
  const auto hy = to_host(y);
  for (index_t i = 0; i < hy.points(); ++i)
    CHECK(hy[i][1] == doctest::Approx(2.0 * h0[i][1] + h1[i][1]).epsilon(1e-14));

  // set_zero, assign, inner_product, all_finite.
  vector_field<S, 2, B> z;
  assign(z, x2);
  CHECK(inner_product(z, z) == doctest::Approx(inner_product(x2, x2)).epsilon(1e-14));
  double ref = 0;
  for (index_t i = 0; i < h.points(); ++i) ref += dot(h0[i], h1[i]);
  CHECK(inner_product(x0, x1) == doctest::Approx(ref).epsilon(1e-13));
  set_zero(z);
  CHECK(inner_product(z, z) == 0.0);
  CHECK(all_finite(z));
  CHECK(scalar_count(z) == 37 * 5 * 2);
  CHECK(state_bytes(z) == std::size_t(37 * 5 * 2 * sizeof(S)));
}

TEST_CASE_TEMPLATE("scaled norms match a plain loop (RMS and max) on every backend", B,
                   DIFFEO_TEST_BACKENDS) {
  using S = float;
  const auto x0 = ramp<S, B>(64, 3, 1.0, 0.0), x1 = ramp<S, B>(64, 3, 2.0, 0.3),
             k = ramp<S, B>(64, 3, 1e-3, 0.9);
  const double atol = 1e-4, rtol = 1e-3;
  const auto h0 = to_host(x0), h1 = to_host(x1), hk = to_host(k);
  double sum = 0, mx = 0;
  for (index_t i = 0; i < h0.points(); ++i)
    for (int c = 0; c < 2; ++c) {
      const double e = 0.25 * double(hk[i][c]);
      const double sc =
          atol + rtol * std::max(std::fabs(double(h0[i][c])), std::fabs(double(h1[i][c])));
      sum += (e / sc) * (e / sc);
      mx = std::max(mx, std::fabs(e / sc));
    }
  const double n = double(h0.points() * 2);
  CHECK(scaled_norm<1>(norm_kind::rms, x0, x1, atol, rtol, {0.25}, {&k}) ==
        doctest::Approx(std::sqrt(sum / n)).epsilon(1e-12));
  CHECK(scaled_norm<1>(norm_kind::max, x0, x1, atol, rtol, {0.25}, {&k}) ==
        doctest::Approx(mx).epsilon(1e-12));
  // A single NaN makes the norm NaN (the step is rejected, never silently accepted).
  auto bad = to_host(k);
  bad[7][1] = std::numeric_limits<S>::quiet_NaN();
  const auto badb = to_backend<B>(bad);
  CHECK(std::isnan(scaled_norm<1>(norm_kind::rms, x0, x1, atol, rtol, {1.0}, {&badb})));
  CHECK(std::isnan(scaled_norm<1>(norm_kind::max, x0, x1, atol, rtol, {1.0}, {&badb})));
  CHECK_FALSE(all_finite(badb));
}

TEST_CASE("the algebra works on small and host containers alike") {
  SUBCASE("std::array and vec are fixed size") {
    std::array<double, 3> a{1, 2, 3}, b{-1, 0.5, 2}, out{};
    scale_sum(out, 2.0, a, 3.0, b);
    CHECK(out == std::array<double, 3>{-1, 5.5, 12});
    vec3f v{{1, 2, 3}}, w{};
    scale_sum(w, -1.0, v);
    CHECK(w == vec3f{{-1, -2, -3}});
  }
  SUBCASE("std::vector and Eigen vectors are resized") {
    std::vector<float> a{1, 2}, out;
    scale_sum(out, 0.5, a);
    CHECK(out == std::vector<float>{0.5f, 1.0f});
    Eigen::VectorXd e(4), f;
    e << 1, 2, 3, 4;
    scale_sum(f, 1.0, e, 1.0, e);
    REQUIRE(f.size() == 4);
    CHECK(f(3) == 8.0);
    CHECK(scaled_norm<1>(norm_kind::max, e, e, 1.0, 0.0, {1.0}, {&e}) == 4.0);
  }
  SUBCASE("composite states combine and norm part by part") {
    pair_state a{Eigen::Vector2d(1, 2), {3, 4, 5}}, b{Eigen::Vector2d(0, 1), {1, 1, 1}}, out;
    scale_sum(out, 2.0, a, -1.0, b);
    REQUIRE(out.p.size() == 2);
    REQUIRE(out.q.size() == 3);
    CHECK(out.p(1) == 3.0);
    CHECK(out.q[2] == 9.0);
    CHECK(scalar_count(out) == 5);
    CHECK(inner_product(a, b) == doctest::Approx(2 + 3 + 4 + 5));
    // RMS over all 5 scalars, with unit scale (atol = 1, rtol = 0).
    const double rms = scaled_norm<1>(norm_kind::rms, a, a, 1.0, 0.0, {1.0}, {&a});
    CHECK(rms == doctest::Approx(std::sqrt((1 + 4 + 9 + 16 + 25) / 5.0)));
    CHECK(scaled_norm<1>(norm_kind::max, a, a, 1.0, 0.0, {1.0}, {&a}) == 5.0);
  }
}
