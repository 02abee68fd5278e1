// Uses diffeo through add_subdirectory: a vector field on the default backend, filled,
// copied to the host and checked point by point. Exits non-zero on a mismatch.
#include <diffeo/core.hpp>

#include <cstdio>

int main() {
  using namespace diffeo;
  vector_field<float, 2> u(make_extents(16, 8));  // backend::default_t
  u.fill(vec2f{{0.5f, -1.0f}});
  const auto host = to_host(u);
  int bad = 0;
  for (index_t i = 0; i < host.size(); ++i) bad += !(host[i] == vec2f{{0.5f, -1.0f}});
  std::printf("add_subdirectory consumer: %lld points, %d wrong\n",
              static_cast<long long>(host.points()), bad);
  return bad == 0 ? 0 : 1;
}
