#pragma once
/// The Jacobian of the map φ = id + u of a displacement field u: the matrix field
/// J = ∂φ/∂x, its determinant, folding statistics, and vector-Jacobian products.
///
///   auto det = jacobian_det(u);                  // central differences, numpy.gradient
///   auto st  = jacobian_stats_of(be, u.view());  // fraction folded, min, max in one pass
///
/// Derivatives are finite differences in index space, `d = w (u[hi] - u[lo])` per axis:
/// - `difference::central`: `(u[i+1] - u[i-1]) / 2` inside, first-order one-sided
///   `u[1] - u[0]` and `u[n-1] - u[n-2]` on the border voxels (numpy.gradient, edge_order=1);
/// - `difference::forward`: `u[i+1] - u[i]`, the last voxel the backward `u[n-1] - u[n-2]`.
/// An axis of one point has zero derivative.
///
/// Units. Displacements are in voxels (`displacement_units::voxel`, the library's
/// convention) unless stated otherwise. The matrix is the Jacobian of φ in physical
/// coordinates x = s ∘ p (s the grid spacing):
/// - voxel u:    J_ij = δ_ij + (s_i / s_j) ∂u_i/∂p_j, i.e. J = S (I + D_p u) S⁻¹;
/// - physical u: J_ij = δ_ij + ∂u_i/∂p_j / s_j (ITK's UseImageSpacing convention).
/// With voxel u the determinant det J = det(I + D_p u) does not depend on the spacing (it
/// is computed without it); with unit spacing both conventions give J = I + D_p u.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/backend.hpp"
#include "../core/detail/avx2.hpp"
#include "../core/detail/thread_scratch.hpp"
#include "../core/field.hpp"

namespace diffeo {

/// The finite-difference scheme of a first derivative (see the header comment).
enum class difference {
  central,  ///< centred inside, first-order one-sided on the border (numpy.gradient)
  forward   ///< u[i+1] - u[i], backward on the last voxel (Warping NODE)
};

/// What a displacement field's vectors are measured in.
enum class displacement_units {
  voxel,    ///< index units of the grid (the library's convention)
  physical  ///< the grid's physical units (ITK's convention)
};

/// A `Dim`×`Dim` matrix, row-major: `m[i][j]` = ∂φ_i/∂x_j (row i is the gradient of
/// component i). Laid out as Dim² scalars, so a field of them is a `(…, Dim, Dim)` array;
/// `Eigen::Map<const Eigen::Matrix<S, Dim, Dim, Eigen::RowMajor>>(&J.m[0][0])` views one.
template <class S, int Dim>
struct jacobian_matrix {
  S m[Dim][Dim];

