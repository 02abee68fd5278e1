#include <diffeo/core/scatter.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#if defined(DIFFEO_ENABLE_TBB)
#  include <oneapi/tbb/global_control.h>
#endif

#include "support/backends.hpp"
#include "support/reference.hpp"

using namespace diffeo;

namespace {

constexpr int K = 4;

/// Precomputed taps: source s adds w[s K + k] · value(s, c) to target idx[s K + k].
struct table_taps {
  const index_t* idx;
  const double* w;
  template <class W>
  DIFFEO_HD void operator()(index_t s, index_t* i, W* wt) const {
    for (int k = 0; k < K; ++k) i[k] = idx[s * K + k], wt[k] = W(w[s * K + k]);
  }
};
struct table_values {
  const double* v;
  int channels;
  DIFFEO_HD double operator()(index_t s, int c) const { return v[s * channels + c]; }
};

enum class layout { local, wild, sparse };

/// Sources on an nx × ny grid with taps near themselves (`local`: at most 3 rows away, as a
/// warp's adjoint), anywhere (`wild`), or local with long runs of sources that reach nothing.
struct problem {
  index_t sources, targets;
  int channels;
  std::vector<index_t> idx;
  std::vector<double> w, v;
  problem(index_t nx, index_t ny, layout l, int c = 2) : sources(nx * ny), targets(nx * ny), channels(c) {
    test::lcg rng(17);
    for (index_t s = 0; s < sources; ++s) {
      const index_t x = s % nx, y = s / nx;
      for (int k = 0; k < K; ++k) {
        index_t t;
        if (l == layout::wild) {
          t = index_t(rng.uniform(0, double(targets)));
        } else {
          const index_t tx = x + index_t(rng.uniform(-3, 4)), ty = y + index_t(rng.uniform(-3, 4));
          t = tx < 0 || tx >= nx || ty < 0 || ty >= ny ? -1 : ty * nx + tx;
        }
        if (l == layout::sparse && (y / 8) % 3 != 0) t = -1;
        idx.push_back(std::min(t, targets - 1));
        w.push_back(rng.uniform(-1, 1));
      }
      for (int c = 0; c < channels; ++c) v.push_back(rng.uniform(-1, 1));
    }
  }
  std::vector<double> reference() const {
    std::vector<double> out(std::size_t(targets * channels), 0.0);
    for (index_t s = 0; s < sources; ++s)
      for (int k = 0; k < K; ++k)
        if (idx[s * K + k] >= 0)
          for (int c = 0; c < channels; ++c)
            out[idx[s * K + k] * channels + c] += w[s * K + k] * v[s * channels + c];
    return out;
  }
  template <class B>
  std::vector<double> run(scatter_mode mode) const {
    const auto flat = [](index_t n) { return make_extents(n, 1); };
    field<index_t, 2, backend::serial> ih(flat(index_t(idx.size())));
    field<double, 2, backend::serial> wh(flat(index_t(w.size()))), vh(flat(index_t(v.size())));
    std::copy(idx.begin(), idx.end(), ih.data());
    std::copy(w.begin(), w.end(), wh.data());
    std::copy(v.begin(), v.end(), vh.data());
    const auto ib = to_backend<B>(ih);
    const auto wb = to_backend<B>(wh);
    const auto vb = to_backend<B>(vh);
    field<double, 2, B> out(flat(targets * channels));
    fill_n(B{}, out.data(), out.size(), 0.0);
    scatter_add<K>(B{}, sources, table_taps{ib.data(), wb.data()}, table_values{vb.data(), channels},
                   out.data(), targets, channels, mode);
    const auto h = to_host(out);
    return std::vector<double>(h.data(), h.data() + h.size());
  }
};

void check_close(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12).scale(1.0));
}

}  // namespace

TEST_CASE_TEMPLATE("scatter_add matches a plain loop in every mode and layout", B,
                   DIFFEO_TEST_BACKENDS) {
  // 301 x 79 sources: 24 blocks of 1024 (the last one short), so oneTBB's banded scatter has
  // bands to share out; `wild` cannot be banded (atomic adds), 41 x 19 is too small to split
  // (one thread). Neither count is a multiple of the 16 sources whose taps are found at once.
  for (const layout l : {layout::local, layout::wild, layout::sparse}) {
    const problem p(301, 79, l);
    const auto want = p.reference();
    check_close(p.run<B>(scatter_mode::atomic), want);
    check_close(p.run<B>(scatter_mode::deterministic), want);
  }
  const problem small(41, 19, layout::local);
  check_close(small.run<B>(scatter_mode::atomic), small.reference());
  // Channel counts 1–4 run loops fixed at compile time, others a run-time count.
  for (const int channels : {1, 3, 4, 5}) {
    INFO("channels = " << channels);
    const problem c(301, 79, layout::local, channels), wild(301, 79, layout::wild, channels);
    check_close(c.run<B>(scatter_mode::atomic), c.reference());
    check_close(wild.run<B>(scatter_mode::atomic), wild.reference());
    const problem tiny(41, 19, layout::local, channels);
    check_close(tiny.run<B>(scatter_mode::atomic), tiny.reference());
  }
}

#if defined(DIFFEO_ENABLE_TBB)
TEST_CASE("oneTBB's banded scatter gives the same bits on 1 and 2 threads") {
  const problem p(300, 80, layout::local);
  std::vector<double> one, two;
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
    one = p.run<backend::tbb>(scatter_mode::atomic);
  }
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 2);
    two = p.run<backend::tbb>(scatter_mode::atomic);
  }
  REQUIRE(one.size() == two.size());
  for (std::size_t i = 0; i < one.size(); ++i) CHECK(one[i] == two[i]);
}
#endif
