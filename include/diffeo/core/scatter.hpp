#pragma once
/// Scatter-add: many sources each add weighted values into a few targets. This is the
/// adjoint of sampling (the image gradient of a warp) and the body of splatting.
///
/// Two modes: `atomic` adds with atomic operations (fast; on parallel backends the order
/// of additions, hence the rounding, varies from run to run), `deterministic` gathers
/// every target's contributions in source order after a sort by target (bitwise
/// reproducible: the same on every run and on the serial and oneTBB backends).

#include <atomic>
#include <limits>
#include <type_traits>

#include "backend.hpp"
#include "field.hpp"

namespace diffeo {

/// How a scatter accumulates into shared targets.
enum class scatter_mode {
  atomic,        ///< atomic adds; fastest, order-dependent rounding on parallel backends
  deterministic  ///< sort by target, then gather in source order; reproducible everywhere
};

/// Adds into `target` (scalar array of `targets × channels`): every source `s` in
/// `[0, sources)` has `K` taps given by `taps(s, idx, w)` (fills `idx[K]`, a target index
/// or -1 for none, and weights `w[K]`), and adds `w[k] * value(s, c)` to
/// `target[idx[k] * channels + c]` for each channel `c`.
template <int K, class Backend, class S, class Taps, class Value>
void scatter_add(Backend be, index_t sources, const Taps& taps, const Value& value, S* target,
                 index_t targets, int channels, scatter_mode mode = scatter_mode::atomic);

// ------------------------------------------------------------------------------------------

namespace detail {

/// `*p += v` safely against concurrent adds to the same address.
template <class S>
DIFFEO_HD void atomic_add(S* p, S v) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, v);
#else
  std::atomic_ref<S>(*p).fetch_add(v, std::memory_order_relaxed);
#endif
}

template <int K, class S, class Taps, class Value, bool Atomic>
struct scatter_direct_kernel {
  Taps taps;
  Value value;
  S* target;
  int channels;
  DIFFEO_HD void operator()(index_t s) const {
    index_t idx[K];
    S w[K];
    taps(s, idx, w);
    for (int k = 0; k < K; ++k) {
      if (idx[k] < 0) continue;
      S* t = target + idx[k] * channels;
      for (int c = 0; c < channels; ++c) {
        const S v = w[k] * value(s, c);
        if constexpr (Atomic)
          atomic_add(t + c, v);
        else
          t[c] += v;
      }
    }
  }
};

/// Pass 1 of the deterministic scatter: one (target, entry) pair and one weight per tap.
template <int K, class S, class Taps>
struct scatter_entries_kernel {
  Taps taps;
  index_t* keys;
  index_t* entries;
  S* weights;
  DIFFEO_HD void operator()(index_t s) const {
    index_t idx[K];
    S w[K];
    taps(s, idx, w);
    for (int k = 0; k < K; ++k) {
      const index_t e = s * K + k;
      // Taps that reach no target sort to the end and are never read.
      keys[e] = idx[k] < 0 ? std::numeric_limits<index_t>::max() : idx[k];
      entries[e] = e;
      weights[e] = w[k];
    }
  }
};

/// First entry of every target: binary search in the sorted keys.
struct segment_starts_kernel {
  const index_t* keys;
  index_t n;
  index_t* starts;
  DIFFEO_HD void operator()(index_t t) const {
    index_t lo = 0, hi = n;
    while (lo < hi) {
      const index_t mid = lo + (hi - lo) / 2;
      if (keys[mid] < t)
        lo = mid + 1;
      else
        hi = mid;
    }
    starts[t] = lo;
  }
};

/// Pass 2: each target sums its entries in source order.
template <int K, class S, class Value>
struct scatter_gather_kernel {
  Value value;
  const index_t* starts;
  const index_t* entries;
  const S* weights;
  S* target;
  int channels;
  DIFFEO_HD void operator()(index_t t) const {
    for (int c = 0; c < channels; ++c) {
      S acc = 0;
      for (index_t j = starts[t]; j < starts[t + 1]; ++j) {
        const index_t e = entries[j];
        acc += weights[e] * value(e / K, c);
      }
      target[t * channels + c] += acc;
    }
  }
};

}  // namespace detail

template <int K, class Backend, class S, class Taps, class Value>
void scatter_add(Backend be, index_t sources, const Taps& taps, const Value& value, S* target,
                 index_t targets, int channels, scatter_mode mode) {
  static_assert(std::is_floating_point_v<S>, "scatter_add accumulates into floating point");
  if (sources == 0 || targets == 0) return;
  if (mode == scatter_mode::atomic) {
    constexpr bool atomic = !std::is_same_v<Backend, backend::serial>;
    for_each_index(be, sources,
                   detail::scatter_direct_kernel<K, S, Taps, Value, atomic>{taps, value, target,
                                                                              channels});
    return;
  }
  const index_t n = sources * K;
  const auto buffer = [&](index_t count) { return field<index_t, 2, Backend>(make_extents(count, 1)); };
  auto keys = buffer(n), entries = buffer(n), starts = buffer(targets + 1);
  field<S, 2, Backend> weights(make_extents(n, 1));
  for_each_index(be, sources,
                 detail::scatter_entries_kernel<K, S, Taps>{taps, keys.data(), entries.data(),
                                                            weights.data()});
  sort_by_key(be, keys.data(), entries.data(), n);
  for_each_index(be, targets + 1, detail::segment_starts_kernel{keys.data(), n, starts.data()});
  for_each_index(be, targets,
                 detail::scatter_gather_kernel<K, S, Value>{value, starts.data(), entries.data(),
                                                            weights.data(), target, channels});
}

}  // namespace diffeo
