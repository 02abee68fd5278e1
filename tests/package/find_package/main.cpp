// Uses an installed diffeo: a field on the oneTBB backend, copied to the Thrust backend and
// back, reduced on both; with diffeo::io, a PNG round trip. Exits non-zero on a mismatch.
#include <diffeo/core.hpp>
#ifdef CONSUMER_HAS_IO
#  include <diffeo/io.hpp>
#endif

#include <cstdio>
#include <filesystem>

namespace {
struct value_at {
  const float* data;
  DIFFEO_HD double operator()(diffeo::index_t i) const { return data[i]; }
};
struct plus {
  DIFFEO_HD double operator()(double a, double b) const { return a + b; }
};
}  // namespace

int main() {
  using namespace diffeo;
  image<float, 2, backend::tbb> img(make_extents(64, 32));
  img.fill(0.25f);
  const auto dev = to_backend<backend::thrust>(img);
  const double on_tbb = transform_reduce(backend::tbb{}, img.size(), 0.0, value_at{img.data()}, plus{});
  const double on_thrust =
      transform_reduce(backend::thrust{}, dev.size(), 0.0, value_at{dev.data()}, plus{});
  std::printf("find_package consumer: sum %g on tbb, %g on thrust (expected 512)\n", on_tbb,
              on_thrust);
  if (on_tbb != 512.0 || on_thrust != 512.0) return 1;
#ifdef CONSUMER_HAS_IO
  const auto path = std::filesystem::temp_directory_path() / "diffeo_find_package_consumer.png";
  write_png(path, img);
  const auto back = read_png(path);
  std::filesystem::remove(path);
  std::printf("find_package consumer: PNG round trip %s\n", back[0] == 64 / 255.0f ? "ok" : "FAILED");
  if (back.ext() != img.ext() || back[0] != 64 / 255.0f) return 1;  // 0.25 -> level 64
#endif
  return 0;
}
