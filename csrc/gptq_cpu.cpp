// C++ CPU kernel of GPTQ's in-block column loop (see golf_fast/ops/gptq.py for the math).
//
// For every row r of every matrix b (rows are independent once U is fixed), with s = scales[b, r]
// and the block's upper-triangular factor U (bs x bs, U = chol(H^-1, upper) restricted to the block):
//   for j in 0..bs-1:
//     q      = clamp(round_half_even(w[j] / s), -qmax, qmax)      -> codes[b, r, j]
//     e      = (w[j] - q * s) / U[j, j]                            -> err[b, r, j]
//     w[c]  -= e * U[j, c]            for c in j+1..bs-1           (rank-1 update of the row)
// Each row's block (bs floats) stays in L1 while its bs steps run; the arithmetic is the same
// sequence of fp32 operations as the eager per-column reference (product rounded, then subtracted).
//
// This is the CPU backend "cpp" of golf_fast::gptq_block; inputs are validated in Python and
// re-checked here for direct callers.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <tuple>

namespace {

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

  at::Tensor err = w_in.contiguous().clone();  // worked on in place: row j of the block becomes e_j
  const at::Tensor u = u_in.contiguous();
  const at::Tensor scales = scales_in.contiguous();
  at::Tensor codes = at::empty({nb, n, bs}, w_in.options().dtype(at::kChar));
  float* e_ptr = err.data_ptr<float>();
  int8_t* q_ptr = codes.data_ptr<int8_t>();
  const float* u_ptr = u.data_ptr<float>();
  const float* s_ptr = scales.data_ptr<float>();
  const float lim = static_cast<float>(qmax);

  at::parallel_for(0, nb * n, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / n;
      const float* ub = u_ptr + b * bs * bs;
      float* row = e_ptr + r * bs;
      int8_t* qrow = q_ptr + r * bs;
      const float s = s_ptr[r];
      for (int64_t j = 0; j < bs; ++j) {
        const float w = row[j];
        float q = std::nearbyint(w / s);  // default rounding mode: half to even, as torch.round
        q = q < -lim ? -lim : (q > lim ? lim : q);
        const float qs = q * s;
        const float e = (w - qs) / ub[j * bs + j];
        const float* urow = ub + j * bs;
        for (int64_t c = j + 1; c < bs; ++c) {
          const float p = e * urow[c];
          row[c] = row[c] - p;
        }
        row[j] = e;
        qrow[j] = static_cast<int8_t>(q);
      }
    }
  });
  return {codes, err};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(golf_fast, m) {
  m.def("_gptq_block_cpp(Tensor w, Tensor u, Tensor scales, int qmax) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(golf_fast, CPU, m) { m.impl("_gptq_block_cpp", &gptq_block_cpp); }
