// W5 of WORKLOADS.md: the flow of a stationary velocity field du/dt = v(p + u(p)) on
// w5_v2d (256x256, A = 4, s = 5), t from 0 to 1, bilinear with zeros outside:
//   * classical RK4, 8 steps (32 evaluations), and Dormand-Prince at rtol = atol = 1e-5;
//   * the same with Boost.odeint (runge_kutta4 and controlled runge_kutta_dopri5 on
//     std::vector<float>, dt0 = 0.1) and the same bilinear right-hand side, written as a
//     plain per-point loop over diffeo::sample (odeint_rk4, odeint_dopri5) and, to isolate
//     the steppers, as a call of diffeo's own warp (odeint_rk4_warp);
//   * gradients through the flow (backprop and adjoint) and dense-output frames;
//   * stepper overhead per step on a tiny state (Lorenz, 3 doubles) against a hand-written
//     RK4 loop and odeint.
//   bench_ode                                   # all, THREADS=1,2
//   THREADS=1 bench_ode --benchmark_filter=W5/  # W5 on one thread

#include <diffeo/ode.hpp>

#include <boost/numeric/odeint.hpp>

#include <array>
#include <string>
#include <vector>

#include "workloads.hpp"

namespace {

namespace db = diffeo_bench;
namespace dode = diffeo::ode;
namespace odeint = boost::numeric::odeint;
using diffeo::index_t;
using diffeo::vec2f;

constexpr double w5_points = 256.0 * 256.0;

const db::raw<2>& w5_v2d() {
  static const db::raw<2> r = db::make_field2d(256, 256, 4, 5);
  return r;
}

/// Final displacements of each implementation, for the output checks.
std::map<std::string, db::raw<2>>& results() {
  static std::map<std::string, db::raw<2>> r;
  return r;
}

/// The flow to t = 1 by RK4 with 256 steps in double precision: the accuracy reference.
const db::raw<2>& reference() {
  static const db::raw<2> r = [] {
    using F = diffeo::vector_field<double, 2, diffeo::backend::serial>;
    const auto vf = db::to_vector_field<diffeo::backend::serial>(w5_v2d());
    F v(vf.geometry()), u(vf.geometry());
    for (index_t i = 0; i < v.points(); ++i) v[i] = vf[i].cast<double>();
    dode::integrate_n_steps(dode::rk4<F>{}, dode::svf_flow<double, 2, diffeo::backend::serial>(v),
                            u, 0.0, 1.0 / 256, 256);
    db::raw<2> out{u.ext(), 2, std::vector<float>(std::size_t(2 * u.points()))};
    for (index_t i = 0; i < u.points(); ++i)
      for (int c = 0; c < 2; ++c) out.data[std::size_t(2 * i + c)] = float(u[i][c]);
    return out;
  }();
  return r;
}

void check_against(const std::string& impl, const std::string& ref, double tol) {
  auto& r = results();
  if (ref == "reference" && !r.count(ref)) r[ref] = reference();
  if (!r.count(impl) || !r.count(ref) || db::has_check(impl + " vs " + ref)) return;
  const auto mask = db::margin_mask(r[ref].ext, 6);
  db::record_check(db::compare(impl + " vs " + ref, "6-voxel margin", r[impl], r[ref], tol,
                               [&](index_t p) { return mask[p] != 0; }));
}

// ---- diffeo ------------------------------------------------------------------------------

template <class B>
struct w5_setup {
  using F = diffeo::vector_field<float, 2, B>;
  F v = db::to_vector_field<B>(w5_v2d());
  dode::svf_flow<float, 2, B> flow{v};
  F u{v.geometry()};
};

template <class B>
void bm_diffeo_rk4(benchmark::State& st, int threads, const std::string& impl) {
  db::thread_limit limit(threads);
  w5_setup<B> w;
  dode::rk4<typename w5_setup<B>::F> stepper;
  dode::integrate_stats s;
  auto call = [&] {
    w.u.fill(vec2f{});
    s = dode::integrate_n_steps(stepper, w.flow, w.u, 0.0, 0.125, 8);
    diffeo::synchronize(B{});
  };
  call();
  results()[impl + "_rk4"] = db::to_raw(w.u);
  const double secs = db::timed_loop(st, call);
  db::set_counters(st, w5_points, 24.0 * double(s.rhs_evals), secs);
  st.counters["rhs_evals"] = double(s.rhs_evals);
  check_against(impl + "_rk4", "odeint_rk4", 1e-4);
  check_against(impl + "_rk4", "reference", 1e-3);
}

template <class B>
void bm_diffeo_dopri5(benchmark::State& st, int threads, const std::string& impl,
                      dode::norm_kind norm, double dt0) {
  db::thread_limit limit(threads);
  w5_setup<B> w;
  auto stepper = dode::make_controlled(1e-5, 1e-5, dode::dopri5<typename w5_setup<B>::F>{}, norm);
  dode::integrate_stats s;
  auto call = [&] {
    w.u.fill(vec2f{});
    s = dode::integrate_adaptive(stepper, w.flow, w.u, 0.0, 1.0, dode::adaptive_options{dt0});
    diffeo::synchronize(B{});
  };
  call();
  results()[impl + "_dopri5"] = db::to_raw(w.u);
  const double secs = db::timed_loop(st, call);
  db::set_counters(st, w5_points, 24.0 * double(s.rhs_evals), secs);
  st.counters["rhs_evals"] = double(s.rhs_evals);
  st.counters["accepted"] = double(s.accepted);
  st.counters["rejected"] = double(s.rejected);
  // Accuracy reached (voxels), against RK4 with 256 steps in double.
  check_against(impl + "_dopri5", "reference", 1e-3);
}

/// One solve kept with its dense output, then 60 frames Φ_t at evenly spaced t.
template <class B>
void bm_diffeo_frames(benchmark::State& st, int threads, bool solve) {
  db::thread_limit limit(threads);
  w5_setup<B> w;
  using F = typename w5_setup<B>::F;
  auto make = [&] {
    return dode::integrate_dense(dode::make_dense_output(1e-5, 1e-5, dode::dopri5<F>{}), w.flow,
                                 w.u, 0.0, 1.0, dode::adaptive_options{0.1});
  };
  auto sol = make();
  F frame;
  auto call = [&] {
    if (solve) {
      sol = make();
    } else {
      for (int k = 0; k < 60; ++k) sol(k / 59.0, frame);
    }
    diffeo::synchronize(B{});
  };
  const double secs = db::timed_loop(st, call);
  db::set_counters(st, w5_points, 0, secs);
  st.counters["steps"] = double(sol.steps());
  st.counters["MiB_stored"] = double(sol.memory_bytes()) / (1 << 20);
  st.counters["rhs_evals"] = double(sol.stats().rhs_evals);
}

/// ∂L/∂u0 (and ∂L/∂v) of L = <w, u(1)> (w = v), forward solve included.
template <class B>
void bm_diffeo_gradient(benchmark::State& st, int threads, int method) {
  db::thread_limit limit(threads);
  w5_setup<B> w;
  using F = typename w5_setup<B>::F;
  F g_u0, g_v, u0(w.v.geometry());
  dode::gradient_stats gs;
  std::size_t stored = 0, fwd_evals = 0;
  auto call = [&] {
    w.u.fill(vec2f{});
    // Methods 0-2 give ∂L/∂u0 and ∂L/∂v; 3 and 4 only ∂L/∂u0 (no scatter into v).
    F* g_theta = method <= 2 ? &g_v : nullptr;
    if (method == 0 || method == 3) {  // backprop through 8 RK4 steps
      dode::trajectory<F> tape;
      fwd_evals = dode::integrate_n_steps(dode::rk4<F>{}, w.flow, w.u, 0.0, 0.125, 8, tape).rhs_evals;
      gs = dode::backprop(dode::rk4<F>{}, w.flow, tape, w.v, g_u0, g_theta);
      stored = tape.memory_bytes();
    } else if (method == 1 || method == 4) {  // adjoint with 8 RK4 steps
      fwd_evals = dode::integrate_n_steps(dode::rk4<F>{}, w.flow, w.u, 0.0, 0.125, 8).rhs_evals;
      gs = dode::adjoint_const<dode::rk4_tableau>(w.flow, w.u, w.v, 0.0, 1.0, 0.125, g_u0,
                                                  g_theta);
    } else {  // adaptive: DOPRI5 forward, adaptive adjoint, both at 1e-5
      fwd_evals = dode::integrate_adaptive(dode::make_controlled(1e-5, 1e-5, dode::dopri5<F>{}),
                                           w.flow, w.u, 0.0, 1.0, dode::adaptive_options{0.1})
                      .rhs_evals;
      gs = dode::adjoint_adaptive<dode::dopri5_tableau>(w.flow, w.u, w.v, 0.0, 1.0,
                                                        dode::tolerance{1e-5, 1e-5}, g_u0, &g_v,
                                                        dode::adaptive_options{0.1});
    }
    diffeo::synchronize(B{});
  };
  call();
  const double secs = db::timed_loop(st, call);
  db::set_counters(st, w5_points, 0, secs);
  st.counters["fwd_evals"] = double(fwd_evals);
  st.counters["bwd_evals"] = double(gs.rhs_evals);
  st.counters["vjps"] = double(gs.vjp_evals);
  st.counters["MiB_tape"] = double(stored) / (1 << 20);
  st.counters["MiB_workspace"] = double(gs.workspace_bytes) / (1 << 20);
}

// ---- Boost.odeint on std::vector<float>, the same bilinear right-hand side ----------------

using vstate = std::vector<float>;

/// du/dt = v(p + u(p)) for an interleaved (x, y) buffer: the per-point body of diffeo's
/// warp kernel (sample, linear, zeros), in a plain serial loop.
struct odeint_svf_rhs {
  diffeo::field_view<const vec2f, 2> v;
  std::size_t* evals;
  void operator()(const vstate& u, vstate& d, float) const {
    ++*evals;
    const index_t nx = v.ext[0], ny = v.ext[1];
    for (index_t y = 0; y < ny; ++y)
      for (index_t x = 0; x < nx; ++x) {
        const index_t i = y * nx + x;
        const vec2f q{{float(x) + u[2 * i], float(y) + u[2 * i + 1]}};
        const vec2f s = diffeo::sample(v, q, diffeo::interp::linear{}, diffeo::boundary::zeros{});
        d[2 * i] = s[0];
        d[2 * i + 1] = s[1];
      }
  }
};

/// The same right-hand side through diffeo's own warp (serial) on odeint's buffers: odeint's
/// stepping and algebra around diffeo's fastest sampling, to isolate the stepper.
struct odeint_warp_rhs {
  diffeo::field_view<const float, 2> v;  // v as a 2-channel float image
  std::size_t* evals;
  void operator()(const vstate& u, vstate& d, float) const {
    ++*evals;
    const auto uv = diffeo::make_view(reinterpret_cast<const vec2f*>(u.data()), v.ext);
    const auto dv = diffeo::make_view(d.data(), v.ext, 2);
    diffeo::warp(diffeo::backend::serial{}, v, uv, dv, diffeo::interp::linear{},
                 diffeo::boundary::zeros{});
  }
};

db::raw<2> to_raw(const vstate& u) {
  return db::raw<2>{w5_v2d().ext, 2, u};
}

void bm_odeint_rk4(benchmark::State& st) {
  const auto v = db::to_vector_field<diffeo::backend::serial>(w5_v2d());
  std::size_t evals = 0;
  odeint_svf_rhs rhs{v.view(), &evals};
  odeint::runge_kutta4<vstate, float, vstate, float> stepper;
  vstate u(std::size_t(2 * w5_points));
  auto call = [&] {
    evals = 0;
    std::fill(u.begin(), u.end(), 0.0f);
    odeint::integrate_n_steps(stepper, rhs, u, 0.0f, 0.125f, 8);
  };
  call();
  results()["odeint_rk4"] = to_raw(u);
  check_against("odeint_rk4", "reference", 1e-3);
  const double secs = db::timed_loop(st, call);
  db::set_counters(st, w5_points, 24.0 * double(evals), secs);
  st.counters["rhs_evals"] = double(evals);
}

void bm_odeint_rk4_warp(benchmark::State& st) {
  const auto v = db::to_vector_field<diffeo::backend::serial>(w5_v2d());
  std::size_t evals = 0;
  odeint_warp_rhs rhs{diffeo::make_view(reinterpret_cast<const float*>(v.data()), v.ext(), 2),
                      &evals};
  odeint::runge_kutta4<vstate, float, vstate, float> stepper;
  vstate u(std::size_t(2 * w5_points));
  auto call = [&] {
    evals = 0;
    std::fill(u.begin(), u.end(), 0.0f);
    odeint::integrate_n_steps(stepper, rhs, u, 0.0f, 0.125f, 8);
  };
  call();
  results()["odeint_rk4_warp"] = to_raw(u);
  check_against("odeint_rk4_warp", "reference", 1e-3);
  const double secs = db::timed_loop(st, call);
  db::set_counters(st, w5_points, 24.0 * double(evals), secs);
  st.counters["rhs_evals"] = double(evals);
}

void bm_odeint_dopri5(benchmark::State& st) {
  const auto v = db::to_vector_field<diffeo::backend::serial>(w5_v2d());
  std::size_t evals = 0, steps = 0;
  odeint_svf_rhs rhs{v.view(), &evals};
  auto stepper = odeint::make_controlled(
      1e-5f, 1e-5f, odeint::runge_kutta_dopri5<vstate, float, vstate, float>());
  vstate u(std::size_t(2 * w5_points));
  auto call = [&] {
    evals = 0;
    std::fill(u.begin(), u.end(), 0.0f);
    steps = odeint::integrate_adaptive(stepper, rhs, u, 0.0f, 1.0f, 0.1f);
  };
  call();
  results()["odeint_dopri5"] = to_raw(u);
  check_against("odeint_dopri5", "reference", 1e-3);
  const double secs = db::timed_loop(st, call);
  db::set_counters(st, w5_points, 24.0 * double(evals), secs);
  st.counters["rhs_evals"] = double(evals);
  st.counters["accepted"] = double(steps);
}

// ---- tiny state: per-step overhead -------------------------------------------------------

using lstate = std::array<double, 3>;
constexpr int lorenz_steps = 1000;

struct lorenz {
  void operator()(const lstate& x, lstate& d, double) const {
    d[0] = 10.0 * (x[1] - x[0]);
    d[1] = x[0] * (28.0 - x[2]) - x[1];
    d[2] = x[0] * x[1] - 8.0 / 3.0 * x[2];
  }
};

/// Runs `run(x, h)`: the step h = 1e-3 is opaque to the compiler, as in a real program.
template <class Run>
void bm_lorenz(benchmark::State& st, Run run) {
  lstate x{10, 1, 1};
  // A volatile read (benchmark 1.7's DoNotOptimize on a double can zero it under g++).
  volatile double step = 1e-3;
  const double h = step;
  for (auto _ : st) {
    x = lstate{10, 1, 1};
    run(x, h);
    benchmark::DoNotOptimize(x);
  }
  st.SetItemsProcessed(st.iterations() * lorenz_steps);
  st.counters["ns/step"] = benchmark::Counter(double(st.iterations()) * lorenz_steps,
                                              benchmark::Counter::kIsRate |
                                                  benchmark::Counter::kInvert);
}

void bm_lorenz_diffeo(benchmark::State& st) {
  dode::rk4<lstate> stepper;
  bm_lorenz(st, [&](lstate& x, double h) {
    dode::integrate_n_steps(stepper, lorenz{}, x, 0.0, h, lorenz_steps);
  });
}

void bm_lorenz_hand(benchmark::State& st) {
  bm_lorenz(st, [](lstate& x, double h) {
    const lorenz f;
    lstate k1, k2, k3, k4, t;
    for (int n = 0; n < lorenz_steps; ++n) {
      const double tn = n * h;
      f(x, k1, tn);
      for (int i = 0; i < 3; ++i) t[i] = x[i] + 0.5 * h * k1[i];
      f(t, k2, tn + 0.5 * h);
      for (int i = 0; i < 3; ++i) t[i] = x[i] + 0.5 * h * k2[i];
      f(t, k3, tn + 0.5 * h);
      for (int i = 0; i < 3; ++i) t[i] = x[i] + h * k3[i];
      f(t, k4, tn + h);
      for (int i = 0; i < 3; ++i) x[i] += h / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
    }
  });
}

void bm_lorenz_odeint(benchmark::State& st) {
  odeint::runge_kutta4<lstate> stepper;
  bm_lorenz(st, [&](lstate& x, double h) {
    odeint::integrate_n_steps(stepper, lorenz{}, x, 0.0, h, lorenz_steps);
  });
}

// ---- registration ------------------------------------------------------------------------

db::bench_meta meta(const std::string& workload, const std::string& impl, int t, bool diffeo,
                    double bytes = 0) {
  return db::bench_meta{workload, impl, t, w5_points, bytes, diffeo, !diffeo};
}

template <class B>
void register_backend(const std::string& name, const std::vector<int>& threads) {
  for (int t : threads) {
    if (name == "diffeo_serial" && t != 1) continue;
    const std::string suffix = name + "/threads:" + std::to_string(t);
    db::add("W5/rk4_8/" + suffix, meta("W5 ode 2d_256 rk4_8", name, t, true, 24.0 * 32),
            [=](benchmark::State& st) { bm_diffeo_rk4<B>(st, t, name); });
    db::add("W5/dopri5_1e-5/" + suffix, meta("W5 ode 2d_256 dopri5_1e-5", name, t, true),
            [=](benchmark::State& st) {
              bm_diffeo_dopri5<B>(st, t, name, dode::norm_kind::rms, 0.1);
            });
    db::add("W5/dopri5_1e-5_maxnorm/" + suffix,
            meta("W5 ode 2d_256 dopri5_1e-5 (max norm)", name, t, true),
            [=](benchmark::State& st) {
              bm_diffeo_dopri5<B>(st, t, name + "_maxnorm", dode::norm_kind::max, 0.1);
            });
    db::add("W5/dopri5_1e-5_autodt0/" + suffix,
            meta("W5 ode 2d_256 dopri5_1e-5 (Hairer dt0)", name, t, true),
            [=](benchmark::State& st) {
              bm_diffeo_dopri5<B>(st, t, name + "_autodt0", dode::norm_kind::rms, 0.0);
            });
    db::add("W5/frames_solve/" + suffix, meta("W5 dense solve (dopri5 1e-5)", name, t, true),
            [=](benchmark::State& st) { bm_diffeo_frames<B>(st, t, true); });
    db::add("W5/frames_60/" + suffix, meta("W5 dense 60 frames", name, t, true),
            [=](benchmark::State& st) { bm_diffeo_frames<B>(st, t, false); });
    const char* grads[] = {"backprop_rk4_8", "adjoint_rk4_8", "adjoint_dopri5_1e-5",
                           "backprop_rk4_8_u0only", "adjoint_rk4_8_u0only"};
    for (int m = 0; m < 5; ++m)
      db::add(std::string("W5/grad_") + grads[m] + "/" + suffix,
              meta(std::string("W5 gradient ") + grads[m], name, t, true),
              [=](benchmark::State& st) { bm_diffeo_gradient<B>(st, t, m); });
  }
}

}  // namespace

