#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>

// The fused ALTI distance kernel for CPUs (alti_lens.fused): for a row block, each source j's
// vector T_ij = sum_h A[h,i,j] V[j,h,:] (+ R[i,:] when j == i + diag) is formed in a small buffer
// that stays in cache and is reduced at once, so the n x n x d tensor T is never written:
//   p = 1 or 2: dist[i, j] = || y_i - T_ij ||_p;   p = 0: dist[i, j] = || T_ij ||_2.
// Only keys [kmin[i], kmax[i]) are formed; others stay 0. diag < 0: no residual term (cross).
// Also returns sums[i] = sum_j T_ij over the formed keys, for the exactness check.
template <typename scalar_t>
void kernel(const scalar_t* A, const scalar_t* V, const scalar_t* R, const scalar_t* Y,
            const int64_t* kmin, const int64_t* kmax, scalar_t* out, scalar_t* sums,
            int64_t H, int64_t nq, int64_t nk, int64_t d, int64_t p, int64_t diag) {
  constexpr int64_t RB = 16;  // rows per block: V[j] is read once per block (measured best of 8, 16, 32)
  at::parallel_for(0, (nq + RB - 1) / RB, 1, [&](int64_t b0, int64_t b1) {
    std::vector<scalar_t> t(RB * d);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t i0 = blk * RB, i1 = std::min(nq, i0 + RB), nr = i1 - i0;
      int64_t lo = nk, hi = 0;
      for (int64_t i = i0; i < i1; ++i) { lo = std::min(lo, kmin[i]); hi = std::max(hi, kmax[i]); }
      for (int64_t j = lo; j < hi; ++j) {
        std::fill(t.begin(), t.begin() + nr * d, scalar_t(0));
        const scalar_t* Vj = V + j * H * d;
        for (int64_t h = 0; h < H; ++h) {
          const scalar_t* Vjh = Vj + h * d;
          for (int64_t r = 0; r < nr; ++r) {
            const scalar_t a = A[(h * nq + i0 + r) * nk + j];
            if (a == scalar_t(0)) continue;
            scalar_t* tr = t.data() + r * d;
            for (int64_t k = 0; k < d; ++k) tr[k] += a * Vjh[k];
          }
        }
        for (int64_t r = 0; r < nr; ++r) {
          const int64_t i = i0 + r;
          if (j < kmin[i] || j >= kmax[i]) continue;
          scalar_t* tr = t.data() + r * d;
          if (diag >= 0 && j == i + diag) {
            const scalar_t* Ri = R + i * d;
            for (int64_t k = 0; k < d; ++k) tr[k] += Ri[k];
          }
          scalar_t* Si = sums + i * d;
          for (int64_t k = 0; k < d; ++k) Si[k] += tr[k];
          scalar_t acc = 0;
          if (p == 0) {
            for (int64_t k = 0; k < d; ++k) acc += tr[k] * tr[k];
            acc = std::sqrt(acc);
          } else {
            const scalar_t* Yi = Y + i * d;
            if (p == 1) { for (int64_t k = 0; k < d; ++k) acc += std::abs(Yi[k] - tr[k]); }
            else { for (int64_t k = 0; k < d; ++k) { scalar_t e = Yi[k] - tr[k]; acc += e * e; } acc = std::sqrt(acc); }
          }
          out[i * nk + j] = acc;
        }
      }
    }
  });
}

std::vector<torch::Tensor> distances(torch::Tensor A, torch::Tensor V, torch::Tensor R, torch::Tensor Y,
                        torch::Tensor kmin, torch::Tensor kmax, int64_t p, int64_t diag) {
  A = A.contiguous(); V = V.contiguous(); R = R.contiguous(); Y = Y.contiguous();
  kmin = kmin.contiguous(); kmax = kmax.contiguous();
  const int64_t H = A.size(0), nq = A.size(1), nk = A.size(2), d = V.size(2);
  auto out = torch::zeros({nq, nk}, A.options());
  auto sums = torch::zeros({nq, d}, A.options());
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "alti_distances", [&] {
    kernel<scalar_t>(A.data_ptr<scalar_t>(), V.data_ptr<scalar_t>(), R.data_ptr<scalar_t>(),
                     Y.data_ptr<scalar_t>(), kmin.data_ptr<int64_t>(), kmax.data_ptr<int64_t>(),
                     out.data_ptr<scalar_t>(), sums.data_ptr<scalar_t>(), H, nq, nk, d, p, diag);
  });
  return {out, sums};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("distances", &distances); }
