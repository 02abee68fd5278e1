#include <diffeo/core.hpp>
#include <diffeo/core/eigen.hpp>
#include <diffeo/core/xtensor.hpp>

#include <doctest/doctest.h>

#include "support/backends.hpp"

using namespace diffeo;

TEST_CASE("xtensor containers are viewed without copying, in diffeo's layout") {
  xt::xtensor<float, 3> img = xt::zeros<float>({4, 5, 3});  // (ny, nx, C)
  img(2, 3, 1) = 7.f;
  auto v = as_image<2>(img);
  CHECK(v.data == img.data());
  CHECK(v.ext == make_extents(5, 4));
  CHECK(v.channels == 3);
  CHECK(v.at(v.ext.linear({{3, 2}}))[1] == 7.f);
  v.at(0)[2] = 2.f;  // writes go through to the container
  CHECK(img(0, 0, 2) == 2.f);

  xt::xarray<double> vol = xt::zeros<double>({3, 4, 5});  // (nz, ny, nx), one channel
  auto w = as_image<3>(vol);
  CHECK(w.ext == make_extents(5, 4, 3));
  CHECK(w.channels == 1);

  xt::xtensor<float, 4> u = xt::zeros<float>({3, 4, 5, 3});  // (nz, ny, nx, 3)
  u(1, 2, 3, 0) = 1.5f;
  u(1, 2, 3, 2) = -2.f;
  auto uv = as_vector_field<3>(u);
  CHECK(uv.ext == make_extents(5, 4, 3));
  CHECK(uv[uv.ext.linear({{3, 2, 1}})] == vec3f{{1.5f, 0.f, -2.f}});

  const xt::xtensor<float, 4>& cu = u;
  auto cv = as_vector_field<3>(cu);
  static_assert(std::is_same_v<decltype(cv), field_view<const vec3f, 3>>);
}

TEST_CASE("xtensor shapes that do not fit are rejected with the shape named") {
  xt::xtensor<float, 3> bad = xt::zeros<float>({4, 5, 3});
  CHECK_THROWS_WITH_AS(as_vector_field<2>(bad), doctest::Contains("got (4, 5, 3)"), shape_error);
  xt::xtensor<float, 1> flat = xt::zeros<float>({4});
  CHECK_THROWS_WITH_AS(as_image<2>(flat), doctest::Contains("expected rank 2 or 3"), shape_error);
}

TEST_CASE_TEMPLATE("fields go to and from xtensor on every backend", B, DIFFEO_TEST_BACKENDS) {
  xt::xtensor<double, 3> u = xt::zeros<double>({3, 4, 2});
  for (std::size_t i = 0; i < u.size(); ++i) u.data()[i] = double(i) * 0.25;
  const auto f = from_xtensor<vec2d, 2, B>(u);
  CHECK(f.ext() == make_extents(4, 3));
  const auto back = to_xarray(f);
  CHECK(back.shape() == std::vector<std::size_t>{3, 4, 2});
  CHECK(back == u);

  xt::xtensor<float, 2> img = {{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}};
  const auto g = from_xtensor<float, 2, B>(img);
  CHECK(g.channels() == 1);
  const auto img_back = to_xarray(g);
  CHECK(img_back.dimension() == 2);
  CHECK(img_back == img);
}

TEST_CASE("Eigen vectors convert to and from vec") {
  const vec3d v{{1.0, -2.0, 0.5}};
  const Eigen::Vector3d e = to_eigen(v);
  CHECK(e(1) == -2.0);
  CHECK(from_eigen(e) == v);
  CHECK(from_eigen(Eigen::Vector2f(3.f, 4.f)) == vec2f{{3.f, 4.f}});
}
