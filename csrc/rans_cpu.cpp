// C++ CPU kernels of the "golf-rans" artifact codec (see golf_fast/artifact/rans.py for the
// format, the context model and the pure-Python reference these must match byte for byte).
//
// One stream per matrix. Symbols u = code + qmax in [0, 2*qmax], scanned row-major over the
// (R, C) matrix (the caller transposes first when the group says so). Context of symbol (i, j):
//   colacc[j]  column accumulator, starts at ainit:  colacc[j] += |q| - (colacc[j] >> cs)
//   rowacc     row accumulator, reset to rinit at the start of each row: rowacc += |q| - (rowacc >> rs)
//   ctx = luta[min(colacc[j], |luta|-1)] * nb + lutb[min(rowacc, |lutb|-1)]
// (both accumulators are read before the symbol updates them).
//
// rANS: 32-bit state x in [2^16, 2^32), 16-bit little-endian words, probability precision
// P <= 15 bits (freq tables sum to 2^P per context). Stream = u32 final encoder state (LE) then
// the words in decoding order. The encoder starts at x = 2^16 and the decoder must end there.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <string>
#include <vector>

namespace {

constexpr uint32_t kLow = 1u << 16;

struct Model {
  const uint8_t* luta; int64_t na_len;
  const uint8_t* lutb; int64_t nb_len;
  int64_t nb;
  const int32_t* freq;  // (nctx, S)
  const int32_t* cum;   // (nctx, S)
  int64_t nsym;
  int64_t nctx;
  int64_t prob_bits;
  int64_t qmax, cs, rs, ainit, rinit;
};

Model make_model(const at::Tensor& luta, const at::Tensor& lutb, int64_t nb, const at::Tensor& freq,
                 const at::Tensor& cum, int64_t prob_bits, int64_t qmax, int64_t cs, int64_t rs,
                 int64_t ainit, int64_t rinit) {
  TORCH_CHECK(luta.dtype() == at::kByte && luta.dim() == 1 && luta.numel() >= 1 && luta.is_contiguous(),
              "luta: expected a contiguous 1-D uint8 tensor");
  TORCH_CHECK(lutb.dtype() == at::kByte && lutb.dim() == 1 && lutb.numel() >= 1 && lutb.is_contiguous(),
              "lutb: expected a contiguous 1-D uint8 tensor");
  TORCH_CHECK(freq.dtype() == at::kInt && freq.dim() == 2 && freq.is_contiguous(), "freq: expected (nctx, S) int32");
  TORCH_CHECK(cum.sizes() == freq.sizes() && cum.dtype() == at::kInt && cum.is_contiguous(),
              "cum: expected the shape and dtype of freq");
  TORCH_CHECK(prob_bits >= 8 && prob_bits <= 15, "prob_bits: expected 8..15, got ", prob_bits);
  TORCH_CHECK(qmax >= 1 && qmax <= 127 && freq.size(1) == 2 * qmax + 1, "freq: expected 2*qmax+1 symbols");
  TORCH_CHECK(cs >= 0 && cs <= 8 && rs >= 0 && rs <= 8, "cs, rs: expected 0..8");
  TORCH_CHECK(nb >= 1 && freq.size(0) % nb == 0, "nb: expected >= 1 and to divide the context count");
  Model m{luta.data_ptr<uint8_t>(), luta.numel(), lutb.data_ptr<uint8_t>(), lutb.numel(), nb,
          freq.data_ptr<int32_t>(), cum.data_ptr<int32_t>(), freq.size(1), freq.size(0), prob_bits,
          qmax, cs, rs, ainit, rinit};
  for (int64_t i = 0; i < m.na_len; ++i) TORCH_CHECK(m.luta[i] * nb < m.nctx, "luta: context out of range");
  for (int64_t i = 0; i < m.nb_len; ++i) TORCH_CHECK(m.lutb[i] < nb, "lutb: context out of range");
  return m;
}

inline int64_t context(const Model& m, int64_t colacc, int64_t rowacc) {
  const int64_t a = colacc < m.na_len ? colacc : m.na_len - 1;
  const int64_t b = rowacc < m.nb_len ? rowacc : m.nb_len - 1;
  return static_cast<int64_t>(m.luta[a]) * m.nb + m.lutb[b];
}

// Contexts of every symbol of a (R, C) int8 matrix, row-major (also used by the encoder's fitting).
void contexts_of(const Model& m, const int8_t* q, int64_t rows, int64_t cols, int32_t* ctx_out,
                 int32_t* cola_out, int32_t* rowa_out) {
  std::vector<int64_t> colacc(cols, m.ainit);
  for (int64_t i = 0; i < rows; ++i) {
    int64_t rowacc = m.rinit;
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t idx = i * cols + j;
      if (ctx_out) ctx_out[idx] = static_cast<int32_t>(context(m, colacc[j], rowacc));
      if (cola_out) cola_out[idx] = static_cast<int32_t>(colacc[j]);
      if (rowa_out) rowa_out[idx] = static_cast<int32_t>(rowacc);
      const int64_t mag = q[idx] < 0 ? -q[idx] : q[idx];
      colacc[j] += mag - (colacc[j] >> m.cs);
      rowacc += mag - (rowacc >> m.rs);
    }
  }
}

