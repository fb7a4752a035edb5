// C++ CPU kernel of golf_fast.hessian_accumulate_: H += scale * X^T X, lower triangle, mirrored once.
//
// Shapes: H (K, K) fp32 contiguous; X (T, K) bf16, fp16 or fp32 with unit column stride.
// H is symmetric by contract: only its lower triangle (r >= c) is read; on return both triangles
// hold H_lower + scale * (X^T X)_lower, the upper triangle written as the mirror of the lower.
//
// Blocking (a GEMM with A = X^T and B = X, so both operands come from the same packed buffer):
//   * X is consumed in chunks of kChunkRows tokens. Each chunk is packed (and converted from
//     bf16/fp16 to fp32 — only that chunk, never all of X) into column panels of 16 floats:
//     packed[p][t][0..16) = X[t0 + t, 16p .. 16p + 16), zero beyond K.
//   * H is cut into tasks of kTileRows x kNR (96 x 48) tiles; only tiles touching the lower
//     triangle are tasks, and inside a tile only 8 x 48 micro-tiles with some r >= c run.
//     A micro-tile accumulates over the chunk in registers (AVX-512: 8 x 3 zmm accumulators; AVX2:
//     4 passes of 2 x 6 ymm; a portable loop otherwise) and adds scale * acc into H's lower triangle.
//   * Threads split the tokens (see accumulate_typed): one parallel region for the products, each
//     thread with its own lower-triangle accumulator, then one ordered reduction into H.
//   * After the last chunk the lower triangle is mirrored into the upper one (once).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GOLF_HESSIAN_X86 1
#endif

