#include <diffeo/core.hpp>
#include <diffeo/core/detail/thread_scratch.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(DIFFEO_ENABLE_TBB)
#  include <oneapi/tbb/global_control.h>
#endif

#include "support/backends.hpp"

using namespace diffeo;

TEST_CASE("extents ravel and unravel are inverse, x fastest") {
  const auto e = make_extents(5, 4, 3);
  CHECK(e.count() == 60);
  CHECK(e.rows() == 12);
  CHECK(e.linear({{1, 0, 0}}) == 1);
  CHECK(e.linear({{0, 1, 0}}) == 5);
  CHECK(e.linear({{0, 0, 1}}) == 20);
  for (index_t i = 0; i < e.count(); ++i) CHECK(e.linear(e.unravel(i)) == i);
  CHECK(to_string(e) == "5x4x3");
}

TEST_CASE("views are trivially copyable and convert to const") {
  static_assert(std::is_trivially_copyable_v<field_view<float, 2>>);
  static_assert(std::is_trivially_copyable_v<vector_view<double, 3>>);
  static_assert(sizeof(vec3f) == 3 * sizeof(float));
  float buf[6] = {};
  field_view<float, 2> v = make_view(buf, make_extents(3, 2));
  field_view<const float, 2> c = v;
  CHECK(c.data == buf);
  CHECK(c.size() == 6);
}

TEST_CASE("bad grids are rejected with the argument named") {
  using img = image<float, 2, backend::serial>;
  using vf = vector_field<float, 2, backend::serial>;
  CHECK_THROWS_AS(img(make_extents(0, 4)), shape_error);
  CHECK_THROWS_WITH_AS(img(make_extents(0, 4)),
                       doctest::Contains("field(grid): empty grid"), shape_error);
  grid<2> g{make_extents(4, 4), {{1.0, -1.0}}};
  CHECK_THROWS_WITH_AS(img{g}, doctest::Contains("spacing"),
                       value_error);
  g.spacing[1] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(img{g}, value_error);
  CHECK_THROWS_WITH_AS(img(make_extents(2, 2), 0),
                       doctest::Contains("channels"), shape_error);
  CHECK_THROWS_AS(vf(make_extents(2, 2), 2), shape_error);
  float buf[4];
  CHECK_THROWS_AS(make_view(buf, make_extents(2, 2), -1), shape_error);
}

TEST_CASE_TEMPLATE("fields start at zero and copy across backends", B, DIFFEO_TEST_BACKENDS) {
  image<float, 3, backend::serial> host(make_extents(7, 5, 3), 2);
  for (index_t i = 0; i < host.size(); ++i) CHECK(host[i] == 0.0f);
  for (index_t i = 0; i < host.size(); ++i) host[i] = float(i) * 0.5f;

  const auto dev = to_backend<B>(host);
  CHECK(dev.ext() == host.ext());
  CHECK(dev.channels() == 2);
  const auto back = to_host(dev);
  for (index_t i = 0; i < host.size(); ++i) CHECK(back[i] == host[i]);

  vector_field<double, 2, B> u(make_extents(4, 3));
  u.fill(vec2d{{1.5, -2.0}});
  const auto uh = to_host(u);
  CHECK(uh({{3, 2}}) == vec2d{{1.5, -2.0}});
}

struct square_index {
  DIFFEO_HD double operator()(index_t i) const { return double(i) * double(i) * 1e-3; }
};
struct plus {
  DIFFEO_HD double operator()(double a, double b) const { return a + b; }
};

TEST_CASE_TEMPLATE("transform_reduce sums like a plain loop", B, DIFFEO_TEST_BACKENDS) {
  const index_t n = 100003;  // not a multiple of the block size
  double ref = 0;
  for (index_t i = 0; i < n; ++i) ref += double(i) * double(i) * 1e-3;
  const double s = transform_reduce(B{}, n, 0.0, square_index{}, plus{});
  CHECK(s == doctest::Approx(ref).epsilon(1e-12));
  const double s_serial = transform_reduce(backend::serial{}, n, 0.0, square_index{}, plus{});
  if constexpr (test::bitwise_like_serial<B>) CHECK(s == s_serial);
}

