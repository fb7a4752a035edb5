// C++ CPU kernels of the "golf-rans" artifact codec (see golf_fast/artifact/rans.py for the
// format, the context model and the pure-Python reference these must match byte for byte).
//
// Symbols u = code + qmax in [0, 2*qmax], scanned row-major over the (R, C) matrix (the caller
// transposes first when the group says so). The rows are cut into slices of `slice_rows` rows;
// each slice is an independent stream (its own state and context history), so slices decode in
// parallel. Context of symbol (i, j) within a slice:
//   colacc[j]  column accumulator, starts at ainit:  colacc[j] += a - (colacc[j] >> cs), where
//              a = |q| (rmode bit 1 clear) or a = q + qmax (bit 1 set: the column's signed running level)
//   rowacc     row accumulator, reset to rinit at the start of each row: rowacc += m - (rowacc >> rs), where
//              m = |q| (rmode bit 0 clear) or m = |q - q_above| (bit 0 set: how far the row strays from the row above)
//   above      u of (i-1, j) in the slice, qmax (code 0) on the slice's first row (q_above = above - qmax)
//   ctx = (luta[min(colacc[j], |luta|-1)] * nb + lutb[min(rowacc, |lutb|-1)]) * nc + lutc[above]
// (accumulators are read before the symbol updates them).
//
// rANS: 32-bit state x in [2^16, 2^32), 16-bit little-endian words, probability precision
// P <= 15 bits (freq tables sum to 2^P per context). Stream = u32 final encoder state (LE) then
// the words in decoding order. The encoder starts at x = 2^16 and the decoder must end there.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <utility>
#include <cstdint>
#include <string>
#include <vector>

