#pragma once
/// The flow of a stationary velocity field in displacement form,
///   du/dt (p) = v(p + u(p)),   u(0) = 0,
/// so that `u(1)` is the displacement of `exp(v)` and `u(-1)` that of its inverse
/// (docs/conventions.md). One evaluation is one `warp` of `v` by `u` (bilinear/trilinear,
/// boundary `zeros` by default as workload W5). Its vector-Jacobian products:
///   w.r.t. u:  (aᵀ ∂f/∂u)(p)_k = Σ_c a_c(p) ∂v_c/∂q_k (p + u(p))   (per point)
///   w.r.t. v:  a splatted at p + u(p) with the interpolation weights (a scatter)
/// both from `warp_vjp`, so the flow can be differentiated by backprop.hpp and adjoint.hpp.

#include <string>
#include <type_traits>

#include "../core/field.hpp"
#include "../core/scatter.hpp"
#include "../sample/interpolate.hpp"
#include "../sample/warp.hpp"
#include "algebra.hpp"

namespace diffeo::ode {

/// Right-hand side `du/dt = v(p + u(p))` for a displacement `u` on `v`'s grid. Holds a view
/// of `v`: the velocity field must outlive the system. The time argument is ignored.
template <class S, int Dim, class Backend = backend::default_t, class Interp = interp::linear,
          class Boundary = boundary::zeros>
class svf_flow {
 public:
  using state_type = vector_field<S, Dim, Backend>;
  /// The parameters are the velocity field itself.
  using parameter_type = vector_field<S, Dim, Backend>;

  /// The flow of `v`; `mode` picks the accumulation of the v-gradient scatter (atomic is
  /// fastest; deterministic is bitwise reproducible).
  explicit svf_flow(const vector_field<S, Dim, Backend>& v, Interp = {}, Boundary = {},
                    scatter_mode mode = scatter_mode::atomic)
      : m_v(v.view()), m_mode(mode) {
    require_valid(m_v, "svf_flow(v)");
  }

  /// `dudt = v(p + u(p))`; `dudt` takes `u`'s shape.
  void operator()(const state_type& u, state_type& dudt, double /*t*/) const {
    require_same_extents(m_v, u.view(), "svf_flow(v, u)");
    resize_like(dudt, u);
    if constexpr (std::is_same_v<S, float> && std::is_same_v<Interp, interp::linear>) {
      // v read as a Dim-channel float image: the same values, but warp's vectorized rows
      // (AVX2 where the CPU has it) apply to float images only.
      const field_view<const float, Dim> vf{reinterpret_cast<const float*>(m_v.data), m_v.ext,
                                            Dim, m_v.spacing};
      const field_view<float, Dim> out{reinterpret_cast<float*>(dudt.data()), dudt.ext(), Dim,
                                       dudt.spacing()};
      warp(Backend{}, vf, u.view(), out, Interp{}, Boundary{});
    } else {
      warp(Backend{}, m_v, u.view(), dudt.view(), Interp{}, Boundary{});
    }
  }

  /// `a_du = aᵀ ∂f/∂u` and `a_dv = aᵀ ∂f/∂v` at `u` (both overwritten).
  void vjp(const state_type& u, double /*t*/, const state_type& a, state_type& a_du,
           parameter_type& a_dv) const {
    require_same_extents(m_v, u.view(), "svf_flow::vjp(v, u)");
    require_same_extents(u.view(), a.view(), "svf_flow::vjp(u, a)");
    resize_like(a_du, u);
    if (!(a_dv.geometry() == m_v.geometry())) a_dv = parameter_type(m_v.geometry());
    warp_vjp(Backend{}, m_v, u.view(), a.view(), a_dv.view(), a_du.view(), Interp{}, Boundary{},
             m_mode);
  }

  /// Only `aᵀ ∂f/∂u` (no scatter): what gradients w.r.t. the initial displacement need.
  void vjp_state(const state_type& u, double /*t*/, const state_type& a,
                 state_type& a_du) const {
    require_same_extents(m_v, u.view(), "svf_flow::vjp_state(v, u)");
    resize_like(a_du, u);
    warp_vjp(Backend{}, m_v, u.view(), a.view(), vector_view<S, Dim>{}, a_du.view(), Interp{},
             Boundary{}, m_mode);
  }

  /// A zero field shaped like the parameters (for gradients).
  parameter_type parameter_like() const { return parameter_type(m_v.geometry()); }
  /// The velocity field's view.
  const_vector_view<S, Dim> velocity() const { return m_v; }

 private:
  const_vector_view<S, Dim> m_v;
  scatter_mode m_mode;
};

}  // namespace diffeo::ode
