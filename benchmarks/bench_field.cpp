// Field ops on the standard workloads: W2 compose, W3 exp (scaling and squaring, N = 7), W4
// Jacobian determinant, and Gaussian smoothing, on diffeo's backends, next to the STREAM
// floor measured in the same binary and, when found at configure time, ITK's filters on the
// very same inputs. See docs/benchmarks.md.
//
//   bench_field --benchmark_min_time=0.2           # all, then the summary table
//   THREADS=1 bench_field --benchmark_filter=W4    # one workload, one thread count
//
// Each op is compiled in only when its header exists (the field/ layer is young); a
// missing one is listed in the summary's notes.

#include <sstream>

#include "workloads.hpp"

#if __has_include(<diffeo/field/compose.hpp>)
#  include <diffeo/field/compose.hpp>
#  define DIFFEO_BENCH_COMPOSE 1
#endif
#if __has_include(<diffeo/field/exp.hpp>)
#  include <diffeo/field/exp.hpp>
#  define DIFFEO_BENCH_EXP 1
#endif
#if __has_include(<diffeo/field/jacobian.hpp>)
#  include <diffeo/field/jacobian.hpp>
#  define DIFFEO_BENCH_JACOBIAN 1
#endif
#if __has_include(<diffeo/field/smooth.hpp>)
#  include <diffeo/field/smooth.hpp>
#  define DIFFEO_BENCH_SMOOTH 1
#endif

#if defined(DIFFEO_BENCH_HAVE_ITK)
#  include <itkComposeDisplacementFieldsImageFilter.h>
#  include <itkDiscreteGaussianImageFilter.h>
#  include <itkDisplacementFieldJacobianDeterminantFilter.h>
#  include <itkExponentialDisplacementFieldImageFilter.h>
#endif

namespace db = diffeo_bench;
using diffeo::index_t;