namespace {

constexpr uint32_t kLow = 1u << 16;

// ---- bounds checks on values an artifact declares (kept apart from the coder itself) ----------
// The Python loader checks every side-information field first (golf_fast/artifact/rans_side.py);
// these re-check, at the C++ boundary, each value that is later used as an index or a size.

constexpr int64_t kMaxAccInit = int64_t(1) << 20;   // = rans_side.MAX_ACC; accumulators stay far from int32 overflow
constexpr int64_t kMaxSymbols = int64_t(1) << 40;   // rows * cols of one matrix

void check_accumulator_inits(int64_t ainit, int64_t rinit) {
  TORCH_CHECK(ainit >= 0 && ainit <= kMaxAccInit, "ainit: expected 0..2^20, got ", ainit);
  TORCH_CHECK(rinit >= 0 && rinit <= kMaxAccInit, "rinit: expected 0..2^20, got ", rinit);
}

void check_matrix_dims(int64_t rows, int64_t cols) {
  TORCH_CHECK(rows >= 1 && cols >= 1 && rows <= kMaxSymbols / cols, "rows, cols: expected >= 1 and rows*cols <= 2^40, got ",
              rows, " x ", cols);
}

// v clamped into [0, hi]: a table index that cannot leave its table whatever v is.
inline int64_t clamp_index(int64_t v, int64_t hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

struct Model {
  const uint8_t* luta; int64_t na_len;
  const uint8_t* lutb; int64_t nb_len;
  const uint8_t* lutc;
  int64_t nb, nc;
  const int32_t* freq;  // (nctx, S)
  const int32_t* cum;   // (nctx, S)
  int64_t nsym;
  int64_t nctx;
  int64_t prob_bits;
  int64_t qmax, cs, rs, ainit, rinit, rmode;
};

Model make_model(const at::Tensor& luta, const at::Tensor& lutb, const at::Tensor& lutc, int64_t nb, int64_t nc,
                 const at::Tensor& freq,
                 const at::Tensor& cum, int64_t prob_bits, int64_t qmax, int64_t cs, int64_t rs,
                 int64_t ainit, int64_t rinit, int64_t rmode) {
  TORCH_CHECK(luta.dtype() == at::kByte && luta.dim() == 1 && luta.numel() >= 1 && luta.is_contiguous(),
              "luta: expected a contiguous 1-D uint8 tensor");
  TORCH_CHECK(lutb.dtype() == at::kByte && lutb.dim() == 1 && lutb.numel() >= 1 && lutb.is_contiguous(),
              "lutb: expected a contiguous 1-D uint8 tensor");
  TORCH_CHECK(lutc.dtype() == at::kByte && lutc.dim() == 1 && lutc.is_contiguous(), "lutc: expected 1-D uint8");
  TORCH_CHECK(freq.dtype() == at::kInt && freq.dim() == 2 && freq.is_contiguous(), "freq: expected (nctx, S) int32");
  TORCH_CHECK(cum.sizes() == freq.sizes() && cum.dtype() == at::kInt && cum.is_contiguous(),
              "cum: expected the shape and dtype of freq");
  TORCH_CHECK(prob_bits >= 8 && prob_bits <= 15, "prob_bits: expected 8..15, got ", prob_bits);
  TORCH_CHECK(qmax >= 1 && qmax <= 127 && freq.size(1) == 2 * qmax + 1, "freq: expected 2*qmax+1 symbols");
  TORCH_CHECK(cs >= 0 && cs <= 8 && rs >= 0 && rs <= 8, "cs, rs: expected 0..8");
  TORCH_CHECK(rmode >= 0 && rmode <= 3, "rmode: expected 0..3, got ", rmode);
  TORCH_CHECK(nb >= 1 && nc >= 1 && freq.size(0) % (nb * nc) == 0, "nb, nc: expected >= 1, dividing the context count");
  TORCH_CHECK(lutc.numel() == freq.size(1), "lutc: expected one entry per symbol");
  check_accumulator_inits(ainit, rinit);
  Model m{luta.data_ptr<uint8_t>(), luta.numel(), lutb.data_ptr<uint8_t>(), lutb.numel(), lutc.data_ptr<uint8_t>(),
          nb, nc,
          freq.data_ptr<int32_t>(), cum.data_ptr<int32_t>(), freq.size(1), freq.size(0), prob_bits,
          qmax, cs, rs, ainit, rinit, rmode};
  for (int64_t i = 0; i < m.na_len; ++i) TORCH_CHECK(m.luta[i] * nb * nc < m.nctx, "luta: context out of range");
  for (int64_t i = 0; i < m.nb_len; ++i) TORCH_CHECK(m.lutb[i] < nb, "lutb: context out of range");
  for (int64_t i = 0; i < m.nsym; ++i) TORCH_CHECK(m.lutc[i] < nc, "lutc: context out of range");
  return m;
}

inline int64_t context(const Model& m, int64_t colacc, int64_t rowacc, int64_t above) {
  const int64_t a = clamp_index(colacc, m.na_len - 1);
  const int64_t b = clamp_index(rowacc, m.nb_len - 1);
  return (static_cast<int64_t>(m.luta[a]) * m.nb + m.lutb[b]) * m.nc + m.lutc[clamp_index(above, m.nsym - 1)];
}

// Contexts (or the raw features) of every symbol of one slice: (rows, cols) int8, row-major.
void contexts_of(const Model& m, const int8_t* q, int64_t rows, int64_t cols, int32_t* ctx_out,
                 int32_t* cola_out, int32_t* rowa_out, int32_t* above_out) {
  std::vector<int64_t> colacc(cols, m.ainit);
  for (int64_t i = 0; i < rows; ++i) {
    int64_t rowacc = m.rinit;
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t idx = i * cols + j;
      const int64_t above = i > 0 ? q[idx - cols] + m.qmax : m.qmax;
      if (ctx_out) ctx_out[idx] = static_cast<int32_t>(context(m, colacc[j], rowacc, above));
      if (cola_out) cola_out[idx] = static_cast<int32_t>(colacc[j]);
      if (rowa_out) rowa_out[idx] = static_cast<int32_t>(rowacc);
      if (above_out) above_out[idx] = static_cast<int32_t>(above);
      const int64_t mag = q[idx] < 0 ? -q[idx] : q[idx];
      const int64_t res = (m.rmode & 1) ? std::abs(q[idx] - (above - m.qmax)) : mag;
      const int64_t cadd = (m.rmode & 2) ? q[idx] + m.qmax : mag;
      colacc[j] += cadd - (colacc[j] >> m.cs);
      rowacc += res - (rowacc >> m.rs);
    }
  }
}

void check_codes(const at::Tensor& c) {
  TORCH_CHECK(c.dtype() == at::kChar && c.dim() == 2 && c.device().is_cpu() && c.size(0) >= 1 && c.size(1) >= 1,
              "codes: expected non-empty 2-D int8 CPU tensors");
  check_matrix_dims(c.size(0), c.size(1));
}

// (3, R, C) int32 per matrix: column accumulator, row accumulator, symbol above.
std::vector<at::Tensor> rans_features_cpp(at::TensorList codes, int64_t slice_rows, int64_t qmax, int64_t cs,
                                          int64_t rs, int64_t ainit, int64_t rinit, int64_t rmode) {
  TORCH_CHECK(cs >= 0 && cs <= 8 && rs >= 0 && rs <= 8, "cs, rs: expected 0..8");
  TORCH_CHECK(rmode >= 0 && rmode <= 3, "rmode: expected 0..3");
  TORCH_CHECK(slice_rows >= 1, "slice_rows: expected >= 1");
  check_accumulator_inits(ainit, rinit);
  std::vector<at::Tensor> out;
  Model m{};
  m.qmax = qmax; m.cs = cs; m.rs = rs; m.ainit = ainit; m.rinit = rinit; m.rmode = rmode;
  for (const auto& c : codes) {
    check_codes(c);
    const at::Tensor q = c.contiguous();
    const int64_t rows = q.size(0), cols = q.size(1);
    at::Tensor feats = at::empty({3, rows, cols}, q.options().dtype(at::kInt));
    int32_t* f = feats.data_ptr<int32_t>();
    for (int64_t r0 = 0; r0 < rows; r0 += slice_rows) {
      const int64_t nr = std::min(slice_rows, rows - r0), off = r0 * cols;
      contexts_of(m, q.data_ptr<int8_t>() + off, nr, cols, nullptr, f + off, f + rows * cols + off,
                  f + 2 * rows * cols + off);
    }
    out.push_back(feats);
  }
  return out;
}

at::Tensor encode_slice(const Model& m, const int8_t* qp, int64_t rows, int64_t cols, const at::TensorOptions& opt) {
  const int64_t n = rows * cols;
  std::vector<int32_t> ctx(n);
  contexts_of(m, qp, rows, cols, ctx.data(), nullptr, nullptr, nullptr);
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
  at::Tensor out = at::empty({static_cast<int64_t>(4 + 2 * words.size())}, opt.dtype(at::kByte));
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

// Decoding-side tables. bucket: per (context, slot >> (P - bits)) the symbol holding the bucket's
// first slot; fc: per (context, symbol) freq | cum << 16, plus a sentinel (cum = 2^P) per context.
// A slot's symbol is found from its bucket by stepping while the next symbol's cum <= slot.
// bits = P (a full slot table: no stepping) while the buckets fit in kBucketBytes, else fewer.
constexpr int64_t kBucketBytes = 512 * 1024;

struct DecodeTables {
  std::vector<uint8_t> bucket;
  std::vector<uint32_t> fc;
  int64_t bits = 8;
};

// Decodes L slices of equal shape (rows, cols) in one loop: the L rANS chains are independent,
// so their latencies overlap. Returns an empty string on success, else what was wrong.
template <int L>
std::string decode_lanes(const Model& m, const DecodeTables& dt, const uint8_t* const* in, const int64_t* len,
                         int8_t* const* out, int64_t rows, int64_t cols) {
  uint32_t x[L];
  const uint8_t* w[L];
  const uint8_t* end[L];
  int32_t rowacc[L];
  std::vector<int32_t> colacc(static_cast<size_t>(cols) * L, static_cast<int32_t>(m.ainit));
  for (int l = 0; l < L; ++l) {
    if (len[l] < 4 || (len[l] - 4) % 2 != 0) return "stream length is not 4 + 2*words";
    x[l] = static_cast<uint32_t>(in[l][0]) | (static_cast<uint32_t>(in[l][1]) << 8) |
           (static_cast<uint32_t>(in[l][2]) << 16) | (static_cast<uint32_t>(in[l][3]) << 24);
    w[l] = in[l] + 4;
    end[l] = in[l] + len[l];
  }
  const int64_t p = m.prob_bits;
  const uint32_t mask = (1u << p) - 1;
  const uint8_t* bucket = dt.bucket.data();
  const uint32_t* fc = dt.fc.data();
  const int64_t bbits = dt.bits, shift = p - bbits, row = m.nsym + 1;
  const int32_t na_max = static_cast<int32_t>(m.na_len - 1), nb_max = static_cast<int32_t>(m.nb_len - 1);
  const int64_t nbc = m.nb * m.nc;
  bool bad_symbol = false, short_stream = false;
  for (int64_t i = 0; i < rows; ++i) {
    for (int l = 0; l < L; ++l) rowacc[l] = static_cast<int32_t>(m.rinit);
    for (int64_t j = 0; j < cols; ++j) {
      for (int l = 0; l < L; ++l) {
        int8_t* o = out[l] + i * cols + j;
        int32_t& ca_ref = colacc[j * L + l];
        const int64_t ca = clamp_index(ca_ref, na_max);
        const int64_t rb = clamp_index(rowacc[l], nb_max);
        const int64_t above = i > 0 ? clamp_index(o[-cols] + m.qmax, m.nsym - 1) : m.qmax;
        const int64_t c = m.luta[ca] * nbc + m.lutb[rb] * m.nc + m.lutc[above];
        const uint32_t slot = x[l] & mask;
        const uint32_t* fcc = fc + c * row;
        int64_t s = bucket[(c << bbits) + (slot >> shift)];
        while ((fcc[s + 1] >> 16) <= slot) ++s;
        if (s >= m.nsym) {  // only in an empty context, i.e. a corrupt stream; keep memory-safe
          bad_symbol = true;
          s = m.qmax;
        }
        const uint32_t e = fcc[s];
        x[l] = (e & 0xFFFF) * (x[l] >> p) + slot - (e >> 16);
        if (x[l] < kLow) {
          if (w[l] + 2 > end[l]) {
            short_stream = true;
          } else {
            x[l] = (x[l] << 16) | static_cast<uint32_t>(w[l][0]) | (static_cast<uint32_t>(w[l][1]) << 8);
            w[l] += 2;
          }
        }
        const int32_t code = static_cast<int32_t>(s - m.qmax);
        *o = static_cast<int8_t>(code);
        const int32_t mag = code < 0 ? -code : code;
        const int32_t dq = code - static_cast<int32_t>(above - m.qmax);
        const int32_t res = (m.rmode & 1) ? (dq < 0 ? -dq : dq) : mag;
        const int32_t cadd = (m.rmode & 2) ? code + static_cast<int32_t>(m.qmax) : mag;
        ca_ref += cadd - (ca_ref >> m.cs);
        rowacc[l] += res - (rowacc[l] >> m.rs);
      }
    }
    if (bad_symbol) return "a symbol falls in an empty context";
    if (short_stream) return "stream ends early";
  }
  for (int l = 0; l < L; ++l) {
    if (w[l] != end[l]) return "stream has trailing words";
    if (x[l] != kLow) return "final rANS state is wrong";
  }
  return "";
}

struct SliceRef {
  int64_t tensor, row0, rows;
};

std::vector<SliceRef> slices_of(const std::vector<int64_t>& rows, int64_t slice_rows) {
  std::vector<SliceRef> out;
  for (size_t t = 0; t < rows.size(); ++t)
    for (int64_t r0 = 0; r0 < rows[t]; r0 += slice_rows)
      out.push_back({static_cast<int64_t>(t), r0, std::min(slice_rows, rows[t] - r0)});
  return out;
}

// One stream per slice, tensor-major then slice order.
std::vector<at::Tensor> rans_encode_cpp(at::TensorList codes, int64_t slice_rows, const at::Tensor& luta,
                                        const at::Tensor& lutb, const at::Tensor& lutc, int64_t nb, int64_t nc,
                                        const at::Tensor& freq, const at::Tensor& cum, int64_t prob_bits,
                                        int64_t qmax, int64_t cs, int64_t rs, int64_t ainit, int64_t rinit,
                                        int64_t rmode) {
  const Model m = make_model(luta, lutb, lutc, nb, nc, freq, cum, prob_bits, qmax, cs, rs, ainit, rinit, rmode);
  TORCH_CHECK(slice_rows >= 1, "slice_rows: expected >= 1");
  std::vector<at::Tensor> qs;
  std::vector<int64_t> rows;
  for (const auto& c : codes) {
    check_codes(c);
    qs.push_back(c.contiguous());
    rows.push_back(c.size(0));
  }
  const auto sl = slices_of(rows, slice_rows);
  std::vector<at::Tensor> out(sl.size());
  std::vector<std::string> errors(sl.size());
  at::parallel_for(0, static_cast<int64_t>(sl.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const at::Tensor& q = qs[sl[k].tensor];
      const int64_t cols = q.size(1);
      try {
        out[k] = encode_slice(m, q.data_ptr<int8_t>() + sl[k].row0 * cols, sl[k].rows, cols, q.options());
      } catch (const std::exception& ex) {
        errors[k] = ex.what();
      }
    }
  });
  for (size_t k = 0; k < errors.size(); ++k)
    TORCH_CHECK(errors[k].empty(), "matrix ", sl[k].tensor, " rows ", sl[k].row0, "+: ", errors[k]);
  return out;
}

std::vector<at::Tensor> rans_decode_cpp(at::TensorList streams, at::IntArrayRef rows_in, at::IntArrayRef cols,
                                        int64_t slice_rows, const at::Tensor& luta, const at::Tensor& lutb,
                                        const at::Tensor& lutc, int64_t nb, int64_t nc, const at::Tensor& freq,
                                        const at::Tensor& cum, int64_t prob_bits, int64_t qmax, int64_t cs,
                                        int64_t rs, int64_t ainit, int64_t rinit, int64_t rmode) {
  const Model m = make_model(luta, lutb, lutc, nb, nc, freq, cum, prob_bits, qmax, cs, rs, ainit, rinit, rmode);
  TORCH_CHECK(slice_rows >= 1, "slice_rows: expected >= 1");
  TORCH_CHECK(rows_in.size() == cols.size(), "rows, cols: one per matrix");
  const std::vector<int64_t> rows(rows_in.begin(), rows_in.end());
  for (size_t t = 0; t < rows.size(); ++t) check_matrix_dims(rows[t], cols[t]);
  const auto sl = slices_of(rows, slice_rows);
  TORCH_CHECK(streams.size() == sl.size(), "streams: expected ", sl.size(), " (one per slice), got ", streams.size());
  const int64_t table = static_cast<int64_t>(1) << prob_bits;
  const int64_t row = m.nsym + 1;
  DecodeTables dt;
  dt.bits = prob_bits;
  while (dt.bits > 8 && (m.nctx << dt.bits) > kBucketBytes) --dt.bits;
  const int64_t bbits = dt.bits, shift = prob_bits - bbits;
  dt.bucket.assign(static_cast<size_t>(m.nctx) << bbits, 0);
  dt.fc.assign(static_cast<size_t>(m.nctx * row), 0);
  for (int64_t c = 0; c < m.nctx; ++c) {
    int64_t total = 0;
    for (int64_t s = 0; s < m.nsym; ++s) {
      const int64_t f = m.freq[c * m.nsym + s], start = m.cum[c * m.nsym + s];
      TORCH_CHECK(f >= 0 && start == total && start + f <= table, "freq, cum: context ", c, " is not a valid table");
      dt.fc[c * row + s] = static_cast<uint32_t>(f) | (static_cast<uint32_t>(start) << 16);
      for (int64_t b = (start + (1 << shift) - 1) >> shift; b < (1 << bbits) && (b << shift) < start + f; ++b)
        dt.bucket[(c << bbits) + b] = static_cast<uint8_t>(s);
      total += f;
    }
    TORCH_CHECK(total == 0 || total == table, "freq: context ", c, " does not sum to 2^P");
    dt.fc[c * row + m.nsym] = static_cast<uint32_t>(table) << 16;  // sentinel
  }
  std::vector<at::Tensor> out(rows.size());
  for (size_t t = 0; t < rows.size(); ++t) out[t] = at::empty({rows[t], cols[t]}, luta.options().dtype(at::kChar));
  for (const auto& st : streams)
    TORCH_CHECK(st.dtype() == at::kByte && st.dim() == 1 && st.is_contiguous() && st.device().is_cpu(),
                "streams: expected contiguous 1-D uint8 CPU tensors");
  // Work items: up to kLanes consecutive slices of the same shape, decoded together.
  constexpr int kLanes = 4;
  std::vector<std::pair<int64_t, int64_t>> items;  // [first slice, count)
  for (size_t k = 0; k < sl.size();) {
    size_t n = 1;
    while (n < kLanes && k + n < sl.size() && sl[k + n].rows == sl[k].rows &&
           cols[sl[k + n].tensor] == cols[sl[k].tensor])
      ++n;
    items.push_back({static_cast<int64_t>(k), static_cast<int64_t>(n)});
    k += n;
  }
  std::vector<std::string> errors(items.size());
  at::parallel_for(0, static_cast<int64_t>(items.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t k0 = items[it].first, n = items[it].second;
      const uint8_t* ins[kLanes];
      int64_t lens[kLanes];
      int8_t* outs[kLanes];
      for (int64_t l = 0; l < n; ++l) {
        const SliceRef& r = sl[k0 + l];
        ins[l] = streams[k0 + l].data_ptr<uint8_t>();
        lens[l] = streams[k0 + l].numel();
        outs[l] = out[r.tensor].data_ptr<int8_t>() + r.row0 * cols[r.tensor];
      }
      const int64_t rows_k = sl[k0].rows, cols_k = cols[sl[k0].tensor];
      if (n == 4) {
        errors[it] = decode_lanes<4>(m, dt, ins, lens, outs, rows_k, cols_k);
      } else {
        for (int64_t l = 0; l < n && errors[it].empty(); ++l)
          errors[it] = decode_lanes<1>(m, dt, ins + l, lens + l, outs + l, rows_k, cols_k);
      }
    }
  });
  for (size_t it = 0; it < items.size(); ++it)
    TORCH_CHECK(errors[it].empty(), "matrix ", sl[items[it].first].tensor, " rows ", sl[items[it].first].row0,
                "+: ", errors[it]);
  return out;
}