int main(int argc, char** argv) {
  const auto threads = db::thread_counts();
  // Peers first: the diffeo runs check their outputs against odeint's.
  db::add("W5/rk4_8/odeint_rk4/threads:1", meta("W5 ode 2d_256 rk4_8", "odeint_rk4", 1, false),
          bm_odeint_rk4);
  db::add("W5/rk4_8/odeint_rk4_warp/threads:1",
          meta("W5 ode 2d_256 rk4_8", "odeint_rk4_warp", 1, false), bm_odeint_rk4_warp);
  db::add("W5/dopri5_1e-5/odeint_dopri5/threads:1",
          meta("W5 ode 2d_256 dopri5_1e-5", "odeint_dopri5", 1, false), bm_odeint_dopri5);
  register_backend<diffeo::backend::serial>("diffeo_serial", threads);
#if defined(DIFFEO_ENABLE_TBB)
  register_backend<diffeo::backend::tbb>("diffeo_tbb", threads);
#endif
#if defined(DIFFEO_ENABLE_THRUST)
  register_backend<diffeo::backend::thrust>("diffeo_thrust", threads);
#endif
  benchmark::RegisterBenchmark("tiny/lorenz_rk4/hand_written", bm_lorenz_hand);
  benchmark::RegisterBenchmark("tiny/lorenz_rk4/diffeo", bm_lorenz_diffeo);
  benchmark::RegisterBenchmark("tiny/lorenz_rk4/odeint", bm_lorenz_odeint);
  return db::run_main(argc, argv);
}
