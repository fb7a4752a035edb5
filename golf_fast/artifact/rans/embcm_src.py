"""The embedding coder of ``golf-rans`` (``embcm``): a context-mixing binary arithmetic coder over one
int code matrix whose rows are in a similarity order, plain C carried as source (``C_SOURCE``) and
compiled at load like the portable decoder (``portable.build``). ONE function, ``gecm_code``,
encodes and decodes: the model is updated by the same code in both directions, so they cannot drift.
``embcm_ref`` is the same procedure in pure Python (tests compare the bytes).

Per code q (row i, column j of an R × C matrix, row-major; |q| ≤ qmax ≤ 127), the binary decisions:

* with ``flag`` 1 and i > 0, first ``q == above`` (node 2); a hit ends the code;
* ``q == 0`` (node 0); else the sign (node 1); then m = |q| ≥ 1 as k = floor(log2 m) in unary
  (nodes 3+t ask ``k > t`` for t < kmax = floor(log2 qmax)) and the k bits of m below its top bit,
  most significant first (node 11 + 8k + b).

Each decision's probability (12 bits) mixes five adaptive counters (22-bit probability, hit count
n ≤ 255, step ``((y<<22) − p) >> 3 · 16384/(2n+3)``) at index ``ctx·75 + node`` of five tables, with
contexts:

0. (column level bucket, row level bucket): ``ca = colacc[j] >> 3``, ``ra = rowacc >> 2``, each
   clamped to 0..23; ``colacc[j] += m − colacc[j]>>4`` down the column, ``rowacc += m − rowacc>>3``
   along the row (reset to 8 per row; colacc starts at 16);
1. (the code above A, exact; ca);
2. hash(A, the code two above A2);
3. hash(A, A2, A3);
4. hash(j);

through a logistic mixer (stretch domain; integer weights per (node, ca), each clamped to ±2^20
after its update), then an adaptive probability map per (node, ca) (33 interpolated entries) averaged
1:3 with the mixer, coded by lpaq1's carry-less 32-bit binary arithmetic coder. Everything is
integer arithmetic with explicit widths (right shifts of negative values are arithmetic, as every C
compiler the package supports does them): the bytes are a function of the codes alone.

Entry point: ``long long gecm_code(int enc, int8_t *q, long long rows, long long cols, long long qmax,
int flag, uint8_t *buf, long long cap)`` → bytes written (enc) or consumed (dec); −1: ``cap`` too
small (enc) / corrupt stream (dec); −2: out of memory; −3: bad arguments.
"""

NODES = 75
HASH_MOD = (1 << 22) // 128  # hashed contexts fall in [0, HASH_MOD): index = ctx*NODES + node < 2^22

LOGISTIC_C = r"""
static int st_t[4096], sq_t[4096];
static int squash0(int d) {  /* 4096/(1+e^-d/256), lpaq1's interpolation */
  static const int t[33] = {1,2,3,6,10,16,27,45,73,120,194,310,488,747,1101,1546,2047,2549,2994,3348,3607,
                            3785,3901,3975,4024,4050,4068,4079,4085,4089,4092,4093,4094};
  int w;
  if (d > 2047) return 4095;
  if (d < -2047) return 1;
  w = d & 127; d = (d >> 7) + 16;
  return (t[d] * (128 - w) + t[d + 1] * w + 64) >> 7;
}
static void init_logistic(void) {  /* st_t: stretch = squash^-1 over 12-bit probabilities; sq_t: squash */
  int x, pi = 0, i;
  for (x = -2047; x <= 2047; x++) { int v = squash0(x); for (i = pi; i <= v; i++) st_t[i] = x; pi = v + 1; }
  for (x = pi; x < 4096; x++) st_t[x] = 2047;
  for (x = 0; x < 4096; x++) sq_t[x] = squash0(x - 2048);
}
static int sq(int d) { return d > 2047 ? 4095 : (d < -2047 ? 1 : sq_t[d + 2048]); }
static int cl(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
"""
"""The logistic tables of lpaq1 (squash, stretch) and two helpers, shared with ``cm_src``."""