// Histogram (nctx, 2*qmax+1) int64 of (context, symbol) over every slice of every matrix: what
// the encoder's tables are fitted to.
at::Tensor rans_counts_cpp(at::TensorList codes, int64_t slice_rows, const at::Tensor& luta, const at::Tensor& lutb,
                           const at::Tensor& lutc, int64_t nb, int64_t nc, int64_t nctx, int64_t qmax, int64_t cs,
                           int64_t rs, int64_t ainit, int64_t rinit, int64_t rmode) {
  TORCH_CHECK(qmax >= 1 && qmax <= 127, "qmax: expected 1..127");
  TORCH_CHECK(nctx >= 1 && nctx <= (1 << 20), "nctx: expected 1..2^20");
  const int64_t nsym = 2 * qmax + 1;
  at::Tensor dummy = at::zeros({nctx, nsym}, luta.options().dtype(at::kInt));
  at::Tensor cum = dummy.clone();
  for (int64_t c = 0; c < nctx; ++c) dummy[c][0] = 1 << 8;  // a valid table, only for make_model's checks
  const Model m = make_model(luta, lutb, lutc, nb, nc, dummy, cum, 8, qmax, cs, rs, ainit, rinit, rmode);
  TORCH_CHECK(slice_rows >= 1, "slice_rows: expected >= 1");
  at::Tensor counts = at::zeros({nctx, nsym}, luta.options().dtype(at::kLong));
  int64_t* h = counts.data_ptr<int64_t>();
  for (const auto& c : codes) {
    check_codes(c);
    const at::Tensor q = c.contiguous();
    const int64_t rows = q.size(0), cols = q.size(1);
    const int8_t* qp = q.data_ptr<int8_t>();
    std::vector<int32_t> ctx;
    for (int64_t r0 = 0; r0 < rows; r0 += slice_rows) {
      const int64_t nr = std::min(slice_rows, rows - r0), off = r0 * cols;
      ctx.resize(nr * cols);
      contexts_of(m, qp + off, nr, cols, ctx.data(), nullptr, nullptr, nullptr);
      for (int64_t k = 0; k < nr * cols; ++k) {
        const int64_t s = qp[off + k] + qmax;
        TORCH_CHECK(s >= 0 && s < nsym, "codes: value out of range for qmax");
        ++h[ctx[k] * nsym + s];
      }
    }
  }
  return counts;
}

