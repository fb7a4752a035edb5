// Torch glue of the CUDA Hessian kernel (csrc/cuda/hessian.cu): registers
// golf_fast::_hessian_accumulate_cuda for the CUDA dispatch key. Built only with the CUDA part.
//
// H (K, K) fp32 contiguous CUDA tensor, updated in place; X (T, K) bf16 or fp16 on H's device with
// unit column stride (copied to a contiguous tensor of the same dtype otherwise). The token split
// count comes from the device's SM count; its fp32 workspace is allocated here per call.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <cstdint>

extern "C" {
int golf_hessian_plan_splits(int64_t t_total, int64_t k, int num_sms);
int64_t golf_hessian_workspace_floats(int64_t k, int splits);
cudaError_t golf_hessian_accumulate(float* h, const void* x, int64_t t_total, int64_t k, int64_t ldx, int dtype,
                                    float scale, float* work, int splits, cudaStream_t stream);
}

namespace {

void hessian_accumulate_cuda(at::Tensor H, const at::Tensor& X_in, double scale) {
  TORCH_CHECK(H.is_cuda(), "H: expected a CUDA tensor");
  TORCH_CHECK(X_in.device() == H.device(), "X: expected a tensor on H's device ", H.device(), ", got ",
              X_in.device());
  TORCH_CHECK(H.scalar_type() == at::kFloat, "H: expected float32, got ", H.scalar_type());
  TORCH_CHECK(H.dim() == 2 && H.size(0) == H.size(1), "H: expected a square (K, K) matrix, got ", H.sizes());
  TORCH_CHECK(H.is_contiguous(), "H: expected a contiguous tensor");
  TORCH_CHECK(X_in.dim() == 2, "X: expected a 2-D (T, K) tensor, got ", X_in.sizes());
  const int64_t k = H.size(0);
  TORCH_CHECK(X_in.size(1) == k, "X: expected ", k, " columns (H is ", k, "x", k, "), got ", X_in.size(1));
  TORCH_CHECK(k <= (int64_t(1) << 20), "H: K = ", k, " is larger than this kernel supports (2^20)");
  const auto st = X_in.scalar_type();
  TORCH_CHECK(st == at::kBFloat16 || st == at::kHalf, "X: expected bfloat16 or float16 for the CUDA kernel, got ",
              st);
  const at::Tensor X = (X_in.stride(1) == 1 && X_in.stride(0) >= k) ? X_in : X_in.contiguous();
  const int64_t t_total = X.size(0);
  if (t_total == 0 || k == 0) return;
  const c10::cuda::CUDAGuard guard(H.device());
  int num_sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, H.device().index()));
  const int splits = golf_hessian_plan_splits(t_total, k, num_sms);
  const int64_t work_floats = golf_hessian_workspace_floats(k, splits);
  at::Tensor work;
  if (work_floats > 0) work = at::empty({work_floats}, H.options());
  const cudaError_t err = golf_hessian_accumulate(
      H.data_ptr<float>(), X.data_ptr(), t_total, k, X.stride(0), st == at::kBFloat16 ? 0 : 1,
      static_cast<float>(scale), work_floats > 0 ? work.data_ptr<float>() : nullptr, splits,
      c10::cuda::getCurrentCUDAStream(H.device().index()).stream());
  TORCH_CHECK(err == cudaSuccess, "golf_fast::_hessian_accumulate_cuda: kernel launch failed: ",
              cudaGetErrorString(err));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(golf_fast, m) {
  m.def("_hessian_accumulate_cuda(Tensor(a!) H, Tensor X, float scale) -> ()");
}

TORCH_LIBRARY_IMPL(golf_fast, CUDA, m) { m.impl("_hessian_accumulate_cuda", &hessian_accumulate_cuda); }