namespace {

// ---- references (float64, by the WORKLOADS.md definitions) ------------------------------------

/// W2: w(p) = v(p) + u(p + v(p)), u sampled linearly with zeros outside. Inputs as float
/// buffers; accumulates in float64 and returns float64.
template <int Dim>
std::vector<double> compose_ref(const diffeo::extents<Dim>& ext, const std::vector<double>& u,
                                const std::vector<double>& v) {
  std::vector<double> w(v.size());
  double s[Dim], q[Dim];
  for (index_t p = 0; p < ext.count(); ++p) {
    const auto g = ext.unravel(p);
    for (int a = 0; a < Dim; ++a) q[a] = double(g[a]) + v[p * Dim + a];
    db::lerp_zeros(ext, Dim, u.data(), q, s);
    for (int a = 0; a < Dim; ++a) w[p * Dim + a] = v[p * Dim + a] + s[a];
  }
  return w;
}

template <int Dim>
std::vector<double> as_double(const db::raw<Dim>& r) {
  return std::vector<double>(r.data.begin(), r.data.end());
}
template <int Dim>
db::raw<Dim> as_raw(const diffeo::extents<Dim>& ext, int k, const std::vector<double>& d) {
  db::raw<Dim> r{ext, k, std::vector<float>(d.size())};
  for (std::size_t i = 0; i < d.size(); ++i) r.data[i] = static_cast<float>(d[i]);
  return r;
}

/// W3: w = v / 2^7, then 7 times w <- compose(w, w).
template <int Dim>
db::raw<Dim> exp_ref(const db::raw<Dim>& v, int n) {
  std::vector<double> w = as_double(v);
  for (double& x : w) x = std::ldexp(x, -n);
  for (int k = 0; k < n; ++k) w = compose_ref<Dim>(v.ext, w, w);
  return as_raw<Dim>(v.ext, Dim, w);
}

/// W4: det(I + Du), central differences inside, first-order one-sided on the border voxels.
template <int Dim>
db::raw<Dim> jacdet_ref(const db::raw<Dim>& u) {
  const auto& e = u.ext;
  db::raw<Dim> out{e, 1, std::vector<float>(static_cast<std::size_t>(e.count()))};
  for (index_t p = 0; p < e.count(); ++p) {
    const auto g = e.unravel(p);
    double J[3][3] = {};
    for (int j = 0; j < Dim; ++j) {  // derivative along axis j
      auto lo = g, hi = g;
      double h = 2;
      if (e[j] == 1) continue;
      if (g[j] == 0) {
        hi[j] = 1, h = 1;
      } else if (g[j] == e[j] - 1) {
        lo[j] = e[j] - 2, h = 1;
      } else {
        lo[j] -= 1, hi[j] += 1;
      }
      for (int i = 0; i < Dim; ++i)
        J[i][j] = (double(u.data[e.linear(hi) * Dim + i]) - double(u.data[e.linear(lo) * Dim + i])) / h;
    }
    for (int i = 0; i < Dim; ++i) J[i][i] += 1;
    double d;
    if constexpr (Dim == 2)
      d = J[0][0] * J[1][1] - J[0][1] * J[1][0];
    else
      d = J[0][0] * (J[1][1] * J[2][2] - J[1][2] * J[2][1]) -
          J[0][1] * (J[1][0] * J[2][2] - J[1][2] * J[2][0]) +
          J[0][2] * (J[1][0] * J[2][1] - J[1][1] * J[2][0]);
    out.data[p] = static_cast<float>(d);
  }
  return out;
}

// ---- the ops: inputs, references, masks ---------------------------------------------------------

enum class op { compose, exp, jacdet, smooth };

constexpr int exp_n = 7;
constexpr double smooth_sigma = 1.5;  // voxels (W8's SetStandardDeviations(1.5))

template <int Dim>
const db::raw<Dim>& input_a(op o) {  // u (compose), v (exp), u (jacdet, smooth)
  if constexpr (Dim == 2) {
    switch (o) {
      case op::compose: return db::inputs::w2_u2d();
      case op::exp: return db::inputs::w3_v2d();
      default: return db::inputs::w4_u2d();
    }
  } else {
    switch (o) {
      case op::compose: return db::inputs::w2_u3d();
      case op::exp: return db::inputs::w3_v3d();
      default: return db::inputs::w4_u3d();
    }
  }
}
template <int Dim>
const db::raw<Dim>& input_v() {  // the warping field of compose
  if constexpr (Dim == 2)
    return db::inputs::w2_v2d();
  else
    return db::inputs::w2_v3d();
}

/// The reference output of `o` by its definition (cached).
template <int Dim>
const db::raw<Dim>& reference(op o) {
  static std::map<int, db::raw<Dim>> cache;
  auto it = cache.find(int(o));
  if (it != cache.end()) return it->second;
  db::raw<Dim> r;
  switch (o) {
    case op::compose:
      r = as_raw<Dim>(input_a<Dim>(o).ext, Dim,
                      compose_ref<Dim>(input_a<Dim>(o).ext, as_double(input_a<Dim>(o)),
                                       as_double(input_v<Dim>())));
      break;
    case op::exp: r = exp_ref(input_a<Dim>(o), exp_n); break;
    case op::jacdet: r = jacdet_ref(input_a<Dim>(o)); break;
    case op::smooth: break;  // checked against the serial backend and ITK only
  }
  return cache.emplace(int(o), std::move(r)).first->second;
}

/// The mask of WORKLOADS.md "Checks" for a peer comparison of `o`.
template <int Dim>
std::pair<std::string, std::vector<char>> peer_mask(op o) {
  const auto& e = input_a<Dim>(o).ext;
  switch (o) {
    case op::compose: return {"interior (p+v in [0,n-1])", db::interior_mask(input_v<Dim>())};
    case op::exp:
      return {std::to_string(Dim == 2 ? 10 : 6) + "-voxel margin",
              db::margin_mask(e, Dim == 2 ? 10 : 6)};
    case op::jacdet: return {"all but the 1-voxel border", db::margin_mask(e, 1)};
    case op::smooth:
      // ITK's discrete Gaussian is not the sampled one; compare away from the border.
      return {"8-voxel margin", db::margin_mask(e, 8)};
  }
  return {};
}

// ---- diffeo -----------------------------------------------------------------------------------

/// The inputs, outputs and call of op `o` on backend `B`. `call` is empty when the op's
/// header is missing.
template <class B, int Dim>
struct op_runner {
  op o;
  const db::raw<Dim>& a;
  diffeo::vector_field<float, Dim, B> fa, fv, out, scratch;
  diffeo::image<float, Dim, B> det;
  std::function<void()> call;

