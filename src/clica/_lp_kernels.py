"""Fused CPU kernels (numba) for the negative term of the Lp InfoNCE loss.

lse_i = logsumexp_j(-D_ij/τ) with D_ij = |a_i - b_j|_p^p (``pw``) or |a_i - b_j|_p.
The forward pass streams over the pairs row by row in float32 (vectorised
distances and a vectorised exp) and keeps only the softmax weights W (one B×M
float32 matrix); the backward pass makes one fused sweep over the pairs that
produces the gradients w.r.t. both a and b. No B×M×n tensor ever exists.

The results are the same bits on every call for the same inputs, whatever compiled them and on however
many threads: the float flags leave out reassociation (with it LLVM chose the order of the sums, and the
code numba compiled on a cold cache summed in another order than the code it cached), sums over j go in
one fixed order (:func:`_pairwise_sum`), and the backward pass splits the rows into a fixed number of chunks.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# no NaN/inf and no signed zeros to honour (vectorised min), but no reassociation, contraction into
# fused multiply-adds, reciprocals or approximate functions: those leave rounding to the compiler
_FAST = {"nnan", "ninf", "nsz"}
_OPTS = dict(parallel=True, fastmath=_FAST, cache=True, nogil=True)
_INLINE = dict(fastmath=_FAST, cache=True, inline="always")
_LOG2E = np.float32(1.4426950408889634)
CHUNKS = 32  # row chunks of the backward pass: fixed, so its sums do not depend on the thread count


@numba.njit(**_INLINE)
def _pairwise_sum(x, tmp):
    """Σ x (len(x) ≥ 1) in one fixed order: fold the upper half onto the lower half (an odd last element
    stays) until one value is left. Each fold is a vectorisable loop without reassociation; the first
    reads x, the others work in ``tmp`` (scratch of len(x) floats)."""
    m = x.shape[0]
    h = m // 2
    for j in range(h):
        tmp[j] = x[j] + x[j + h]
    if m % 2:
        tmp[h] = x[m - 1]
        h += 1
    m = h
    while m > 1:
        h = m // 2
        for j in range(h):
            tmp[j] += tmp[j + h]
        if m % 2:
            tmp[h] = tmp[m - 1]
            h += 1
        m = h
    return tmp[0]


@numba.njit(**_INLINE)
def _dist_row(a, i, bT, p, pw, out):
    """out[j] = D(a_i, b_j) for all j; bT is b transposed (n × M)."""
    n, m = bT.shape
    out[:] = 0.0
    for k in range(n):
        aik = a[i, k]
        row = bT[k]
        if p == 1.0:
            for j in range(m):
                out[j] += abs(aik - row[j])
        elif p == 2.0:
            for j in range(m):
                d = aik - row[j]
                out[j] += d * d
        elif p == 3.0:  # the generalized normal β = 3 of the paper: a product, not a pow call
            for j in range(m):
                d = abs(aik - row[j])
                out[j] += d * d * d
        else:
            for j in range(m):
                out[j] += abs(aik - row[j]) ** p
    if not pw and p != 1.0:
        inv = np.float32(1.0 / p)
        for j in range(m):
            out[j] = out[j] ** inv


@numba.njit(**_INLINE)
def _exp_nonpositive(x, out, bits):
    """out = exp(x) for x ≤ 0, vectorisable: 2^(x·log2 e) = 2^k · poly(f), |f| ≤ 1/2 (rel. error ~1e-7)."""
    for j in range(x.shape[0]):
        t = max(x[j], np.float32(-87.0)) * _LOG2E
        k = math.floor(t + np.float32(0.5))
        f = (t - k) * np.float32(0.6931471805599453)
        out[j] = np.float32(1.0) + f * (np.float32(1.0) + f * (np.float32(0.5) + f * (
            np.float32(1 / 6) + f * (np.float32(1 / 24) + f * (np.float32(1 / 120) + f * np.float32(1 / 720))))))
        bits[j] = (np.int32(k) + np.int32(127)) << np.int32(23)
    scale = bits.view(np.float32)
    for j in range(x.shape[0]):
        out[j] *= scale[j]


@numba.njit(**_OPTS)
def lse_forward(a, bT, p, pw, tau, diag):
    """(lse, W): lse_i = log Σ_j exp(-D_ij/τ) and W_ij = exp(-D_ij/τ - lse_i); j ≠ i + ``diag`` (row i's own
    column) when ``diag`` ≥ 0."""
    rows = a.shape[0]
    m = bT.shape[1]
    lse = np.empty(rows, dtype=np.float32)
    W = np.empty((rows, m), dtype=np.float32)
    inv_tau = np.float32(1.0 / tau)
    for i in numba.prange(rows):
        buf = np.empty(m, dtype=np.float32)
        bits = np.empty(m, dtype=np.int32)
        tmp = np.empty(m, dtype=np.float32)
        _dist_row(a, i, bT, p, pw, buf)
        if diag >= 0:
            buf[i + diag] = np.float32(np.inf)
        lo = buf[0]
        for j in range(m):
            lo = min(lo, buf[j])
        mx = -lo * inv_tau
        for j in range(m):
            buf[j] = -buf[j] * inv_tau - mx
        w = W[i]
        _exp_nonpositive(buf, w, bits)
        if diag >= 0:
            w[i + diag] = np.float32(0.0)
        s = _pairwise_sum(w, tmp)
        inv_s = np.float32(1.0) / s
        for j in range(m):
            w[j] *= inv_s
        lse[i] = mx + math.log(s)
    return lse, W


@numba.njit(**_INLINE)
def _slopes(aik, row, w, p, out, gb):
    """out[j] = w[j]·∂|aik - row[j]|^p/∂aik, subtracted from gb[j] (the gradient w.r.t. row[j])."""
    m = row.shape[0]
    if p == 1.0:
        for j in range(m):
            d = aik - row[j]
            out[j] = w[j] if d > 0 else (-w[j] if d < 0 else np.float32(0.0))
            gb[j] -= out[j]
    elif p == 2.0:
        for j in range(m):
            out[j] = np.float32(2.0) * w[j] * (aik - row[j])
            gb[j] -= out[j]
    elif p == 3.0:  # d/dd |d|³ = 3·d·|d|
        for j in range(m):
            d = aik - row[j]
            out[j] = np.float32(3.0) * w[j] * d * abs(d)
            gb[j] -= out[j]
    else:
        for j in range(m):
            d = aik - row[j]
            mag = np.float32(p) * abs(d) ** np.float32(p - 1.0) if d != 0 else np.float32(0.0)
            out[j] = w[j] * mag if d > 0 else -w[j] * mag
            gb[j] -= out[j]


@numba.njit(**_OPTS)
def lse_backward(a, bT, W, g, p, pw, tau):
    """Gradients of Σ_i g_i·lse_i w.r.t. a (rows × n) and b (returned transposed, n × M)."""
    rows, n = a.shape
    m = bT.shape[1]
    n_chunks = min(CHUNKS, rows)
    grad_a = np.zeros((rows, n), dtype=np.float32)
    partial = np.zeros((n_chunks, n, m), dtype=np.float32)
    per = (rows + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        w = np.empty(m, dtype=np.float32)
        dist = np.empty(m, dtype=np.float32)
        slope = np.empty(m, dtype=np.float32)
        tmp = np.empty(m, dtype=np.float32)
        for i in range(c * per, min(rows, (c + 1) * per)):
            coeff = np.float32(-g[i] / tau)
            for j in range(m):
                w[j] = W[i, j] * coeff
            if not pw and p != 1.0:  # D = S^(1/p): dD/dS = D^(1-p)/p
                _dist_row(a, i, bT, p, pw, dist)
                for j in range(m):
                    w[j] *= dist[j] ** np.float32(1.0 - p) / np.float32(p) if dist[j] > 0 else np.float32(0.0)
            for k in range(n):
                _slopes(a[i, k], bT[k], w, p, slope, partial[c, k])
                grad_a[i, k] = _pairwise_sum(slope, tmp)
    grad_bT = np.zeros((n, m), dtype=np.float32)
    for c in range(n_chunks):
        grad_bT += partial[c]
    return grad_a, grad_bT