namespace {

constexpr int64_t kPanel = 16;        // floats per packed panel row
constexpr int64_t kMR = 8;            // micro-tile rows
constexpr int64_t kNR = 48;           // micro-tile cols (3 panels)
constexpr int64_t kTileRows = 96;     // rows of H per task
constexpr int64_t kChunkRows = 512;   // tokens packed at a time

enum class InKind { F32, BF16, F16 };
enum class Isa : int { Portable = 0, Avx2 = 1, Avx512 = 2 };  // micro-kernel instruction set

// ---------------------------------------------------------------- packing (portable)

inline float to_f32(float v) { return v; }
inline float to_f32(c10::BFloat16 v) { return static_cast<float>(v); }
inline float to_f32(c10::Half v) { return static_cast<float>(v); }

template <typename T>
void pack_panel_generic(const T* x, int64_t ldx, int64_t rows, int64_t k, int64_t p, float* dst) {
  const int64_t c0 = p * kPanel;
  const int64_t w = std::max<int64_t>(0, std::min<int64_t>(kPanel, k - c0));
  for (int64_t t = 0; t < rows; ++t) {
    const T* src = x + t * ldx + c0;
    float* d = dst + t * kPanel;
    int64_t c = 0;
    for (; c < w; ++c) d[c] = to_f32(src[c]);
    for (; c < kPanel; ++c) d[c] = 0.f;
  }
}

// ---------------------------------------------------------------- micro-kernel (portable)

// acc[r][c] = sum_t a[t*16 + a_off + r] * b_{c/16}[t*16 + c%16] for r < 8, c < 48.
void micro_generic(const float* a, const float* b0, const float* b1, const float* b2, int64_t kc,
                   float* acc /* 8 x 48 */) {
  const float* bs[3] = {b0, b1, b2};
  for (int64_t r0 = 0; r0 < kMR; r0 += 2) {  // two rows per pass keeps the accumulators in registers
    float s[2][kNR] = {};
    for (int64_t t = 0; t < kc; ++t) {
      const float x0 = a[t * kPanel + r0], x1 = a[t * kPanel + r0 + 1];
      for (int v = 0; v < 3; ++v) {
        const float* bv = bs[v] + t * kPanel;
        for (int64_t c = 0; c < kPanel; ++c) {
          s[0][v * kPanel + c] += x0 * bv[c];
          s[1][v * kPanel + c] += x1 * bv[c];
        }
      }
    }
    std::memcpy(acc + r0 * kNR, s[0], sizeof(s[0]));
    std::memcpy(acc + (r0 + 1) * kNR, s[1], sizeof(s[1]));
  }
}

// ---------------------------------------------------------------- AVX-512 versions

#ifdef GOLF_HESSIAN_X86
#define GOLF_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))

GOLF_AVX512 void pack_panel_avx512(const void* xv, InKind kind, int64_t ldx, int64_t rows, int64_t k,
                                   int64_t p, float* dst) {
  const int64_t c0 = p * kPanel;
  const int64_t w = std::max<int64_t>(0, std::min<int64_t>(kPanel, k - c0));
  const __mmask16 m = static_cast<__mmask16>((1u << w) - 1u);
  for (int64_t t = 0; t < rows; ++t) {
    __m512 v;
    if (kind == InKind::F32) {
      v = _mm512_maskz_loadu_ps(m, static_cast<const float*>(xv) + t * ldx + c0);
    } else {
      const uint16_t* src = static_cast<const uint16_t*>(xv) + t * ldx + c0;
      const __m256i h = _mm256_maskz_loadu_epi16(m, src);
      if (kind == InKind::BF16) {
        v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      } else {
        v = _mm512_cvtph_ps(h);
      }
    }
    _mm512_storeu_ps(dst + t * kPanel, v);
  }
}

// One 8 x 48 micro-tile over kc tokens. When `interior`, the whole tile lies in H (r < K, c < K)
// and in its lower triangle, and scale * acc is added to H directly from the registers; otherwise
// acc is written to `spill` (8 x 48) for a masked update by the caller.
GOLF_AVX512 void micro_avx512(const float* a, const float* b0, const float* b1, const float* b2, int64_t kc,
                              bool interior, float* h, int64_t ldh, float scale, float* spill) {
  __m512 acc[kMR][3];
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
  for (int64_t t = 0; t < kc; ++t) {
    const __m512 v0 = _mm512_loadu_ps(b0 + t * kPanel);
    const __m512 v1 = _mm512_loadu_ps(b1 + t * kPanel);
    const __m512 v2 = _mm512_loadu_ps(b2 + t * kPanel);
    const float* ar = a + t * kPanel;
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      const __m512 x = _mm512_set1_ps(ar[r]);
      acc[r][0] = _mm512_fmadd_ps(x, v0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(x, v1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(x, v2, acc[r][2]);
    }
  }
  const __m512 s = _mm512_set1_ps(scale);
  if (interior) {
    for (int r = 0; r < kMR; ++r) {
      float* hr = h + r * ldh;
      for (int v = 0; v < 3; ++v) {
        _mm512_storeu_ps(hr + v * kPanel, _mm512_fmadd_ps(s, acc[r][v], _mm512_loadu_ps(hr + v * kPanel)));
      }
    }
  } else {
    for (int r = 0; r < kMR; ++r)
      for (int v = 0; v < 3; ++v) _mm512_storeu_ps(spill + r * kNR + v * kPanel, acc[r][v]);
  }
}

// AVX2 + FMA: the same 8 x 48 micro-tile as 4 passes of 2 rows (2 x 6 ymm accumulators, 15 registers).
__attribute__((target("avx2,fma"))) void micro_avx2(const float* a, const float* b0, const float* b1,
                                                    const float* b2, int64_t kc, float* acc) {
  const float* bs[3] = {b0, b1, b2};
  for (int r0 = 0; r0 < kMR; r0 += 2) {
    __m256 c[2][6];
    for (int i = 0; i < 6; ++i) c[0][i] = c[1][i] = _mm256_setzero_ps();
    for (int64_t t = 0; t < kc; ++t) {
      const __m256 x0 = _mm256_broadcast_ss(a + t * kPanel + r0);
      const __m256 x1 = _mm256_broadcast_ss(a + t * kPanel + r0 + 1);
#pragma GCC unroll 6
      for (int i = 0; i < 6; ++i) {
        const __m256 b = _mm256_loadu_ps(bs[i >> 1] + t * kPanel + (i & 1) * 8);
        c[0][i] = _mm256_fmadd_ps(x0, b, c[0][i]);
        c[1][i] = _mm256_fmadd_ps(x1, b, c[1][i]);
      }
    }
    for (int i = 0; i < 6; ++i) {
      _mm256_storeu_ps(acc + r0 * kNR + i * 8, c[0][i]);
      _mm256_storeu_ps(acc + (r0 + 1) * kNR + i * 8, c[1][i]);
    }
  }
}

bool cpu_has_avx512();

Isa cpu_best_isa() {
  static const Isa isa = cpu_has_avx512() ? Isa::Avx512
                         : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? Isa::Avx2
                                                                                              : Isa::Portable;
  return isa;
}

bool cpu_has_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") &&
                         __builtin_cpu_supports("f16c");
  return ok;
}
#else
Isa cpu_best_isa() { return Isa::Portable; }
#endif

// ---------------------------------------------------------------- driver

struct Task {
  int64_t row0, col0;  // H tile [row0, row0 + kTileRows) x [col0, col0 + kNR)
};

std::vector<Task> lower_tasks(int64_t k) {
  std::vector<Task> tasks;
  for (int64_t c0 = 0; c0 < k; c0 += kNR) {
    // first row tile whose last row reaches the diagonal of this column block
    for (int64_t r0 = (c0 / kTileRows) * kTileRows; r0 < k; r0 += kTileRows) tasks.push_back({r0, c0});
  }
  return tasks;
}

void run_tile(const Task& task, const float* packed, int64_t kc, int64_t k, float* h, float scale, Isa isa) {
  const int64_t panel_stride = kChunkRows * kPanel;
  const int64_t c0 = task.col0;
  const float* b0 = packed + (c0 / kPanel) * panel_stride;
  const float* b1 = b0 + panel_stride;
  const float* b2 = b1 + panel_stride;
  alignas(64) float spill[kMR * kNR];
  const int64_t row_end = std::min(task.row0 + kTileRows, k);
  for (int64_t r0 = std::max(task.row0, (c0 / kMR) * kMR); r0 < row_end; r0 += kMR) {
    // r0 >= floor(c0 / 8) * 8 skips micro-tiles that lie wholly above the diagonal
    const float* a = packed + (r0 / kPanel) * panel_stride + (r0 % kPanel);
    const bool interior = (r0 + kMR <= k) && (c0 + kNR <= k) && (r0 >= c0 + kNR - 1);
#ifdef GOLF_HESSIAN_X86
    if (isa == Isa::Avx512) {
      micro_avx512(a, b0, b1, b2, kc, interior, h + r0 * k + c0, k, scale, spill);
      if (interior) continue;
    } else
#endif
    {
#ifdef GOLF_HESSIAN_X86
      if (isa == Isa::Avx2) {
        micro_avx2(a, b0, b1, b2, kc, spill);
      } else
#endif
      {
        micro_generic(a, b0, b1, b2, kc, spill);
      }
      if (interior) {
        for (int64_t r = 0; r < kMR; ++r)
          for (int64_t c = 0; c < kNR; ++c) h[(r0 + r) * k + c0 + c] += scale * spill[r * kNR + c];
        continue;
      }
    }
    const int64_t rmax = std::min(kMR, k - r0), cmax = std::min(kNR, k - c0);
    for (int64_t r = 0; r < rmax; ++r) {
      const int64_t cend = std::min(cmax, r0 + r - c0 + 1);  // lower triangle: c <= r
      for (int64_t c = 0; c < cend; ++c) h[(r0 + r) * k + c0 + c] += scale * spill[r * kNR + c];
    }
  }
}

template <typename T>
void pack_chunk(const T* x, InKind kind, int64_t ldx, int64_t rows, int64_t k, int64_t npanels, float* packed,
                Isa isa) {
  for (int64_t p = 0; p < npanels; ++p) {
    float* dst = packed + p * kChunkRows * kPanel;
#ifdef GOLF_HESSIAN_X86
    if (isa == Isa::Avx512) {
      pack_panel_avx512(x, kind, ldx, rows, k, p, dst);
      continue;
    }
#endif
    pack_panel_generic<T>(x, ldx, rows, k, p, dst);
  }
}

// Work split: thread i takes the contiguous token range [T*i/n, T*(i+1)/n) and accumulates its
// lower triangle into its own buffer (thread 0 directly into H), chunk by chunk; the buffers are
// then added into H in thread order. One parallel region for the products, so no thread waits on
// another between chunks. The result is deterministic for a given thread count.
template <typename T>
void accumulate_typed(float* h, const T* x, InKind kind, int64_t t_total, int64_t ldx, int64_t k, float scale,
                      Isa isa) {
  const int64_t npanels = (k + kPanel - 1) / kPanel;
  const int64_t npanels_alloc = ((k + kNR - 1) / kNR) * (kNR / kPanel);  // B reads 3 panels at a time
  const std::vector<Task> tasks = lower_tasks(k);
  // Threads: at most one per kMinRowsPerThread tokens, and private buffers capped at kMaxPrivateBytes.
  constexpr int64_t kMinRowsPerThread = 2 * kChunkRows;
  constexpr int64_t kMaxPrivateBytes = int64_t(1) << 30;
  int64_t nthreads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), t_total / kMinRowsPerThread));
  nthreads = std::max<int64_t>(1, std::min<int64_t>(nthreads, 1 + kMaxPrivateBytes / (k * k * 4)));
  std::vector<at::Tensor> priv(static_cast<size_t>(nthreads));
  for (int64_t i = 1; i < nthreads; ++i) priv[static_cast<size_t>(i)] = at::zeros({k, k}, at::kFloat);
  at::parallel_for(0, nthreads, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> packed_storage(static_cast<size_t>(npanels_alloc * kChunkRows * kPanel), 0.f);
    float* packed = packed_storage.data();
    for (int64_t i = i0; i < i1; ++i) {
      float* acc = i == 0 ? h : priv[static_cast<size_t>(i)].data_ptr<float>();
      const int64_t ta = t_total * i / nthreads, tb = t_total * (i + 1) / nthreads;
      for (int64_t t0 = ta; t0 < tb; t0 += kChunkRows) {
        const int64_t kc = std::min(kChunkRows, tb - t0);
        pack_chunk<T>(x + t0 * ldx, kind, ldx, kc, k, npanels, packed, isa);
        for (const Task& task : tasks) run_tile(task, packed, kc, k, acc, scale, isa);
      }
    }
  });
  if (nthreads > 1) {  // H_lower += sum_i P_i, threads in order; rows in parallel
    at::parallel_for(0, k, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t i = 1; i < nthreads; ++i) {
        const float* p = priv[static_cast<size_t>(i)].data_ptr<float>();
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = 0; c <= r; ++c) h[r * k + c] += p[r * k + c];
      }
    });
  }
}