  DIFFEO_HD S& operator()(int i, int j) { return m[i][j]; }
  DIFFEO_HD const S& operator()(int i, int j) const { return m[i][j]; }
  /// The identity matrix (the Jacobian of u = 0).
  DIFFEO_HD static constexpr jacobian_matrix identity() {
    jacobian_matrix r{};
    for (int i = 0; i < Dim; ++i) r.m[i][i] = S(1);
    return r;
  }
};

/// Determinant of a 2×2 or 3×3 matrix.
template <class S, int Dim>
DIFFEO_HD S determinant(const jacobian_matrix<S, Dim>& a);

/// Cofactor matrix, `c[i][j]` = ∂det/∂a[i][j].
template <class S, int Dim>
DIFFEO_HD jacobian_matrix<S, Dim> cofactor(const jacobian_matrix<S, Dim>& a);

/// Writes the Jacobian matrix of φ = id + u at every point into `out` (same extents).
template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void jacobian(Backend be, field_view<U, Dim> u, field_view<jacobian_matrix<S, Dim>, Dim> out,
              difference d = difference::central,
              displacement_units units = displacement_units::voxel);

/// The Jacobian matrix field of φ = id + u, on `u`'s grid.
template <class S, int Dim, class Backend>
field<jacobian_matrix<S, Dim>, Dim, Backend> jacobian(
    const vector_field<S, Dim, Backend>& u, difference d = difference::central,
    displacement_units units = displacement_units::voxel);

/// Writes det J at every point into `out` (a one-channel scalar field of `u`'s extents),
/// in one pass over `u`.
template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void jacobian_det(Backend be, field_view<U, Dim> u, field_view<S, Dim> out,
                  difference d = difference::central,
                  displacement_units units = displacement_units::voxel);

/// The Jacobian determinant of φ = id + u, on `u`'s grid.
template <class S, int Dim, class Backend>
image<S, Dim, Backend> jacobian_det(const vector_field<S, Dim, Backend>& u,
                                    difference d = difference::central,
                                    displacement_units units = displacement_units::voxel);

/// VJP of `jacobian`: given ∂L/∂J per point, writes ∂L/∂u into `grad_u` (overwritten).
template <class Backend, class U, class G, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<G>, jacobian_matrix<S, Dim>>
void jacobian_vjp(Backend be, field_view<U, Dim> u, field_view<G, Dim> grad_jacobian,
                  vector_view<S, Dim> grad_u, difference d = difference::central,
                  displacement_units units = displacement_units::voxel);

/// VJP of `jacobian_det`: given ∂L/∂det per point, writes ∂L/∂u into `grad_u`
/// (overwritten). Thrust allocates one temporary matrix field; the CPU backends work in
/// chunks of slabs with a per-thread buffer (kept between calls up to 16 MiB).
template <class Backend, class U, class G, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<G>, S>
void jacobian_det_vjp(Backend be, field_view<U, Dim> u, field_view<G, Dim> grad_det,
                      vector_view<S, Dim> grad_u, difference d = difference::central,
                      displacement_units units = displacement_units::voxel);

/// Folding statistics of det J, gathered in one pass (accumulated in double).
struct jacobian_stats {
  index_t points = 0;     ///< points with a finite determinant
  index_t folded = 0;     ///< of those, points with det J ≤ 0
  index_t nonfinite = 0;  ///< points whose determinant is NaN or infinite (not in the rest)
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double sum = 0;  ///< Σ det J over the finite points
  /// Fraction of the finite points with det J ≤ 0 (0 when there are none).
  double folded_fraction() const { return points ? double(folded) / double(points) : 0.0; }
  /// Mean determinant over the finite points.
  double mean() const { return points ? sum / double(points) : 0.0; }
};

/// Folding statistics of φ = id + u: count and fraction of det J ≤ 0, min, max, mean.
template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
jacobian_stats jacobian_stats_of(Backend be, field_view<U, Dim> u,
                                 difference d = difference::central,
                                 displacement_units units = displacement_units::voxel);

// ------------------------------------------------------------------------------------------

template <class S, int Dim>
DIFFEO_HD S determinant(const jacobian_matrix<S, Dim>& a) {
  if constexpr (Dim == 2) {
    return a.m[0][0] * a.m[1][1] - a.m[0][1] * a.m[1][0];
  } else {
    return a.m[0][0] * (a.m[1][1] * a.m[2][2] - a.m[1][2] * a.m[2][1]) -
           a.m[0][1] * (a.m[1][0] * a.m[2][2] - a.m[1][2] * a.m[2][0]) +
           a.m[0][2] * (a.m[1][0] * a.m[2][1] - a.m[1][1] * a.m[2][0]);
  }
}

template <class S, int Dim>
DIFFEO_HD jacobian_matrix<S, Dim> cofactor(const jacobian_matrix<S, Dim>& a) {
  jacobian_matrix<S, Dim> c{};
  if constexpr (Dim == 2) {
    c.m[0][0] = a.m[1][1];
    c.m[0][1] = -a.m[1][0];
    c.m[1][0] = -a.m[0][1];
    c.m[1][1] = a.m[0][0];
  } else {
    // Cyclic indices give the signed 2×2 minors directly.
    for (int i = 0; i < 3; ++i) {
      const int i1 = (i + 1) % 3, i2 = (i + 2) % 3;
      for (int j = 0; j < 3; ++j) {
        const int j1 = (j + 1) % 3, j2 = (j + 2) % 3;
        c.m[i][j] = a.m[i1][j1] * a.m[i2][j2] - a.m[i1][j2] * a.m[i2][j1];
      }
    }
  }
  return c;
}

namespace detail {

/// Taps of the first difference at coordinate `x` of an axis of `n` points:
/// derivative = `w * (f[hi] - f[lo])`.
template <difference D, class S>
DIFFEO_HD inline void diff_taps(index_t x, index_t n, index_t& lo, index_t& hi, S& w) {
  if (n < 2) {
    lo = hi = x;
    w = S(0);
    return;
  }
  if constexpr (D == difference::central) {
    if (x == 0) {
      lo = 0, hi = 1, w = S(1);
    } else if (x == n - 1) {
      lo = n - 2, hi = n - 1, w = S(1);
    } else {
      lo = x - 1, hi = x + 1, w = S(0.5);
    }
  } else {
    if (x == n - 1)
      lo = n - 2, hi = n - 1;
    else
      lo = x, hi = x + 1;
    w = S(1);
  }
}

/// M = I + c ∘ D_p u at point `i` (coordinates `p`): the per-entry factor `c` carries the
/// spacing (all ones for the voxel-frame matrix).
template <difference D, class S, int Dim>
DIFFEO_HD jacobian_matrix<S, Dim> jacobian_at(const_vector_view<S, Dim> u, index_t i,
                                              const index_vec<Dim>& p,
                                              const jacobian_matrix<S, Dim>& c) {
  jacobian_matrix<S, Dim> a;
  index_t stride = 1;
  for (int j = 0; j < Dim; ++j) {
    index_t lo, hi;
    S w;
    diff_taps<D>(p[j], u.ext[j], lo, hi, w);
    const vec<S, Dim> d = u[i + (hi - p[j]) * stride] - u[i + (lo - p[j]) * stride];
    for (int k = 0; k < Dim; ++k) a.m[k][j] = S(k == j) + c.m[k][j] * (w * d[k]);
    stride *= u.ext[j];
  }
  return a;
}

/// The spacing factors of `jacobian_at` for the requested frame; `for_det` drops them where
/// the determinant does not depend on them (voxel displacements).
template <class S, int Dim>
jacobian_matrix<S, Dim> jacobian_scale(const vec<double, Dim>& s, displacement_units units,
                                       bool for_det) {
  jacobian_matrix<S, Dim> c;
  for (int i = 0; i < Dim; ++i)
    for (int j = 0; j < Dim; ++j) {
      double f = 1;
      if (units == displacement_units::physical)
        f = 1.0 / s[j];
      else if (!for_det)
        f = s[i] / s[j];
      c.m[i][j] = S(f);
    }
  return c;
}

/// What `jacobian_kernel` writes per point: the Jacobian M, det M, ∂L/∂M = (∂L/∂det) cof(M)
/// (the first pass of `jacobian_det_vjp`), or ∂L/∂M of the negative-Jacobian penalty
/// Σ(|det M| − det M): −2 ∂L/∂penalty cof(M) where det M < 0, else 0.
enum class jacobian_output { matrix, det, det_adjoint, negative_det_adjoint };

/// Writes `Out` per point. Thrust runs one point per thread; the CPU backends call `row`.
template <difference D, class S, int Dim, jacobian_output Out>
struct jacobian_kernel {
  static constexpr bool Det = Out == jacobian_output::det;
  using out_type = std::conditional_t<Det, S, jacobian_matrix<S, Dim>>;
  const_vector_view<S, Dim> u;
  field_view<out_type, Dim> out;
  jacobian_matrix<S, Dim> c;
  field_view<const S, Dim> grad_det{};  // det_adjoint: ∂L/∂det per point
  S grad_penalty = 0;                    // negative_det_adjoint: ∂L/∂penalty
  index_t out_first = 0;                 // point i goes to out[i − out_first]
  DIFFEO_HD void store(index_t i, const jacobian_matrix<S, Dim>& a) const {
    if constexpr (Out == jacobian_output::det) {
      out[i - out_first] = determinant(a);
    } else if constexpr (Out == jacobian_output::det_adjoint ||
                         Out == jacobian_output::negative_det_adjoint) {
      S f;
      if constexpr (Out == jacobian_output::det_adjoint)
        f = grad_det[i];
      else
        f = determinant(a) < S(0) ? S(-2) * grad_penalty : S(0);
      jacobian_matrix<S, Dim> g = cofactor(a);
      for (int r = 0; r < Dim; ++r)
        for (int j = 0; j < Dim; ++j) g.m[r][j] *= f;
      out[i - out_first] = g;
    } else {
      out[i - out_first] = a;
    }
  }
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    store(i, jacobian_at<D>(u, i, p, c));
  }
  /// The taps of one row along each axis, as point offsets: derivative j at point k is
  /// `w[j] * (u[k + hi[j]] - u[k + lo[j]])`. Along x the interior's; along the other axes
  /// those of the row's coordinates, so border rows run the same loop.
  struct row_taps {
    index_t lo[Dim], hi[Dim];
    S w[Dim];
  };

