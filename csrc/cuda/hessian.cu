// CUDA kernels of golf_fast.hessian_accumulate_: H += scale * X^T X, bf16/fp16 X on tensor cores.
//
// Only CUDA headers are included, so a test compiles this file alone:
//   nvcc -gencode=arch=compute_90a,code=sm_90a -cubin -Xptxas -v csrc/cuda/hessian.cu
// The torch side (csrc/cuda/hessian_cuda.cpp) calls the plain C functions at the bottom.
//
// Shapes: X (T, K) bf16 or fp16, row stride ldx (elements), unit column stride; H (K, K) fp32
// contiguous, symmetric by contract (only its lower triangle is read; both triangles are written).
//
// Kernel 1, syrk_tiles<T, kVec> (T selects the mma input type; X moves as raw 16-bit words): the lower triangle of H is cut into 128 x 128 tiles (bi >= bj); blockIdx.x
// enumerates exactly those nt(nt+1)/2 tiles (no program for the other triangle), blockIdx.y is the
// split over tokens. A block stages X[t0:t0+32, 128 cols] tiles in shared memory with cp.async
// (two stages; a diagonal tile loads one slab and uses it as both operands), loads fragments with
// ldmatrix.trans and runs mma.sync.m16n8k16 (bf16/fp16 in, fp32 accumulate). 8 warps as 2 x 4,
// each 64 x 32 of the tile. Warps of a diagonal tile lying wholly above the diagonal skip the MMAs.
// Promotion (bounded-length tensor-core accumulation): mma.sync's fp32 accumulation on sm_90 does
// not round to nearest (the relative error of one long accumulator grows linearly with its length:
// 3.4e-4 after 73k tokens on an H200). So every kPromoteTokens tokens each thread adds its 64 MMA
// accumulators into a second fp32 set with plain FADD (round to nearest) and zeroes them. The second
// set lives in dynamic shared memory (64 KB per block, element i of thread t at s_promo[i * 256 + t]:
// conflict-free, private to the thread, so no barrier), not in registers: the MMA loop already uses
// 125 of the 128 registers that 2 blocks/SM allow, and a register copy would spill.
//   * one split: the block adds scale * acc into H's lower triangle and writes the mirror;
//   * several splits: the block writes its raw fp32 partial tile to a workspace
//     W[split][tile][128][128], and kernel 2 (reduce_splits) sums the splits in a fixed order
//     (deterministic), adds scale * sum into H's lower triangle and writes the mirror.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace golf_hessian {

constexpr int kTile = 128;            // H tile edge
constexpr int kBT = 32;               // tokens per pipeline stage
constexpr int kLds = kTile + 8;       // padded smem row (elements): ldmatrix rows hit distinct banks
constexpr int kThreads = 256;
constexpr int kStages = 2;
constexpr int kPromoteTokens = 512;                    // tokens per MMA accumulation run (multiple of kBT)
constexpr int kPromoteIters = kPromoteTokens / kBT;    // pipeline iterations per run
constexpr int kAccPerThread = 4 * 4 * 4;               // acc[4][4][4]
constexpr int kPromoteSmemBytes = kAccPerThread * kThreads * 4;  // 64 KB of dynamic shared memory
static_assert(kPromoteTokens % kBT == 0, "promotion period must be whole pipeline stages");

struct Tile {
  int bi, bj;
};

