#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

// The fused ALTI distance kernel for CPUs (alti_lens.fused): for a row block, each source j's
// vector T_ij = sum_h A[h,i,j] V[j,h,:] (+ R[i,:] when j == i + diag) is formed in registers, a
// micro tile of MR rows x KC features at a time, and reduced at once, so the n x n x d tensor T
// is never written, not even to a cache buffer:
//   p = 1 or 2: dist[i, j] = || y_i - T_ij ||_p;   p = 0: dist[i, j] = || T_ij ||_2.
// Only keys [kmin[i], kmax[i]) are formed; others stay 0. diag < 0: no residual term (cross).
// Also returns sums[i] = sum_j T_ij over the formed keys, for the exactness check, and
// ||y_i||_p (p = 1, 2) summed in the same order as the distances.
//
// Plain C++ with a C ABI, called through ctypes (alti_lens.fused): no PyTorch or Python headers, so
// it compiles in about a second instead of the 20-100 s that <torch/extension.h> took. The caller
// passes contiguous buffers of one dtype (checked in Python) and allocates the zeroed outputs.
//
// Loop order: row blocks of RB rows (parallel) > keys j > feature chunks > micro tiles of MR rows
// (only the tiles with a row that attends key j). V[j] (H x d) is read from memory once per row
// block and reused by its micro tiles from cache; the MR x KC accumulator tile stays in vector
// registers across the H heads and the epilogue (written with GCC/Clang vector extensions: GCC
// 12's auto-vectoriser scalarised tiles of other sizes). Measured on the project's 2-core
// AVX-512 VM (GPT-2-small shape, one causal layer, one thread, CPU time): 0.040-0.056 s at 512
// tokens and 0.67 s at 2,048 (auto-vectorised 8 x 32 tile), against 0.12-0.13 s and 2.2 s for
// the version before (which accumulated T in a cache buffer and reduced each row's distance in
// scalar code). Tile sizes tried there at 512 tokens: MR x KC = 8 x 32 floats best; 4 x 64 same;
// 12 x 32 and 16 x 16 slower (register spills); RB 32, 64, 128 within noise. On a 2-core AMD
// EPYC (Zen 3) with AVX2 only (2026-12-05, same layer, one thread, CPU time, median of 31):
// 8 x 32 auto-vectorised 7.1-7.5 ms at 128 tokens and 105-107 ms at 512; vector-extension tiles
// 2 x 32 floats 4.2 / 74 ms, 3 x 32 4.7 / 79, 6 x 16 4.3 / 83, 4 x 16 5.3 / 92; RB 16 or 24
// within noise. Every tile gives bit-identical results (the lanes fix the order of each sum).

