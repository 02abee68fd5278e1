#pragma once
/// Interpolation of a field at a real position: nearest, linear and cubic kernels under a
/// boundary policy, any channel count, 2D and 3D, with the derivative of the value with
/// respect to the position (for vector-Jacobian products).
///
///   auto v = sample(u.view(), q, interp::linear{}, boundary::border{});  // a vec for u
///
/// Positions are in voxel units of the sampled field; a position with a NaN or infinite
/// component samples as zero (and zero gradient) under every boundary policy.

#include <cmath>
#include <type_traits>

#include "../core/field_view.hpp"
#include "boundary.hpp"

namespace diffeo {

namespace interp {
/// The nearest voxel (ties round to even, as PyTorch's `nearest`).
struct nearest {
  static constexpr int taps = 1;
};
/// Linear in each axis: bilinear in 2D, trilinear in 3D.
struct linear {
  static constexpr int taps = 2;
};
/// Cubic convolution (Keys) with A = -0.75, 4 taps per axis, as PyTorch's `bicubic`.
struct cubic {
  static constexpr int taps = 4;
  static constexpr double A = -0.75;
};
}  // namespace interp

/// The value of the element-typed field `f` (channel 0) at position `q`.
template <class Interp = interp::linear, class Boundary = boundary::zeros, class T, int Dim,
          class P>
DIFFEO_HD std::remove_const_t<T> sample(const field_view<T, Dim>& f, const vec<P, Dim>& q,
                                        Interp = {}, Boundary = {});

/// All `f.channels` values at `q`, written to `out[0, channels)`.
template <class Interp = interp::linear, class Boundary = boundary::zeros, class T, int Dim,
          class P>
DIFFEO_HD void sample_channels(const field_view<T, Dim>& f, const vec<P, Dim>& q,
                               std::remove_const_t<T>* out, Interp = {}, Boundary = {});

/// A sampled element and its derivatives with respect to the position: `d[k]` = ∂value/∂q_k.
template <class E, int Dim>
struct value_and_gradient {
  E value;
  E d[Dim];
};

/// The value of `f` (channel 0) at `q` and its gradient with respect to `q`.
template <class Interp = interp::linear, class Boundary = boundary::zeros, class T, int Dim,
          class P>
DIFFEO_HD value_and_gradient<std::remove_const_t<T>, Dim> sample_with_gradient(
    const field_view<T, Dim>& f, const vec<P, Dim>& q, Interp = {}, Boundary = {});

/// Calls `visit(linear_index, weight, dweight)` for every tap of the stencil at `q`, where
/// `dweight[k]` = ∂weight/∂q_k (or `visit(linear_index, weight)` when the visitor takes two
/// arguments, which skips the derivatives); taps that read zero (off the grid under
/// `zeros`, or any tap of a non-finite position) are skipped. Sampling, its gradient and its adjoint (the
/// scatter in `warp_vjp`) are all built on this one stencil walk.
template <class Interp, class Boundary, int Dim, class P, class Visit>
DIFFEO_HD void for_each_tap(const extents<Dim>& ext, const vec<P, Dim>& q, const Visit& visit);

// ------------------------------------------------------------------------------------------

namespace detail {

/// Tap indices (already mapped by the boundary policy), weights and their derivatives
/// along one axis.
template <class P, int K>
struct axis_taps {
  index_t idx[K];
  P w[K];
  P dw[K];
  bool valid[K];
};

template <class P>
DIFFEO_HD void kernel_weights(interp::nearest, P, P* w, P* dw) {
  w[0] = 1;
  dw[0] = 0;
}
template <class P>
DIFFEO_HD void kernel_weights(interp::linear, P t, P* w, P* dw) {
  w[0] = 1 - t;
  w[1] = t;
  dw[0] = -1;
  dw[1] = 1;
}
// Keys (1981) cubic convolution; taps at distances 1+t, t, 1-t, 2-t from x.
template <class P>
DIFFEO_HD void kernel_weights(interp::cubic, P t, P* w, P* dw) {
  constexpr P A = P(interp::cubic::A);
  auto near = [](P d) { return ((A + 2) * d - (A + 3)) * d * d + 1; };
  auto near_d = [](P d) { return (3 * (A + 2) * d - 2 * (A + 3)) * d; };
  auto far = [](P d) { return ((A * d - 5 * A) * d + 8 * A) * d - 4 * A; };
  auto far_d = [](P d) { return (3 * A * d - 10 * A) * d + 8 * A; };
  w[0] = far(1 + t);
  w[1] = near(t);
  w[2] = near(1 - t);
  w[3] = far(2 - t);
  dw[0] = far_d(1 + t);
  dw[1] = near_d(t);
  dw[2] = -near_d(1 - t);
  dw[3] = -far_d(2 - t);
}

/// First tap and fractional offset along one axis.
template <class P>
DIFFEO_HD index_t first_tap(interp::nearest, P x, P& t) {
  using std::nearbyint;
  t = 0;
  return static_cast<index_t>(nearbyint(x));
}
template <class P>
DIFFEO_HD index_t first_tap(interp::linear, P x, P& t) {
  using std::floor;
  const P x0 = floor(x);
  t = x - x0;
  return static_cast<index_t>(x0);
}
template <class P>
DIFFEO_HD index_t first_tap(interp::cubic, P x, P& t) {
  using std::floor;
  const P x0 = floor(x);
  t = x - x0;
  return static_cast<index_t>(x0) - 1;
}

/// Taps along one axis of `n` points; false when no tap can contribute.
template <class Interp, class Boundary, class P>
DIFFEO_HD bool make_axis_taps(P x, index_t n, axis_taps<P, Interp::taps>& a) {
  constexpr int K = Interp::taps;
  using std::isfinite;
  if (!isfinite(x)) return false;
  P slope = 1;
  // Bring x to a range where tap indices cannot overflow; beyond it every policy gives
  // the same taps (zeros: none contribute; border: all read the edge).
  const P lo = P(-K - 1), hi = P(n + K);
  if constexpr (std::is_same_v<Boundary, boundary::zeros>) {
    if (x < lo || x > hi) return false;
  } else if constexpr (std::is_same_v<Boundary, boundary::border>) {
    if (x < lo) x = lo, slope = 0;
    if (x > hi) x = hi, slope = 0;
  } else {
    x = reflect_coordinate(x, n, slope);
  }
  P t;
  const index_t i0 = first_tap(Interp{}, x, t);
  kernel_weights(Interp{}, t, a.w, a.dw);
  bool any = false;
  for (int k = 0; k < K; ++k) {
    a.idx[k] = boundary_map<Boundary>::apply(i0 + k, n, a.valid[k]);
    a.dw[k] *= slope;
    any = any || a.valid[k];
  }
  return any;
}

/// The cell of a bilinear / trilinear stencil at `q` and the fractions within it, when all
/// its corners lie on the grid of extents `ext`; false otherwise (also for NaN). The fast
/// paths below start here.
template <int Dim, class P>
DIFFEO_HD inline bool linear_cell_inside(const extents<Dim>& ext, const vec<P, Dim>& q,
                                         index_t (&i0)[Dim], P (&t)[Dim]) {
  bool inside = true;
  for (int a = 0; a < Dim; ++a) inside &= (q[a] >= P(0)) & (q[a] < P(ext[a] - 1));
  if (!inside) return false;
  for (int a = 0; a < Dim; ++a) {
    i0[a] = static_cast<index_t>(q[a]);  // q >= 0: truncation is floor (no libm call)
    t[a] = q[a] - P(i0[a]);
  }
  return true;
}

/// `for_each_tap` for bilinear / trilinear stencils whose taps all lie on the grid (the
/// common case): no boundary logic, no validity flags, the same weights and the same order
/// as the general walk, so the same results to the bit. False (nothing visited) otherwise.
template <int Dim, class P, class Visit>
DIFFEO_HD bool for_each_linear_tap_inside(const extents<Dim>& ext, const vec<P, Dim>& q,
                                          const Visit& visit) {
  constexpr bool value_only = std::is_invocable_v<const Visit&, index_t, P>;
  index_t i0[Dim];
  P t[Dim];
  if (!linear_cell_inside(ext, q, i0, t)) return false;
  P w[Dim][2];
  constexpr P dw[2] = {P(-1), P(1)};
  for (int a = 0; a < Dim; ++a) {
    w[a][0] = 1 - t[a];
    w[a][1] = t[a];
  }
  if constexpr (Dim == 2) {
    for (int j = 0; j < 2; ++j) {
      const index_t row = (i0[1] + j) * ext[0] + i0[0];
      for (int i = 0; i < 2; ++i) {
        if constexpr (value_only)
          visit(row + i, w[0][i] * w[1][j]);
        else
          visit(row + i, w[0][i] * w[1][j], vec<P, 2>{{dw[i] * w[1][j], w[0][i] * dw[j]}});
      }
    }
  } else {
    for (int l = 0; l < 2; ++l) {
      for (int j = 0; j < 2; ++j) {
        const index_t row = ((i0[2] + l) * ext[1] + i0[1] + j) * ext[0] + i0[0];
        const P wyz = w[1][j] * w[2][l];
        for (int i = 0; i < 2; ++i) {
          if constexpr (value_only)
            visit(row + i, w[0][i] * wyz);
          else
            visit(row + i, w[0][i] * wyz,
                  vec<P, 3>{{dw[i] * wyz, w[0][i] * dw[j] * w[2][l], w[0][i] * w[1][j] * dw[l]}});
        }
      }
    }
  }
  return true;
}

}  // namespace detail

template <class Interp, class Boundary, int Dim, class P, class Visit>
DIFFEO_HD void for_each_tap(const extents<Dim>& ext, const vec<P, Dim>& q, const Visit& visit) {
  constexpr int K = Interp::taps;
  constexpr bool value_only = std::is_invocable_v<const Visit&, index_t, P>;
  if constexpr (std::is_same_v<Interp, interp::linear>)
    if (detail::for_each_linear_tap_inside(ext, q, visit)) return;
  detail::axis_taps<P, K> ax[Dim];
  for (int a = 0; a < Dim; ++a)
    if (!detail::make_axis_taps<Interp, Boundary>(q[a], ext[a], ax[a])) return;
  if constexpr (Dim == 2) {
    for (int j = 0; j < K; ++j) {
      if (!ax[1].valid[j]) continue;
      const index_t row = ax[1].idx[j] * ext[0];
      for (int i = 0; i < K; ++i) {
        if (!ax[0].valid[i]) continue;
        if constexpr (value_only) {
          visit(row + ax[0].idx[i], ax[0].w[i] * ax[1].w[j]);
        } else {
          const vec<P, 2> dw{{ax[0].dw[i] * ax[1].w[j], ax[0].w[i] * ax[1].dw[j]}};
          visit(row + ax[0].idx[i], ax[0].w[i] * ax[1].w[j], dw);
        }
      }
    }
  } else {
    for (int l = 0; l < K; ++l) {
      if (!ax[2].valid[l]) continue;
      const index_t slice = ax[2].idx[l] * ext[1];
      for (int j = 0; j < K; ++j) {
        if (!ax[1].valid[j]) continue;
        const index_t row = (slice + ax[1].idx[j]) * ext[0];
        const P wyz = ax[1].w[j] * ax[2].w[l];
        for (int i = 0; i < K; ++i) {
          if (!ax[0].valid[i]) continue;
          if constexpr (value_only) {
            visit(row + ax[0].idx[i], ax[0].w[i] * wyz);
          } else {
            const vec<P, 3> dw{{ax[0].dw[i] * wyz, ax[0].w[i] * ax[1].dw[j] * ax[2].w[l],
                                ax[0].w[i] * ax[1].w[j] * ax[2].dw[l]}};
            visit(row + ax[0].idx[i], ax[0].w[i] * wyz, dw);
          }
        }
      }
    }
  }
}

namespace detail {
/// The fast common case of `sample`: bilinear / trilinear with all corners on the grid,
/// read without boundary logic. Returns false when the slow path is needed. Written
/// without branches between the test and the loads, so the compiler keeps it tight.
template <class T, int Dim, class P, class E>
DIFFEO_HD inline bool sample_linear_inside(const field_view<T, Dim>& f, const vec<P, Dim>& q,
                                           E* out) {
  index_t i0[Dim];
  P t[Dim];
  if (!linear_cell_inside(f.ext, q, i0, t)) return false;
  using S = scalar_of<E>;
  const int C = f.channels;
  const index_t sx = C, sy = f.ext[0] * C;
  if constexpr (Dim == 2) {
    const T* p = f.data + (i0[1] * f.ext[0] + i0[0]) * C;
    const S tx = S(t[0]), ty = S(t[1]);
    for (int c = 0; c < C; ++c) {
      const E top = p[c] + (p[c + sx] - p[c]) * tx;
      const E bottom = p[c + sy] + (p[c + sy + sx] - p[c + sy]) * tx;
      out[c] = top + (bottom - top) * ty;
    }
  } else {
    const index_t sz = f.ext[1] * sy;
    const T* p = f.data + ((i0[2] * f.ext[1] + i0[1]) * f.ext[0] + i0[0]) * C;
    const S tx = S(t[0]), ty = S(t[1]), tz = S(t[2]);
    for (int c = 0; c < C; ++c) {
      const T* r = p + c;
      const E a0 = r[0] + (r[sx] - r[0]) * tx;
      const E a1 = r[sy] + (r[sy + sx] - r[sy]) * tx;
      const E b0 = r[sz] + (r[sz + sx] - r[sz]) * tx;
      const E b1 = r[sz + sy] + (r[sz + sy + sx] - r[sz + sy]) * tx;
      const E a = a0 + (a1 - a0) * ty;
      const E b = b0 + (b1 - b0) * ty;
      out[c] = a + (b - a) * tz;
    }
  }
  return true;
}
}  // namespace detail

template <class Interp, class Boundary, class T, int Dim, class P>
DIFFEO_HD void sample_channels(const field_view<T, Dim>& f, const vec<P, Dim>& q,
                               std::remove_const_t<T>* out, Interp, Boundary) {
  using E = std::remove_const_t<T>;
  using S = scalar_of<E>;
  if constexpr (std::is_same_v<Interp, interp::linear>)
    if (detail::sample_linear_inside(f, q, out)) return;
  // Gather the stencil once, then run each channel over it with a register accumulator
  // (accumulating into `out` directly would reload it per tap: it may alias `f`).
  constexpr int K = Dim == 2 ? Interp::taps * Interp::taps : Interp::taps * Interp::taps * Interp::taps;
  const int C = f.channels;
  index_t idx[K];
  S w[K];
  int n = 0;
  for_each_tap<Interp, Boundary>(f.ext, q, [&](index_t i, P wt) {
    idx[n] = i * C;
    w[n] = S(wt);
    ++n;
  });
  for (int c = 0; c < C; ++c) {
    E acc{};
    for (int k = 0; k < n; ++k) acc += f.data[idx[k] + c] * w[k];
    out[c] = acc;
  }
}

template <class Interp, class Boundary, class T, int Dim, class P>
DIFFEO_HD std::remove_const_t<T> sample(const field_view<T, Dim>& f, const vec<P, Dim>& q, Interp,
                                        Boundary) {
  using E = std::remove_const_t<T>;
  using S = scalar_of<E>;
  E acc{};
  const int C = f.channels;
  if constexpr (std::is_same_v<Interp, interp::linear>) {
    if (C == 1 && detail::sample_linear_inside(f, q, &acc)) return acc;
    acc = E{};
  }
  for_each_tap<Interp, Boundary>(f.ext, q, [&](index_t i, P w) {
    acc += f.data[i * C] * S(w);
  });
  return acc;
}

namespace detail {
/// `sample_with_gradient`'s common case: bilinear / trilinear with every corner on the grid,
/// as lerps of the corners and of their differences (the gradient of a lerp is a
/// difference). False when the general stencil walk is needed.
template <class T, int Dim, class P, class E>
DIFFEO_HD inline bool linear_with_gradient_inside(const field_view<T, Dim>& f,
                                                  const vec<P, Dim>& q,
                                                  value_and_gradient<E, Dim>& r) {
  using S = scalar_of<E>;
  index_t i0[Dim];
  P tq[Dim];
  if (!linear_cell_inside(f.ext, q, i0, tq)) return false;
  S t[Dim];
  for (int a = 0; a < Dim; ++a) t[a] = S(tq[a]);
  const auto lerp = [](const E& x, const E& y, S s) { return x + (y - x) * s; };
  const index_t sx = f.channels, sy = f.ext[0] * sx;
  if constexpr (Dim == 2) {
    const T* p = f.data + (i0[1] * f.ext[0] + i0[0]) * sx;
    const E a = p[0], b = p[sx], c = p[sy], d = p[sy + sx];
    const E top = lerp(a, b, t[0]), bottom = lerp(c, d, t[0]);
    r.value = lerp(top, bottom, t[1]);
    r.d[0] = lerp(b - a, d - c, t[1]);
    r.d[1] = bottom - top;
  } else {
    const index_t sz = f.ext[1] * sy;
    const T* p = f.data + ((i0[2] * f.ext[1] + i0[1]) * f.ext[0] + i0[0]) * sx;
    E x[2][2], dx[2][2];  // [z][y]: along x, the lerp and the difference
    for (int k = 0; k < 2; ++k)
      for (int j = 0; j < 2; ++j) {
        const T* row = p + k * sz + j * sy;
        x[k][j] = lerp(row[0], row[sx], t[0]);
        dx[k][j] = row[sx] - row[0];
      }
    const E y0 = lerp(x[0][0], x[0][1], t[1]), y1 = lerp(x[1][0], x[1][1], t[1]);
    r.value = lerp(y0, y1, t[2]);
    r.d[0] = lerp(lerp(dx[0][0], dx[0][1], t[1]), lerp(dx[1][0], dx[1][1], t[1]), t[2]);
    r.d[1] = lerp(x[0][1] - x[0][0], x[1][1] - x[1][0], t[2]);
    r.d[2] = y1 - y0;
  }
  return true;
}
}  // namespace detail

template <class Interp, class Boundary, class T, int Dim, class P>
DIFFEO_HD value_and_gradient<std::remove_const_t<T>, Dim> sample_with_gradient(
    const field_view<T, Dim>& f, const vec<P, Dim>& q, Interp, Boundary) {
  using E = std::remove_const_t<T>;
  using S = scalar_of<E>;
  value_and_gradient<E, Dim> r{};
  if constexpr (std::is_same_v<Interp, interp::linear>)
    if (detail::linear_with_gradient_inside(f, q, r)) return r;
  const int C = f.channels;
  for_each_tap<Interp, Boundary>(f.ext, q, [&](index_t i, P w, const vec<P, Dim>& dw) {
    const E v = f.data[i * C];
    r.value += v * S(w);
    for (int k = 0; k < Dim; ++k) r.d[k] += v * S(dw[k]);
  });
  return r;
}

}  // namespace diffeo
