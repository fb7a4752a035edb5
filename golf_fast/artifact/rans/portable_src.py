"""The portable ``golf-rans`` decoder: plain C carried as source (``C_SOURCE``), compiled at load
with the system C compiler (``portable``) and called through ctypes — no torch headers, no
prebuilt extension. It runs the exact procedure of the ``coder`` module docstring.

Entry point (all sizes ``long long``; returns 0, or an error code, see ``ERRORS``)::

    grans_decode(freq  int32 (nctx, nsym), nctx, nsym, P,
                 luta uint8 (na_len), na_len, lutb uint8 (nb_len), nb_len, lutc uint8 (nsym), nb, nc,
                 qmax, cs, rs, ainit, rinit, rmode,
                 buf uint8 (all streams), off/len/rows/cols/out_off  (nslices,) long long, nslices,
                 out int8, bad  long long* (the failing slice))

Slice k's stream is ``buf[off[k] : off[k]+len[k]]``; its ``rows × cols`` codes go to
``out[out_off[k]:]`` row-major. Up to 4 consecutive slices of one shape are decoded together
(interleaved rANS chains, whose latencies overlap); a slot's symbol is found from a bucket
table (first symbol of each of 2^B slot buckets, B ≤ P, ≤ 512 KiB) and a short forward scan.
"""

ERRORS = {1: "stream length is not 4 + 2*words", 2: "a symbol falls in an empty context", 3: "stream ends early",
          4: "stream has trailing words", 5: "final rANS state is wrong", 6: "out of memory",
          7: "frequency table is not valid", 8: "lookup table out of range"}

