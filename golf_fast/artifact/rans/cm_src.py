"""``golf-cm`` (experimental): a context-mixing binary arithmetic coder over int codes, plain C
carried as source (``C_SOURCE``) and compiled like the portable decoder (``portable.build``).
ONE function, ``gcm_code``, both encodes and decodes (the model is updated by the same code in
both directions, so the two cannot drift).

Per matrix (rows × cols, row-major in its coded orientation; every matrix of a stream shares the
adaptive model, which starts from the same state in encoder and decoder), each code q is
binarized: ``q == 0`` (node 0); sign (node 1); then |q| − 1 in unary, node 2+k asking
``|q| > k+1`` for k < U = 20; past that, the remaining |q| − 1 − U in 7 plain bits (nodes
2+U+b). Each bit's probability mixes eight adaptive counters (22-bit probability + hit count,
rate 1/(n+1.5)) chosen by direct-indexed contexts of:

* ``ca``: the column's running mean |q| (``colacc += |q| − colacc>>4``), bucketed;
* ``ra``: the row's running mean |q| (``rowacc += |q| − rowacc>>3``, reset per row), bucketed;
* the codes above (A), left (L), two left (L2), above-left and above-right, clamped;
* and an order-0 counter per node;

through a logistic mixer (stretch domain, integer weights selected by node × ca bucket), then
an adaptive probability map (APM, node × ca) averaged with the mixer output, coded with a 32-bit
carry-less binary arithmetic coder (lpaq1's). All arithmetic is integer: the bytes are a
function of the codes alone.

Entry point: ``long long gcm_code(int enc, int8_t *codes, const long long *rows,
const long long *cols, long long nmat, long long qmax, uint8_t *buf, long long cap)`` →
bytes written (enc) or consumed (dec); −1 if ``cap`` is too small (enc) / the stream is short
or corrupt (dec); −2 out of memory.
"""

from golf_fast.artifact.rans.embcm_src import LOGISTIC_C

C_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef long long I;
#define U 20
#define NODES (2 + U + 7)
#define NCA 24
#define NM 8
""" + LOGISTIC_C + r"""static void init_tables(void) { init_logistic(); }
typedef struct { uint32_t *t; I n; } SM;
static int dt[1024];
static int sm_p(SM *s, I i) { return (int)(s->t[i] >> 20); }
static void sm_up(SM *s, I i, int y, int lim) {
  uint32_t v = s->t[i]; int n = (int)(v & 1023), p = (int)(v >> 10);
  if (n < lim) v++;
  v += (uint32_t)((I)(((y << 22) - p) >> 3) * dt[n]) & 0xfffffc00u;
  s->t[i] = v;
}
typedef struct {
  uint32_t x1, x2, x; int enc; uint8_t *b; I pos, cap; int bad;
} AC;
static void ac_out(AC *a, uint8_t c) { if (a->pos < a->cap) a->b[a->pos] = c; else a->bad = 1; a->pos++; }
static int ac_in(AC *a) { if (a->pos < a->cap) return a->b[a->pos++]; a->pos++; if (a->pos > a->cap + 4) a->bad = 1; return 0; }
static int ac_bit(AC *a, int p, int y) {  /* p = P(1) in 12 bits; y the bit when encoding */
  uint32_t xm = a->x1 + (a->x2 - a->x1 >> 12) * (uint32_t)p;
  if (!a->enc) y = a->x <= xm;
  if (y) a->x2 = xm; else a->x1 = xm + 1;
  while (((a->x1 ^ a->x2) & 0xff000000u) == 0) {
    if (a->enc) ac_out(a, (uint8_t)(a->x2 >> 24));
    a->x1 <<= 8; a->x2 = (a->x2 << 8) | 255;
    if (!a->enc) a->x = (a->x << 8) | (uint32_t)ac_in(a);
  }
  return y;
}
typedef struct {
  SM m[NM]; int *w; int *apm; AC ac; int cx[NM]; I base[NM];
} CM;
static const I msz[NM] = {NODES * NCA * NCA, NODES * 15 * NCA, NODES * 15 * 8 * NCA, NODES * 15 * 15 * 7 * 7,
                          NODES * NCA * 15 * 15, NODES * 8 * 8 * 8, NODES * NCA, NODES};
