// C++ CPU kernel of GPTQ's in-block column loop (see golf_fast/ops/gptq.py for the math).
//
// For every row r of every matrix b (rows are independent once U is fixed), with s = scales[b, r]
// and the block's upper-triangular factor U (bs x bs, U = chol(H^-1, upper) restricted to the block):
//   for j in 0..bs-1:
//     q      = clamp(round_half_even(w[j] / s), -qmax, qmax)      -> codes[b, r, j]
//     e      = (w[j] - q * s) / U[j, j]                            -> err[b, r, j]
//     w[c]  -= e * U[j, c]            for c in j+1..bs-1           (rank-1 update of the row)
// A group of 16 rows (16 x bs floats) stays in L1 while its bs steps run; the arithmetic is the same
// sequence of fp32 operations as the eager per-column reference (product rounded, then subtracted).
//
// This is the CPU backend "cpp" of golf_fast::gptq_block; inputs are validated in Python and
// re-checked here for direct callers.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <tuple>
#include <vector>

namespace {

// Rows are processed in groups of kLanes, stored transposed (tile[c * kLanes + r]) so that every
// step is a vector operation across the group's rows: the quantization of column j for 16 rows at
// once, then for each later column c one broadcast of U[j, c] times the 16 errors. That hides the
// latency of the per-column divide → round → divide chain and lets the compiler use full-width SIMD.
// Rounding: round-half-to-even of v clamped to [-(qmax+1), qmax+1] (|v| <= 128 << 2^22) via the
// 1.5·2^23 magic number, exact under the default rounding mode, and the same value as torch.round.
constexpr int64_t kLanes = 16;

__attribute__((target_clones("avx2", "default")))
void run_group(const float* __restrict w, int64_t w_stride, int64_t rows, const float* __restrict ub, int64_t bs,
               const float* __restrict s_in, float lim, float* __restrict tile, float* __restrict err,
               int8_t* __restrict codes) {
  float s[kLanes], q[kLanes], e[kLanes];
  for (int64_t r = 0; r < kLanes; ++r) s[r] = r < rows ? s_in[r] : 1.0f;
  for (int64_t c = 0; c < bs; ++c)
    for (int64_t r = 0; r < kLanes; ++r) tile[c * kLanes + r] = r < rows ? w[r * w_stride + c] : 0.0f;
  const float magic = 12582912.0f;  // 1.5 * 2^23
  for (int64_t j = 0; j < bs; ++j) {
    float* col = tile + j * kLanes;
    const float d = ub[j * bs + j];
    for (int64_t r = 0; r < kLanes; ++r) {
      float v = col[r] / s[r];
      v = v < -(lim + 1.0f) ? -(lim + 1.0f) : (v > lim + 1.0f ? lim + 1.0f : v);
      const float t = v + magic;  // not folded: without -ffast-math (v + m) - m is not an identity
      float rq = t - magic;
      rq = rq < -lim ? -lim : (rq > lim ? lim : rq);
      q[r] = rq;
      const float qs = rq * s[r];
      e[r] = (col[r] - qs) / d;
    }
    const float* urow = ub + j * bs;
    for (int64_t c = j + 1; c < bs; ++c) {
      const float uc = urow[c];
      float* dst = tile + c * kLanes;
      for (int64_t r = 0; r < kLanes; ++r) {
        const float p = e[r] * uc;
        dst[r] = dst[r] - p;
      }
    }
    for (int64_t r = 0; r < kLanes; ++r) {
      col[r] = e[r];
      if (r < rows) codes[r * bs + j] = static_cast<int8_t>(q[r]);
    }
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < bs; ++c) err[r * bs + c] = tile[c * kLanes + r];
}

std::tuple<at::Tensor, at::Tensor> gptq_block_cpp(const at::Tensor& w_in, const at::Tensor& u_in,
                                                  const at::Tensor& scales_in, int64_t qmax) {
  TORCH_CHECK(w_in.dim() == 3, "w: expected a 3-D (B, N, bs) tensor, got ", w_in.dim(), "-D");
  TORCH_CHECK(u_in.dim() == 3, "u: expected a 3-D (B, bs, bs) tensor, got ", u_in.dim(), "-D");
  TORCH_CHECK(scales_in.dim() == 2, "scales: expected a 2-D (B, N) tensor, got ", scales_in.dim(), "-D");
  TORCH_CHECK(w_in.scalar_type() == at::kFloat && u_in.scalar_type() == at::kFloat &&
                  scales_in.scalar_type() == at::kFloat,
              "w, u, scales: expected float32 tensors");
  TORCH_CHECK(w_in.device().is_cpu() && u_in.device().is_cpu() && scales_in.device().is_cpu(),
              "w, u, scales: expected CPU tensors");
  const int64_t nb = w_in.size(0), n = w_in.size(1), bs = w_in.size(2);
  TORCH_CHECK(u_in.size(0) == nb && u_in.size(1) == bs && u_in.size(2) == bs, "u: expected shape (", nb, ", ",
              bs, ", ", bs, "), got ", u_in.sizes());
  TORCH_CHECK(scales_in.size(0) == nb && scales_in.size(1) == n, "scales: expected shape (", nb, ", ", n,
              "), got ", scales_in.sizes());
  TORCH_CHECK(qmax >= 1 && qmax <= 127, "qmax: expected 1..127, got ", qmax);

  // Rows only need unit stride along the block's columns; a column slice of W is used in place.
  const at::Tensor w = w_in.stride(2) == 1 ? w_in : w_in.contiguous();
  const at::Tensor u = u_in.contiguous();
  const at::Tensor scales = scales_in.contiguous();
  at::Tensor err = at::empty({nb, n, bs}, w_in.options());
  at::Tensor codes = at::empty({nb, n, bs}, w_in.options().dtype(at::kChar));
  const float* w_ptr = w.data_ptr<float>();
  float* e_ptr = err.data_ptr<float>();
  int8_t* q_ptr = codes.data_ptr<int8_t>();
  const float* u_ptr = u.data_ptr<float>();
  const float* s_ptr = scales.data_ptr<float>();
  const float lim = static_cast<float>(qmax);
  const int64_t groups_per_matrix = (n + kLanes - 1) / kLanes;
  const int64_t sb = w.stride(0), sn = w.stride(1);

  at::parallel_for(0, nb * groups_per_matrix, 1, [&](int64_t g0, int64_t g1) {
    std::vector<float> tile(kLanes * bs);
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t b = g / groups_per_matrix, r0 = (g % groups_per_matrix) * kLanes;
      const int64_t rows = std::min(kLanes, n - r0);
      run_group(w_ptr + b * sb + r0 * sn, sn, rows, u_ptr + b * bs * bs, bs, s_ptr + b * n + r0, lim,
                tile.data(), e_ptr + (b * n + r0) * bs, q_ptr + (b * n + r0) * bs);
    }
  });
  return {codes, err};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(golf_fast, m) {
  m.def("_gptq_block_cpp(Tensor w, Tensor u, Tensor scales, int qmax) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(golf_fast, CPU, m) { m.impl("_gptq_block_cpp", &gptq_block_cpp); }
