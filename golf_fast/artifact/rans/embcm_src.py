"""The embedding coder of ``golf-rans`` (``embcm``): a context-mixing binary arithmetic coder over one
int code matrix whose rows are in a similarity order, plain C carried as source (``C_SOURCE``) and
compiled at load like the portable decoder (``portable.build``). ONE function, ``gecm_code``,
encodes and decodes: the model is updated by the same code in both directions, so they cannot drift.
``embcm_ref`` is the same procedure in pure Python (tests compare the bytes). ``gecm_chain`` (the
encoder's row order) is here too.

Per code q (row i, column j of an R × C matrix, row-major; |q| ≤ qmax ≤ 127), with A = the code above
(0 in row 0), the binary decisions of one of three binarizations (``flag``):

* 0: ``q == 0`` (node 0); else the sign (node 1); then m = |q| ≥ 1 as k = floor(log2 m) in unary
  (nodes 3+t ask ``k > t`` for t < kmax = floor(log2 qmax)) and the k bits of m below its top bit,
  most significant first (node 11 + 8k + b);
* 1: with i > 0, first ``q == A`` (node 2); a hit ends the code; else as 0;
* 2: the difference d = q − A as 0 codes q (kmax = floor(log2 2·qmax)); q must land in [−qmax, qmax].

Each decision's probability (12 bits) mixes seven adaptive counters (22-bit probability, hit count
n ≤ 255, step ``((y<<22) − p) >> 3 · 16384/(2n+3)``) at index ``ctx·75 + node`` of seven tables. Column
state: ``colacc[j] += |q| − colacc[j]>>4`` (starts 16); ``vol[j] += (16·|q − A| − vol[j])>>3`` from row 1
(starts 64); ``ema[j] += (64·q − ema[j])>>3`` (starts 0); row state ``rowacc += m − rowacc>>3`` (reset to 8
per row; m = |d| for flag 2, else |q|). Buckets ca = colacc[j]>>3, ra = rowacc>>2, vb = vol[j]>>2 (each
clamped to 0..23), cv = min(vb/2·4 + ca/8, 23), E = ema[j]>>4. Contexts:

0. (ca, ra);  1. (A exact, cv);  2. hash(A, the code two above A2);  3. hash(A, A2, A3);
4. hash(j);  5. hash(E, A);  6. (vb, ra).

A logistic mixer (stretch domain; integer weights per (node, cv), each clamped to ±2^20 after its
update, learning rate 2^-11) feeds two adaptive probability maps (33 interpolated entries): one per
(node, cv), one per (node, A, A == A2); the coded probability is (2·mixer + 3·map1 + 3·map2)/8, coded
by lpaq1's carry-less 32-bit binary arithmetic coder. Everything is integer arithmetic with explicit
widths (right shifts of negative values are arithmetic, as every C compiler the package supports does
them): the bytes are a function of the codes alone.

Entry points: ``long long gecm_code(int enc, int8_t *q, long long rows, long long cols, long long qmax,
int flag, uint8_t *buf, long long cap)`` → bytes written (enc) or consumed (dec); −1: ``cap`` too
small (enc) / corrupt stream (dec); −2: out of memory; −3: bad arguments.
``long long gecm_chain(const int8_t *q, long long rows, long long cols, long long lam, int64_t *order)``
→ 0 (−2 out of memory, −3 bad arguments): the greedy chain from row 0, each next row the unvisited one
nearest in 16·L1 + lam·(positions that differ), ties → the lowest index.
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
#define NM 7
#define TBITS 22
#define WLIM (1 << 20)
#define NA2 512
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
typedef struct { uint32_t *t[NM]; int *w, *apm, *apm2; I cx[NM]; int a2; AC ac; } CM;
static int interp(const int *m, int lo, int wgt) { return (m[lo] * (128 - wgt) + m[lo + 1] * wgt) >> 11; }
static int code_bit(CM *c, int node, int cv, int y) {
  int st[NM + 1], k, dot = 0, pm, e, lo, wgt, s2, p, *m1, *m2;
  I wi = (I)(node * NCA + cv) * (NM + 1);
  for (k = 0; k < NM; k++) st[k] = st_t[c->t[k][c->cx[k] * NODES + node] >> 20];
  st[NM] = 256;
  for (k = 0; k <= NM; k++) dot += (int)(((I)c->w[wi + k] * st[k]) >> 16);
  pm = sq(dot);
  s2 = cl(dot, -2047, 2047) + 2048; lo = s2 >> 7; wgt = s2 & 127;
  m1 = c->apm + (I)(node * NCA + cv) * 33; m2 = c->apm2 + ((I)node * NA2 + c->a2) * 33;
  p = cl((2 * pm + 3 * interp(m1, lo, wgt) + 3 * interp(m2, lo, wgt)) >> 3, 1, 4095);
  y = ac_bit(&c->ac, p, y);
  e = (y << 16) + (y << 5) - y - y;
  lo += wgt >> 6;
  m1[lo] += (e - m1[lo]) >> 7;
  m2[lo] += (e - m2[lo]) >> 7;
  e = (y << 12) - pm;
  for (k = 0; k <= NM; k++) c->w[wi + k] = cl(c->w[wi + k] + ((st[k] * e) >> 11), -WLIM, WLIM);
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
/* zero / sign / Elias-gamma magnitude of v (|v| <= 2^(kmax+1) - 1); returns the value (decoding) */
static int code_value(CM *c, int cv, int v, int kmax) {
  int m = v < 0 ? -v : v, sgn, kb, t, b, mag = 1;
  if (code_bit(c, 0, cv, m == 0)) return 0;
  sgn = code_bit(c, 1, cv, v < 0); kb = bitlen(m);
  for (t = 0; t < kmax; t++) if (!code_bit(c, 3 + t, cv, kb > t)) break;
  for (b = t - 1; b >= 0; b--) mag = (mag << 1) | code_bit(c, 11 + 8 * t + b, cv, (m >> b) & 1);
  return sgn ? -mag : mag;
}
long long gecm_code(int enc, int8_t *q, I R, I C, I qmax, int flag, uint8_t *buf, I cap) {
  CM c; I i, j, k, ret = 0; int *colacc, *vol, *ema, kmax;
  if (R < 1 || C < 1 || qmax < 1 || qmax > 127 || flag < 0 || flag > 2 || cap < 0) return -3;
  init_tables();
  memset(&c, 0, sizeof c);
  kmax = bitlen((int)(flag == 2 ? 2 * qmax : qmax));
  c.w = (int *)malloc(sizeof(int) * NODES * NCA * (NM + 1));
  c.apm = (int *)malloc(sizeof(int) * NODES * NCA * 33);
  c.apm2 = (int *)malloc(sizeof(int) * NODES * NA2 * 33);
  colacc = (int *)malloc(sizeof(int) * 3 * (size_t)C);
  vol = colacc + C; ema = vol + C;
  for (k = 0; k < NM; k++) if (!(c.t[k] = (uint32_t *)malloc(sizeof(uint32_t) << TBITS))) ret = -2;
  if (ret || !c.w || !c.apm || !c.apm2 || !colacc) { ret = -2; goto done; }
  for (k = 0; k < NM; k++) { I n; for (n = 0; n < (1 << TBITS); n++) c.t[k][n] = 1u << 31; }
  for (k = 0; k < NODES * NCA * (NM + 1); k++) c.w[k] = k % (NM + 1) < NM ? (1 << 16) / 4 : 0;
  for (k = 0; k < NODES * NCA * 33; k++) c.apm[k] = sq((int)(k % 33 - 16) * 128) * 16;
  for (k = 0; k < NODES * NA2 * 33; k++) c.apm2[k] = sq((int)(k % 33 - 16) * 128) * 16;
  c.ac.x1 = 0; c.ac.x2 = 0xffffffffu; c.ac.enc = enc; c.ac.b = buf; c.ac.cap = cap;
  if (!enc) for (k = 0; k < 4; k++) c.ac.x = (c.ac.x << 8) | (uint32_t)ac_in(&c.ac);
  for (j = 0; j < C; j++) { colacc[j] = 16; vol[j] = 64; ema[j] = 0; }
  for (i = 0; i < R; i++) {
    int rowacc = 8;
    for (j = 0; j < C; j++) {
      int A = i ? q[(i - 1) * C + j] : 0, A2 = i > 1 ? q[(i - 2) * C + j] : 0, A3 = i > 2 ? q[(i - 3) * C + j] : 0;
      int ca = cl(colacc[j] >> 3, 0, NCA - 1), ra = cl(rowacc >> 2, 0, NCA - 1), vb = cl(vol[j] >> 2, 0, NCA - 1);
      int cv = cl((vb >> 1) * 4 + (ca >> 3), 0, NCA - 1), v = enc ? q[i * C + j] : 0, d;
      c.cx[0] = ca * NCA + ra;
      c.cx[1] = 1024 + (A + 128) * 32 + cv;
      c.cx[2] = H(2, (uint32_t)((A + 128) * 256 + A2 + 128));
      c.cx[3] = H(3, (uint32_t)(((A + 128) * 256 + A2 + 128) * 256 + A3 + 128));
      c.cx[4] = H(4, (uint32_t)j);
      c.cx[5] = H(10, (uint32_t)(((ema[j] >> 4) + 512) * 256 + A + 128));
      c.cx[6] = vb * NCA + ra;
      c.a2 = (A + 128) * 2 + (i && A == A2);
      if (flag == 2) {
        d = code_value(&c, cv, v - A, kmax);
        v = A + d;
        if (v > qmax || v < -qmax) { ret = -1; goto done; }
        d = d < 0 ? -d : d;
      } else {
        if (flag && i && code_bit(&c, 2, cv, v == A)) v = A;
        else v = code_value(&c, cv, v, kmax);
        if (v > qmax || v < -qmax) { ret = -1; goto done; }
        d = v < 0 ? -v : v;
      }
      q[i * C + j] = (int8_t)v;
      colacc[j] += (v < 0 ? -v : v) - (colacc[j] >> 4);
      if (i) vol[j] += (16 * (v > A ? v - A : A - v) - vol[j]) >> 3;
      ema[j] += (v * 64 - ema[j]) >> 3;
      rowacc += d - (rowacc >> 3);
    }
    if (c.ac.bad) { ret = -1; goto done; }
  }
  if (enc) for (k = 0; k < 4; k++) { ac_out(&c.ac, (uint8_t)(c.ac.x1 >> 24)); c.ac.x1 <<= 8; }
  ret = c.ac.bad ? -1 : c.ac.pos;
done:
  for (k = 0; k < NM; k++) free(c.t[k]);
  free(c.w); free(c.apm); free(c.apm2); free(colacc);
  return ret;
}
long long gecm_chain(const int8_t *q, I R, I C, I lam, int64_t *order) {
  I *left, n, k, j, c, cur = 0, pos = 0;
  if (R < 1 || C < 1 || lam < 0 || lam > 1 << 20) return -3;
  if (!(left = (I *)malloc(sizeof(I) * (size_t)R))) return -2;
  for (j = 0; j < R; j++) left[j] = j;
  n = R;
  for (k = 0; k < R; k++) {
    I best = -1, bd = 0, bi = 0;
    const int8_t *a = q + cur * C;
    order[k] = cur;
    left[pos] = left[--n];  /* cur leaves the unvisited rows (their order is free: ties go by index) */
    for (j = 0; j < n; j++) {
      const int8_t *b = q + left[j] * C;
      int l1 = 0, hm = 0;
      for (c = 0; c + 16 <= C; c += 16) {  /* fixed-length blocks: vectorized at -O2 */
        int t;
        for (t = 0; t < 16; t++) { int dd = a[c + t] - b[c + t]; l1 += dd < 0 ? -dd : dd; hm += dd != 0; }
      }
      for (; c < C; c++) { int dd = a[c] - b[c]; l1 += dd < 0 ? -dd : dd; hm += dd != 0; }
      { I dist = 16 * (I)l1 + lam * hm;
        if (best < 0 || dist < bd || (dist == bd && left[j] < best)) { bd = dist; best = left[j]; bi = j; } }
    }
    cur = best; pos = bi;
  }
  free(left);
  return 0;
}
"""