  explicit op_runner(op which)
      : o(which), a(input_a<Dim>(which)), fa(db::to_vector_field<B>(a)), out(a.ext) {
    switch (o) {
      case op::compose:
#if defined(DIFFEO_BENCH_COMPOSE)
        fv = db::to_vector_field<B>(input_v<Dim>());
        call = [this] {
          diffeo::compose(B{}, fa.view(), fv.view(), out.view(), diffeo::boundary::zeros{});
        };
#endif
        break;
      case op::exp:
#if defined(DIFFEO_BENCH_EXP)
        scratch = diffeo::vector_field<float, Dim, B>(a.ext);
        call = [this] {
          diffeo::exp_options opts;
          opts.squarings = exp_n;
          diffeo::exp(B{}, fa.view(), out.view(), scratch.view(), opts,
                      diffeo::boundary::zeros{});
        };
#endif
        break;
      case op::jacdet:
#if defined(DIFFEO_BENCH_JACOBIAN)
        det = diffeo::image<float, Dim, B>(a.ext);
        call = [this] { diffeo::jacobian_det(B{}, fa.view(), det.view()); };
#endif
        break;
      case op::smooth:
#if defined(DIFFEO_BENCH_SMOOTH)
        call = [this] {
          diffeo::smooth(B{}, fa.view(), out.view(), diffeo::gaussian_kernel<Dim>(smooth_sigma),
                         diffeo::boundary::border{});
        };
#endif
        break;
    }
  }
  op_runner(const op_runner&) = delete;
  op_runner& operator=(const op_runner&) = delete;