  /// The whole row starting at point `i` (coordinates `p`, `p[0] == 0`) of `n` points: the
  /// CPU backends' form (see `row_kernel`). The points whose x-neighbours are both on the
  /// grid take a branch-free loop; the row's ends the general path.
  void row(index_t i, index_vec<Dim> p, index_t n) const {
    if (n < 3) {
      for (index_t x = 0; x < n; ++x) {
        p[0] = x;
        (*this)(i + x, p);
      }
      return;
    }
    row_taps t;
    index_t stride = 1;
    for (int j = 0; j < Dim; ++j) {
      const index_t x = j == 0 ? 1 : p[j];  // along x: the interior's taps
      diff_taps<D>(x, u.ext[j], t.lo[j], t.hi[j], t.w[j]);
      t.lo[j] = (t.lo[j] - x) * stride;
      t.hi[j] = (t.hi[j] - x) * stride;
      stride *= u.ext[j];
    }
    // Central differences are one-sided at both ends, forward ones at the last point.
    const index_t first = D == difference::central ? 1 : 0;
    for (index_t x = 0; x < first; ++x) {
      p[0] = x;
      (*this)(i + x, p);
    }
    interior(i + first, n - 1 - first, t);
    p[0] = n - 1;
    (*this)(i + n - 1, p);
  }
#if defined(DIFFEO_HAVE_AVX2)
  /// The determinants of `interior` for 3D float fields, 8 points at a time: the
  /// differences are taken on the interleaved vectors, then split per component (the
  /// compiler does not vectorize the 3-strided loop well). Returns where it stopped.
  DIFFEO_TARGET_AVX2 index_t interior_det_avx2(index_t i, index_t count, const row_taps& t) const {
    const float* v = reinterpret_cast<const float*>(u.data);
    __m256 cw[3][3];  // c · w: w is a power of two, so this is c · (w · d) exactly
    for (int r = 0; r < 3; ++r)
      for (int j = 0; j < 3; ++j) cw[r][j] = _mm256_set1_ps(c.m[r][j] * t.w[j]);
    const __m256 one = _mm256_set1_ps(1.f);
    // The next row of the leading slice, which nothing else brings in from memory early
    // (as an integer: past the last slice it leaves the field).
    const std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(v) + 12 * std::uintptr_t(t.hi[2] + u.ext[0]);
    index_t k = i;
    for (; k + 8 <= i + count; k += 8) {
      _mm_prefetch(reinterpret_cast<const char*>(ahead + 12 * k), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(ahead + 12 * k + 64), _MM_HINT_T0);
      __m256 m[3][3];
      for (int j = 0; j < 3; ++j) {
        const float* hi = v + (k + t.hi[j]) * 3;
        const float* lo = v + (k + t.lo[j]) * 3;
        __m256 d[3];
        deinterleave3_avx2(_mm256_sub_ps(_mm256_loadu_ps(hi), _mm256_loadu_ps(lo)),
                           _mm256_sub_ps(_mm256_loadu_ps(hi + 8), _mm256_loadu_ps(lo + 8)),
                           _mm256_sub_ps(_mm256_loadu_ps(hi + 16), _mm256_loadu_ps(lo + 16)), d);
        for (int r = 0; r < 3; ++r)
          m[r][j] = r == j ? _mm256_fmadd_ps(cw[r][j], d[r], one) : _mm256_mul_ps(cw[r][j], d[r]);
      }
      // As `determinant`: expansion along the first row.
      const __m256 c0 = _mm256_fmsub_ps(m[1][1], m[2][2], _mm256_mul_ps(m[1][2], m[2][1]));
      const __m256 c1 = _mm256_fmsub_ps(m[1][0], m[2][2], _mm256_mul_ps(m[1][2], m[2][0]));
      const __m256 c2 = _mm256_fmsub_ps(m[1][0], m[2][1], _mm256_mul_ps(m[1][1], m[2][0]));
      const __m256 det = _mm256_fmadd_ps(m[0][2], c2, _mm256_fmsub_ps(m[0][0], c0, _mm256_mul_ps(m[0][1], c1)));
      _mm256_storeu_ps(reinterpret_cast<float*>(out.data) + (k - out_first), det);
    }
    return k;
  }
#endif
  /// Points [i, i + count) of one row, all with both x-neighbours on the grid, with the
  /// row's taps `t`: the differences of `jacobian_at` with fixed offsets, written out so the
  /// compiler can vectorize the loop.
  void interior(index_t i, index_t count, const row_taps& t) const {
    const S* v = reinterpret_cast<const S*>(u.data);
    const index_t end = i + count;
#if defined(DIFFEO_HAVE_AVX2)
    if constexpr (Det && Dim == 3 && std::is_same_v<S, float>)
      if (cpu_has_avx2()) i = interior_det_avx2(i, count, t);
#endif
    jacobian_matrix<S, Dim> cw;
    for (int r = 0; r < Dim; ++r)
      for (int j = 0; j < Dim; ++j) cw.m[r][j] = c.m[r][j] * t.w[j];
    for (index_t k = i; k < end; ++k) {
      jacobian_matrix<S, Dim> a;
      for (int j = 0; j < Dim; ++j) {
        const S* hi = v + (k + t.hi[j]) * Dim;
        const S* lo = v + (k + t.lo[j]) * Dim;
        for (int r = 0; r < Dim; ++r) a.m[r][j] = S(r == j) + cw.m[r][j] * (hi[r] - lo[r]);
      }
      store(k, a);
    }
  }
};

/// Adjoint of M = I + c ∘ D_p u as a gather: ∂L/∂u(q)_k = Σ_j Σ_p c_kj ∂L/∂M_kj(p) ·
/// ∂(D_p u)_kj(p)/∂u_k(q). Each derivative reaches at most one voxel away along its axis,
/// so the points p that read q are q and its two neighbours along each axis.
template <difference D, class S, int Dim>
struct jacobian_adjoint_kernel {
  field_view<const jacobian_matrix<S, Dim>, Dim> grad_m;
  vector_view<S, Dim> grad_u;
  jacobian_matrix<S, Dim> c;
  index_t m_first = 0;  // point q of ∂L/∂M is grad_m[q − m_first]
  DIFFEO_HD void operator()(index_t q, const index_vec<Dim>& p) const {
    vec<S, Dim> acc = vec<S, Dim>::zero();
    index_t stride = 1;
    for (int j = 0; j < Dim; ++j) {
      const index_t n = grad_u.ext[j], x = p[j];
      for (index_t y = x - 1; y <= x + 1; ++y) {
        if (y < 0 || y >= n) continue;
        index_t lo, hi;
        S w;
        diff_taps<D>(y, n, lo, hi, w);
        const S s = (hi == x ? w : S(0)) - (lo == x ? w : S(0));
        if (s == S(0)) continue;
        const jacobian_matrix<S, Dim>& g = grad_m[q - m_first + (y - x) * stride];
        for (int k = 0; k < Dim; ++k) acc[k] += s * c.m[k][j] * g.m[k][j];
      }
      stride *= n;
    }
    grad_u[q] = acc;
  }
  /// The CPU backends' form (see `row_kernel`). Away from the border (each coordinate
  /// in [2, n − 3]) the weight of neighbour q + d·e_j is the same for every axis and point,
  /// so those points run one loop without taps or branches; the same terms in the same
  /// order as `operator()`. The rest take the general path.
  void row(index_t i, index_vec<Dim> p, index_t count) const {
    bool inside = count >= 5;
    for (int a = 1; a < Dim; ++a) inside = inside && p[a] >= 2 && p[a] + 3 <= grad_u.ext[a];
    const index_t first = inside ? 2 : count, last = inside ? count - 2 : count;
    for (index_t x = 0; x < first; ++x) p[0] = x, (*this)(i + x, p);
    if (inside) {
      S s[3];  // the weight of the neighbour at offset d − 1, for an interior point
      for (int d = 0; d < 3; ++d) {
        index_t lo, hi;
        S w;
        diff_taps<D>(4 + d - 1, 9, lo, hi, w);
        s[d] = (hi == 4 ? w : S(0)) - (lo == 4 ? w : S(0));
      }
      index_t stride[Dim];
      stride[0] = 1;
      for (int j = 1; j < Dim; ++j) stride[j] = stride[j - 1] * grad_u.ext[j - 1];
      for (index_t q = i + first; q < i + last; ++q) {
        vec<S, Dim> acc = vec<S, Dim>::zero();
        for (int j = 0; j < Dim; ++j)
          for (int d = 0; d < 3; ++d) {
            if (s[d] == S(0)) continue;
            const jacobian_matrix<S, Dim>& g = grad_m[q - m_first + (d - 1) * stride[j]];
            for (int k = 0; k < Dim; ++k) acc[k] += s[d] * c.m[k][j] * g.m[k][j];
          }
        grad_u[q] = acc;
      }
    }
    for (index_t x = last; x < count; ++x) p[0] = x, (*this)(i + x, p);
  }
};

/// ∂L/∂u = the gather of ∂L/∂M, where `cof` (a `jacobian_kernel` writing one of the
/// adjoints) gives ∂L/∂M per point. On the CPU backends in chunks of slabs (the last axis):
/// a chunk's ∂L/∂M, one slab more on each side, goes to a per-thread buffer that its
/// gather reads, so no field-sized temporary is zeroed and faulted in (that took most of a
/// 3D VJP); elsewhere through one temporary matrix field.
template <difference D, class S, int Dim, class Backend, class Cof>
void gather_cofactors(Backend be, Cof cof, vector_view<S, Dim> grad_u,
                      const jacobian_matrix<S, Dim>& c) {
  using M = jacobian_matrix<S, Dim>;
  using gather = jacobian_adjoint_kernel<D, S, Dim>;
  const extents<Dim>& ext = grad_u.ext;
  if constexpr (is_host_backend<Backend>) {
    const index_t slabs = ext[Dim - 1], per_slab = ext.count() / slabs;
    const index_t rows_per_slab = ext.rows() / slabs;
    const index_t fit =
        std::max<index_t>(1, (index_t(8) << 20) / index_t(sizeof(M)) / per_slab - 2);
    const index_t chunks = std::min(
        slabs, std::max<index_t>((slabs + fit - 1) / fit, 2 * index_t(thread_count(be))));
    for_each_task(be, chunks, [&](index_t t) {
      const index_t z0 = t * slabs / chunks, z1 = (t + 1) * slabs / chunks;
      const index_t g0 = z0 > 0 ? z0 - 1 : 0, g1 = z1 < slabs ? z1 + 1 : slabs;
      const thread_scratch<M, struct cofactor_slabs> buffer(
          static_cast<std::size_t>((g1 - g0) * per_slab));
      const field_view<M, Dim> grad_m{buffer.data(), ext};
      Cof k = cof;
      k.out = grad_m, k.out_first = g0 * per_slab;
      for (index_t r = g0 * rows_per_slab; r < g1 * rows_per_slab; ++r) run_row(ext, r, k);
      const gather g{as_const(grad_m), grad_u, c, g0 * per_slab};
      for (index_t r = z0 * rows_per_slab; r < z1 * rows_per_slab; ++r) run_row(ext, r, g);
    });
  } else {
    field<M, Dim, Backend> grad_m(grid<Dim>{ext});
    cof.out = grad_m.view();
    for_each_point(be, ext, cof);
    for_each_point(be, ext, gather{as_const(grad_m.view()), grad_u, c});
  }
}

/// The partial statistics of one point, and their combination (for transform_reduce).
struct stats_partial {
  index_t points, folded, nonfinite;
  double min, max, sum;
};
struct stats_combine {
  DIFFEO_HD stats_partial operator()(const stats_partial& a, const stats_partial& b) const {
    return {a.points + b.points, a.folded + b.folded, a.nonfinite + b.nonfinite,
            a.min < b.min ? a.min : b.min, a.max > b.max ? a.max : b.max, a.sum + b.sum};
  }
};
inline stats_partial stats_identity() {
  constexpr double inf = std::numeric_limits<double>::infinity();
  return {0, 0, 0, inf, -inf, 0.0};
}

/// The statistics of one determinant.
DIFFEO_HD inline stats_partial stats_of(double j) {
  using std::isfinite;
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (!isfinite(j)) return {0, 0, 1, inf, -inf, 0.0};
  return {1, j <= 0 ? 1 : 0, 0, j, j, j};
}

template <difference D, class S, int Dim>
struct jacobian_stats_map {
  const_vector_view<S, Dim> u;
  jacobian_matrix<S, Dim> c;
  DIFFEO_HD stats_partial operator()(index_t i) const {
    return stats_of(double(determinant(jacobian_at<D>(u, i, u.ext.unravel(i), c))));
  }
};

/// Folds `value(det M)` with `op` over the points, M = I + c ∘ D_p u, on the CPU backends
/// (Thrust folds a per-point map instead): a row at a time, the row's determinants from the
/// determinant's row kernel into a per-thread row, so reductions over det J (folding
/// statistics, the negative-Jacobian penalty) run as fast as `jacobian_det`.
template <difference D, class S, int Dim, class Backend, class T, class Value, class Op>
  requires is_host_backend<Backend>
T reduce_determinants(Backend be, const_vector_view<S, Dim> u, const jacobian_matrix<S, Dim>& c,
                      T init, const Value& value, const Op& op) {
  using kernel = jacobian_kernel<D, S, Dim, jacobian_output::det>;
  const auto row_map = [&](index_t i, const index_vec<Dim>& p, index_t n) {
    const thread_scratch<S, struct determinant_row> dets(static_cast<std::size_t>(n));
    kernel k{u, field_view<S, Dim>{dets.data(), u.ext}, c};
    k.out_first = i;
    k.row(i, p, n);
    T acc = init;
    for (index_t x = 0; x < n; ++x) acc = op(acc, value(dets.data()[x]));
    return acc;
  };
  return transform_reduce_rows(be, u.ext, init, row_map, op);
}

/// Calls `f(std::integral_constant<difference, D>{})` with the scheme as a template
/// argument, so kernels carry no run-time branch on it.
template <class F>
decltype(auto) with_difference(difference d, F&& f) {
  if (d == difference::forward)
    return f(std::integral_constant<difference, difference::forward>{});
  return f(std::integral_constant<difference, difference::central>{});
}

template <class V>
void require_output(const V& out, const std::string& where) {
  if (out.data == nullptr) throw value_error(where + ": null data pointer");
  if (out.channels != 1)
    throw shape_error(where + ": expected one channel, got " + std::to_string(out.channels));
}

}  // namespace detail