// Greedy nearest-neighbour chain over rows with Gram matrix G (R, R) and squared norms sq (R,):
// start at row 0, then always the unvisited row j minimizing |x_j - x_cur|^2, i.e.
// sq[j] - 2 G[cur, j] (sq[cur] is the same for every j), ties to the lowest index. (R,) int64.
template <typename T>
void chain_impl(const T* g, const T* sq, int64_t n, int64_t* o) {
  std::vector<uint8_t> visited(n, 0);
  int64_t cur = 0;
  for (int64_t k = 0; k < n; ++k) {
    o[k] = cur;
    visited[cur] = 1;
    const T* row = g + cur * n;
    int64_t best = -1;
    double best_d = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      if (visited[j]) continue;
      const double dj = static_cast<double>(sq[j]) - 2.0 * static_cast<double>(row[j]);
      if (best < 0 || dj < best_d) {
        best = j;
        best_d = dj;
      }
    }
    cur = best;
  }
}

at::Tensor rans_chain_cpp(const at::Tensor& gram_in, const at::Tensor& sq_in) {
  TORCH_CHECK(gram_in.dim() == 2 && gram_in.size(0) == gram_in.size(1) && gram_in.size(0) >= 1 &&
              gram_in.device().is_cpu(), "gram: expected a square CPU matrix");
  TORCH_CHECK(sq_in.dim() == 1 && sq_in.size(0) == gram_in.size(0) && sq_in.scalar_type() == gram_in.scalar_type(),
              "sq: expected (R,) of gram's dtype");
  TORCH_CHECK(gram_in.scalar_type() == at::kFloat || gram_in.scalar_type() == at::kDouble,
              "gram: expected float32 or float64");
  const at::Tensor gram = gram_in.contiguous(), sq = sq_in.contiguous();
  const int64_t n = gram.size(0);
  at::Tensor order = at::empty({n}, gram.options().dtype(at::kLong));
  if (gram.scalar_type() == at::kFloat)
    chain_impl<float>(gram.data_ptr<float>(), sq.data_ptr<float>(), n, order.data_ptr<int64_t>());
  else
    chain_impl<double>(gram.data_ptr<double>(), sq.data_ptr<double>(), n, order.data_ptr<int64_t>());
  return order;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(golf_fast, m) {
  m.def("_rans_features_cpp(Tensor[] codes, int slice_rows, int qmax, int cs, int rs, int ainit, int rinit, int rmode) "
        "-> Tensor[]");
  m.def("_rans_encode_cpp(Tensor[] codes, int slice_rows, Tensor luta, Tensor lutb, Tensor lutc, int nb, int nc, "
        "Tensor freq, Tensor cum, int prob_bits, int qmax, int cs, int rs, int ainit, int rinit, int rmode) "
        "-> Tensor[]");
  m.def("_rans_chain_cpp(Tensor gram, Tensor sq) -> Tensor");
  m.def("_rans_counts_cpp(Tensor[] codes, int slice_rows, Tensor luta, Tensor lutb, Tensor lutc, int nb, int nc, "
        "int nctx, int qmax, int cs, int rs, int ainit, int rinit, int rmode) -> Tensor");
  m.def("_rans_decode_cpp(Tensor[] streams, int[] rows, int[] cols, int slice_rows, Tensor luta, Tensor lutb, "
        "Tensor lutc, int nb, int nc, Tensor freq, Tensor cum, int prob_bits, int qmax, int cs, int rs, "
        "int ainit, int rinit, int rmode) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(golf_fast, CPU, m) {
  m.impl("_rans_features_cpp", &rans_features_cpp);
  m.impl("_rans_encode_cpp", &rans_encode_cpp);
  m.impl("_rans_decode_cpp", &rans_decode_cpp);
  m.impl("_rans_chain_cpp", &rans_chain_cpp);
  m.impl("_rans_counts_cpp", &rans_counts_cpp);
}
