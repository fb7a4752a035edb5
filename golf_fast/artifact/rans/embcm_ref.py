"""Pure-Python reference of the embedding coder (``embcm_src``): the same procedure, decision for
decision, in Python integers with the C source's widths made explicit (uint32 masks, arithmetic
shifts). Slow (tens of µs per decision): the tests compare its bytes with the C coder's on small
matrices, and a loader without a C compiler decodes with it."""

from __future__ import annotations

import numpy as np

from golf_fast.artifact.rans.embcm_src import HASH_MOD, NODES

NCA, NM, TBITS, WLIM, NA2 = 24, 7, 22, 1 << 20, 512
M32 = 0xFFFFFFFF
_SQ0 = (1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047, 2549, 2994, 3348, 3607,
        3785, 3901, 3975, 4024, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094)


def _squash0(d: int) -> int:
    if d > 2047:
        return 4095
    if d < -2047:
        return 1
    w = d & 127
    d = (d >> 7) + 16
    return (_SQ0[d] * (128 - w) + _SQ0[d + 1] * w + 64) >> 7


def _tables():
    st = [0] * 4096
    pi = 0
    for x in range(-2047, 2048):
        v = _squash0(x)
        for i in range(pi, v + 1):
            st[i] = x
        pi = v + 1
    for x in range(pi, 4096):
        st[x] = 2047
    sq = [_squash0(x - 2048) for x in range(4096)]
    dt = [16384 // (x + x + 3) for x in range(1024)]
    return st, sq, dt


_ST, _SQ, _DT = _tables()


def _sq(d: int) -> int:
    return 4095 if d > 2047 else (1 if d < -2047 else _SQ[d + 2048])


_APM0 = tuple(_sq((a - 16) * 128) * 16 for a in range(33))  # a probability map's initial entries


def _cl(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else (hi if v > hi else v)


def _hash(a: int, b: int) -> int:
    h = ((a * 0x9E3779B1) & M32) ^ (((b + 0x7F4A7C15) & M32) * 0x85EBCA77 & M32)
    h ^= h >> 15
    h = (h * 0xC2B2AE3D) & M32
    return (h ^ (h >> 13)) % HASH_MOD


def _bitlen(m: int) -> int:
    return m.bit_length() - 1


class _Coder:
    def __init__(self, enc: bool, buf: bytes):
        self.t = [np.full(1 << TBITS, 1 << 31, dtype=np.uint32) for _ in range(NM)]
        self.w = [[(1 << 16) // 4 if a < NM else 0 for a in range(NM + 1)] for _ in range(NODES * NCA)]
        self.apm = [list(_APM0) for _ in range(NODES * NCA)]
        self.apm2: dict = {}  # (node, a2) -> its 33 entries, created at first use (NODES * NA2 in C)
        self.a2 = 0
        self.cx = [0] * NM
        self.enc, self.x1, self.x2, self.x = enc, 0, M32, 0
        self.out = bytearray()
        self.buf, self.pos, self.bad = buf, 0, False
        if not enc:
            for _ in range(4):
                self.x = ((self.x << 8) | self._in()) & M32

    def _in(self) -> int:
        if self.pos < len(self.buf):
            self.pos += 1
            return self.buf[self.pos - 1]
        self.pos += 1
        if self.pos > len(self.buf) + 4:
            self.bad = True
        return 0

    def _ac(self, p: int, y: int) -> int:
        xm = (self.x1 + ((self.x2 - self.x1) >> 12) * p) & M32
        if not self.enc:
            y = int(self.x <= xm)
        if y:
            self.x2 = xm
        else:
            self.x1 = (xm + 1) & M32
        while ((self.x1 ^ self.x2) & 0xFF000000) == 0:
            if self.enc:
                self.out.append(self.x2 >> 24)
            self.x1 = (self.x1 << 8) & M32
            self.x2 = ((self.x2 << 8) & M32) | 255
            if not self.enc:
                self.x = ((self.x << 8) & M32) | self._in()
        return y

    def bit(self, node: int, cv: int, y: int) -> int:
        idx = [self.cx[k] * NODES + node for k in range(NM)]
        st = [_ST[int(self.t[k][idx[k]]) >> 20] for k in range(NM)] + [256]
        w = self.w[node * NCA + cv]
        dot = 0
        for k in range(NM + 1):
            dot += (w[k] * st[k]) >> 16
        pm = _sq(dot)
        s2 = _cl(dot, -2047, 2047) + 2048
        lo, wgt = s2 >> 7, s2 & 127
        m1 = self.apm[node * NCA + cv]
        m2 = self.apm2.get((node, self.a2))
        if m2 is None:
            m2 = self.apm2[(node, self.a2)] = list(_APM0)
        p1 = (m1[lo] * (128 - wgt) + m1[lo + 1] * wgt) >> 11
        p2 = (m2[lo] * (128 - wgt) + m2[lo + 1] * wgt) >> 11
        p = _cl((2 * pm + 3 * p1 + 3 * p2) >> 3, 1, 4095)
        y = self._ac(p, y)
        e = (y << 16) + (y << 5) - y - y
        lo += wgt >> 6
        m1[lo] += (e - m1[lo]) >> 7
        m2[lo] += (e - m2[lo]) >> 7
        e = (y << 12) - pm
        for k in range(NM + 1):
            w[k] = _cl(w[k] + ((st[k] * e) >> 11), -WLIM, WLIM)
        for k in range(NM):
            v = int(self.t[k][idx[k]])
            n, pr = v & 1023, v >> 10
            if n < 255:
                v += 1
            v = (v + ((((((y << 22) - pr) >> 3) * _DT[n]) & M32) & 0xFFFFFC00)) & M32
            self.t[k][idx[k]] = v
        return y

    def value(self, cv: int, v: int, kmax: int) -> int:
        """Zero, sign, then the Elias-gamma magnitude of ``v`` (``code_value``); the value coded."""
        m = abs(v)
        if self.bit(0, cv, int(m == 0)):
            return 0
        sgn = self.bit(1, cv, int(v < 0))
        kb = _bitlen(m) if m else 0
        t = 0
        while t < kmax and self.bit(3 + t, cv, int(kb > t)):
            t += 1
        mag = 1
        for b in range(t - 1, -1, -1):
            mag = (mag << 1) | self.bit(11 + 8 * t + b, cv, (m >> b) & 1)
        return -mag if sgn else mag


def code_ref(enc: bool, q: np.ndarray, qmax: int, flag: int, stream: bytes = b"") -> tuple[bytes, np.ndarray, int]:
    """Encode ``q`` (``enc``) or decode ``stream`` into ``q`` (its shape): (bytes written, the matrix,
    bytes consumed or −1 when the stream is corrupt) — ``gecm_code``'s procedure."""
    rows, cols = q.shape
    c = _Coder(enc, stream)
    out = q.astype(np.int64) if enc else np.zeros((rows, cols), dtype=np.int64)
    kmax = _bitlen(2 * qmax if flag == 2 else qmax)
    colacc, vol, ema = [16] * cols, [64] * cols, [0] * cols
    for i in range(rows):
        rowacc = 8
        for j in range(cols):
            a1 = int(out[i - 1, j]) if i else 0
            a2 = int(out[i - 2, j]) if i > 1 else 0
            a3 = int(out[i - 3, j]) if i > 2 else 0
            ca, ra, vb = _cl(colacc[j] >> 3, 0, NCA - 1), _cl(rowacc >> 2, 0, NCA - 1), _cl(vol[j] >> 2, 0, NCA - 1)
            cv = _cl((vb >> 1) * 4 + (ca >> 3), 0, NCA - 1)
            v = int(out[i, j]) if enc else 0
            c.cx = [ca * NCA + ra, 1024 + (a1 + 128) * 32 + cv, _hash(2, (a1 + 128) * 256 + a2 + 128),
                    _hash(3, ((a1 + 128) * 256 + a2 + 128) * 256 + a3 + 128), _hash(4, j),
                    _hash(10, ((ema[j] >> 4) + 512) * 256 + a1 + 128), vb * NCA + ra]
            c.a2 = (a1 + 128) * 2 + int(i > 0 and a1 == a2)
            if flag == 2:
                d = c.value(cv, v - a1, kmax)
                v = a1 + d
            elif flag and i and c.bit(2, cv, int(v == a1)):
                v = a1
            else:
                v = c.value(cv, v, kmax)
            if abs(v) > qmax:
                return b"", out.astype(np.int8), -1
            out[i, j] = v
            colacc[j] += abs(v) - (colacc[j] >> 4)
            if i:
                vol[j] += (16 * abs(v - a1) - vol[j]) >> 3
            ema[j] += (v * 64 - ema[j]) >> 3
            rowacc += (abs(v - a1) if flag == 2 else abs(v)) - (rowacc >> 3)
        if c.bad:
            return b"", out.astype(np.int8), -1
    if enc:
        for _ in range(4):
            c.out.append(c.x1 >> 24)
            c.x1 = (c.x1 << 8) & M32
    return bytes(c.out), out.astype(np.int8), c.pos


def chain_order_ref(q: np.ndarray, lam: int) -> np.ndarray:
    """``gecm_chain`` in numpy: from row 0, always the unvisited row nearest in 16·L1 + lam·Hamming
    (ties → the lowest index); (R,) int64."""
    x = q.astype(np.int64)
    r = x.shape[0]
    visited = np.zeros(r, dtype=bool)
    order = np.empty(r, dtype=np.int64)
    cur = 0
    for k in range(r):
        order[k] = cur
        visited[cur] = True
        if k + 1 < r:
            diff = x - x[cur]
            dist = 16 * np.abs(diff).sum(axis=1) + lam * (diff != 0).sum(axis=1)
            dist[visited] = np.iinfo(np.int64).max
            cur = int(np.argmin(dist))
    return order