  db::raw<Dim> result() const { return o == op::jacdet ? db::to_raw(det) : db::to_raw(out); }
};

/// diffeo's result on the serial backend: what the peers are checked against (cached).
template <int Dim>
const db::raw<Dim>* serial_output(op o) {
  static std::map<int, db::raw<Dim>> cache;
  auto it = cache.find(int(o));
  if (it == cache.end()) {
    op_runner<diffeo::backend::serial, Dim> r(o);
    if (!r.call) return nullptr;
    r.call();
    it = cache.emplace(int(o), r.result()).first;
  }
  return &it->second;
}

template <int Dim>
void check_peer(op o, const std::string& impl, const std::string& workload,
                const db::raw<Dim>& out, double tol) {
  const std::string what = impl + " vs diffeo (" + workload + ")";
  if (db::has_check(what)) return;
  const db::raw<Dim>* ref = serial_output<Dim>(o);
  if (!ref) return;  // no diffeo op to compare with
  auto [name, mask] = peer_mask<Dim>(o);
  db::record_check(
      db::compare(what, name, out, *ref, tol, [&](index_t p) { return mask[p] != 0; }));
}

template <class B, int Dim>
void bm_diffeo(benchmark::State& st, op o, int threads, double bytes, const std::string& impl,
               const std::string& workload) {
  db::thread_limit limit(threads);
  op_runner<B, Dim> r(o);
  if (!r.call) {
    st.SkipWithError("op not available in this build");
    return;
  }
  auto timed = [&] {
    r.call();
    diffeo::synchronize(B{});
  };
  timed();  // warm-up
  const double secs = db::timed_loop(st, timed);
  db::set_counters(st, double(r.a.points()), bytes, secs);

  const std::string what = impl + " vs definition (" + workload + ")";
  if (o != op::smooth && !db::has_check(what)) {
    // compose / exp: float positions (see position_tolerance; exp: the result's size after
    // 7 passes, doubled); jacdet: float rounding of one stencil.
    const double n = double(r.a.ext[0]);
    const double tol = o == op::jacdet  ? 1e-5
                       : o == op::exp   ? 2 * db::position_tolerance(db::max_abs(reference<Dim>(o)), n)
                                        : db::position_tolerance(db::max_abs(r.a), n);
    db::record_check(db::compare(what, "all", r.result(), reference<Dim>(o), tol,
                                 [](index_t) { return true; }));
  }
  if (o == op::smooth && !std::is_same_v<B, diffeo::backend::serial>) {
    const std::string vs = impl + " vs diffeo_serial (" + workload + ")";
    if (!db::has_check(vs))
      if (const auto* ref = serial_output<Dim>(o))
        db::record_check(db::compare(vs, "all", r.result(), *ref, 1e-6,
                                     [](index_t) { return true; }));
  }
}

// ---- ITK --------------------------------------------------------------------------------------

#if defined(DIFFEO_BENCH_HAVE_ITK)
template <int Dim>
void bm_itk(benchmark::State& st, op o, int threads, double bytes, const std::string& impl,
            const std::string& workload) {
  namespace ip = db::itk_peer;
  using field_t = ip::field_t<Dim>;
  using scalar_t = itk::Image<float, Dim>;
  db::thread_limit limit(threads);
  ip::set_global_threads(threads);
  const auto& a = input_a<Dim>(o);
  auto fa = ip::make_image<field_t, Dim>(a);
  typename field_t::Pointer fv;
  itk::ProcessObject::Pointer filter;
  std::function<db::raw<Dim>()> output;
  switch (o) {
    case op::compose: {
      using F = itk::ComposeDisplacementFieldsImageFilter<field_t, field_t>;
      fv = ip::make_image<field_t, Dim>(input_v<Dim>());
      auto f = F::New();
      f->SetDisplacementField(fa);
      f->SetWarpingField(fv);
      filter = f;
      output = [f, &a] { return ip::to_raw<field_t, Dim>(f->GetOutput(), a.ext, Dim); };
      break;
    }
    case op::exp: {
      using F = itk::ExponentialDisplacementFieldImageFilter<field_t, field_t>;
      auto f = F::New();
      f->SetInput(fa);
      f->AutomaticNumberOfIterationsOff();
      f->SetMaximumNumberOfIterations(exp_n);
      f->ComputeInverseOff();
      filter = f;
      output = [f, &a] { return ip::to_raw<field_t, Dim>(f->GetOutput(), a.ext, Dim); };
      break;
    }
    case op::jacdet: {
      using F = itk::DisplacementFieldJacobianDeterminantFilter<field_t, float, scalar_t>;
      auto f = F::New();
      f->SetInput(fa);
      f->SetUseImageSpacing(true);
      filter = f;
      output = [f, &a] { return ip::to_raw<scalar_t, Dim>(f->GetOutput(), a.ext, 1); };
      break;
    }
    case op::smooth: {
      using F = itk::DiscreteGaussianImageFilter<field_t, field_t>;
      auto f = F::New();
      f->SetInput(fa);
      f->SetVariance(smooth_sigma * smooth_sigma);
      f->SetUseImageSpacing(false);
      f->SetMaximumKernelWidth(64);
      filter = f;
      output = [f, &a] { return ip::to_raw<field_t, Dim>(f->GetOutput(), a.ext, Dim); };
      break;
    }
  }
  ip::set_filter_threads(filter, threads);
  filter->Update();  // warm-up
  const double secs = db::timed_loop(st, [&] {
    filter->Modified();
    filter->Update();
  });
  db::set_counters(st, double(a.points()), bytes, secs);
  // ITK's interpolators replicate the edge within half a voxel outside and differ from
  // the zeros rule there; the masks keep those points out. Smoothing: ITK's discrete
  // Gaussian kernel (Lindeberg's, error-bounded) is not the sampled, truncated one.
  check_peer<Dim>(o, impl, workload, output(), o == op::smooth ? 2e-2 : 1e-4);
}
#endif

// ---- registration -----------------------------------------------------------------------------

struct op_case {
  op o;
  const char* workload_id;  // "W2"
  const char* op_name;      // "compose"
  const char* itk_name;     // "itk_compose"
  bool available;
};

template <int Dim>
void register_op(const op_case& c, const std::string& size, double bytes,
                 const std::vector<int>& threads) {
  const std::string workload = std::string(c.workload_id) + " " + c.op_name + " " + size;
  const double elems = double(input_a<Dim>(c.o).points());
  auto name = [&](const std::string& impl, int t) {
    return std::string(c.workload_id) + "_" + c.op_name + "/" + size + "/" + impl +
           "/threads:" + std::to_string(t);
  };
  auto meta = [&](const std::string& impl, int t, bool diffeo) {
    return db::bench_meta{workload, impl, t, elems, bytes, diffeo, !diffeo};
  };
  const op o = c.o;
  if (c.available) {
    db::add(name("diffeo_serial", 1), meta("diffeo_serial", 1, true), [=](benchmark::State& st) {
      bm_diffeo<diffeo::backend::serial, Dim>(st, o, 1, bytes, "diffeo_serial", workload);
    });
    for (int t : threads) {
      (void)t;  // unused when neither tbb nor thrust is enabled
#if defined(DIFFEO_ENABLE_TBB)
      db::add(name("diffeo_tbb", t), meta("diffeo_tbb", t, true), [=](benchmark::State& st) {
        bm_diffeo<diffeo::backend::tbb, Dim>(st, o, t, bytes, "diffeo_tbb", workload);
      });
#endif
#if defined(DIFFEO_ENABLE_THRUST)
      db::add(name("diffeo_thrust", t), meta("diffeo_thrust", t, true), [=](benchmark::State& st) {
        bm_diffeo<diffeo::backend::thrust, Dim>(st, o, t, bytes, "diffeo_thrust", workload);
      });
#endif
    }
  } else {
    db::registry::get().notes.push_back(std::string("TODO: ") + c.op_name +
                                        ": its diffeo/field header is missing; only the peer ran");
  }
#if defined(DIFFEO_BENCH_HAVE_ITK)
  for (int t : threads) {
    const std::string impl = c.itk_name;
    db::add(name(impl, t), meta(impl, t, false),
            [=](benchmark::State& st) { bm_itk<Dim>(st, o, t, bytes, impl, workload); });
  }
#endif
}

#if defined(DIFFEO_BENCH_COMPOSE)
constexpr bool have_compose = true;
#else
constexpr bool have_compose = false;
#endif
#if defined(DIFFEO_BENCH_EXP)
constexpr bool have_exp = true;
#else
constexpr bool have_exp = false;
#endif
#if defined(DIFFEO_BENCH_JACOBIAN)
constexpr bool have_jacobian = true;
#else
constexpr bool have_jacobian = false;
#endif
#if defined(DIFFEO_BENCH_SMOOTH)
constexpr bool have_smooth = true;
#else
constexpr bool have_smooth = false;
#endif

}  // namespace