void mirror_lower(float* h, int64_t k) {
  constexpr int64_t kB = 64;  // blocked transpose of the strictly lower triangle into the upper one
  at::parallel_for(0, (k + kB - 1) / kB, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t bi = b0; bi < b1; ++bi) {
      for (int64_t bj = 0; bj <= bi; ++bj) {
        const int64_t r_end = std::min((bi + 1) * kB, k), c_end = std::min((bj + 1) * kB, k);
        for (int64_t r = bi * kB; r < r_end; ++r)
          for (int64_t c = bj * kB; c < std::min(c_end, r); ++c) h[c * k + r] = h[r * k + c];
      }
    }
  });
}

// max_isa: 2 = the best the CPU has (AVX-512, else AVX2, else portable), 1 = at most AVX2, 0 = portable
// (tests run every path on one machine).
void hessian_accumulate_cpp(at::Tensor H, const at::Tensor& X_in, double scale, int64_t max_isa) {
  TORCH_CHECK(H.device().is_cpu() && X_in.device().is_cpu(), "H, X: expected CPU tensors");
  TORCH_CHECK(H.scalar_type() == at::kFloat, "H: expected float32, got ", H.scalar_type());
  TORCH_CHECK(H.dim() == 2 && H.size(0) == H.size(1), "H: expected a square (K, K) matrix, got ", H.sizes());
  TORCH_CHECK(H.is_contiguous(), "H: expected a contiguous tensor");
  TORCH_CHECK(X_in.dim() == 2, "X: expected a 2-D (T, K) tensor, got ", X_in.sizes());
  const int64_t k = H.size(0);
  TORCH_CHECK(X_in.size(1) == k, "X: expected ", k, " columns (H is ", k, "x", k, "), got ", X_in.size(1));
  const auto st = X_in.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kBFloat16 || st == at::kHalf,
              "X: expected float32, bfloat16 or float16, got ", st);
  const at::Tensor X = (X_in.stride(1) == 1 && X_in.stride(0) >= k) ? X_in : X_in.contiguous();  // same dtype
  const int64_t t_total = X.size(0), ldx = X.stride(0);
  if (k == 0) return;
  float* h = H.data_ptr<float>();
  const float s = static_cast<float>(scale);
  TORCH_CHECK(max_isa >= 0 && max_isa <= 2, "max_isa: expected 0, 1 or 2, got ", max_isa);
  const Isa isa = static_cast<Isa>(std::min<int64_t>(static_cast<int64_t>(cpu_best_isa()), max_isa));
  if (t_total > 0) {
    if (st == at::kFloat) {
      accumulate_typed<float>(h, X.data_ptr<float>(), InKind::F32, t_total, ldx, k, s, isa);
    } else if (st == at::kBFloat16) {
      accumulate_typed<c10::BFloat16>(h, X.data_ptr<c10::BFloat16>(), InKind::BF16, t_total, ldx, k, s, isa);
    } else {
      accumulate_typed<c10::Half>(h, X.data_ptr<c10::Half>(), InKind::F16, t_total, ldx, k, s, isa);
    }
  }
  mirror_lower(h, k);
}

int64_t hessian_cpu_isa() { return static_cast<int64_t>(cpu_best_isa()); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(golf_fast, m) {
  m.def("_hessian_accumulate_cpp(Tensor(a!) H, Tensor X, float scale, int max_isa=2) -> ()");
  m.def("_hessian_cpu_isa() -> int");
}

TORCH_LIBRARY_IMPL(golf_fast, CPU, m) { m.impl("_hessian_accumulate_cpp", &hessian_accumulate_cpp); }

TORCH_LIBRARY_IMPL(golf_fast, CompositeExplicitAutograd, m) { m.impl("_hessian_cpu_isa", &hessian_cpu_isa); }