std::vector<at::Tensor> rans_features_cpp(at::TensorList codes, int64_t cs, int64_t rs, int64_t ainit,
                                          int64_t rinit) {
  TORCH_CHECK(cs >= 0 && cs <= 8 && rs >= 0 && rs <= 8, "cs, rs: expected 0..8");
  std::vector<at::Tensor> out;
  Model m{};
  m.cs = cs; m.rs = rs; m.ainit = ainit; m.rinit = rinit;
  for (const auto& c : codes) {
    TORCH_CHECK(c.dtype() == at::kChar && c.dim() == 2 && c.device().is_cpu(), "codes: expected 2-D int8 CPU tensors");
    const at::Tensor q = c.contiguous();
    at::Tensor feats = at::empty({2, q.size(0), q.size(1)}, q.options().dtype(at::kInt));
    contexts_of(m, q.data_ptr<int8_t>(), q.size(0), q.size(1), nullptr, feats[0].data_ptr<int32_t>(),
                feats[1].data_ptr<int32_t>());
    out.push_back(feats);
  }
  return out;
}

at::Tensor encode_one(const Model& m, const at::Tensor& q_in) {
  const at::Tensor q = q_in.contiguous();
  const int64_t rows = q.size(0), cols = q.size(1), n = rows * cols;
  const int8_t* qp = q.data_ptr<int8_t>();
  std::vector<int32_t> ctx(n);
  contexts_of(m, qp, rows, cols, ctx.data(), nullptr, nullptr);
  std::vector<uint16_t> words;
  words.reserve(static_cast<size_t>(n / 2 + 16));
  uint32_t x = kLow;
  const int64_t p = m.prob_bits;
  for (int64_t k = n - 1; k >= 0; --k) {
    const int64_t s = qp[k] + m.qmax;
    TORCH_CHECK(s >= 0 && s < m.nsym, "codes: value out of range for qmax");
    const int64_t base = ctx[k] * m.nsym + s;
    const uint32_t f = static_cast<uint32_t>(m.freq[base]);
    TORCH_CHECK(f > 0, "freq: a symbol that occurs has frequency 0 in its context");
    const uint64_t x_max = static_cast<uint64_t>(f) << (32 - p);
    if (x >= x_max) {
      words.push_back(static_cast<uint16_t>(x & 0xFFFF));
      x >>= 16;
    }
    x = ((x / f) << p) + (x % f) + static_cast<uint32_t>(m.cum[base]);
  }
  at::Tensor out = at::empty({static_cast<int64_t>(4 + 2 * words.size())}, q.options().dtype(at::kByte));
  uint8_t* o = out.data_ptr<uint8_t>();
  for (int i = 0; i < 4; ++i) o[i] = static_cast<uint8_t>(x >> (8 * i));
  const size_t nw = words.size();
  for (size_t w = 0; w < nw; ++w) {  // reversed: the decoder reads in the opposite order
    const uint16_t v = words[nw - 1 - w];
    o[4 + 2 * w] = static_cast<uint8_t>(v & 0xFF);
    o[5 + 2 * w] = static_cast<uint8_t>(v >> 8);
  }
  return out;
}

// Returns an empty string on success, else what was wrong.
std::string decode_one(const Model& m, const std::vector<uint8_t>& slot_lut, const uint8_t* in, int64_t len,
                       int8_t* out, int64_t rows, int64_t cols) {
  if (len < 4 || (len - 4) % 2 != 0) return "stream length is not 4 + 2*words";
  uint32_t x = static_cast<uint32_t>(in[0]) | (static_cast<uint32_t>(in[1]) << 8) |
               (static_cast<uint32_t>(in[2]) << 16) | (static_cast<uint32_t>(in[3]) << 24);
  const uint8_t* w = in + 4;
  const uint8_t* end = in + len;
  const int64_t p = m.prob_bits;
  const uint32_t mask = (1u << p) - 1;
  const size_t table = static_cast<size_t>(1) << p;
  std::vector<int64_t> colacc(cols, m.ainit);
  for (int64_t i = 0; i < rows; ++i) {
    int64_t rowacc = m.rinit;
    int8_t* orow = out + i * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t c = context(m, colacc[j], rowacc);
      const uint32_t slot = x & mask;
      const int64_t s = slot_lut[c * table + slot];
      const int64_t base = c * m.nsym + s;
      x = static_cast<uint32_t>(m.freq[base]) * (x >> p) + slot - static_cast<uint32_t>(m.cum[base]);
      if (x < kLow) {
        if (w + 2 > end) return "stream ends early";
        x = (x << 16) | static_cast<uint32_t>(w[0]) | (static_cast<uint32_t>(w[1]) << 8);
        w += 2;
      }
      const int64_t code = s - m.qmax;
      orow[j] = static_cast<int8_t>(code);
      const int64_t mag = code < 0 ? -code : code;
      colacc[j] += mag - (colacc[j] >> m.cs);
      rowacc += mag - (rowacc >> m.rs);
    }
  }
  if (w != end) return "stream has trailing words";
  if (x != kLow) return "final rANS state is wrong";
  return "";
}

