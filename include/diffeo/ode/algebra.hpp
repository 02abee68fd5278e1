#pragma once
/// The state algebra of the ODE layer: the few whole-state operations a stepper needs
/// (`out = Σ a_j x_j`, scaled error norms, finiteness, inner products), each done in ONE
/// pass on the state's own backend. Steppers never loop over elements themselves.
///
/// A state is either *contiguous* (one array of scalars on one backend: a diffeo `field`
/// on any backend, an Eigen vector, `std::vector`, `std::array`, `diffeo::vec`) or
/// *composite* (a tuple of states, e.g. the augmented state of the adjoint method).
/// Support a new contiguous type by specializing `state_traits`, a composite one by
/// specializing `composite_traits` (docs/ode.md shows both).

#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../core/field.hpp"
#include "../core/vec.hpp"

/// Forces inlining of the small helpers every step goes through, so that a stepper on a
/// tiny state (3 doubles) compiles to the same straight code as a hand-written loop.
#if defined(__CUDACC__)
#  define DIFFEO_ODE_INLINE inline
#  define DIFFEO_ODE_LAMBDA_INLINE
#elif defined(_MSC_VER)
#  define DIFFEO_ODE_INLINE __forceinline
#  define DIFFEO_ODE_LAMBDA_INLINE
#elif defined(__GNUC__)
#  define DIFFEO_ODE_INLINE inline __attribute__((always_inline))
#  define DIFFEO_ODE_LAMBDA_INLINE __attribute__((always_inline))
#else
#  define DIFFEO_ODE_INLINE inline
#  define DIFFEO_ODE_LAMBDA_INLINE
#endif