static int code_bit(CM *c, int node, int cab, int y) {
  int st[NM + 1], k, dot = 0, p, pm, e, pa, lo, wgt, s2;
  I wi = (I)(node * NCA + cab) * (NM + 1);
  for (k = 0; k < NM; k++) st[k] = st_t[sm_p(&c->m[k], c->base[k] + (I)c->cx[k] * NODES + node)];
  st[NM] = 256;
  for (k = 0; k <= NM; k++) dot += (int)(((I)c->w[wi + k] * st[k]) >> 16);
  pm = sq(dot);
  s2 = cl(dot, -2047, 2047) + 2048; lo = s2 >> 7; wgt = s2 & 127;
  { I ai = (I)(node * NCA + cab) * 33 + lo;
    pa = (c->apm[ai] * (128 - wgt) + c->apm[ai + 1] * wgt) >> 11;
    p = cl((pm + 3 * pa) >> 2, 1, 4095);
    y = ac_bit(&c->ac, p, y);
    e = (y << 16) + (y << 5) - y - y;
    c->apm[ai + (wgt >> 6)] += (e - c->apm[ai + (wgt >> 6)]) >> 7; }
  e = ((y << 12) - pm) * 1;
  for (k = 0; k <= NM; k++) c->w[wi + k] += (st[k] * e) >> 10;
  for (k = 0; k < NM; k++) sm_up(&c->m[k], c->base[k] + (I)c->cx[k] * NODES + node, y, 255);
  return y;
}
long long gcm_code(int enc, int8_t *codes, const I *rows, const I *cols, I nmat, I qmax, uint8_t *buf, I cap) {
  CM c; I t, i, j, k, off = 0; int *colacc = 0; I maxc = 1, ret;
  init_tables();
  for (k = 0; k < 1024; k++) dt[k] = 16384 / (k + k + 3);
  memset(&c, 0, sizeof c);
  for (t = 0; t < nmat; t++) if (cols[t] > maxc) maxc = cols[t];
  c.w = (int *)malloc(sizeof(int) * NODES * NCA * (NM + 1));
  c.apm = (int *)malloc(sizeof(int) * NODES * NCA * 33);
  colacc = (int *)malloc(sizeof(int) * (size_t)maxc);
  for (k = 0; k < NM; k++) {
    I n;
    c.m[k].n = msz[k]; c.m[k].t = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)msz[k]);
    if (!c.m[k].t) { enc = -1; break; }
    for (n = 0; n < msz[k]; n++) c.m[k].t[n] = 1u << 31;
  }
  if (enc < 0 || !c.w || !c.apm || !colacc) { ret = -2; goto done; }
  for (k = 0; k < NODES * NCA; k++) {
    int a; for (a = 0; a <= NM; a++) c.w[k * (NM + 1) + a] = a < NM ? (1 << 16) / 6 : 0;
    for (a = 0; a < 33; a++) c.apm[k * 33 + a] = sq((a - 16) * 128) * 16;
  }
  c.ac.x1 = 0; c.ac.x2 = 0xffffffffu; c.ac.enc = enc; c.ac.b = buf; c.ac.cap = cap;
  if (!enc) for (k = 0; k < 4; k++) c.ac.x = (c.ac.x << 8) | (uint32_t)ac_in(&c.ac);
  for (t = 0; t < nmat; t++) {
    I R = rows[t], C = cols[t];
    int8_t *q = codes + off;
    for (j = 0; j < C; j++) colacc[j] = 16;
    for (i = 0; i < R; i++) {
      int rowacc = 8;
      for (j = 0; j < C; j++) {
        int A = i ? q[(i - 1) * C + j] : 0, L = j ? q[i * C + j - 1] : 0, L2 = j > 1 ? q[i * C + j - 2] : 0;
        int AL = i && j ? q[(i - 1) * C + j - 1] : 0, AR = i && j + 1 < C ? q[(i - 1) * C + j + 1] : 0;
        int cab = cl(colacc[j] >> 3, 0, NCA - 1), rab = cl(rowacc >> 2, 0, NCA - 1);
        int v = enc ? q[i * C + j] : 0, m = v < 0 ? -v : v, y, node, b, mag;
        int Ac = cl(A, -7, 7) + 7, Lc = cl(L, -7, 7) + 7, L2m = cl(L2 < 0 ? -L2 : L2, 0, 7);
        c.cx[0] = cab * NCA + rab;
        c.cx[1] = Ac * NCA + cab;
        c.cx[2] = (Lc * 8 + L2m) * NCA + rab;
        c.cx[3] = ((Ac * 15 + Lc) * 7 + cl(AL, -3, 3) + 3) * 7 + cl(AR, -3, 3) + 3;
        c.cx[4] = (cab * 15 + Ac) * 15 + Lc;
        c.cx[5] = (cl(A < 0 ? -A : A, 0, 7) * 8 + cl(L < 0 ? -L : L, 0, 7)) * 8 + cl(colacc[j] >> 4, 0, 7);
        c.cx[6] = rab; c.cx[7] = 0;
        for (k = 0; k < NM; k++) c.base[k] = 0;
        y = code_bit(&c, 0, cab, m == 0);
        if (y) { mag = 0; }
        else {
          int sgn = code_bit(&c, 1, cab, v < 0);
          mag = 1;
          for (node = 2; node < 2 + U; node++) {
            if (mag >= qmax) break;
            if (!code_bit(&c, node, cab, m > mag)) break;
            mag++;
          }
          if (node == 2 + U && mag < qmax) {
            int r = 0;
            for (b = 6; b >= 0; b--) r |= code_bit(&c, 2 + U + b, cab, ((m - mag) >> b) & 1) << b;
            mag += r;
          }
          if (mag > qmax) { ret = -1; goto done; }
          if (!enc) q[i * C + j] = (int8_t)(sgn ? -mag : mag);
        }
        if (!enc && !mag) q[i * C + j] = 0;
        colacc[j] += mag - (colacc[j] >> 4);
        rowacc += mag - (rowacc >> 3);
      }
      if (c.ac.bad) { ret = -1; goto done; }
    }
    off += R * C;
  }
  if (enc) { for (k = 0; k < 4; k++) { ac_out(&c.ac, (uint8_t)(c.ac.x1 >> 24)); c.ac.x1 <<= 8; } }
  ret = c.ac.bad ? -1 : c.ac.pos;
  if (!enc && ret > cap) ret = -1;
done:
  for (k = 0; k < NM; k++) free(c.m[k].t);
  free(c.w); free(c.apm); free(colacc);
  return ret;
}
"""