std::vector<at::Tensor> rans_encode_cpp(at::TensorList codes, const at::Tensor& luta, const at::Tensor& lutb,
                                        int64_t nb, const at::Tensor& freq, const at::Tensor& cum,
                                        int64_t prob_bits, int64_t qmax, int64_t cs, int64_t rs, int64_t ainit,
                                        int64_t rinit) {
  const Model m = make_model(luta, lutb, nb, freq, cum, prob_bits, qmax, cs, rs, ainit, rinit);
  for (const auto& c : codes)
    TORCH_CHECK(c.dtype() == at::kChar && c.dim() == 2 && c.device().is_cpu(), "codes: expected 2-D int8 CPU tensors");
  std::vector<at::Tensor> out(codes.size());
  std::vector<std::string> errors(codes.size());
  at::parallel_for(0, static_cast<int64_t>(codes.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      try {
        out[t] = encode_one(m, codes[t]);
      } catch (const std::exception& ex) {
        errors[t] = ex.what();
      }
    }
  });
  for (size_t t = 0; t < errors.size(); ++t) TORCH_CHECK(errors[t].empty(), "matrix ", t, ": ", errors[t]);
  return out;
}

std::vector<at::Tensor> rans_decode_cpp(at::TensorList streams, at::IntArrayRef rows, at::IntArrayRef cols,
                                        const at::Tensor& luta, const at::Tensor& lutb, int64_t nb,
                                        const at::Tensor& freq, const at::Tensor& cum, int64_t prob_bits,
                                        int64_t qmax, int64_t cs, int64_t rs, int64_t ainit, int64_t rinit) {
  const Model m = make_model(luta, lutb, nb, freq, cum, prob_bits, qmax, cs, rs, ainit, rinit);
  TORCH_CHECK(rows.size() == streams.size() && cols.size() == streams.size(), "rows, cols: one per stream");
  const size_t table = static_cast<size_t>(1) << prob_bits;
  std::vector<uint8_t> slot_lut(static_cast<size_t>(m.nctx) * table, 0);
  for (int64_t c = 0; c < m.nctx; ++c) {
    int64_t total = 0;
    for (int64_t s = 0; s < m.nsym; ++s) {
      const int64_t f = m.freq[c * m.nsym + s], start = m.cum[c * m.nsym + s];
      if (f == 0) continue;
      TORCH_CHECK(f > 0 && start == total && start + f <= static_cast<int64_t>(table),
                  "freq, cum: context ", c, " is not a valid table");
      for (int64_t k = start; k < start + f; ++k) slot_lut[c * table + k] = static_cast<uint8_t>(s);
      total += f;
    }
    TORCH_CHECK(total == 0 || total == static_cast<int64_t>(table), "freq: context ", c, " does not sum to 2^P");
  }
  std::vector<at::Tensor> out(streams.size());
  for (size_t t = 0; t < streams.size(); ++t) {
    TORCH_CHECK(streams[t].dtype() == at::kByte && streams[t].dim() == 1 && streams[t].is_contiguous(),
                "streams: expected contiguous 1-D uint8 tensors");
    TORCH_CHECK(rows[t] >= 1 && cols[t] >= 1, "rows, cols: expected >= 1");
    out[t] = at::empty({rows[t], cols[t]}, streams[t].options().dtype(at::kChar));
  }
  std::vector<std::string> errors(streams.size());
  at::parallel_for(0, static_cast<int64_t>(streams.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      errors[t] = decode_one(m, slot_lut, streams[t].data_ptr<uint8_t>(), streams[t].numel(),
                             out[t].data_ptr<int8_t>(), rows[t], cols[t]);
  });
  for (size_t t = 0; t < errors.size(); ++t) TORCH_CHECK(errors[t].empty(), "stream ", t, ": ", errors[t]);
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(golf_fast, m) {
  m.def("_rans_features_cpp(Tensor[] codes, int cs, int rs, int ainit, int rinit) -> Tensor[]");
  m.def("_rans_encode_cpp(Tensor[] codes, Tensor luta, Tensor lutb, int nb, Tensor freq, Tensor cum, "
        "int prob_bits, int qmax, int cs, int rs, int ainit, int rinit) -> Tensor[]");
  m.def("_rans_decode_cpp(Tensor[] streams, int[] rows, int[] cols, Tensor luta, Tensor lutb, int nb, "
        "Tensor freq, Tensor cum, int prob_bits, int qmax, int cs, int rs, int ainit, int rinit) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(golf_fast, CPU, m) {
  m.impl("_rans_features_cpp", &rans_features_cpp);
  m.impl("_rans_encode_cpp", &rans_encode_cpp);
  m.impl("_rans_decode_cpp", &rans_decode_cpp);
}