namespace {

// Partial-distance lanes per row: 128 bytes (32 floats, 16 doubles). Feature k of a row's
// distance is summed into lane k % LANES, lanes in feature order, then the lanes in lane order:
// this fixes the rounding of every distance and of ||y_i||, whatever the register tile below.
// Changing it changes results (in the last bits); the tile sizes do not.
constexpr int LANE_BYTES = 128;

// Vector types of the widest vector registers the compiler targets (GCC/Clang vector extensions,
// lowered to AVX-512, AVX2, SSE or NEON instructions); `u` types load and store unaligned.
#if defined(__AVX512F__)
#define ALTI_VEC_BYTES 64
#elif defined(__AVX__)
#define ALTI_VEC_BYTES 32
#else
#define ALTI_VEC_BYTES 16
#endif
template <typename scalar_t> struct Vec;
template <> struct Vec<float> {
  typedef float v __attribute__((vector_size(ALTI_VEC_BYTES)));
  typedef float u __attribute__((vector_size(ALTI_VEC_BYTES), aligned(4), may_alias));
  typedef int32_t i __attribute__((vector_size(ALTI_VEC_BYTES)));
  static constexpr int32_t magnitude = 0x7fffffff;
};
template <> struct Vec<double> {
  typedef double v __attribute__((vector_size(ALTI_VEC_BYTES)));
  typedef double u __attribute__((vector_size(ALTI_VEC_BYTES), aligned(8), may_alias));
  typedef int64_t i __attribute__((vector_size(ALTI_VEC_BYTES)));
  static constexpr int64_t magnitude = 0x7fffffffffffffffLL;
};

// The register tile: MR rows x KC features of T_ij, accumulated over the H heads in vector
// registers, chosen at compile time for the instruction set (-march=native). It must fit the
// register file with room for the operands: AVX-512 has 32 registers of 64 bytes (8 rows x 32
// floats = 16 of them); AVX2 has 16 of 32 bytes, where that tile (32 registers) spilled half of
// itself to the stack on every head: 2 rows x 32 floats (8 registers) measured best there (see
// the measurements above). KC divides the lanes, so every tile adds into whole lanes.
// ALTI_MR / ALTI_KCB (tile bytes per row) and ALTI_RB override them, for benchmarks.
#ifndef ALTI_RB
#define ALTI_RB 32
#endif
#if defined(__AVX512F__)
#define ALTI_TILE_MR 8
#define ALTI_TILE_KCB 128
#elif defined(__AVX2__)
#define ALTI_TILE_MR 2
#define ALTI_TILE_KCB 128
#else  // 16-byte vectors (SSE, NEON): 2 rows x 4 registers
#define ALTI_TILE_MR 2
#define ALTI_TILE_KCB 64
#endif
#ifndef ALTI_MR
#define ALTI_MR ALTI_TILE_MR
#endif
#ifndef ALTI_KCB
#define ALTI_KCB ALTI_TILE_KCB
#endif
constexpr int64_t RB = ALTI_RB;  // rows per parallel block
constexpr int MR = ALTI_MR;       // rows per register tile
static_assert(LANE_BYTES % ALTI_KCB == 0 && ALTI_KCB % ALTI_VEC_BYTES == 0,
              "a tile row is whole vectors and divides the lanes");

// f(b0, b1) on `nthreads` contiguous ranges of [0, n), like at::parallel_for with grain 1 (which
// the kernel used before): range t is [t * ceil(n / nthreads), ...). False if any range threw.
template <typename F>
bool parallel_for(int64_t n, int64_t nthreads, const F& f) {
  nthreads = std::max<int64_t>(1, std::min(nthreads, n));
  const int64_t chunk = n == 0 ? 0 : (n + nthreads - 1) / nthreads;
  std::atomic<bool> ok{true};
  auto run = [&](int64_t b0, int64_t b1) {
    try {
      f(b0, b1);
    } catch (...) {
      ok = false;
    }
  };
#ifdef _OPENMP  // OpenMP's pool stays warm between calls (new std::threads cost ~2 ms a call)
#pragma omp parallel for num_threads(nthreads) schedule(static, 1)
  for (int64_t t = 0; t < nthreads; ++t) run(t * chunk, std::min(n, (t + 1) * chunk));
#else
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < nthreads; ++t) {
    const int64_t b0 = t * chunk, b1 = std::min(n, b0 + chunk);
    if (b0 < b1) pool.emplace_back(run, b0, b1);
  }
  run(0, std::min(n, chunk));
  for (auto& thread : pool) thread.join();
#endif
  return ok;
}