namespace diffeo::ode {

/// How an error vector is normed: Hairer's root mean square (default, as DOPRI5 and
/// scipy) or the maximum over elements (as Boost.odeint).
enum class norm_kind { rms, max };

/// How a contiguous state's scalars are reached; specialize for your own containers.
/// Members: `scalar_type`, `backend_type`, `data(s)`, `size(s)` (number of scalars),
/// `same_shape(a, b)` and `resize_like(out, like)` (a no-op when the shapes agree).
template <class State, class Enable = void>
struct state_traits;

/// How a composite state splits into parts: `parts(s)` returns a tuple of references.
template <class State>
struct composite_traits;

/// A state stored as one array of scalars on one backend.
template <class S>
concept contiguous_state = requires(S& s, const S& cs) {
  typename state_traits<S>::scalar_type;
  typename state_traits<S>::backend_type;
  { state_traits<S>::data(s) } -> std::same_as<typename state_traits<S>::scalar_type*>;
  { state_traits<S>::size(cs) } -> std::convertible_to<index_t>;
};

/// A state made of several states (each contiguous or composite).
template <class S>
concept composite_state = requires(S& s, const S& cs) {
  composite_traits<S>::parts(s);
  composite_traits<S>::parts(cs);
};

/// Anything the algebra can work on.
template <class S>
concept ode_state = contiguous_state<S> || composite_state<S>;

/// The parameters of a system that has none: an empty composite state.
struct no_parameters {};

/// Gives `out` the shape of `like` (allocating only when the shapes differ).
template <ode_state State>
void resize_like(State& out, const State& like);

/// `out = Σ_j a[j] · x[j]` in one pass; `out` may alias any `x[j]`, and is sized like
/// `x[0]` first.
template <std::size_t N, ode_state State>
void scale_sum_n(State& out, const std::array<double, N>& a,
                 const std::array<const State*, N>& x);

/// `scale_sum(out, a0, x0, a1, x1, ...)`: the same with the pairs spelled out.
template <ode_state State, class... Args>
void scale_sum(State& out, const Args&... pairs);

/// `out = x` (sized like `x` first).
template <ode_state State>
void assign(State& out, const State& x);

/// Sets every scalar of `out` to zero.
template <ode_state State>
void set_zero(State& out);

/// Partial sums of a scaled norm; combine parts with `+`, finish with `finish_norm`.
struct norm_parts {
  double sum_sq = 0;  ///< Σ r_i² (NaN when any r_i is NaN)
  double max = 0;     ///< max |r_i|
  double count = 0;   ///< number of scalars
  friend norm_parts operator+(const norm_parts& a, const norm_parts& b) {
    return {a.sum_sq + b.sum_sq, (a.max > b.max || a.max != a.max) ? a.max : b.max,
            a.count + b.count};
  }
};

/// Parts of the norm of `r_i = (Σ_j c[j] x[j]_i) / (atol + rtol·max(|ref0_i|, |ref1_i|))`,
/// in one pass (double precision accumulation).
template <std::size_t N, ode_state State>
norm_parts scaled_norm_parts(const State& ref0, const State& ref1, double atol, double rtol,
                             const std::array<double, N>& c,
                             const std::array<const State*, N>& x);

/// The RMS or max norm from its parts; NaN when any element was NaN.
double finish_norm(const norm_parts& p, norm_kind kind);

/// `norm(r)` with `r` as in `scaled_norm_parts`.
template <std::size_t N, ode_state State>
double scaled_norm(norm_kind kind, const State& ref0, const State& ref1, double atol,
                   double rtol, const std::array<double, N>& c,
                   const std::array<const State*, N>& x);

/// True when every scalar of `x` is finite.
template <ode_state State>
bool all_finite(const State& x);

/// Σ_i a_i b_i over all scalars (double accumulation).
template <ode_state State>
double inner_product(const State& a, const State& b);

/// Number of scalars in the state.
template <ode_state State>
index_t scalar_count(const State& x);

/// Bytes of scalar storage of the state (what one stored copy costs).
template <ode_state State>
std::size_t state_bytes(const State& x);

// ----------------------------------------------------------------------------------------
// Traits for the built-in state types

/// diffeo fields on any backend: all components of all elements, in memory order.
template <class T, int Dim, class Backend>
struct state_traits<field<T, Dim, Backend>> {
  using state = field<T, Dim, Backend>;
  using scalar_type = scalar_of<T>;
  using backend_type = Backend;
  static constexpr int per_element = detail::components<T>::count;
  // A vec<S, D> is laid out as D scalars (core/vec.hpp), so a field of them is a scalar array.
  static scalar_type* data(state& s) { return reinterpret_cast<scalar_type*>(s.data()); }
  static const scalar_type* data(const state& s) {
    return reinterpret_cast<const scalar_type*>(s.data());
  }
  static index_t size(const state& s) { return s.size() * per_element; }
  static bool same_shape(const state& a, const state& b) {
    return a.geometry() == b.geometry() && a.channels() == b.channels();
  }
  static void resize_like(state& out, const state& like) {
    if (like.empty()) {
      out = state();
    } else if (!same_shape(out, like)) {
      out = state(like.geometry(), like.channels());
    }
  }
};

/// `std::vector` of floating-point scalars, on the host.
template <std::floating_point S, class Alloc>
struct state_traits<std::vector<S, Alloc>> {
  using state = std::vector<S, Alloc>;
  using scalar_type = S;
  using backend_type = backend::serial;
  static S* data(state& s) { return s.data(); }
  static const S* data(const state& s) { return s.data(); }
  static index_t size(const state& s) { return static_cast<index_t>(s.size()); }
  static bool same_shape(const state& a, const state& b) { return a.size() == b.size(); }
  static void resize_like(state& out, const state& like) { out.resize(like.size()); }
};

/// `std::array` of floating-point scalars (fixed size: resizing is a no-op).
template <std::floating_point S, std::size_t N>
struct state_traits<std::array<S, N>> {
  using state = std::array<S, N>;
  using scalar_type = S;
  using backend_type = backend::serial;
  static constexpr bool fixed_size = true;
  static S* data(state& s) { return s.data(); }
  static const S* data(const state& s) { return s.data(); }
  static constexpr index_t size(const state&) { return index_t(N); }
  static constexpr bool same_shape(const state&, const state&) { return true; }
  static void resize_like(state&, const state&) {}
};

/// `diffeo::vec` (fixed size).
template <std::floating_point S, int N>
struct state_traits<vec<S, N>> {
  using state = vec<S, N>;
  using scalar_type = S;
  using backend_type = backend::serial;
  static constexpr bool fixed_size = true;
  static S* data(state& s) { return s.v; }
  static const S* data(const state& s) { return s.v; }
  static constexpr index_t size(const state&) { return index_t(N); }
  static constexpr bool same_shape(const state&, const state&) { return true; }
  static void resize_like(state&, const state&) {}
};

namespace detail {
/// Eigen's plain matrices and arrays (recognized without including Eigen).
template <class S>
concept eigen_plain = requires(S& s, const S& cs) {
  typename S::Scalar;
  { s.data() } -> std::same_as<typename S::Scalar*>;
  { cs.size() } -> std::convertible_to<index_t>;
  s.resizeLike(cs);
  S::RowsAtCompileTime;
};
}  // namespace detail

/// Eigen vectors and matrices (`VectorXd`, `Vector3f`, ...), on the host.
template <class S>
  requires detail::eigen_plain<S> && std::floating_point<typename S::Scalar>
struct state_traits<S> {
  using scalar_type = typename S::Scalar;
  using backend_type = backend::serial;
  static constexpr bool fixed_size = S::SizeAtCompileTime > 0;
  static scalar_type* data(S& s) { return s.data(); }
  static const scalar_type* data(const S& s) { return s.data(); }
  static index_t size(const S& s) { return static_cast<index_t>(s.size()); }
  static bool same_shape(const S& a, const S& b) {
    return a.rows() == b.rows() && a.cols() == b.cols();
  }
  static void resize_like(S& out, const S& like) {
    if (!same_shape(out, like)) out.resizeLike(like);
  }
};

namespace detail {
/// States whose size is fixed at compile time (`std::array`, `vec`, fixed Eigen vectors):
/// steppers keep their workspace for them on the stack.
template <class S>
concept fixed_size_state = contiguous_state<S> && requires {
  requires state_traits<S>::fixed_size;
};
}  // namespace detail

/// A system without parameters has an empty gradient.
template <>
struct composite_traits<no_parameters> {
  static std::tuple<> parts(no_parameters&) { return {}; }
  static std::tuple<> parts(const no_parameters&) { return {}; }
};

// ----------------------------------------------------------------------------------------
// Definitions

namespace detail {

/// `out = Σ a_j x_j`; with `UnitFirst` the first coefficient is 1 and not multiplied (the
/// common `x + dt Σ b_j k_j`: one multiply fewer per element, and bitwise `x` when the
/// other terms vanish).
template <class S, int N, bool UnitFirst>
struct scale_sum_kernel {
  S* out;
  const S* x[N];
  S a[N];
  DIFFEO_HD void operator()(index_t i) const {
    S acc = UnitFirst ? x[0][i] : a[0] * x[0][i];
    for (int j = 1; j < N; ++j) acc += a[j] * x[j][i];
    out[i] = acc;
  }
};

template <bool UnitFirst, std::size_t N, class State>
DIFFEO_ODE_INLINE void run_scale_sum(State& out, const std::array<double, N>& a,
                   const std::array<const State*, N>& x) {
  using tr = state_traits<State>;
  using S = typename tr::scalar_type;
  scale_sum_kernel<S, int(N), UnitFirst> k{};
  k.out = tr::data(out);
  for (std::size_t j = 0; j < N; ++j) {
    k.x[j] = tr::data(*x[j]);
    k.a[j] = static_cast<S>(a[j]);
  }
  for_each_index(typename tr::backend_type{}, tr::size(out), k);
}

template <class S>
struct zero_kernel {
  S* out;
  DIFFEO_HD void operator()(index_t i) const { out[i] = S(0); }
};

struct norm_acc {
  double sum_sq;
  double max;
};

struct norm_combine {
  DIFFEO_HD norm_acc operator()(const norm_acc& a, const norm_acc& b) const {
    // NaN wins, so a failed stage is never hidden by the max.
    return {a.sum_sq + b.sum_sq, (a.max > b.max || a.max != a.max) ? a.max : b.max};
  }
};

template <class S, int N>
struct scaled_norm_map {
  const S* ref0;
  const S* ref1;
  const S* x[N];
  double c[N];
  double atol;
  double rtol;
  DIFFEO_HD norm_acc operator()(index_t i) const {
    double e = 0;
    for (int j = 0; j < N; ++j) e += c[j] * double(x[j][i]);
    const double r0 = std::fabs(double(ref0[i])), r1 = std::fabs(double(ref1[i]));
    const double r = e / (atol + rtol * (r0 > r1 ? r0 : r1));
    return {r * r, std::fabs(r)};
  }
};

template <class S>
struct nonfinite_map {
  const S* x;
  DIFFEO_HD index_t operator()(index_t i) const { return std::isfinite(x[i]) ? 0 : 1; }
};

struct index_plus {
  DIFFEO_HD index_t operator()(index_t a, index_t b) const { return a + b; }
};

template <class S>
struct product_map {
  const S* a;
  const S* b;
  DIFFEO_HD double operator()(index_t i) const { return double(a[i]) * double(b[i]); }
};

struct double_plus {
  DIFFEO_HD double operator()(double a, double b) const { return a + b; }
};

template <class State>
using parts_t = decltype(composite_traits<State>::parts(std::declval<State&>()));

template <class State>
inline constexpr std::size_t part_count = std::tuple_size_v<parts_t<State>>;

/// Calls `f(std::integral_constant<std::size_t, p>{})` for every part index `p`.
template <class State, class F>
void for_each_part(F&& f) {
  [&]<std::size_t... P>(std::index_sequence<P...>) {
    (f(std::integral_constant<std::size_t, P>{}), ...);
  }(std::make_index_sequence<part_count<State>>{});
}

template <std::size_t P, class State>
decltype(auto) part(State& s) {
  return std::get<P>(composite_traits<std::remove_const_t<State>>::parts(s));
}

template <std::size_t P, std::size_t N, class State>
auto part_pointers(const std::array<const State*, N>& x) {
  using part_type = std::remove_cvref_t<decltype(part<P>(*x[0]))>;
  std::array<const part_type*, N> r{};
  for (std::size_t j = 0; j < N; ++j) r[j] = &part<P>(*x[j]);
  return r;
}

template <class State, class Tuple, std::size_t... I>
void scale_sum_pairs(State& out, const Tuple& t, std::index_sequence<I...>) {
  scale_sum_n<sizeof...(I)>(out, {static_cast<double>(std::get<2 * I>(t))...},
                            {&std::get<2 * I + 1>(t)...});
}

}  // namespace detail

template <ode_state State>
void resize_like(State& out, const State& like) {
  if constexpr (contiguous_state<State>) {
    state_traits<State>::resize_like(out, like);
  } else {
    detail::for_each_part<State>(
        [&](auto p) { resize_like(detail::part<p()>(out), detail::part<p()>(like)); });
  }
}

template <std::size_t N, ode_state State>
DIFFEO_ODE_INLINE void scale_sum_n(State& out, const std::array<double, N>& a,
                                   const std::array<const State*, N>& x) {
  static_assert(N >= 1, "scale_sum_n: at least one term");
  if constexpr (contiguous_state<State>) {
    state_traits<State>::resize_like(out, *x[0]);
    detail::run_scale_sum<false>(out, a, x);
  } else {
    detail::for_each_part<State>([&](auto p) {
      scale_sum_n<N>(detail::part<p()>(out), a, detail::part_pointers<p()>(x));
    });
  }
}

namespace detail {
/// `out = x[0] + Σ_{j>0} a[j] x[j]` (a[0] is ignored): the stepper's stage and update form.
template <std::size_t N, ode_state State>
DIFFEO_ODE_INLINE void unit_scale_sum_n(State& out, const std::array<double, N>& a,
                      const std::array<const State*, N>& x) {
  if constexpr (contiguous_state<State>) {
    state_traits<State>::resize_like(out, *x[0]);
    run_scale_sum<true>(out, a, x);
  } else {
    for_each_part<State>([&](auto p) {
      unit_scale_sum_n<N>(part<p()>(out), a, part_pointers<p()>(x));
    });
  }
}
}  // namespace detail

namespace detail {
/// `out = [x] + Σ_g c_g Σ_{j in g} y_j`, term j in group `Group_j` (the group ids are
/// template arguments, so they are constants in host and device code alike).
template <class S, bool WithX, int G, int... Group>
struct grouped_sum_kernel {
  static constexpr int T = int(sizeof...(Group));
  S* out;
  const S* x;
  const S* y[T];
  S c[G];
  DIFFEO_HD void operator()(index_t i) const {
    constexpr int group[T] = {Group...};
    S g[G];
    for (int k = 0; k < G; ++k) g[k] = S(0);
    for (int j = 0; j < T; ++j) g[group[j]] += y[j][i];
    S acc = WithX ? x[i] : S(0);
    for (int k = 0; k < G; ++k) acc += c[k] * g[k];
    out[i] = acc;
  }
};

/// The grouped combination on any state (one pass per contiguous part); `Groups` gives
/// `terms`, `count` and the constexpr `group` array.
template <class Groups, bool WithX, ode_state State>
DIFFEO_ODE_INLINE void grouped_sum(State& out, const State* x,
                                   const std::array<double, Groups::count>& c,
                                   const std::array<const State*, Groups::terms>& y) {
  if constexpr (contiguous_state<State>) {
    using tr = state_traits<State>;
    using S = typename tr::scalar_type;
    tr::resize_like(out, *y[0]);
    [&]<std::size_t... J>(std::index_sequence<J...>) DIFFEO_ODE_LAMBDA_INLINE {
      grouped_sum_kernel<S, WithX, int(Groups::count), Groups::group[J]...> k{};
      k.out = tr::data(out);
      k.x = WithX ? tr::data(*x) : nullptr;
      for (std::size_t j = 0; j < Groups::terms; ++j) k.y[j] = tr::data(*y[j]);
      for (std::size_t g = 0; g < Groups::count; ++g) k.c[g] = static_cast<S>(c[g]);
      for_each_index(typename tr::backend_type{}, tr::size(out), k);
    }(std::make_index_sequence<Groups::terms>{});
  } else {
    for_each_part<State>([&](auto p) {
      const auto* xp = WithX ? &part<p()>(*x) : nullptr;
      grouped_sum<Groups, WithX>(part<p()>(out), xp, c, part_pointers<p()>(y));
    });
  }
}
}  // namespace detail

template <ode_state State, class... Args>
void scale_sum(State& out, const Args&... pairs) {
  static_assert(sizeof...(Args) % 2 == 0 && sizeof...(Args) >= 2,
                "scale_sum(out, a0, x0, a1, x1, ...): coefficient/state pairs");
  detail::scale_sum_pairs(out, std::forward_as_tuple(pairs...),
                          std::make_index_sequence<sizeof...(Args) / 2>{});
}

template <ode_state State>
void assign(State& out, const State& x) {
  if (&out == &x) return;
  scale_sum_n<1>(out, {1.0}, {&x});
}

template <ode_state State>
void set_zero(State& out) {
  if constexpr (contiguous_state<State>) {
    using tr = state_traits<State>;
    for_each_index(typename tr::backend_type{}, tr::size(out),
                   detail::zero_kernel<typename tr::scalar_type>{tr::data(out)});
  } else {
    detail::for_each_part<State>([&](auto p) { set_zero(detail::part<p()>(out)); });
  }
}

template <std::size_t N, ode_state State>
norm_parts scaled_norm_parts(const State& ref0, const State& ref1, double atol, double rtol,
                             const std::array<double, N>& c,
                             const std::array<const State*, N>& x) {
  if constexpr (contiguous_state<State>) {
    using tr = state_traits<State>;
    using S = typename tr::scalar_type;
    detail::scaled_norm_map<S, int(N)> m{};
    m.ref0 = tr::data(ref0);
    m.ref1 = tr::data(ref1);
    m.atol = atol;
    m.rtol = rtol;
    for (std::size_t j = 0; j < N; ++j) {
      m.x[j] = tr::data(*x[j]);
      m.c[j] = c[j];
    }
    const index_t n = tr::size(ref0);
    const detail::norm_acc acc = transform_reduce(typename tr::backend_type{}, n,
                                                  detail::norm_acc{0, 0}, m, detail::norm_combine{});
    return {acc.sum_sq, acc.max, double(n)};
  } else {
    norm_parts total;
    detail::for_each_part<State>([&](auto p) {
      total = total + scaled_norm_parts<N>(detail::part<p()>(ref0), detail::part<p()>(ref1),
                                           atol, rtol, c, detail::part_pointers<p()>(x));
    });
    return total;
  }
}

inline double finish_norm(const norm_parts& p, norm_kind kind) {
  if (!(p.sum_sq == p.sum_sq)) return std::numeric_limits<double>::quiet_NaN();
  if (p.count == 0) return 0.0;
  return kind == norm_kind::rms ? std::sqrt(p.sum_sq / p.count) : p.max;
}

template <std::size_t N, ode_state State>
double scaled_norm(norm_kind kind, const State& ref0, const State& ref1, double atol,
                   double rtol, const std::array<double, N>& c,
                   const std::array<const State*, N>& x) {
  return finish_norm(scaled_norm_parts<N>(ref0, ref1, atol, rtol, c, x), kind);
}

template <ode_state State>
bool all_finite(const State& x) {
  if constexpr (contiguous_state<State>) {
    using tr = state_traits<State>;
    const index_t bad =
        transform_reduce(typename tr::backend_type{}, tr::size(x), index_t(0),
                         detail::nonfinite_map<typename tr::scalar_type>{tr::data(x)},
                         detail::index_plus{});
    return bad == 0;
  } else {
    bool ok = true;
    detail::for_each_part<State>([&](auto p) { ok = ok && all_finite(detail::part<p()>(x)); });
    return ok;
  }
}

template <ode_state State>
double inner_product(const State& a, const State& b) {
  if constexpr (contiguous_state<State>) {
    using tr = state_traits<State>;
    return transform_reduce(typename tr::backend_type{}, tr::size(a), 0.0,
                            detail::product_map<typename tr::scalar_type>{tr::data(a), tr::data(b)},
                            detail::double_plus{});
  } else {
    double s = 0;
    detail::for_each_part<State>(
        [&](auto p) { s += inner_product(detail::part<p()>(a), detail::part<p()>(b)); });
    return s;
  }
}

template <ode_state State>
index_t scalar_count(const State& x) {
  if constexpr (contiguous_state<State>) {
    return state_traits<State>::size(x);
  } else {
    index_t n = 0;
    detail::for_each_part<State>([&](auto p) { n += scalar_count(detail::part<p()>(x)); });
    return n;
  }
}

template <ode_state State>
std::size_t state_bytes(const State& x) {
  if constexpr (contiguous_state<State>) {
    return std::size_t(state_traits<State>::size(x)) *
           sizeof(typename state_traits<State>::scalar_type);
  } else {
    std::size_t n = 0;
    detail::for_each_part<State>([&](auto p) { n += state_bytes(detail::part<p()>(x)); });
    return n;
  }
}

}  // namespace diffeo::ode
