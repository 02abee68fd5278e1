#pragma once
/// Scatter-add: many sources each add weighted values into a few targets. This is the
/// adjoint of sampling (the image gradient of a warp) and the body of splatting.
///
/// Two modes: `atomic` adds with atomic operations (fast; on parallel backends the order
/// of additions, hence the rounding, varies from run to run), `deterministic` gathers
/// every target's contributions in source order after a sort by target (bitwise
/// reproducible: the same on every run and on the serial and oneTBB backends).
///
/// On oneTBB, `atomic` first tries bands: runs of sources whose targets are disjoint from
/// those of the band after next (true whenever the sources are grid points whose taps lie
/// within a bounded distance, as in a warp or a splat by a bounded field). Even bands then
/// run in parallel with plain adds, then odd ones; no atomic operation is needed, and the
/// result does not depend on the thread count. Otherwise it falls back to atomic adds.

#include <algorithm>
#include <atomic>
#include <limits>
#include <type_traits>
#include <vector>

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

/// Calls `f(std::integral_constant<int, C>{})` with C = `channels` when it is 1 to 4 (loops
/// over channels then unroll, with no overlap checks), else with C = 0 (run-time count).
template <class F>
void with_channel_count(int channels, const F& f) {
  switch (channels) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

/// Adds source `s` into its taps atomically; `Channels` is the channel count when fixed at
/// compile time, else 0 (`channels` at run time).
template <int K, class S, class Taps, class Value, int Channels = 0>
struct scatter_direct_kernel {
  Taps taps;
  Value value;
  S* target;
  int channels;
  DIFFEO_HD void operator()(index_t s) const {
    const int C = Channels != 0 ? Channels : channels;
    index_t idx[K];
    S w[K];
    taps(s, idx, w);
    for (int k = 0; k < K; ++k) {
      if (idx[k] < 0) continue;
      S* t = target + idx[k] * C;
      for (int c = 0; c < C; ++c) atomic_add(t + c, w[k] * value(s, c));
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

/// Calls `add(s, target, weight)` for every tap of the sources [first, last), in order. The
/// taps of a chunk of sources are found before its adds (with `taps.run(first, count, idx,
/// w)` when the functor has it: consecutive sources without a division each), so finding
/// them does not wait on the adds' loads and stores (compose_vjp's scatter: 1.75× faster in
/// 2D than finding and adding source by source; in 3D within the noise).
template <int K, class S, class Taps, class Add>
void for_each_tap_in_chunks(index_t first, index_t last, const Taps& taps, const Add& add) {
  constexpr index_t chunk = 16;
  index_t idx[chunk][K];
  S w[chunk][K];
  for (index_t c0 = first; c0 < last; c0 += chunk) {
    const index_t count = std::min(last - c0, chunk);
    if constexpr (requires { taps.run(c0, count, idx, w); })
      taps.run(c0, count, idx, w);
    else
      for (index_t n = 0; n < count; ++n) taps(c0 + n, idx[n], w[n]);
    for (index_t n = 0; n < count; ++n)
      for (int k = 0; k < K; ++k)
        if (idx[n][k] >= 0) add(c0 + n, idx[n][k], w[n][k]);
  }
}

/// Takes no tap away from `scatter_range`.
struct no_tap_elsewhere {
  template <class S>
  bool operator()(index_t, index_t, S) const {
    return false;
  }
};

/// Plain adds of sources [first, last), except the taps for which `elsewhere(s, tap, w)`
/// returns true (it has taken them to add later).
template <int K, class S, class Taps, class Value, class Elsewhere = no_tap_elsewhere>
void scatter_range(index_t first, index_t last, const Taps& taps, const Value& value, S* target,
                   int channels, const Elsewhere& elsewhere = {}) {
  with_channel_count(channels, [&](auto fixed) {
    constexpr int fixed_count = decltype(fixed)::value;
    const int C = fixed_count != 0 ? fixed_count : channels;
    for_each_tap_in_chunks<K, S>(first, last, taps, [&](index_t s, index_t tap, S w) {
      if (elsewhere(s, tap, w)) return;
      S* t = target + tap * C;
      for (int c = 0; c < C; ++c) t[c] += w * value(s, c);
    });
  });
}

#if defined(DIFFEO_ENABLE_TBB)
/// The banded scatter of the oneTBB backend (see the top of this file); false when the
/// sources' targets do not fall into such bands (nothing is written then).
///
/// Bands are runs of `per` blocks of sources. The target range of each band is estimated
/// from every 64th source; bands of one parity split the target indices between them at
/// the midpoints of the gaps between their estimates. A band adds plainly into its own
/// part; a tap that lands outside it (the estimate missed it) is set aside and added
/// after the band's phase, in band order. So the estimate only steers speed, never the
/// result, and the result does not depend on the thread count.
template <int K, class S, class Taps, class Value>
bool scatter_in_bands(backend::tbb, index_t sources, const Taps& taps, const Value& value,
                      S* target, int channels) {
  constexpr index_t block = 1024, stride = 64;
  const index_t blocks = (sources + block - 1) / block;
  if (blocks < 4) {  // too few to share: one thread, no atomics
    scatter_range<K>(0, sources, taps, value, target, channels);
    return true;
  }
  constexpr index_t none = std::numeric_limits<index_t>::max();
  std::vector<index_t> lo(static_cast<std::size_t>(blocks)), hi(lo.size());
  // Coarse loops: TBB's own partitioner, one block or band per task at least.
  ::tbb::parallel_for(index_t(0), blocks, [&](index_t b) {
    index_t l = none, h = -1;
    index_t idx[K];
    S w[K];
    const index_t last = std::min(sources, (b + 1) * block) - 1;
    for (index_t s = b * block;; s = std::min(s + stride, last)) {
      taps(s, idx, w);
      for (int k = 0; k < K; ++k)
        if (idx[k] >= 0) l = std::min(l, idx[k]), h = std::max(h, idx[k]);
      if (s == last) break;
    }
    lo[b] = l, hi[b] = h;
  });
  // The narrowest bands (at least 4) whose estimates increase strictly within each parity.
  for (index_t per = 1; blocks / per >= 4; per *= 2) {
    const index_t bands = (blocks + per - 1) / per;
    std::vector<index_t> band_lo(static_cast<std::size_t>(bands)), band_hi(band_lo.size());
    bool disjoint = true;
    index_t prev[2] = {-1, -1};  // the last non-empty band of each parity
    std::vector<index_t> part_end(band_lo.size(), none);  // band j owns [end of j − 2, part_end[j])
    for (index_t j = 0; j < bands && disjoint; ++j) {
      index_t l = none, h = -1;
      for (index_t b = j * per; b < std::min(blocks, (j + 1) * per); ++b)
        l = std::min(l, lo[b]), h = std::max(h, hi[b]);
      band_lo[j] = l, band_hi[j] = h;
      if (h < 0) continue;
      const index_t q = prev[j % 2];
      if (q >= 0) {
        disjoint = band_hi[q] < l;
        part_end[q] = band_hi[q] + (l - band_hi[q] + 1) / 2;
      }
      prev[j % 2] = j;
    }
    if (!disjoint) continue;
    std::vector<index_t> part_begin(band_lo.size(), 0);
    for (const int parity : {0, 1}) {
      index_t begin = 0;
      for (index_t j = parity; j < bands; j += 2) {
        part_begin[j] = begin;
        if (band_hi[j] >= 0) begin = part_end[j];
      }
    }
    struct entry {
      index_t source, tap;
      S weight;
    };
    std::vector<std::vector<entry>> misses(static_cast<std::size_t>(bands));
    for (const index_t parity : {0, 1}) {
      ::tbb::parallel_for(index_t(0), (bands - parity + 1) / 2, [&](index_t m) {
        const index_t j = 2 * m + parity;
        const index_t begin = part_begin[j], end = band_hi[j] >= 0 ? part_end[j] : begin;
        const index_t first = j * per * block, last = std::min(sources, first + per * block);
        scatter_range<K>(first, last, taps, value, target, channels,
                         [&](index_t s, index_t tap, S w) {
                           if (tap >= begin && tap < end) return false;
                           misses[j].push_back({s, tap, w});  // outside this band's part
                           return true;
                         });
      });
      for (index_t j = parity; j < bands; j += 2)
        for (const entry& e : misses[j])
          for (int c = 0; c < channels; ++c) target[e.tap * channels + c] += e.weight * value(e.source, c);
    }
    return true;
  }
  return false;
}
#endif

}  // namespace detail

template <int K, class Backend, class S, class Taps, class Value>
void scatter_add(Backend be, index_t sources, const Taps& taps, const Value& value, S* target,
                 index_t targets, int channels, scatter_mode mode) {
  static_assert(std::is_floating_point_v<S>, "scatter_add accumulates into floating point");
  if (sources == 0 || targets == 0) return;
  if (mode == scatter_mode::atomic) {
#if defined(DIFFEO_ENABLE_TBB)
    if constexpr (std::is_same_v<Backend, backend::tbb>)
      if (detail::scatter_in_bands<K>(be, sources, taps, value, target, channels)) return;
#endif
    if constexpr (std::is_same_v<Backend, backend::serial>) {
      detail::scatter_range<K>(0, sources, taps, value, target, channels);
      return;
    }
    detail::with_channel_count(channels, [&](auto fixed) {
      constexpr int C = decltype(fixed)::value;
      for_each_index(be, sources,
                     detail::scatter_direct_kernel<K, S, Taps, Value, C>{taps, value, target,
                                                                          channels});
    });
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
