// Lesson: one adaptive Dormand-Prince solve of a flow gives every frame of an animation.
// The flow du/dt = v(p + u(p)) of a velocity field made in code is integrated once forward
// (t: 0 -> 1) and once backward (0 -> -1), keeping the dense output; then 60 frames of a
// test image warped by Φ_t at evenly spaced t come from interpolation alone (no new
// evaluation of the velocity), written as PNG files.
//   flow_animation [OUT_DIR [FRAMES]]     (default: flow_animation_frames, 60)

#include <diffeo/core.hpp>
#include <diffeo/field/compose.hpp>
#include <diffeo/io/png.hpp>
#include <diffeo/ode.hpp>
#include <diffeo/sample.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>

namespace {

using backend = diffeo::backend::default_t;
using diffeo::index_t;
using field2 = diffeo::vector_field<float, 2, backend>;

/// A checkerboard with soft stripes: edges show the motion, stripes its smoothness.
diffeo::image<float, 2, diffeo::backend::serial> test_image(index_t n) {
  diffeo::image<float, 2, diffeo::backend::serial> img(diffeo::make_extents(n, n));
  for (index_t y = 0; y < n; ++y)
    for (index_t x = 0; x < n; ++x) {
      const bool dark = ((x / 16) + (y / 16)) % 2 == 0;
      img({{x, y}}) = (dark ? 0.2f : 0.8f) + 0.15f * float(std::sin(0.21 * double(x + 2 * y)));
    }
  return img;
}

/// Two counter-rotating vortices (velocity in voxels per unit time), fading toward the
/// border so that the flow keeps the image inside the frame.
diffeo::vector_field<float, 2, diffeo::backend::serial> vortices(index_t n) {
  diffeo::vector_field<float, 2, diffeo::backend::serial> v(diffeo::make_extents(n, n));
  const double r = 0.18 * double(n), speed = double(n) / 6;
  const double cx[2] = {0.35 * double(n), 0.65 * double(n)}, spin[2] = {1.0, -1.0};
  for (index_t y = 0; y < n; ++y)
    for (index_t x = 0; x < n; ++x) {
      double vx = 0, vy = 0;
      for (int k = 0; k < 2; ++k) {
        const double dx = double(x) - cx[k], dy = double(y) - 0.5 * double(n);
        const double w = spin[k] * speed / r * std::exp(-(dx * dx + dy * dy) / (2 * r * r));
        vx += -w * dy;
        vy += w * dx;
      }
      v({{x, y}}) = diffeo::vec2f{{float(vx), float(vy)}};
    }
  return v;
}

/// Counts evaluations of the flow, to show that frames cost none.
struct counted_flow {
  diffeo::ode::svf_flow<float, 2, backend> flow;
  std::size_t* calls;
  void operator()(const field2& u, field2& dudt, double t) const {
    ++*calls;
    flow(u, dudt, t);
  }
};

}  // namespace

int main(int argc, char** argv) try {
  if (argc > 3) {
    std::fprintf(stderr, "usage: %s [OUT_DIR [FRAMES]]\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argc >= 2 ? argv[1] : "flow_animation_frames";
  const int frames = argc >= 3 ? std::atoi(argv[2]) : 60;
  if (frames < 2) throw diffeo::value_error("flow_animation(FRAMES): need at least 2 frames");
  std::filesystem::create_directories(dir);

  const index_t n = 256;
  const auto image = diffeo::to_backend<backend>(test_image(n));
  const field2 v = diffeo::to_backend<backend>(vortices(n));
  std::size_t calls = 0;
  const counted_flow sys{diffeo::ode::svf_flow<float, 2, backend>(v), &calls};
  const field2 zero(v.geometry());

  // One solve per direction; each keeps its steps' dense-output data.
  const auto t0 = std::chrono::steady_clock::now();
  auto stepper = diffeo::ode::make_dense_output(1e-4, 1e-4, diffeo::ode::dopri5<field2>{});
  const auto forward = diffeo::ode::integrate_dense(stepper, sys, zero, 0.0, 1.0);
  const auto backward = diffeo::ode::integrate_dense(stepper, sys, zero, 0.0, -1.0);
  const double solve_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const std::size_t solve_calls = calls;

  // Frames: Φ_t by interpolation, then the pull-back warp of the image.
  const auto t1 = std::chrono::steady_clock::now();
  field2 u;
  for (const auto* sol : {&forward, &backward}) {
    const bool fwd = sol == &forward;
    for (int k = 0; k < frames; ++k) {
      const double t = (fwd ? 1.0 : -1.0) * double(k) / double(frames - 1);
      (*sol)(t, u);
      const auto frame = diffeo::warp(image, u, diffeo::interp::linear{}, diffeo::boundary::border{});
      char name[64];
      std::snprintf(name, sizeof name, "%s_%03d.png", fwd ? "forward" : "backward", k);
      diffeo::write_png(dir / name, frame);
    }
  }
  diffeo::synchronize(backend{});
  const double frames_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();

  // Sanity: frames needed no evaluation; Φ_{-1} ∘ Φ_1 is the identity up to interpolation
  // error (the displacement of the composition, u_1(p) + u_{-1}(p + u_1(p)), is ~0 inside).
  const field2 u_fwd = forward(1.0), u_bwd = backward(-1.0);
  const auto id = diffeo::to_host(diffeo::compose(u_bwd, u_fwd, diffeo::boundary::border{}));
  const auto uf = diffeo::to_host(u_fwd);
  double worst = 0, largest = 0;
  for (index_t i = 0; i < id.points(); ++i) {
    largest = std::max(largest, double(diffeo::norm(uf[i])));
    const auto p = id.ext().unravel(i);
    if (p[0] < 16 || p[1] < 16 || p[0] >= n - 16 || p[1] >= n - 16) continue;
    worst = std::max(worst, double(diffeo::norm(id[i])));
  }
  std::printf("solve: %zu + %zu Dormand-Prince steps, %zu evaluations of v, %.1f ms; dense data "
              "%.1f MiB\n",
              forward.steps(), backward.steps(), solve_calls, solve_ms,
              double(forward.memory_bytes() + backward.memory_bytes()) / (1 << 20));
  std::printf("frames: %d forward + %d backward in %.1f ms, %zu evaluations of v\n", frames,
              frames, frames_ms, calls - solve_calls);
  std::printf("largest displacement %.2f px; |Φ_-1 ∘ Φ_1 - id| <= %.4f px inside; wrote %s/\n",
              largest, worst, dir.string().c_str());
  const bool ok = calls == solve_calls && largest > 5 && worst < 0.05;
  if (!ok) {
    std::fprintf(stderr, "sanity check failed\n");
    return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "flow_animation: %s\n", e.what());
  return 1;
}