template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void jacobian(Backend be, field_view<U, Dim> u, field_view<jacobian_matrix<S, Dim>, Dim> out,
              difference d, displacement_units units) {
  require_valid(u, "jacobian(u)");
  require_same_extents(u, out, "jacobian(u, out)");
  detail::require_output(out, "jacobian(out)");
  const auto c = detail::jacobian_scale<S, Dim>(u.spacing, units, false);
  detail::with_difference(d, [&](auto D) {
    using kernel = detail::jacobian_kernel<D.value, S, Dim, detail::jacobian_output::matrix>;
    for_each_point(be, u.ext, kernel{as_const(u), out, c});
  });
}

template <class S, int Dim, class Backend>
field<jacobian_matrix<S, Dim>, Dim, Backend> jacobian(const vector_field<S, Dim, Backend>& u,
                                                      difference d, displacement_units units) {
  field<jacobian_matrix<S, Dim>, Dim, Backend> out(u.geometry());
  jacobian(Backend{}, u.view(), out.view(), d, units);
  return out;
}

template <class Backend, class U, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>>
void jacobian_det(Backend be, field_view<U, Dim> u, field_view<S, Dim> out, difference d,
                  displacement_units units) {
  require_valid(u, "jacobian_det(u)");
  require_same_extents(u, out, "jacobian_det(u, out)");
  detail::require_output(out, "jacobian_det(out)");
  const auto c = detail::jacobian_scale<S, Dim>(u.spacing, units, true);
  detail::with_difference(d, [&](auto D) {
    using kernel = detail::jacobian_kernel<D.value, S, Dim, detail::jacobian_output::det>;
    for_each_point(be, u.ext, kernel{as_const(u), out, c});
  });
}