C_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef long long I;
#define NODES 75
#define NCA 24
#define NM 5
#define TBITS 22
#define WLIM (1 << 20)
""" + LOGISTIC_C + r"""static int dt[1024];
static void init_tables(void) {
  int x;
  init_logistic();
  for (x = 0; x < 1024; x++) dt[x] = 16384 / (x + x + 3);
}
static uint32_t H(uint32_t a, uint32_t b) {
  uint32_t h = a * 0x9E3779B1u ^ (b + 0x7F4A7C15u) * 0x85EBCA77u;
  h ^= h >> 15; h *= 0xC2B2AE3Du;
  return (h ^ (h >> 13)) % ((1u << TBITS) / 128u);
}
typedef struct { uint32_t x1, x2, x; int enc, bad; uint8_t *b; I pos, cap; } AC;
static void ac_out(AC *a, uint8_t c) { if (a->pos < a->cap) a->b[a->pos] = c; else a->bad = 1; a->pos++; }
static int ac_in(AC *a) { if (a->pos < a->cap) return a->b[a->pos++]; a->pos++; if (a->pos > a->cap + 4) a->bad = 1; return 0; }
static int ac_bit(AC *a, int p, int y) {
  uint32_t xm = a->x1 + ((a->x2 - a->x1) >> 12) * (uint32_t)p;
  if (!a->enc) y = a->x <= xm;
  if (y) a->x2 = xm; else a->x1 = xm + 1;
  while (((a->x1 ^ a->x2) & 0xff000000u) == 0) {
    if (a->enc) ac_out(a, (uint8_t)(a->x2 >> 24));
    a->x1 <<= 8; a->x2 = (a->x2 << 8) | 255u;
    if (!a->enc) a->x = (a->x << 8) | (uint32_t)ac_in(a);
  }
  return y;
}
typedef struct { uint32_t *t[NM]; int *w, *apm; I cx[NM]; AC ac; } CM;
static int code_bit(CM *c, int node, int ca, int y) {
  int st[NM + 1], k, dot = 0, pm, e, pa, lo, wgt, s2, p;
  I wi = (I)(node * NCA + ca) * (NM + 1), ai = (I)(node * NCA + ca) * 33;
  for (k = 0; k < NM; k++) st[k] = st_t[c->t[k][c->cx[k] * NODES + node] >> 20];
  st[NM] = 256;
  for (k = 0; k <= NM; k++) dot += (int)(((I)c->w[wi + k] * st[k]) >> 16);
  pm = sq(dot);
  s2 = cl(dot, -2047, 2047) + 2048; lo = s2 >> 7; wgt = s2 & 127;
  pa = (c->apm[ai + lo] * (128 - wgt) + c->apm[ai + lo + 1] * wgt) >> 11;
  p = cl((pm + 3 * pa) >> 2, 1, 4095);
  y = ac_bit(&c->ac, p, y);
  e = (y << 16) + (y << 5) - y - y;
  c->apm[ai + lo + (wgt >> 6)] += (e - c->apm[ai + lo + (wgt >> 6)]) >> 7;
  e = (y << 12) - pm;
  for (k = 0; k <= NM; k++) c->w[wi + k] = cl(c->w[wi + k] + ((st[k] * e) >> 10), -WLIM, WLIM);
  for (k = 0; k < NM; k++) {
    uint32_t *s = &c->t[k][c->cx[k] * NODES + node], v = *s;
    int n = (int)(v & 1023), pr = (int)(v >> 10);
    if (n < 255) v++;
    v += (uint32_t)((I)((((I)y << 22) - pr) >> 3) * dt[n]) & 0xfffffc00u;
    *s = v;
  }
  return y;
}
static int bitlen(int m) { int k = 0; while (m >> (k + 1)) k++; return k; }
long long gecm_code(int enc, int8_t *q, I R, I C, I qmax, int flag, uint8_t *buf, I cap) {
  CM c; I i, j, k, ret = 0; int *colacc = 0, kmax;
  if (R < 1 || C < 1 || qmax < 1 || qmax > 127 || (flag != 0 && flag != 1) || cap < 0) return -3;
  init_tables();
  memset(&c, 0, sizeof c);
  kmax = bitlen((int)qmax);
  c.w = (int *)malloc(sizeof(int) * NODES * NCA * (NM + 1));
  c.apm = (int *)malloc(sizeof(int) * NODES * NCA * 33);
  colacc = (int *)malloc(sizeof(int) * (size_t)C);
  for (k = 0; k < NM; k++) c.t[k] = (uint32_t *)malloc(sizeof(uint32_t) << TBITS);
  for (k = 0; k < NM; k++) if (!c.t[k]) ret = -2;
  if (ret || !c.w || !c.apm || !colacc) { ret = -2; goto done; }
  for (k = 0; k < NM; k++) { I n; for (n = 0; n < (1 << TBITS); n++) c.t[k][n] = 1u << 31; }
  for (k = 0; k < NODES * NCA; k++) {
    int a;
    for (a = 0; a <= NM; a++) c.w[k * (NM + 1) + a] = a < NM ? (1 << 16) / 4 : 0;
    for (a = 0; a < 33; a++) c.apm[k * 33 + a] = sq((a - 16) * 128) * 16;
  }
  c.ac.x1 = 0; c.ac.x2 = 0xffffffffu; c.ac.enc = enc; c.ac.b = buf; c.ac.cap = cap;
  if (!enc) for (k = 0; k < 4; k++) c.ac.x = (c.ac.x << 8) | (uint32_t)ac_in(&c.ac);
  for (j = 0; j < C; j++) colacc[j] = 16;
  for (i = 0; i < R; i++) {
    int rowacc = 8;
    for (j = 0; j < C; j++) {
      int A = i ? q[(i - 1) * C + j] : 0, A2 = i > 1 ? q[(i - 2) * C + j] : 0, A3 = i > 2 ? q[(i - 3) * C + j] : 0;
      int ca = cl(colacc[j] >> 3, 0, NCA - 1), ra = cl(rowacc >> 2, 0, NCA - 1);
      int v = enc ? q[i * C + j] : 0, m = v < 0 ? -v : v, mag = 0, t, b;
      c.cx[0] = ca * NCA + ra;
      c.cx[1] = 1024 + (A + 128) * 32 + ca;
      c.cx[2] = H(2, (uint32_t)((A + 128) * 256 + A2 + 128));
      c.cx[3] = H(3, (uint32_t)(((A + 128) * 256 + A2 + 128) * 256 + A3 + 128));
      c.cx[4] = H(4, (uint32_t)j);
      if (flag && i && code_bit(&c, 2, ca, v == A)) {
        mag = A < 0 ? -A : A;
        if (!enc) q[i * C + j] = (int8_t)A;
      } else if (code_bit(&c, 0, ca, m == 0)) {
        if (!enc) q[i * C + j] = 0;
      } else {
        int sgn = code_bit(&c, 1, ca, v < 0), kb = enc ? bitlen(m) : 0;
        for (t = 0; t < kmax; t++) if (!code_bit(&c, 3 + t, ca, kb > t)) break;
        mag = 1;
        for (b = t - 1; b >= 0; b--) mag = (mag << 1) | code_bit(&c, 11 + 8 * t + b, ca, (m >> b) & 1);
        if (mag > qmax) { ret = -1; goto done; }
        if (!enc) q[i * C + j] = (int8_t)(sgn ? -mag : mag);
      }
      colacc[j] += mag - (colacc[j] >> 4);
      rowacc += mag - (rowacc >> 3);
    }
    if (c.ac.bad) { ret = -1; goto done; }
  }
  if (enc) for (k = 0; k < 4; k++) { ac_out(&c.ac, (uint8_t)(c.ac.x1 >> 24)); c.ac.x1 <<= 8; }
  ret = c.ac.bad ? -1 : c.ac.pos;
done:
  for (k = 0; k < NM; k++) free(c.t[k]);
  free(c.w); free(c.apm); free(colacc);
  return ret;
}
"""