__device__ __forceinline__ Tile tile_of(int idx) {
  // idx = bi (bi + 1) / 2 + bj with 0 <= bj <= bi
  int bi = static_cast<int>((sqrtf(8.f * static_cast<float>(idx) + 1.f) - 1.f) * 0.5f);
  while (bi * (bi + 1) / 2 > idx) --bi;
  while ((bi + 1) * (bi + 2) / 2 <= idx) ++bi;
  return {bi, idx - bi * (bi + 1) / 2};
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;  // 0: zero-fill, nothing is read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_one() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

template <typename T>
struct Mma;

template <>
struct Mma<__nv_bfloat16> {
  __device__ __forceinline__ static void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <>
struct Mma<__half> {
  __device__ __forceinline__ static void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// Stage X[t0 : t0 + 32, c0 : c0 + 128] into s (32 x kLds), zero outside [t0, t_end) x [0, K).
// kVec: 16-byte cp.async (needs K % 8 == 0, ldx % 8 == 0 and a 16-byte aligned X); else plain loads.
// Elements are moved as raw 16-bit patterns (no conversions), whatever the input type.
template <bool kVec>
__device__ __forceinline__ void load_slab(uint16_t* s, const uint16_t* __restrict__ x, int64_t ldx, int64_t t0, int64_t t_end,
                                          int c0, int k) {
  const int tid = threadIdx.x;
  if (kVec) {
#pragma unroll
    for (int i = 0; i < (kBT * kTile / 8) / kThreads; ++i) {  // 2 vectors of 8 elements per thread
      const int v = tid + i * kThreads;
      const int row = v / (kTile / 8), col = (v % (kTile / 8)) * 8;
      const int64_t t = t0 + row;
      const bool valid = t < t_end && c0 + col < k;
      const uint16_t* src = valid ? x + t * ldx + c0 + col : x;
      cp_async16(smem_addr(s + row * kLds + col), src, valid);
    }
  } else {
#pragma unroll 4
    for (int i = 0; i < (kBT * kTile) / kThreads; ++i) {  // 16 scalars per thread
      const int e = tid + i * kThreads;
      const int row = e / kTile, col = e % kTile;
      const int64_t t = t0 + row;
      uint16_t val = 0;
      if (t < t_end && c0 + col < k) val = x[t * ldx + c0 + col];
      s[row * kLds + col] = val;
    }
  }
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kThreads, 2)
    syrk_tiles(const uint16_t* __restrict__ x, int64_t t_total, int k, int64_t ldx, int64_t tokens_per_split,
               float* __restrict__ h, float* __restrict__ work, float scale) {
  __shared__ __align__(16) uint16_t s_a[kStages][kBT * kLds];
  __shared__ __align__(16) uint16_t s_b[kStages][kBT * kLds];
  extern __shared__ float s_promo[];  // kAccPerThread * kThreads promoted sums (see the header)

  const Tile tile = tile_of(blockIdx.x);
  const bool diag = tile.bi == tile.bj;
  const int m0 = tile.bi * kTile, n0 = tile.bj * kTile;
  const int64_t t_begin = static_cast<int64_t>(blockIdx.y) * tokens_per_split;
  const int64_t t_end = t_begin + tokens_per_split < t_total ? t_begin + tokens_per_split : t_total;
  const int64_t n_iters = t_end > t_begin ? (t_end - t_begin + kBT - 1) / kBT : 0;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp & 1, wn = warp >> 1;  // warp tile: rows wm*64 .. +64, cols wn*32 .. +32
  const bool active = !diag || (wm * 64 + 63 >= wn * 32);

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        acc[i][j][e] = 0.f;
        s_promo[((i * 4 + j) * 4 + e) * kThreads + threadIdx.x] = 0.f;
      }

  if (n_iters > 0) {
    load_slab<kVec>(s_a[0], x, ldx, t_begin, t_end, m0, k);
    if (!diag) load_slab<kVec>(s_b[0], x, ldx, t_begin, t_end, n0, k);
  }
  cp_async_commit();

  const int q = lane >> 3, r8 = lane & 7;
  for (int64_t it = 0; it < n_iters; ++it) {
    const int buf = static_cast<int>(it & 1);
    if (it + 1 < n_iters) {
      const int64_t tn = t_begin + (it + 1) * kBT;
      load_slab<kVec>(s_a[buf ^ 1], x, ldx, tn, t_end, m0, k);
      if (!diag) load_slab<kVec>(s_b[buf ^ 1], x, ldx, tn, t_end, n0, k);
    }
    cp_async_commit();
    cp_async_wait_one();  // the group of stage `it` has landed
    __syncthreads();
    if (active) {
      const uint16_t* sa = s_a[buf];
      const uint16_t* sb = diag ? s_a[buf] : s_b[buf];
#pragma unroll
      for (int kk = 0; kk < kBT; kk += 16) {
        uint32_t a[4][4];
#pragma unroll
        for (int mi = 0; mi < 4; ++mi) {
          // matrices: (t 0-7, m 0-7) (t 0-7, m 8-15) (t 8-15, m 0-7) (t 8-15, m 8-15) -> a0..a3
          const int row = kk + r8 + (q >> 1) * 8, col = wm * 64 + mi * 16 + (q & 1) * 8;
          ldmatrix_x4_trans(smem_addr(sa + row * kLds + col), a[mi]);
        }
        uint32_t b[2][4];
#pragma unroll
        for (int p = 0; p < 2; ++p) {
          // matrices: (t 0-7, n 0-7) (t 8-15, n 0-7) (t 0-7, n 8-15) (t 8-15, n 8-15)
          //        -> b0, b1 of n-tile 2p, then b0, b1 of n-tile 2p + 1
          const int row = kk + r8 + (q & 1) * 8, col = wn * 32 + p * 16 + (q >> 1) * 8;
          ldmatrix_x4_trans(smem_addr(sb + row * kLds + col), b[p]);
        }
#pragma unroll
        for (int mi = 0; mi < 4; ++mi)
#pragma unroll
          for (int nj = 0; nj < 4; ++nj)
            Mma<T>::run(acc[mi][nj], a[mi], b[nj >> 1][(nj & 1) * 2], b[nj >> 1][(nj & 1) * 2 + 1]);
      }
      if ((it + 1) % kPromoteIters == 0) {  // promote: s_promo += acc (FADD, round to nearest); acc = 0
#pragma unroll
        for (int mi = 0; mi < 4; ++mi)
#pragma unroll
          for (int nj = 0; nj < 4; ++nj)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              float* p = s_promo + ((mi * 4 + nj) * 4 + e) * kThreads + threadIdx.x;
              *p = __fadd_rn(*p, acc[mi][nj][e]);
              acc[mi][nj][e] = 0.f;
            }
      }
    }
    __syncthreads();  // everyone is done reading `buf` before it is refilled
  }

  // Final promotion of the last (partial) run: acc = s_promo + acc.
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int nj = 0; nj < 4; ++nj)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        acc[mi][nj][e] = __fadd_rn(s_promo[((mi * 4 + nj) * 4 + e) * kThreads + threadIdx.x], acc[mi][nj][e]);

  // Epilogue. Fragment element e of acc[mi][nj]: row g (+8 for e >= 2), col 2 * tig + (e & 1).
  const int g = lane >> 2, tig = lane & 3;
  if (work == nullptr) {
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int nj = 0; nj < 4; ++nj)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int row = m0 + wm * 64 + mi * 16 + g + (e >> 1) * 8;
          const int col = n0 + wn * 32 + nj * 8 + 2 * tig + (e & 1);
          if (row < k && col < k && row >= col) {
            const float v = h[static_cast<int64_t>(row) * k + col] + scale * acc[mi][nj][e];
            h[static_cast<int64_t>(row) * k + col] = v;
            if (row != col) h[static_cast<int64_t>(col) * k + row] = v;
          }
        }
  } else {
    float* w = work + (static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x) * (kTile * kTile);
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int nj = 0; nj < 4; ++nj)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int row = wm * 64 + mi * 16 + g + half * 8;
          const int col = wn * 32 + nj * 8 + 2 * tig;
          *reinterpret_cast<float2*>(w + row * kTile + col) =
              make_float2(acc[mi][nj][2 * half], acc[mi][nj][2 * half + 1]);
        }
  }
}