// One micro tile of key j and features [k0, k0 + kc): T[r] = sum_h a[h][r] V[j, h, k0:] (+ the
// residual row `resid` on row `own`, -1: none), then for each row r < rows with in[r]:
// S[r] += T[r] and its partial distance lanes P[r] += |Y[r] - T[r]| (p 1), (Y[r] - T[r])^2
// (p 2) or T[r]^2 (p 0). Row r's S, Y are at stride d, P at stride LANES. A full tile (kc == KC)
// is MR x NV vector registers, which stay in registers through the heads and the epilogue.
template <typename scalar_t, int NV, int P>
inline void tile(const scalar_t* a, const scalar_t* v0, int64_t H, int64_t d, int64_t kc,
                 const scalar_t* resid, int own, int rows, const char* in, scalar_t* S,
                 const scalar_t* Y, scalar_t* Pl) {
  constexpr int LANES = LANE_BYTES / sizeof(scalar_t);
  constexpr int W = ALTI_VEC_BYTES / sizeof(scalar_t);
  constexpr int KC = NV * W;
  using vec = typename Vec<scalar_t>::v;
  using uvec = typename Vec<scalar_t>::u;
  using ivec = typename Vec<scalar_t>::i;
  if (kc == KC) {
    vec acc[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
      for (int n = 0; n < NV; ++n) acc[r][n] = vec{};
    for (int64_t h = 0; h < H; ++h) {
      const scalar_t* v = v0 + h * d;
      vec vv[NV];
#pragma GCC unroll 16
      for (int n = 0; n < NV; ++n) vv[n] = *reinterpret_cast<const uvec*>(v + n * W);
      const scalar_t* ah = a + h * MR;
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const scalar_t w = ah[r];
#pragma GCC unroll 16
        for (int n = 0; n < NV; ++n) acc[r][n] += w * vv[n];
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      if (r == own) {
#pragma GCC unroll 16
        for (int n = 0; n < NV; ++n) acc[r][n] += *reinterpret_cast<const uvec*>(resid + n * W);
      }
      if (r >= rows || !in[r]) continue;
#pragma GCC unroll 16
      for (int n = 0; n < NV; ++n) {
        uvec* s = reinterpret_cast<uvec*>(S + r * d + n * W);
        uvec* pl = reinterpret_cast<uvec*>(Pl + r * LANES + n * W);
        const vec t = acc[r][n];
        *s = *s + t;
        if (P == 1) {
          const vec e = *reinterpret_cast<const uvec*>(Y + r * d + n * W) - t;
          *pl = *pl + reinterpret_cast<vec>(reinterpret_cast<ivec>(e) & Vec<scalar_t>::magnitude);
        } else if (P == 2) {
          const vec e = *reinterpret_cast<const uvec*>(Y + r * d + n * W) - t;
          *pl = *pl + e * e;
        } else {
          *pl = *pl + t * t;
        }
      }
    }
    return;
  }
  // The last, partial chunk of features (d not a multiple of KC).
  scalar_t acc[MR][KC] = {};
  for (int64_t h = 0; h < H; ++h) {
    const scalar_t* v = v0 + h * d;
    const scalar_t* ah = a + h * MR;
    for (int r = 0; r < MR; ++r)
      for (int64_t c = 0; c < kc; ++c) acc[r][c] += ah[r] * v[c];
  }
  for (int r = 0; r < rows; ++r) {
    if (r == own)
      for (int64_t c = 0; c < kc; ++c) acc[r][c] += resid[c];
    if (!in[r]) continue;
    for (int64_t c = 0; c < kc; ++c) {
      S[r * d + c] += acc[r][c];
      const scalar_t e = P == 0 ? acc[r][c] : Y[r * d + c] - acc[r][c];
      Pl[r * LANES + c] += P == 1 ? std::abs(e) : e * e;
    }
  }
}

template <typename scalar_t, int P>
bool kernel(const scalar_t* A, const scalar_t* V, const scalar_t* R, const scalar_t* Y,
            const int64_t* kmin, const int64_t* kmax, scalar_t* out, scalar_t* sums,
            scalar_t* ynorm, int64_t H, int64_t nq, int64_t nk, int64_t d, int64_t diag,
            int64_t nthreads) {
  constexpr int LANES = LANE_BYTES / sizeof(scalar_t);
  constexpr int NV = ALTI_KCB / ALTI_VEC_BYTES;  // vectors per tile row
  constexpr int KC = ALTI_KCB / sizeof(scalar_t);
  const int64_t nblocks = (nq + RB - 1) / RB;
  // Threads take contiguous ranges of `order`: zigzag (0, N-1, 1, N-2, ...) pairs the cheap early
  // row blocks of a causal layer with the expensive late ones, so the threads get equal work.
  return parallel_for(nblocks, nthreads, [&](int64_t b0, int64_t b1) {
    constexpr int64_t max_tiles = (RB + MR - 1) / MR;
    std::vector<scalar_t> a(max_tiles * H * MR);  // A[h, i, j] of one key, per micro tile
    std::vector<char> in(max_tiles * MR);           // whether row t * MR + r attends key j
    std::vector<int64_t> active(max_tiles);         // the tiles with a row that does
    // Per-row partial distances, one per lane: a float reduction into one scalar would not
    // vectorise (no reassociation without -ffast-math); the lanes are summed once per key.
    std::vector<scalar_t> part(max_tiles * MR * LANES);
    for (int64_t o = b0; o < b1; ++o) {
      const int64_t blk = o % 2 == 0 ? o / 2 : nblocks - 1 - o / 2;
      const int64_t i0 = blk * RB, i1 = std::min(nq, i0 + RB), nr = i1 - i0;
      const int64_t ntiles = (nr + MR - 1) / MR;
      // ||y_i||_p summed in exactly the order of the distances below, so that a source with
      // T_ij == 0 scores exactly ||y_i|| - d_ij == 0 (no rounding residue from another order).
      for (int64_t i = i0; P != 0 && i < i1; ++i) {
        scalar_t* Pi = part.data();
        std::fill(Pi, Pi + LANES, scalar_t(0));
        const scalar_t zero = 0;
        for (int64_t k0 = 0; k0 < d; k0 += LANES) {
          const int64_t kc = std::min<int64_t>(LANES, d - k0);
          const scalar_t* Yi = Y + i * d + k0;
          if (P == 1) {
            for (int64_t c = 0; c < kc; ++c) Pi[c] += std::abs(Yi[c] - zero);
          } else {
            for (int64_t c = 0; c < kc; ++c) { const scalar_t e = Yi[c] - zero; Pi[c] += e * e; }
          }
        }
        scalar_t s = 0;
        for (int c = 0; c < LANES; ++c) s += Pi[c];
        ynorm[i] = P == 1 ? s : std::sqrt(s);
      }
      int64_t lo = nk, hi = 0;
      for (int64_t i = i0; i < i1; ++i) { lo = std::min(lo, kmin[i]); hi = std::max(hi, kmax[i]); }
      for (int64_t j = lo; j < hi; ++j) {
        const scalar_t* Vj = V + j * H * d;
        // Which rows and tiles need key j, and the tiles' attention weights packed [tile][h][r].
        int64_t nactive = 0;
        for (int64_t t = 0; t < ntiles; ++t) {
          scalar_t* at = a.data() + t * H * MR;
          bool any = false;
          for (int r = 0; r < MR; ++r) {
            const int64_t i = i0 + t * MR + r;
            const bool attends = i < i1 && j >= kmin[i] && j < kmax[i];
            in[t * MR + r] = attends;
            any = any || attends;
            for (int64_t h = 0; h < H; ++h) at[h * MR + r] = attends ? A[(h * nq + i) * nk + j] : scalar_t(0);
          }
          if (any) active[nactive++] = t;  // a tile no row of which attends j is skipped
        }
        if (nactive == 0) continue;
        for (int64_t q = 0; q < nactive; ++q) {
          const int64_t t = active[q];
          std::fill(part.begin() + t * MR * LANES, part.begin() + (t + 1) * MR * LANES, scalar_t(0));
        }
        for (int64_t k0 = 0; k0 < d; k0 += KC) {
          const int64_t kc = std::min<int64_t>(KC, d - k0);
          for (int64_t q = 0; q < nactive; ++q) {
            const int64_t t = active[q], r0 = i0 + t * MR;
            const int rows = static_cast<int>(std::min<int64_t>(MR, i1 - r0));
            const int own = diag >= 0 && j - diag >= r0 && j - diag < r0 + rows
                                ? static_cast<int>(j - diag - r0) : -1;
            tile<scalar_t, NV, P>(a.data() + t * H * MR, Vj + k0, H, d, kc,
                                  own >= 0 ? R + (r0 + own) * d + k0 : nullptr, own, rows,
                                  in.data() + t * MR,
                                  sums + r0 * d + k0, Y + r0 * d + k0,
                                  part.data() + t * MR * LANES + k0 % LANES);
          }
        }
        for (int64_t i = i0; i < i1; ++i) {
          if (j < kmin[i] || j >= kmax[i]) continue;
          const scalar_t* Pi = part.data() + (i - i0) * LANES;
          scalar_t s = 0;
          for (int c = 0; c < LANES; ++c) s += Pi[c];
          out[i * nk + j] = P == 1 ? s : std::sqrt(s);
        }
      }
    }
  });
}

template <typename scalar_t>
bool dispatch(const scalar_t* A, const scalar_t* V, const scalar_t* R, const scalar_t* Y,
              const int64_t* kmin, const int64_t* kmax, scalar_t* out, scalar_t* sums,
              scalar_t* ynorm, int64_t H, int64_t nq, int64_t nk, int64_t d, int64_t p,
              int64_t diag, int64_t nthreads) {
  if (p == 1)
    return kernel<scalar_t, 1>(A, V, R, Y, kmin, kmax, out, sums, ynorm, H, nq, nk, d, diag, nthreads);
  if (p == 2)
    return kernel<scalar_t, 2>(A, V, R, Y, kmin, kmax, out, sums, ynorm, H, nq, nk, d, diag, nthreads);
  return kernel<scalar_t, 0>(A, V, R, Y, kmin, kmax, out, sums, ynorm, H, nq, nk, d, diag, nthreads);
}

}  // namespace

// Entry points (ctypes): 0 on success, 1 if a worker failed (e.g. out of memory).
#define ALTI_ENTRY(NAME, T)                                                                     \
  extern "C" int NAME(const T* A, const T* V, const T* R, const T* Y, const int64_t* kmin,       \
                      const int64_t* kmax, T* out, T* sums, T* ynorm, int64_t H, int64_t nq,    \
                      int64_t nk, int64_t d, int64_t p, int64_t diag, int64_t nthreads) {       \
    return dispatch<T>(A, V, R, Y, kmin, kmax, out, sums, ynorm, H, nq, nk, d, p, diag, nthreads) \
               ? 0                                                                               \
               : 1;                                                                              \
  }
ALTI_ENTRY(alti_distances_f32, float)
ALTI_ENTRY(alti_distances_f64, double)