int main(int argc, char** argv) {
  const auto threads = db::thread_counts();
  db::stream::register_floor(256, 1, threads);  // DRAM: the floor
  db::stream::register_floor(4, 64, threads);   // cache-resident, for reference
  // Bytes per output element: WORKLOADS.md "Bandwidth floor". W3 counts 8 passes (scaling +
  // 7 squarings) of read + write one field; diffeo fuses the scaling into the first squaring.
  const op_case compose{op::compose, "W2", "compose", "itk_compose", have_compose};
  const op_case exp{op::exp, "W3", "exp", "itk_exp", have_exp};
  const op_case jac{op::jacdet, "W4", "jacdet", "itk_jacdet", have_jacobian};
  // Not a WORKLOADS.md workload: Gaussian smoothing of w4_u2d / w4_u3d, sigma = 1.5 voxels,
  // edge replication (ITK: DiscreteGaussianImageFilter, zero-flux Neumann); floor = read +
  // write the field once.
  const op_case smooth{op::smooth, "S1", "smooth", "itk_discrete_gaussian", have_smooth};
  register_op<2>(compose, "2d_1024x1024", 24, threads);
  register_op<3>(compose, "3d_128", 36, threads);
  register_op<2>(exp, "2d_512x512", 128, threads);
  register_op<3>(exp, "3d_128", 192, threads);
  register_op<2>(jac, "2d_1024x1024", 12, threads);
  register_op<3>(jac, "3d_128", 16, threads);
  register_op<2>(smooth, "2d_1024x1024", 16, threads);
  register_op<3>(smooth, "3d_128", 24, threads);
  return db::run_main(argc, argv);
}
