// Lesson: pull an image back through a displacement field with diffeo::warp.
// Without arguments it draws a test image, warps it by a smooth swirl and writes
// warp_image_input.png and warp_image.png; `warp_image IN.png OUT.png [turns]` warps a file.

#include <diffeo/core.hpp>
#include <diffeo/io/png.hpp>
#include <diffeo/sample.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace {

using backend = diffeo::backend::default_t;

/// A checkerboard with colour gradients: sharp edges show every interpolation artefact.
diffeo::image<float, 2, diffeo::backend::serial> test_image(diffeo::index_t nx, diffeo::index_t ny) {
  diffeo::image<float, 2, diffeo::backend::serial> img(diffeo::make_extents(nx, ny), 3);
  for (diffeo::index_t y = 0; y < ny; ++y)
    for (diffeo::index_t x = 0; x < nx; ++x) {
      const bool dark = ((x / 32) + (y / 32)) % 2 == 0;
      const float base = dark ? 0.15f : 0.85f;
      img({{x, y}}, 0) = base * float(x) / float(nx - 1) + 0.1f;
      img({{x, y}}, 1) = base;
      img({{x, y}}, 2) = base * float(y) / float(ny - 1) + 0.1f;
    }
  return img;
}

/// A swirl about the image centre: points turn by `turns`·2π·exp(-r²/R²), so the centre
/// and the far corners barely move. The displacement points from each output pixel to the
/// input position it shows (pull-back).
diffeo::vector_field<float, 2, diffeo::backend::serial> swirl(diffeo::extents<2> e, double turns) {
  diffeo::vector_field<float, 2, diffeo::backend::serial> u(e);
  const double cx = 0.5 * double(e[0] - 1), cy = 0.5 * double(e[1] - 1);
  const double radius = 0.35 * double(std::min(e[0], e[1]));
  for (diffeo::index_t y = 0; y < e[1]; ++y)
    for (diffeo::index_t x = 0; x < e[0]; ++x) {
      const double dx = double(x) - cx, dy = double(y) - cy;
      const double angle = turns * 2 * M_PI * std::exp(-(dx * dx + dy * dy) / (radius * radius));
      const double c = std::cos(angle), s = std::sin(angle);
      u({{x, y}}) = diffeo::vec2f{{float(c * dx - s * dy - dx), float(s * dx + c * dy - dy)}};
    }
  return u;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 1 && argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: %s [IN.png OUT.png [turns]]\n", argv[0]);
    return 2;
  }
  const bool from_file = argc >= 3;
  const std::string out_path = from_file ? argv[2] : "warp_image.png";
  const double turns = argc == 4 ? std::atof(argv[3]) : 0.4;

  const auto input = from_file ? diffeo::read_png(argv[1]) : test_image(512, 384);
  if (!from_file) diffeo::write_png("warp_image_input.png", input);

  // The fields live on the default backend (oneTBB when enabled); copies are explicit.
  const auto src = diffeo::to_backend<backend>(input);
  const auto u = diffeo::to_backend<backend>(swirl(input.ext(), turns));

  const auto t0 = std::chrono::steady_clock::now();
  const auto out = diffeo::warp(src, u, diffeo::interp::cubic{}, diffeo::boundary::reflection{});
  diffeo::synchronize(backend{});
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  diffeo::write_png(out_path, out);

  // Sanity: the swirl turns each circle about the centre into itself, so it preserves area
  // and the mean of each channel up to interpolation and boundary effects; values stay finite.
  const auto result = diffeo::to_host(out);
  bool ok = true;
  for (int c = 0; c < input.channels(); ++c) {
    double mean_in = 0, mean_out = 0;
    for (diffeo::index_t i = 0; i < input.points(); ++i) {
      mean_in += input[i * input.channels() + c];
      mean_out += result[i * input.channels() + c];
      ok = ok && std::isfinite(result[i * input.channels() + c]);
    }
    mean_in /= double(input.points());
    mean_out /= double(input.points());
    std::printf("channel %d: mean %.4f -> %.4f\n", c, mean_in, mean_out);
    ok = ok && std::fabs(mean_out - mean_in) < 0.02;
  }
  std::printf("warped %lldx%lld, %d channels, by a %.2f-turn swirl in %.2f ms (cubic, reflection)\n",
              static_cast<long long>(input.ext()[0]), static_cast<long long>(input.ext()[1]),
              input.channels(), turns, ms);
  std::printf("wrote %s%s\n", out_path.c_str(), from_file ? "" : " (input: warp_image_input.png)");
  if (!ok) {
    std::fprintf(stderr, "sanity check failed: non-finite output or a channel mean moved\n");
    return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "warp_image: %s\n", e.what());
  return 1;
}
