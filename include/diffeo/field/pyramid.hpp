#pragma once
/// Resolution pyramids: downsampling by 2 with anti-aliasing, upsampling by 2 (linear), and
/// their vector-Jacobian products (both are linear; the VJPs are their exact transposes).
///
///   auto levels = make_pyramid(image, 4);               // levels[0] is the image itself
///   auto u_fine = upsample(u_coarse, levels[0].ext());  // vectors doubled
///
/// Grid alignment: coarse voxel i sits on fine voxel 2i (voxel centres at integer indices,
/// as everywhere in diffeo), so a fine axis of n points gives (n + 1) / 2 coarse points, the
/// physical origin stays put and the spacing doubles. For odd n the last coarse voxel sits
/// on the last fine voxel; for even n the last fine voxel lies half a coarse voxel past
/// the last coarse one and upsampling repeats the edge there.
///
/// `downsample` smooths with a Gaussian of σ = 1 fine voxel (by default; truncated at 4σ,
/// `reflection` boundary by default, as OpenCV's pyrDown) and keeps the even voxels; only
/// the kept voxels are computed. `upsample` interpolates linearly at p / 2. Vector fields
/// are displacements in voxel units, so `downsample` halves their vectors and `upsample`
/// doubles them; images keep their values.

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/backend.hpp"
#include "../core/field.hpp"
#include "../sample/boundary.hpp"
#include "smooth.hpp"