// Kernel 2: H_lower += scale * sum_{s in order} W[s][tile]; mirror. 16 blocks of 256 threads per
// tile, each thread one row segment of 4 columns.
__global__ void __launch_bounds__(kThreads)
    reduce_splits(const float* __restrict__ work, int splits, int ntri, int k, float* __restrict__ h, float scale) {
  const int tile_idx = blockIdx.x / 16, part = blockIdx.x % 16;
  const Tile tile = tile_of(tile_idx);
  const int idx = part * kThreads + threadIdx.x;  // 0 .. 4095
  const int lr = idx / (kTile / 4), lc = (idx % (kTile / 4)) * 4;
  const int row = tile.bi * kTile + lr, col0 = tile.bj * kTile + lc;
  if (row >= k || col0 >= k || col0 > row) return;
  float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
  const int64_t tile_stride = static_cast<int64_t>(ntri) * kTile * kTile;
  const float* w = work + static_cast<int64_t>(tile_idx) * kTile * kTile + lr * kTile + lc;
  for (int s = 0; s < splits; ++s) {
    const float4 v = *reinterpret_cast<const float4*>(w + s * tile_stride);
    sum.x += v.x;
    sum.y += v.y;
    sum.z += v.z;
    sum.w += v.w;
  }
  const float vals[4] = {sum.x, sum.y, sum.z, sum.w};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int col = col0 + e;
    if (col < k && col <= row) {
      const float v = h[static_cast<int64_t>(row) * k + col] + scale * vals[e];
      h[static_cast<int64_t>(row) * k + col] = v;
      if (row != col) h[static_cast<int64_t>(col) * k + row] = v;
    }
  }
}