template <class S, int Dim, class Backend>
image<S, Dim, Backend> jacobian_det(const vector_field<S, Dim, Backend>& u, difference d,
                                    displacement_units units) {
  image<S, Dim, Backend> out(u.geometry());
  jacobian_det(Backend{}, u.view(), out.view(), d, units);
  return out;
}

template <class Backend, class U, class G, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<G>, jacobian_matrix<S, Dim>>
void jacobian_vjp(Backend be, field_view<U, Dim> u, field_view<G, Dim> grad_jacobian,
                  vector_view<S, Dim> grad_u, difference d, displacement_units units) {
  require_valid(u, "jacobian_vjp(u)");
  require_same_extents(u, grad_jacobian, "jacobian_vjp(u, grad_jacobian)");
  require_same_extents(u, grad_u, "jacobian_vjp(u, grad_u)");
  detail::require_output(grad_jacobian, "jacobian_vjp(grad_jacobian)");
  detail::require_output(grad_u, "jacobian_vjp(grad_u)");
  const auto c = detail::jacobian_scale<S, Dim>(u.spacing, units, false);
  detail::with_difference(d, [&](auto D) {
    using kernel = detail::jacobian_adjoint_kernel<D.value, S, Dim>;
    for_each_point(be, u.ext, kernel{as_const(grad_jacobian), grad_u, c});
  });
}