namespace diffeo {

/// Extents of the grid one level coarser: (n + 1) / 2 points per axis.
template <int Dim>
extents<Dim> downsampled_extents(const extents<Dim>& fine) {
  extents<Dim> e = fine;
  for (int a = 0; a < Dim; ++a) e[a] = (fine[a] + 1) / 2;
  return e;
}

/// Smooths `fine` (Gaussian σ in fine voxels) and writes its even voxels into `coarse`
/// (extents `downsampled_extents(fine.ext)`, same channels); vectors are halved.
template <class Boundary = boundary::reflection, class Backend, class In, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<In>, T>
void downsample(Backend be, field_view<In, Dim> fine, field_view<T, Dim> coarse,
                double sigma = 1.0, Boundary = {});

/// `fine` downsampled by 2, as a new field with doubled spacing.
template <class Boundary = boundary::reflection, class T, int Dim, class Backend>
field<T, Dim, Backend> downsample(const field<T, Dim, Backend>& fine, double sigma = 1.0,
                                  Boundary = {});

/// The transpose of `downsample`: writes its VJP ∂L/∂fine into `grad_fine`.
template <class Boundary = boundary::reflection, class Backend, class G, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<G>, T>
void downsample_vjp(Backend be, field_view<G, Dim> grad_coarse, field_view<T, Dim> grad_fine,
                    double sigma = 1.0, Boundary = {});

/// Interpolates `coarse` linearly at p / 2 for every point p of `fine` (whose extents
/// must downsample to `coarse`'s); vectors are doubled.
template <class Backend, class In, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<In>, T>
void upsample(Backend be, field_view<In, Dim> coarse, field_view<T, Dim> fine);

/// `coarse` upsampled by 2 onto `fine_ext`, as a new field with halved spacing.
template <class T, int Dim, class Backend>
field<T, Dim, Backend> upsample(const field<T, Dim, Backend>& coarse,
                                const extents<Dim>& fine_ext);

/// The transpose of `upsample`: writes its VJP ∂L/∂coarse into `grad_coarse`.
template <class Backend, class G, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<G>, T>
void upsample_vjp(Backend be, field_view<G, Dim> grad_fine, field_view<T, Dim> grad_coarse);

/// A Gaussian pyramid of `levels` fields, finest first (`[0]` is a copy of `f`).
template <class Boundary = boundary::reflection, class T, int Dim, class Backend>
std::vector<field<T, Dim, Backend>> make_pyramid(const field<T, Dim, Backend>& f, int levels,
                                                 double sigma = 1.0, Boundary = {});

// ------------------------------------------------------------------------------------------

namespace detail {

/// How values scale between grids: vectors (voxel units) by the ratio, images not at all.
template <class T, int Dim>
inline constexpr double vector_ratio = is_vector_element<T, Dim> ? 2.0 : 1.0;

template <class A, class B>
void require_pyramid_args(const A& fine, const B& coarse, const std::string& f,
                          const char* fine_name, const char* coarse_name) {
  require_valid(fine, f + "(" + fine_name + ")");
  const auto want = downsampled_extents(fine.ext);
  if (!(coarse.ext == want))
    throw shape_error(f + "(" + fine_name + ", " + coarse_name + "): " + coarse_name +
                      " must have extents " + to_string(want) + " for " + fine_name + " " +
                      to_string(fine.ext) + ", got " + to_string(coarse.ext));
  require_same_channels(fine, coarse, f + "(" + fine_name + ", " + coarse_name + ")");
  if (fine.data == nullptr || coarse.data == nullptr)
    throw value_error(f + ": null data pointer");
}

template <class T, int Dim>
separable_filter<scalar_of<T>, Dim> downsample_filter(const extents<Dim>& fine,
                                                      int channels, double sigma,
                                                      const std::string& where) {
  if (!(sigma > 0) || !std::isfinite(sigma))
    throw value_error(where + ": sigma must be positive and finite, got " +
                      std::to_string(sigma));
  separable_filter<scalar_of<T>, Dim> f{fine, downsampled_extents(fine),
                                        channels * components<T>::count, 2, {}};
  for (int a = 0; a < Dim; ++a) f.w[a] = gaussian_weights(sigma);
  for (double& w : f.w[0]) w /= vector_ratio<T, Dim>;
  return f;
}

/// The coarse voxels that fine coordinate x reads (lo, hi) and their weights.
DIFFEO_HD inline void upsample_taps(index_t x, index_t m, index_t& lo, index_t& hi, double& wlo,
                                    double& whi) {
  if (x % 2 == 0) {
    lo = hi = x / 2;
    wlo = 1, whi = 0;
  } else {
    lo = (x - 1) / 2;
    hi = (x + 1) / 2 < m ? (x + 1) / 2 : m - 1;
    wlo = whi = 0.5;
  }
}

/// Calls `f(std::integral_constant<int, W>{})` with W = `width` when it is 1, 2 or 3 (the
/// usual scalars per point, whose loops the compiler then unrolls), else with W = 0: the
/// loop reads `width`.
template <class F>
void with_common_width(int width, const F& f) {
  switch (width) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

template <class S, int Dim>
struct upsample_kernel {
  const S* coarse;
  S* fine;
  extents<Dim> c_ext;
  int width;
  S scale;
  DIFFEO_HD void operator()(index_t i, const index_vec<Dim>& p) const {
    index_t idx[Dim][2];
    double w[Dim][2];
    for (int a = 0; a < Dim; ++a)
      upsample_taps(p[a], c_ext[a], idx[a][0], idx[a][1], w[a][0], w[a][1]);
    S* out = fine + i * width;
    for (int c = 0; c < width; ++c) out[c] = S(0);
    for (int corner = 0; corner < (1 << Dim); ++corner) {
      index_vec<Dim> q;
      double wt = 1;
      for (int a = 0; a < Dim; ++a) {
        const int b = (corner >> a) & 1;
        q[a] = idx[a][b];
        wt *= w[a][b];
      }
      if (wt == 0) continue;
      const S* src = coarse + c_ext.linear(q) * width;
      for (int c = 0; c < width; ++c) out[c] += S(wt) * src[c];
    }
    for (int c = 0; c < width; ++c) out[c] *= scale;
  }
  /// The CPU backends' form (see `row_kernel`): the coarse rows that fine row `p` reads
  /// along y (and z), summed with their weights into one coarse row (`scale` folded in: a
  /// power of two, so exact), then interpolated along x: even x copies, odd x averages two
  /// neighbours. The same terms as `operator()`, summed in another order.
  void row(index_t i, index_vec<Dim> p, index_t n) const {
    constexpr int corners = 1 << (Dim - 1);
    const S* rows[corners];
    S weights[corners];
    int count = 0;
    for (int corner = 0; corner < corners; ++corner) {
      index_vec<Dim> q{};
      double wt = double(scale);
      for (int a = 1; a < Dim; ++a) {
        index_t lo, hi;
        double wlo, whi;
        upsample_taps(p[a], c_ext[a], lo, hi, wlo, whi);
        const bool upper = (corner >> (a - 1)) & 1;
        q[a] = upper ? hi : lo;
        wt *= upper ? whi : wlo;
      }
      if (wt == 0) continue;
      rows[count] = coarse + c_ext.linear(q) * width;
      weights[count++] = S(wt);
    }
    const index_t m = c_ext[0];
    const thread_scratch<S, struct upsample_row> store(static_cast<std::size_t>(m * width));
    S* const t = store.data();
    weighted_rows(t, rows, weights, count, m * width);
    S* const out = fine + i * width;
    // Pairs of outputs 2j, 2j + 1 while both neighbours are on the row.
    const index_t pairs = std::min(n / 2, m - 1);
    with_common_width(width, [&](auto w) {
      const int k = w.value > 0 ? w.value : width;
      for (index_t j = 0; j < pairs; ++j)
        for (int c = 0; c < k; ++c) {
          const S a = t[j * k + c], b = t[(j + 1) * k + c];
          out[2 * j * k + c] = a;
          out[(2 * j + 1) * k + c] = S(0.5) * a + S(0.5) * b;
        }
    });
    for (index_t x = 2 * pairs; x < n; ++x)  // the end: the last coarse voxel repeated
      for (int c = 0; c < width; ++c) out[x * width + c] = t[std::min(x / 2, m - 1) * width + c];
  }
};

/// The transpose of `upsample_kernel`, gathered per coarse voxel j: the fine voxels 2j - 1,
/// 2j and 2j + 1 along each axis are the only ones that read it.
template <class S, int Dim>
struct upsample_adjoint_kernel {
  const S* fine;
  S* coarse;
  extents<Dim> f_ext, c_ext;
  int width;
  S scale;
  DIFFEO_HD void operator()(index_t j, const index_vec<Dim>& p) const {
    index_t cand[Dim][3];
    double cw[Dim][3];
    for (int a = 0; a < Dim; ++a)
      for (int k = 0; k < 3; ++k) {
        cand[a][k] = 2 * p[a] - 1 + k;
        cw[a][k] = fine_weight(a, cand[a][k], p[a]);
      }
    S* out = coarse + j * width;
    for (int c = 0; c < width; ++c) out[c] = S(0);
    constexpr int combos = Dim == 2 ? 9 : 27;
    for (int combo = 0; combo < combos; ++combo) {
      index_vec<Dim> q;
      double wt = 1;
      int r = combo;
      for (int a = 0; a < Dim; ++a, r /= 3) {
        q[a] = cand[a][r % 3];
        wt *= cw[a][r % 3];
      }
      if (wt == 0) continue;
      const S* src = fine + f_ext.linear(q) * width;
      for (int c = 0; c < width; ++c) out[c] += S(wt) * src[c];
    }
    for (int c = 0; c < width; ++c) out[c] *= scale;
  }
  /// The CPU backends' form (see `row_kernel`): the fine rows that read coarse row `p`
  /// along y (and z), summed with their weights into one fine row (`scale` folded in, as in
  /// `upsample_kernel::row`), then gathered along x: coarse J takes fine 2J − 1, 2J, 2J + 1
  /// with weights ½, 1, ½ away from the ends.
  void row(index_t i, index_vec<Dim> p, index_t m) const {
    constexpr int combos = Dim == 2 ? 3 : 9;
    const S* rows[combos];
    S weights[combos];
    int count = 0;
    for (int combo = 0; combo < combos; ++combo) {
      index_vec<Dim> q{};
      double wt = double(scale);
      int r = combo;
      for (int a = 1; a < Dim; ++a, r /= 3) {
        const index_t x = 2 * p[a] - 1 + r % 3;
        q[a] = x;
        wt *= fine_weight(a, x, p[a]);
      }
      if (wt == 0) continue;
      rows[count] = fine + f_ext.linear(q) * width;
      weights[count++] = S(wt);
    }
    const index_t n = f_ext[0];
    const thread_scratch<S, struct upsample_adjoint_row> store(static_cast<std::size_t>(n * width));
    S* const t = store.data();
    weighted_rows(t, rows, weights, count, n * width);
    S* const out = coarse + i * width;
    const auto gather = [&](index_t j) {
      for (int c = 0; c < width; ++c) out[j * width + c] = S(0);
      for (index_t x = 2 * j - 1; x <= 2 * j + 1; ++x) {
        const S a = S(fine_weight(0, x, j));
        if (a != S(0))
          for (int c = 0; c < width; ++c) out[j * width + c] += a * t[x * width + c];
      }
    };
    gather(0);
    with_common_width(width, [&](auto w) {
      const int k = w.value > 0 ? w.value : width;
      for (index_t j = 1; j + 1 < m; ++j)
        for (int c = 0; c < k; ++c)
          out[j * k + c] = S(0.5) * t[(2 * j - 1) * k + c] + t[2 * j * k + c] +
                           S(0.5) * t[(2 * j + 1) * k + c];
    });
    if (m > 1) gather(m - 1);
  }
  /// The weight with which fine coordinate x (along `axis`) reads coarse coordinate j; 0
  /// off the grid.
  DIFFEO_HD double fine_weight(int axis, index_t x, index_t j) const {
    if (x < 0 || x >= f_ext[axis]) return 0;
    index_t lo, hi;
    double wlo, whi;
    upsample_taps(x, c_ext[axis], lo, hi, wlo, whi);
    return (lo == j ? wlo : 0.0) + (hi == j ? whi : 0.0);
  }
};

}  // namespace detail

template <class Boundary, class Backend, class In, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<In>, T>
void downsample(Backend be, field_view<In, Dim> fine, field_view<T, Dim> coarse, double sigma,
                Boundary) {
  using S = scalar_of<T>;
  detail::require_pyramid_args(fine, coarse, "downsample", "fine", "coarse");
  detail::downsample_filter<T>(fine.ext, fine.channels, sigma, "downsample(sigma)")
      .template apply<Boundary>(be, reinterpret_cast<const S*>(fine.data),
                                reinterpret_cast<S*>(coarse.data), false);
}

template <class Boundary, class T, int Dim, class Backend>
field<T, Dim, Backend> downsample(const field<T, Dim, Backend>& fine, double sigma, Boundary) {
  grid<Dim> g{downsampled_extents(fine.ext()), fine.spacing() * 2.0};
  field<T, Dim, Backend> coarse(g, fine.channels());
  downsample<Boundary>(Backend{}, fine.view(), coarse.view(), sigma);
  return coarse;
}

template <class Boundary, class Backend, class G, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<G>, T>
void downsample_vjp(Backend be, field_view<G, Dim> grad_coarse, field_view<T, Dim> grad_fine,
                    double sigma, Boundary) {
  using S = scalar_of<T>;
  detail::require_pyramid_args(grad_fine, grad_coarse, "downsample_vjp", "grad_fine",
                               "grad_coarse");
  detail::downsample_filter<T>(grad_fine.ext, grad_fine.channels, sigma,
                               "downsample_vjp(sigma)")
      .template apply<Boundary>(be, reinterpret_cast<const S*>(grad_coarse.data),
                                reinterpret_cast<S*>(grad_fine.data), true);
}

template <class Backend, class In, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<In>, T>
void upsample(Backend be, field_view<In, Dim> coarse, field_view<T, Dim> fine) {
  using S = scalar_of<T>;
  detail::require_pyramid_args(fine, coarse, "upsample", "fine", "coarse");
  for_each_point(be, fine.ext,
                 detail::upsample_kernel<S, Dim>{
                     reinterpret_cast<const S*>(coarse.data), reinterpret_cast<S*>(fine.data),
                     coarse.ext, fine.channels * detail::components<T>::count,
                     S(detail::vector_ratio<T, Dim>)});
}

template <class T, int Dim, class Backend>
field<T, Dim, Backend> upsample(const field<T, Dim, Backend>& coarse,
                                const extents<Dim>& fine_ext) {
  grid<Dim> g{fine_ext, coarse.spacing() / 2.0};
  field<T, Dim, Backend> fine(g, coarse.channels());
  upsample(Backend{}, coarse.view(), fine.view());
  return fine;
}

template <class Backend, class G, class T, int Dim>
  requires std::is_same_v<std::remove_const_t<G>, T>
void upsample_vjp(Backend be, field_view<G, Dim> grad_fine, field_view<T, Dim> grad_coarse) {
  using S = scalar_of<T>;
  detail::require_pyramid_args(grad_fine, grad_coarse, "upsample_vjp", "grad_fine",
                               "grad_coarse");
  for_each_point(be, grad_coarse.ext,
                 detail::upsample_adjoint_kernel<S, Dim>{
                     reinterpret_cast<const S*>(grad_fine.data),
                     reinterpret_cast<S*>(grad_coarse.data), grad_fine.ext, grad_coarse.ext,
                     grad_fine.channels * detail::components<T>::count,
                     S(detail::vector_ratio<T, Dim>)});
}

template <class Boundary, class T, int Dim, class Backend>
std::vector<field<T, Dim, Backend>> make_pyramid(const field<T, Dim, Backend>& f, int levels,
                                                 double sigma, Boundary) {
  if (levels < 1)
    throw value_error("make_pyramid(levels): expected at least 1, got " +
                      std::to_string(levels));
  std::vector<field<T, Dim, Backend>> out;
  out.reserve(static_cast<std::size_t>(levels));
  out.push_back(f);
  for (int l = 1; l < levels; ++l) out.push_back(downsample<Boundary>(out.back(), sigma));
  return out;
}

}  // namespace diffeo