int lower_tiles(int64_t k) {
  const int64_t nt = (k + kTile - 1) / kTile;
  return static_cast<int>(nt * (nt + 1) / 2);
}

template <typename T>
cudaError_t launch(float* h, const void* x, int64_t t_total, int64_t k, int64_t ldx, float scale, float* work,
                   int splits, cudaStream_t stream) {
  const int ntri = lower_tiles(k);
  const int64_t per_split = ((t_total + splits - 1) / splits + kBT - 1) / kBT * kBT;
  const dim3 grid(ntri, splits);
  const uint16_t* xt = static_cast<const uint16_t*>(x);
  const bool vec = (k % 8 == 0) && (ldx % 8 == 0) && (reinterpret_cast<uintptr_t>(x) % 16 == 0);
  float* w = splits > 1 ? work : nullptr;
  // Over 48 KB of shared memory per block (static + dynamic) needs the opt-in attribute.
  cudaError_t err;
  if (vec) {
    err = cudaFuncSetAttribute(syrk_tiles<T, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, kPromoteSmemBytes);
    if (err != cudaSuccess) return err;
    syrk_tiles<T, true><<<grid, kThreads, kPromoteSmemBytes, stream>>>(xt, t_total, static_cast<int>(k), ldx, per_split,
                                                                       h, w, scale);
  } else {
    err = cudaFuncSetAttribute(syrk_tiles<T, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, kPromoteSmemBytes);
    if (err != cudaSuccess) return err;
    syrk_tiles<T, false><<<grid, kThreads, kPromoteSmemBytes, stream>>>(xt, t_total, static_cast<int>(k), ldx,
                                                                        per_split, h, w, scale);
  }
  err = cudaGetLastError();
  if (err != cudaSuccess || splits == 1) return err;
  reduce_splits<<<ntri * 16, kThreads, 0, stream>>>(work, splits, ntri, static_cast<int>(k), h, scale);
  return cudaGetLastError();
}

}  // namespace golf_hessian

extern "C" {

// Number of token splits for (T, K) on a device with `num_sms` SMs (2 blocks per SM): minimizes
// waves / splits (wave quantization) plus a small per-split cost, with >= 1024 tokens per split.
int golf_hessian_plan_splits(int64_t t_total, int64_t k, int num_sms) {
  const int ntri = golf_hessian::lower_tiles(k);
  const int64_t concurrent = 2 * static_cast<int64_t>(num_sms > 0 ? num_sms : 1);
  int64_t max_splits = t_total / 1024;
  if (max_splits > 64) max_splits = 64;
  if (max_splits < 1) return 1;
  int best = 1;
  double best_cost = 1e30;
  for (int64_t s = 1; s <= max_splits; ++s) {
    const int64_t blocks = static_cast<int64_t>(ntri) * s;
    const double waves = static_cast<double>((blocks + concurrent - 1) / concurrent);
    const double cost = waves / static_cast<double>(s) + 0.002 * static_cast<double>(s);
    if (cost < best_cost) {
      best_cost = cost;
      best = static_cast<int>(s);
    }
  }
  return best;
}

// Floats of workspace for `splits` > 1 (0 for one split).
int64_t golf_hessian_workspace_floats(int64_t k, int splits) {
  if (splits <= 1) return 0;
  return static_cast<int64_t>(splits) * golf_hessian::lower_tiles(k) * golf_hessian::kTile * golf_hessian::kTile;
}

// H += scale * X^T X. dtype: 0 = bfloat16, 1 = float16. Returns the CUDA error of the launches.
cudaError_t golf_hessian_accumulate(float* h, const void* x, int64_t t_total, int64_t k, int64_t ldx, int dtype,
                                    float scale, float* work, int splits, cudaStream_t stream) {
  if (t_total <= 0 || k <= 0) return cudaSuccess;
  if (dtype == 0) return golf_hessian::launch<__nv_bfloat16>(h, x, t_total, k, ldx, scale, work, splits, stream);
  return golf_hessian::launch<__half>(h, x, t_total, k, ldx, scale, work, splits, stream);
}

}  // extern "C"
