// C++ CPU kernels of the int6 code format (see golf_fast/ops/int6_pack.py for the layout).
//
// Layout of one packed row for K columns, Kp = ceil(K / 16) * 16, u = code + 32 in [1, 63]:
//   bytes [0, Kp/2)         low plane:  byte j  = (u[2j] & 15) | (u[2j+1] & 15) << 4
//   bytes [Kp/2, 3*Kp/4)    high plane: byte g  = sum_i ((u[4g+i] >> 4) & 3) << (2i), i = 0..3
// Padding columns hold code 0 (u = 32).
//
// These are the CPU backend "cpp" of golf_fast.pack_int6 / unpack_int6; inputs are validated
// in Python before the call and re-checked here (TORCH_CHECK) for direct callers.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>

namespace {

constexpr int64_t kPadCols = 16;

int64_t padded_cols(int64_t k) { return (k + kPadCols - 1) / kPadCols * kPadCols; }

at::Tensor pack_int6_cpp(const at::Tensor& codes_in) {
  TORCH_CHECK(codes_in.dim() == 2, "codes: expected a 2-D (N, K) tensor, got ", codes_in.dim(), "-D");
  TORCH_CHECK(codes_in.scalar_type() == at::kChar, "codes: expected int8, got ", codes_in.scalar_type());
  TORCH_CHECK(codes_in.device().is_cpu(), "codes: expected a CPU tensor");
  const at::Tensor codes = codes_in.contiguous();
  const int64_t n = codes.size(0), k = codes.size(1), kp = padded_cols(k);
  const int64_t lo_bytes = kp / 2, row_bytes = kp / 4 * 3;
  at::Tensor out = at::empty({n, row_bytes}, codes.options().dtype(at::kByte));
  const int8_t* src = codes.data_ptr<int8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  at::parallel_for(0, n, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int8_t* c = src + r * k;
      uint8_t* lo = dst + r * row_bytes;
      uint8_t* hi = lo + lo_bytes;
      const int64_t full = k / 4;  // groups of 4 columns with no padding
      for (int64_t g = 0; g < kp / 4; ++g) {
        uint8_t u[4];
        if (g < full) {
          for (int i = 0; i < 4; ++i) u[i] = static_cast<uint8_t>(c[4 * g + i] + 32);
        } else {
          for (int i = 0; i < 4; ++i) u[i] = static_cast<uint8_t>((4 * g + i < k ? c[4 * g + i] : 0) + 32);
        }
        lo[2 * g] = static_cast<uint8_t>((u[0] & 15) | ((u[1] & 15) << 4));
        lo[2 * g + 1] = static_cast<uint8_t>((u[2] & 15) | ((u[3] & 15) << 4));
        hi[g] = static_cast<uint8_t>((u[0] >> 4) | ((u[1] >> 4) << 2) | ((u[2] >> 4) << 4) | ((u[3] >> 4) << 6));
      }
    }
  });
  return out;
}

at::Tensor unpack_int6_cpp(const at::Tensor& packed_in, int64_t num_cols) {
  TORCH_CHECK(packed_in.dim() == 2, "packed: expected a 2-D tensor, got ", packed_in.dim(), "-D");
  TORCH_CHECK(packed_in.scalar_type() == at::kByte, "packed: expected uint8, got ", packed_in.scalar_type());
  TORCH_CHECK(packed_in.device().is_cpu(), "packed: expected a CPU tensor");
  TORCH_CHECK(num_cols >= 1, "num_cols: expected >= 1, got ", num_cols);
  const int64_t kp = padded_cols(num_cols), lo_bytes = kp / 2, row_bytes = kp / 4 * 3;
  TORCH_CHECK(packed_in.size(1) == row_bytes, "packed: expected ", row_bytes, " bytes per row for num_cols=",
              num_cols, ", got ", packed_in.size(1));
  const at::Tensor packed = packed_in.contiguous();
  const int64_t n = packed.size(0);
  at::Tensor out = at::empty({n, num_cols}, packed.options().dtype(at::kChar));
  const uint8_t* src = packed.data_ptr<uint8_t>();
  int8_t* dst = out.data_ptr<int8_t>();
  at::parallel_for(0, n, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* lo = src + r * row_bytes;
      const uint8_t* hi = lo + lo_bytes;
      int8_t* c = dst + r * num_cols;
      const int64_t full = num_cols / 4;
      for (int64_t g = 0; g < full; ++g) {  // 2 low bytes + 1 high byte -> 4 codes, fixed shifts
        const int l0 = lo[2 * g], l1 = lo[2 * g + 1], h = hi[g];
        c[4 * g + 0] = static_cast<int8_t>(((l0 & 15) | ((h & 3) << 4)) - 32);
        c[4 * g + 1] = static_cast<int8_t>(((l0 >> 4) | (((h >> 2) & 3) << 4)) - 32);
        c[4 * g + 2] = static_cast<int8_t>(((l1 & 15) | (((h >> 4) & 3) << 4)) - 32);
        c[4 * g + 3] = static_cast<int8_t>(((l1 >> 4) | (((h >> 6) & 3) << 4)) - 32);
      }
      for (int64_t col = 4 * full; col < num_cols; ++col) {
        const int low = (lo[col >> 1] >> (4 * (col & 1))) & 15;
        const int high = (hi[col >> 2] >> (2 * (col & 3))) & 3;
        c[col] = static_cast<int8_t>((low | (high << 4)) - 32);
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(golf_fast, m) {
  m.def("_pack_int6_cpp(Tensor codes) -> Tensor");
  m.def("_unpack_int6_cpp(Tensor packed, int num_cols) -> Tensor");
}

TORCH_LIBRARY_IMPL(golf_fast, CPU, m) {
  m.impl("_pack_int6_cpp", &pack_int6_cpp);
  m.impl("_unpack_int6_cpp", &unpack_int6_cpp);
}