C_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
typedef long long I;
#define LOW 65536u
static I cl(I v, I hi) { return v < 0 ? 0 : (v > hi ? hi : v); }
typedef struct {
  const uint8_t *la, *lb, *lc; I nla, nlb, nb, nc, nsym, q, cs, rs, ai, ri, rm, p, bb;
  const uint8_t *bk; const uint32_t *fc;
} M;
static int lanes(const M *m, int L, const uint8_t **in, const I *len, int8_t **out, I rows, I cols) {
  uint32_t x[4]; const uint8_t *w[4], *e[4]; int32_t ra[4]; int bad = 0, sh = 0; I i, j; int l;
  int32_t *ca = (int32_t *)malloc(sizeof(int32_t) * (size_t)(cols * L + 1));
  const uint32_t mask = (1u << m->p) - 1; const I shift = m->p - m->bb, row = m->nsym + 1;
  if (!ca) return 6;
  for (i = 0; i < cols * L; i++) ca[i] = (int32_t)m->ai;
  for (l = 0; l < L; l++) {
    if (len[l] < 4 || (len[l] - 4) % 2) { free(ca); return 1; }
    x[l] = in[l][0] | ((uint32_t)in[l][1] << 8) | ((uint32_t)in[l][2] << 16) | ((uint32_t)in[l][3] << 24);
    w[l] = in[l] + 4; e[l] = in[l] + len[l];
  }
  for (i = 0; i < rows; i++) {
    for (l = 0; l < L; l++) ra[l] = (int32_t)m->ri;
    for (j = 0; j < cols; j++) {
      for (l = 0; l < L; l++) {
        int8_t *o = out[l] + i * cols + j; int32_t *a = ca + j * L + l;
        I ab = i > 0 ? cl(o[-cols] + m->q, m->nsym - 1) : m->q;
        I c = ((I)m->la[cl(*a, m->nla - 1)] * m->nb + m->lb[cl(ra[l], m->nlb - 1)]) * m->nc + m->lc[ab];
        uint32_t slot = x[l] & mask, en; const uint32_t *f = m->fc + c * row;
        I s = m->bk[(c << m->bb) + (slot >> shift)]; int32_t code, mg, d;
        while ((f[s + 1] >> 16) <= slot) s++;
        if (s >= m->nsym) { bad = 1; s = m->q; }
        en = f[s];
        x[l] = (en & 0xFFFF) * (x[l] >> m->p) + slot - (en >> 16);
        if (x[l] < LOW) {
          if (w[l] + 2 > e[l]) sh = 1;
          else { x[l] = (x[l] << 16) | w[l][0] | ((uint32_t)w[l][1] << 8); w[l] += 2; }
        }
        code = (int32_t)(s - m->q); *o = (int8_t)code; mg = code < 0 ? -code : code;
        d = code - (int32_t)(ab - m->q);
        *a += ((m->rm & 2) ? code + (int32_t)m->q : mg) - (*a >> m->cs);
        ra[l] += ((m->rm & 1) ? (d < 0 ? -d : d) : mg) - (ra[l] >> m->rs);
      }
    }
    if (bad || sh) { free(ca); return bad ? 2 : 3; }
  }
  free(ca);
  for (l = 0; l < L; l++) { if (w[l] != e[l]) return 4; if (x[l] != LOW) return 5; }
  return 0;
}
int grans_decode(const int32_t *freq, I nctx, I nsym, I P, const uint8_t *luta, I nla, const uint8_t *lutb,
                 I nlb, const uint8_t *lutc, I nb, I nc, I q, I cs, I rs, I ai, I ri, I rm, const uint8_t *buf,
                 const I *off, const I *len, const I *rows, const I *cols, const I *oo, I n, int8_t *out, I *badk) {
  M m; I c, s, k, b, bb = P, row = nsym + 1, tab = (I)1 << P; int err = 0;
  uint8_t *bk; uint32_t *fc;
  if (P < 8 || P > 15 || rm < 0 || rm > 3 || nsym != 2 * q + 1 || nla < 1 || nlb < 1 || nb < 1 || nc < 1 || nctx % (nb * nc)) return 7;
  for (k = 0; k < nla; k++) if ((I)luta[k] * nb * nc >= nctx) return 8;
  for (k = 0; k < nlb; k++) if (lutb[k] >= nb) return 8;
  for (k = 0; k < nsym; k++) if (lutc[k] >= nc) return 8;
  while (bb > 8 && (nctx << bb) > 512 * 1024) bb--;
  bk = (uint8_t *)calloc((size_t)(nctx << bb), 1); fc = (uint32_t *)calloc((size_t)(nctx * row), 4);
  if (!bk || !fc) { free(bk); free(fc); return 6; }
  for (c = 0; c < nctx && !err; c++) {
    I tot = 0, sh = P - bb;
    for (s = 0; s < nsym; s++) {
      I f = freq[c * nsym + s];
      if (f < 0 || tot + f > tab) { err = 7; break; }
      fc[c * row + s] = (uint32_t)f | ((uint32_t)tot << 16);
      for (b = (tot + ((I)1 << sh) - 1) >> sh; b < ((I)1 << bb) && (b << sh) < tot + f; b++) bk[(c << bb) + b] = (uint8_t)s;
      tot += f;
    }
    if (!err && tot != 0 && tot != tab) err = 7;
    fc[c * row + nsym] = (uint32_t)tab << 16;
  }
  m.la = luta; m.lb = lutb; m.lc = lutc; m.nla = nla; m.nlb = nlb; m.nb = nb; m.nc = nc; m.nsym = nsym; m.q = q;
  m.cs = cs; m.rs = rs; m.ai = ai; m.ri = ri; m.rm = rm; m.p = P; m.bb = bb; m.bk = bk; m.fc = fc;
  for (k = 0; k < n && !err;) {
    const uint8_t *in[4]; int8_t *o[4]; I ln[4]; int L = 1;
    while (L < 4 && k + L < n && rows[k + L] == rows[k] && cols[k + L] == cols[k]) L++;
    for (b = 0; b < L; b++) { in[b] = buf + off[k + b]; ln[b] = len[k + b]; o[b] = out + oo[k + b]; }
    err = lanes(&m, L, in, ln, o, rows[k], cols[k]);
    if (err) *badk = k;
    k += L;
  }
  free(bk); free(fc);
  return err;
}
"""