template <class Backend, class U, class G, class S, int Dim>
  requires std::is_same_v<std::remove_const_t<U>, vec<S, Dim>> &&
           std::is_same_v<std::remove_const_t<G>, S>
void jacobian_det_vjp(Backend be, field_view<U, Dim> u, field_view<G, Dim> grad_det,
                      vector_view<S, Dim> grad_u, difference d, displacement_units units) {
  require_valid(u, "jacobian_det_vjp(u)");
  require_same_extents(u, grad_det, "jacobian_det_vjp(u, grad_det)");
  require_same_extents(u, grad_u, "jacobian_det_vjp(u, grad_u)");
  detail::require_output(grad_det, "jacobian_det_vjp(grad_det)");
  detail::require_output(grad_u, "jacobian_det_vjp(grad_u)");
  const auto c = detail::jacobian_scale<S, Dim>(u.spacing, units, true);
  detail::with_difference(d, [&](auto D) {
    using cof = detail::jacobian_kernel<D.value, S, Dim, detail::jacobian_output::det_adjoint>;
    detail::gather_cofactors<D.value>(be, cof{as_const(u), {}, c, as_const(grad_det)}, grad_u, c);
  });
}

template <class Backend, class U, int Dim>
  requires is_vector_element<U, Dim>
jacobian_stats jacobian_stats_of(Backend be, field_view<U, Dim> u, difference d,
                                 displacement_units units) {
  using S = scalar_of<U>;
  require_valid(u, "jacobian_stats_of(u)");
  const auto c = detail::jacobian_scale<S, Dim>(u.spacing, units, true);
  const detail::stats_partial r = detail::with_difference(d, [&](auto D) {
    if constexpr (is_host_backend<Backend>)
      return detail::reduce_determinants<D.value>(
          be, as_const(u), c, detail::stats_identity(),
          [](S j) { return detail::stats_of(double(j)); }, detail::stats_combine{});
    else
      return transform_reduce(be, u.points(), detail::stats_identity(),
                              detail::jacobian_stats_map<D.value, S, Dim>{as_const(u), c},
                              detail::stats_combine{});
  });
  jacobian_stats s;
  s.points = r.points;
  s.folded = r.folded;
  s.nonfinite = r.nonfinite;
  s.min = r.min;
  s.max = r.max;
  s.sum = r.sum;
  return s;
}

}  // namespace diffeo
