// The public field ops that bench_field does not time: the VJPs of compose, exp and
// smoothing, invert and its VJP, the Jacobian matrix, its VJPs and folding statistics, the
// penalties and their VJPs, pyramid down/upsampling and their VJPs, and the affine
// map-to-field and least-squares fit (with their VJPs). float32 on the tbb backend, on the
// WORKLOADS.md inputs of workloads.hpp, next to the STREAM triad floor of the same run.
//
//   bench_field_ops --benchmark_min_time=0.1                    # all, then the summary
//   THREADS=1 bench_field_ops --benchmark_filter='exp_vjp'      # one op, one thread count
//
// Counters (set_counters): items = output points per call (grid points for reductions),
// bytes = the compulsory float32 traffic per output point: every input array read once,
// every output written once (scratch fields the op allocates itself are not counted). The
// comment above each registration says how its bytes were counted; V = bytes of one
// vector (8 in 2D, 12 in 3D).

#include <memory>
#include <stdexcept>

#include "workloads.hpp"

#include <diffeo/field.hpp>

namespace db = diffeo_bench;
using diffeo::index_t;

namespace {

#if defined(DIFFEO_ENABLE_TBB)

using B = diffeo::backend::tbb;
template <int Dim>
using vfield = diffeo::vector_field<float, Dim, B>;
using call_t = std::function<void()>;
/// Builds an op's inputs and outputs (outside the timed loop) and returns its call.
using make_t = std::function<call_t()>;

// ---- inputs ---------------------------------------------------------------------------------

// clang-format off
template <int Dim> const db::raw<Dim>& w2_u() { if constexpr (Dim == 2) return db::inputs::w2_u2d(); else return db::inputs::w2_u3d(); }
template <int Dim> const db::raw<Dim>& w2_v() { if constexpr (Dim == 2) return db::inputs::w2_v2d(); else return db::inputs::w2_v3d(); }
template <int Dim> const db::raw<Dim>& w3_v() { if constexpr (Dim == 2) return db::inputs::w3_v2d(); else return db::inputs::w3_v3d(); }
template <int Dim> const db::raw<Dim>& w4_u() { if constexpr (Dim == 2) return db::inputs::w4_u2d(); else return db::inputs::w4_u3d(); }
/// A scalar on the W4 grid (∂L/∂det): the W1 image of that grid.
template <int Dim> const db::raw<Dim>& w4_scalar() { if constexpr (Dim == 2) return db::inputs::w1_img2d(1); else return db::inputs::w1_img3d(); }
// clang-format on

/// An incoming gradient ∂L/∂out on a square / cubic grid of side `n`: the workload field
/// formula with amplitude 1 and seed 5 (no workload uses that seed), cached.
template <int Dim>
const db::raw<Dim>& grad_raw(index_t n) {
  static std::map<index_t, db::raw<Dim>> cache;
  auto it = cache.find(n);
  if (it == cache.end()) {
    if constexpr (Dim == 2)
      it = cache.emplace(n, db::make_field2d(n, n, 1.0, 5)).first;
    else
      it = cache.emplace(n, db::make_field3d(n, 1.0, 5)).first;
  }
  return it->second;
}
template <int Dim>
vfield<Dim> grad_field(const diffeo::extents<Dim>& e) {
  return db::to_vector_field<B>(grad_raw<Dim>(e[0]));
}

// ---- harness ---------------------------------------------------------------------------------

void bm_op(benchmark::State& st, int threads, double elements, double bytes, const make_t& make) {
  db::thread_limit limit(threads);
  try {
    const call_t call = make();
    auto timed = [&] {
      call();
      diffeo::synchronize(B{});
      benchmark::ClobberMemory();
    };
    timed();  // warm-up (and the op's own checks: a throw ends the benchmark with an error)
    const double secs = db::timed_loop(st, timed);
    db::set_counters(st, elements, bytes, secs);
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
  }
}

/// Registers `op` on workload `size` for every thread count: "op/size/diffeo_tbb/threads:t".
void reg(const std::string& op, const std::string& size, double elements, double bytes,
         const std::vector<int>& threads, make_t make) {
  const std::string workload = op + " " + size;
  for (int t : threads) {
    const std::string name = op + "/" + size + "/diffeo_tbb/threads:" + std::to_string(t);
    db::add(name, db::bench_meta{workload, "diffeo_tbb", t, elements, bytes, true, false},
            [=](benchmark::State& st) { bm_op(st, t, elements, bytes, make); });
  }
}

template <int Dim>
std::string size_name(const diffeo::extents<Dim>& e) {
  if constexpr (Dim == 2)
    return "2d_" + std::to_string(e[0]) + "x" + std::to_string(e[1]);
  else
    return "3d_" + std::to_string(e[0]);
}

constexpr int exp_n = 7;
constexpr double smooth_sigma = 1.5;  // voxels, as bench_field's S1
constexpr int invert_iterations = 10;

/// invert's options for a fixed amount of work: tolerances 0 never stop it early.
diffeo::invert_options invert_fixed() {
  diffeo::invert_options o;
  o.max_iterations = invert_iterations;
  o.max_error_tolerance = 0;
  o.mean_error_tolerance = 0;
  return o;
}

/// A small rotation and scaling about the grid centre, with a shift.
template <int Dim>
diffeo::affine_map<Dim> test_map(const diffeo::extents<Dim>& e) {
  diffeo::affine_map<Dim> m;
  m.A(0, 0) = 1.02, m.A(0, 1) = -0.05, m.A(1, 0) = 0.05, m.A(1, 1) = 0.98;
  if constexpr (Dim == 3) m.A(2, 2) = 1.01, m.A(0, 2) = 0.03, m.A(2, 1) = -0.02;
  for (int a = 0; a < Dim; ++a) m.centre(a) = 0.5 * double(e[a] - 1), m.t(a) = 0.5 + a;
  return m;
}

template <int Dim>
void register_dim(const std::vector<int>& threads) {
  using diffeo::scatter_mode;
  using J = diffeo::jacobian_matrix<float, Dim>;
  constexpr double V = 4.0 * Dim;  // bytes of one float vector
  constexpr double M = 4.0 * Dim * Dim;  // bytes of one Jacobian matrix
  const auto e2 = w2_u<Dim>().ext, e3 = w3_v<Dim>().ext, e4 = w4_u<Dim>().ext;
  const double n2 = double(e2.count()), n3 = double(e3.count()), n4 = double(e4.count());
  const std::string s2 = size_name(e2), s3 = size_name(e3), s4 = size_name(e4);

  // ---- compose --------------------------------------------------------------------------
  // compose_vjp (W2, zeros outside as in W2, atomic scatter): reads u, v, grad_w; writes
  // grad_u, grad_v: 5 V (40 B in 2D, 60 B in 3D).
  reg("compose_vjp", s2, n2, 5 * V, threads, [] {
    struct st {
      vfield<Dim> u = db::to_vector_field<B>(w2_u<Dim>()), v = db::to_vector_field<B>(w2_v<Dim>());
      vfield<Dim> g = grad_field<Dim>(u.ext()), gu{u.ext()}, gv{u.ext()};
    };
    auto s = std::make_shared<st>();
    return call_t([s] {
      diffeo::compose_vjp(B{}, s->u.view(), s->v.view(), s->g.view(), s->gu.view(), s->gv.view(),
                          diffeo::boundary::zeros{}, scatter_mode::atomic);
    });
  });

  // ---- exp ------------------------------------------------------------------------------
  // exp_vjp (W3, N = 7, zeros outside as in W3, atomic scatter), per memory strategy: reads
  // v and grad_out, writes grad_v: 3 V (24 / 36 B). The op itself makes 7 squarings (store;
  // recompute: 21, checkpoint c = 3: 11) and 7 backward steps, each several passes, so the
  // B/s here is far below the memory bandwidth by construction.
  for (auto [mem, mem_name] : {std::pair{diffeo::exp_memory::store, "store"},
                               std::pair{diffeo::exp_memory::recompute, "recompute"},
                               std::pair{diffeo::exp_memory::checkpoint, "checkpoint"}}) {
    const diffeo::exp_memory memory = mem;
    reg(std::string("exp_vjp_") + mem_name, s3, n3, 3 * V, threads, [memory] {
      struct st {
        vfield<Dim> v = db::to_vector_field<B>(w3_v<Dim>());
        vfield<Dim> g = grad_field<Dim>(v.ext()), gv{v.ext()};
      };
      auto s = std::make_shared<st>();
      diffeo::exp_options o;
      o.squarings = exp_n;
      o.memory = memory;
      return call_t([s, o] {
        diffeo::exp_vjp(B{}, s->v.view(), s->g.view(), s->gv.view(), o, diffeo::boundary::zeros{},
                        scatter_mode::atomic);
      });
    });
  }

  // ---- invert ---------------------------------------------------------------------------
  // invert (W4 u, 10 updates: tolerances 0, max_iterations 10; border boundary, the
  // default), per call, items = points: reads u, writes w: 2 V (16 / 24 B). Each call
  // first zeroes w (the start of `invert(u)`; one write pass, timed), then runs 11 passes
  // (each but the first updates w from the last residual, then writes the new residual to
  // a field that `invert` allocates and folds its norms).
  reg("invert_10it", s4, n4, 2 * V, threads, [] {
    struct st {
      vfield<Dim> u = db::to_vector_field<B>(w4_u<Dim>()), w{u.ext()};
    };
    auto s = std::make_shared<st>();
    return call_t([s] {
      s->w.fill(diffeo::vec<float, Dim>::zero());
      const auto r = diffeo::invert(B{}, s->u.view(), s->w.view(), invert_fixed());
      if (r.iterations != invert_iterations)
        throw std::runtime_error("invert stopped after " + std::to_string(r.iterations) +
                                 " iterations");
      benchmark::DoNotOptimize(r);
    });
  });
  // invert_vjp (W4 u, w = invert(u) with the options above): reads u, w, grad_w; writes
  // grad_u: 4 V (32 / 48 B). It allocates and writes a −λ field and scans it for finiteness.
  reg("invert_vjp", s4, n4, 4 * V, threads, [] {
    struct st {
      vfield<Dim> u = db::to_vector_field<B>(w4_u<Dim>()), w{u.ext()};
      vfield<Dim> g = grad_field<Dim>(u.ext()), gu{u.ext()};
    };
    auto s = std::make_shared<st>();
    diffeo::invert(B{}, s->u.view(), s->w.view(), invert_fixed());
    return call_t([s] {
      diffeo::invert_vjp(B{}, s->u.view(), s->w.view(), s->g.view(), s->gu.view(),
                         invert_fixed());
    });
  });

  // ---- Jacobian (W4 u, central differences) ----------------------------------------------
  // jacobian (full matrix): reads u, writes J: V + M (24 / 48 B).
  reg("jacobian", s4, n4, V + M, threads, [] {
    struct st {
      vfield<Dim> u = db::to_vector_field<B>(w4_u<Dim>());
      diffeo::field<J, Dim, B> jac{u.ext()};
    };
    auto s = std::make_shared<st>();
    return call_t([s] { diffeo::jacobian(B{}, s->u.view(), s->jac.view()); });
  });
  // jacobian_vjp: reads grad_J (here the Jacobian of u), writes grad_u: M + V (24 / 48 B;
  // u only gives the shape).
  reg("jacobian_vjp", s4, n4, M + V, threads, [] {
    struct st {
      vfield<Dim> u = db::to_vector_field<B>(w4_u<Dim>()), gu{u.ext()};
      diffeo::field<J, Dim, B> gj{u.ext()};
    };
    auto s = std::make_shared<st>();
    diffeo::jacobian(B{}, s->u.view(), s->gj.view());
    return call_t([s] { diffeo::jacobian_vjp(B{}, s->u.view(), s->gj.view(), s->gu.view()); });
  });
  // jacobian_det_vjp: reads u and grad_det (a float per point), writes grad_u: 2 V + 4
  // (20 / 28 B). It allocates a temporary matrix field (2 passes over M more).
  reg("jacobian_det_vjp", s4, n4, 2 * V + 4, threads, [] {
    struct st {
      vfield<Dim> u = db::to_vector_field<B>(w4_u<Dim>()), gu{u.ext()};
      diffeo::image<float, Dim, B> gd = db::to_image<B>(w4_scalar<Dim>());
    };
    auto s = std::make_shared<st>();
    return call_t([s] { diffeo::jacobian_det_vjp(B{}, s->u.view(), s->gd.view(), s->gu.view()); });
  });
  // jacobian_stats_of (folding statistics, a reduction): reads u: V (8 / 12 B).
  reg("jacobian_stats", s4, n4, V, threads, [] {
    auto u = std::make_shared<vfield<Dim>>(db::to_vector_field<B>(w4_u<Dim>()));
    return call_t([u] {
      const auto r = diffeo::jacobian_stats_of(B{}, u->view());
      benchmark::DoNotOptimize(r);
    });
  });

  // ---- penalties (W4 u): each a reduction reading u: V (8 / 12 B); each VJP reads u and
  // writes grad_u: 2 V (16 / 24 B). negative_jacobian (forward differences, the default)
  // VJP also allocates and writes a matrix field and reads it back. -----------------------
  struct penalty {
    const char* name;
    double (*value)(B, diffeo::field_view<const diffeo::vec<float, Dim>, Dim>);
    void (*vjp)(B, diffeo::field_view<const diffeo::vec<float, Dim>, Dim>,
                diffeo::vector_view<float, Dim>);
  };
  using cview = diffeo::field_view<const diffeo::vec<float, Dim>, Dim>;
  using view = diffeo::vector_view<float, Dim>;
  const penalty penalties[] = {
      {"negative_jacobian_penalty",
       [](B be, cview u) { return diffeo::negative_jacobian_penalty(be, u); },
       [](B be, cview u, view g) { diffeo::negative_jacobian_penalty_vjp(be, u, g); }},
      {"out_of_grid_penalty", [](B be, cview u) { return diffeo::out_of_grid_penalty(be, u); },
       [](B be, cview u, view g) { diffeo::out_of_grid_penalty_vjp(be, u, g); }},
      {"diffusion_penalty", [](B be, cview u) { return diffeo::diffusion_penalty(be, u); },
       [](B be, cview u, view g) { diffeo::diffusion_penalty_vjp(be, u, g); }},
      {"bending_energy", [](B be, cview u) { return diffeo::bending_energy(be, u); },
       [](B be, cview u, view g) { diffeo::bending_energy_vjp(be, u, g); }},
  };
  for (const penalty& p : penalties) {
    reg(p.name, s4, n4, V, threads, [p] {
      auto u = std::make_shared<vfield<Dim>>(db::to_vector_field<B>(w4_u<Dim>()));
      return call_t([u, p] {
        const double r = p.value(B{}, diffeo::as_const(u->view()));
        benchmark::DoNotOptimize(r);
      });
    });
    reg(std::string(p.name) + "_vjp", s4, n4, 2 * V, threads, [p] {
      struct st {
        vfield<Dim> u = db::to_vector_field<B>(w4_u<Dim>()), gu{u.ext()};
      };
      auto s = std::make_shared<st>();
      return call_t([s, p] { p.vjp(B{}, diffeo::as_const(s->u.view()), s->gu.view()); });
    });
  }

  // ---- smoothing --------------------------------------------------------------------------
  // smooth_vjp (grad_out = W4 u, σ = 1.5 voxels, border): reads grad_out, writes grad_in:
  // 2 V (16 / 24 B).
  reg("smooth_vjp", s4, n4, 2 * V, threads, [] {
    struct st {
      vfield<Dim> g = db::to_vector_field<B>(w4_u<Dim>()), gi{g.ext()};
    };
    auto s = std::make_shared<st>();
    return call_t([s] {
      diffeo::smooth_vjp(B{}, s->g.view(), s->gi.view(), diffeo::gaussian_kernel<Dim>(smooth_sigma),
                         diffeo::boundary::border{});
    });
  });

  // smooth in place (W4 u, σ = 1.5 voxels, border; bench_field's S1 is out of place): reads
  // and writes the field, 2 V (16 / 24 B). Each call smooths the last call's output.
  reg("smooth_in_place", s4, n4, 2 * V, threads, [] {
    struct st {
      vfield<Dim> u = db::to_vector_field<B>(w4_u<Dim>());
    };
    auto s = std::make_shared<st>();
    return call_t([s] {
      diffeo::smooth(B{}, s->u.view(), s->u.view(), diffeo::gaussian_kernel<Dim>(smooth_sigma),
                     diffeo::boundary::border{});
    });
  });

  // ---- pyramid (fine = W4 u, coarse = its downsampled extents; σ = 1, reflection) -------
  // Items = output points. Bytes per output point = (fine points + coarse points) · V /
  // output points: downsample and upsample_vjp (coarse out) read 2^Dim fine vectors and
  // write one: (2^Dim + 1) V (40 / 108 B); upsample and downsample_vjp (fine out) read
  // 2^-Dim coarse vectors and write one: (1 + 2^-Dim) V (10 / 13.5 B).
  const auto ec = diffeo::downsampled_extents(e4);
  const double nc = double(ec.count());
  const double to_coarse = (n4 + nc) * V / nc, to_fine = (n4 + nc) * V / n4;
  reg("downsample", s4, nc, to_coarse, threads, [] {
    struct st {
      vfield<Dim> f = db::to_vector_field<B>(w4_u<Dim>()), c{diffeo::downsampled_extents(f.ext())};
    };
    auto s = std::make_shared<st>();
    return call_t([s] { diffeo::downsample(B{}, s->f.view(), s->c.view()); });
  });
  reg("downsample_vjp", s4, n4, to_fine, threads, [] {
    struct st {
      vfield<Dim> gf{w4_u<Dim>().ext}, gc{diffeo::downsampled_extents(gf.ext())};
    };
    auto s = std::make_shared<st>();
    diffeo::downsample(B{}, db::to_vector_field<B>(w4_u<Dim>()).view(), s->gc.view());
    return call_t([s] { diffeo::downsample_vjp(B{}, s->gc.view(), s->gf.view()); });
  });
  reg("upsample", s4, n4, to_fine, threads, [] {
    struct st {
      vfield<Dim> f{w4_u<Dim>().ext}, c{diffeo::downsampled_extents(f.ext())};
    };
    auto s = std::make_shared<st>();
    diffeo::downsample(B{}, db::to_vector_field<B>(w4_u<Dim>()).view(), s->c.view());
    return call_t([s] { diffeo::upsample(B{}, s->c.view(), s->f.view()); });
  });
  reg("upsample_vjp", s4, nc, to_coarse, threads, [] {
    struct st {
      vfield<Dim> gf = db::to_vector_field<B>(w4_u<Dim>()), gc{diffeo::downsampled_extents(gf.ext())};
    };
    auto s = std::make_shared<st>();
    return call_t([s] { diffeo::upsample_vjp(B{}, s->gf.view(), s->gc.view()); });
  });

  // ---- affine (W4 grid; map: small rotation / scaling about the centre, plus a shift) ---
  // affine_field: writes u: V (8 / 12 B).
  reg("affine_field", s4, n4, V, threads, [] {
    auto u = std::make_shared<vfield<Dim>>(w4_u<Dim>().ext);
    const auto m = test_map<Dim>(u->ext());
    return call_t([u, m] { diffeo::affine_field(B{}, m, u->view()); });
  });
  // affine_field_vjp (grad_u = W4 u; a reduction): reads grad_u: V (8 / 12 B).
  reg("affine_field_vjp", s4, n4, V, threads, [] {
    auto g = std::make_shared<vfield<Dim>>(db::to_vector_field<B>(w4_u<Dim>()));
    const auto m = test_map<Dim>(g->ext());
    return call_t([g, m] {
      const auto r = diffeo::affine_field_vjp(B{}, m, g->view());
      benchmark::DoNotOptimize(r);
    });
  });
  // affine_fit (unweighted, u = W4 u, centre = grid centre; a reduction plus a host
  // Cholesky): reads u: V (8 / 12 B).
  reg("affine_fit", s4, n4, V, threads, [] {
    auto u = std::make_shared<vfield<Dim>>(db::to_vector_field<B>(w4_u<Dim>()));
    const auto c = test_map<Dim>(u->ext()).centre;
    return call_t([u, c] {
      const auto m = diffeo::affine_fit(B{}, u->view(), c);
      benchmark::DoNotOptimize(m);
    });
  });
  // affine_fit_vjp (unweighted): writes grad_u: V (8 / 12 B).
  reg("affine_fit_vjp", s4, n4, V, threads, [] {
    auto gu = std::make_shared<vfield<Dim>>(w4_u<Dim>().ext);
    const auto m = test_map<Dim>(gu->ext());
    diffeo::affine_gradient<Dim> g;
    g.A = m.A, g.t = m.t;
    return call_t([gu, g, c = m.centre] { diffeo::affine_fit_vjp(B{}, g, gu->view(), c); });
  });
}

#endif  // DIFFEO_ENABLE_TBB

}  // namespace

int main(int argc, char** argv) {
  const auto threads = db::thread_counts();
  db::stream::register_floor(256, 1, threads);  // DRAM: the floor of the summary
#if defined(DIFFEO_ENABLE_TBB)
  register_dim<2>(threads);
  register_dim<3>(threads);
#else
  db::registry::get().notes.push_back("the tbb backend is off in this build: no field op ran");
#endif
  return db::run_main(argc, argv);
}