template <class B>
void check_reduce_rows() {
  // Rows of 37 points (not a divisor of the block size), and of one point.
  for (const auto& e : {make_extents(37, 29, 11), make_extents(1, 300, 40)}) {
    double ref = 0;
    for (index_t i = 0; i < e.count(); ++i) ref += double(i) * double(i) * 1e-3;
    std::atomic<int> wrong_start{0};
    const auto row_map = [&](index_t i, const index_vec<3>& p, index_t n) {
      wrong_start += !(p[0] == 0 && e.linear(p) == i && n == e[0]);
      double acc = 0;
      for (index_t x = 0; x < n; ++x) acc += square_index{}(i + x);
      return acc;
    };
    const double s = transform_reduce_rows(B{}, e, 0.0, row_map, plus{});
    CHECK(wrong_start.load() == 0);
    CHECK(s == doctest::Approx(ref).epsilon(1e-12));
    // Same bits on every host backend and thread count (the fold order is fixed).
    CHECK(s == transform_reduce_rows(backend::serial{}, e, 0.0, row_map, plus{}));
  }
}

TEST_CASE("transform_reduce_rows sums a row at a time, the same bits on every host backend") {
  check_reduce_rows<backend::serial>();
#if defined(DIFFEO_ENABLE_TBB)
  check_reduce_rows<backend::tbb>();
  test::on_threads(8, [] { check_reduce_rows<backend::tbb>(); });
#endif
}

template <int Dim>
struct record_point {
  index_t* seen;
  extents<Dim> ext;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const { seen[i] = ext.linear(p); }
};

TEST_CASE_TEMPLATE("for_each_point visits every point once with matching coordinates", B,
                   DIFFEO_TEST_BACKENDS) {
  const auto e = make_extents(33, 17, 5);
  field<index_t, 3, B> seen(e);
  seen.fill(-1);
  for_each_point(B{}, e, record_point<3>{seen.data(), e});
  const auto h = to_host(seen);
  for (index_t i = 0; i < e.count(); ++i) CHECK(h[i] == i);
}

TEST_CASE_TEMPLATE("sort_by_key is deterministic with ties broken by value", B,
                   DIFFEO_TEST_BACKENDS) {
  const index_t n = 5000;
  field<index_t, 2, backend::serial> keys(make_extents(n, 1)), vals(make_extents(n, 1));
  for (index_t i = 0; i < n; ++i) {
    keys[i] = (i * 7919) % 13;
    vals[i] = n - i;
  }
  auto k = to_backend<B>(keys);
  auto v = to_backend<B>(vals);
  sort_by_key(B{}, k.data(), v.data(), n);
  const auto kh = to_host(k), vh = to_host(v);
  for (index_t i = 1; i < n; ++i) {
    CHECK(kh[i - 1] <= kh[i]);
    if (kh[i - 1] == kh[i]) CHECK(vh[i - 1] < vh[i]);
  }
}

template <class B>
void check_tasks() {
  std::vector<std::atomic<int>> runs(1000);
  for_each_task(B{}, index_t(runs.size()), [&](index_t t) { runs[std::size_t(t)]++; });
  int wrong = 0;
  for (const auto& r : runs) wrong += r.load() != 1;
  CHECK(wrong == 0);
  for_each_task(B{}, 0, [&](index_t) { runs[0]++; });
  CHECK(runs[0].load() == 1);
  CHECK(thread_count(B{}) >= 1);
}

TEST_CASE("for_each_task runs every task once; thread_count follows the limits") {
  check_tasks<backend::serial>();
  CHECK(thread_count(backend::serial{}) == 1);
#if defined(DIFFEO_ENABLE_TBB)
  check_tasks<backend::tbb>();
  {
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    CHECK(thread_count(backend::tbb{}) == 1);
  }
  CHECK(thread_count(backend::tbb{}) == tbb::this_task_arena::max_concurrency());
#endif
}

TEST_CASE("thread_scratch keeps small arrays per use and releases large ones") {
  struct use_a;
  struct use_b;
  float* first;
  {
    const detail::thread_scratch<float, use_a> a(1000);
    const detail::thread_scratch<float, use_b> b(1000);
    CHECK(a.data() != b.data());  // two uses, two arrays
    a.data()[999] = 7;
    first = a.data();
  }
  {
    const detail::thread_scratch<float, use_a> again(1000);
    CHECK(again.data() == first);  // kept between calls
    CHECK(again.data()[999] == 7);
  }
  {
    const detail::thread_scratch<double, use_a> large(std::size_t(3) << 20);  // 24 MiB
    CHECK(large.data() != nullptr);
  }
  // Released: an array taken empty again has no storage (a fresh vector's data() is null).
  const detail::thread_scratch<double, use_a> small(0);
  CHECK(small.data() == nullptr);
}
