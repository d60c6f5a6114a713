"""Losses against straightforward reference formulas: values and gradients."""

import math
from pathlib import Path

import pytest
import torch

import clica.losses as L
from clica.errors import ClicaError


def ref_lp_infonce(h1, h2, h3, p, tau, alpha=0.5, compat=True, pow=True):
    """The loss written out with the B×B×n difference tensor, as in the paper."""
    neg = (h1[:, None, :] - h3[None, :, :]).abs().pow(p).sum(-1)
    pos = (h1 - h2).abs().pow(p).sum(-1)
    if not pow:
        neg, pos = neg.pow(1 / p), pos.pow(1 / p)
    if compat:
        lneg = torch.logsumexp(torch.cat([-neg, -pos[:, None]], 1) / tau, 1)
    else:
        lneg = torch.logsumexp(-neg / tau, 1) - math.log(h3.shape[0])
    return (2 * (alpha * pos / tau + (1 - alpha) * lneg)).mean()


def ref_dot_infonce(h1, h2, h3, tau, normalize):
    if normalize:
        h1, h2, h3 = (t / t.norm(dim=1, keepdim=True) for t in (h1, h2, h3))
    neg = h1 @ h3.T
    pos = (h1 * h2).sum(1)
    return (-pos / tau + torch.logsumexp(torch.cat([neg, pos[:, None]], 1) / tau, 1)).mean()


def _data(dtype, b=48, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(3, b, n, generator=g, dtype=dtype)
    return [t.clone().requires_grad_(True) for t in h]


def _check(value_fn, ref_fn, dtype, atol):
    h1, h2, h3 = _data(dtype)
    v = value_fn(h1, h2, h3)
    gv = torch.autograd.grad(v, (h1, h2, h3), allow_unused=True, materialize_grads=True)
    r = ref_fn(h1, h2, h3)
    gr = torch.autograd.grad(r, (h1, h2, h3), allow_unused=True, materialize_grads=True)
    assert v.item() == pytest.approx(r.item(), abs=atol)
    for a, b in zip(gv, gr):
        assert torch.allclose(a, b, atol=atol), (a - b).abs().max()


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("p", [0.5, 1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("compat", [True, False])
@pytest.mark.parametrize("pow", [True, False])
def test_lp_infonce_matches_reference(p, compat, pow, dtype, atol):
    loss = L.LpInfoNCE(p=p, tau=0.7, alpha=0.3, simclr_compatibility_mode=compat, pow=pow)
    _check(lambda a, b, c: loss(a, b, c).total,
           lambda a, b, c: ref_lp_infonce(a, b, c, p, 0.7, 0.3, compat, pow), dtype, atol)


def test_lp_infonce_default_negatives_are_rolled_batch():
    h1, h2, _ = _data(torch.float64)
    loss = L.LpInfoNCE(p=1.0)
    assert loss(h1, h2).total.item() == pytest.approx(
        ref_lp_infonce(h1, h2, torch.roll(h1, 1, 0), 1.0, 1.0).item(), abs=1e-10)
    # the rolled negatives contain each item itself: the p = 1 gradient stays finite
    h1f, h2f, _ = _data(torch.float32)
    loss(h1f, h2f).total.backward()
    assert torch.isfinite(h1f.grad).all()


@pytest.mark.parametrize("normalize", [True, False])
def test_dot_infonce_matches_reference(normalize):
    loss = L.DotInfoNCE(normalize=normalize, tau=0.5)
    _check(lambda a, b, c: loss(a, b, c).total, lambda a, b, c: ref_dot_infonce(a, b, c, 0.5, normalize),
           torch.float64, 1e-10)


def test_alignment_uniformity_match_reference():
    _check(lambda a, b, c: L.AlignmentLoss(2.0)(a, b).total,
           lambda a, b, c: (a - b).pow(2).sum(1).mean(), torch.float64, 1e-10)
    _check(lambda a, b, c: L.UniformityLoss(2.0)(a, None, c).total,
           lambda a, b, c: (torch.logsumexp(-(a[:, None] - c[None]).pow(2).sum(-1), 1) - math.log(len(c))).mean(),
           torch.float64, 1e-10)


def test_block_loss_is_weighted_sum_of_blocks():
    h1, h2, h3 = _data(torch.float64, n=6)
    a, b = L.DotInfoNCE(normalize=True), L.LpInfoNCE(p=2.0)
    out = L.BlockLoss([(a, 0, 2), (b, 2, 6)], weights=[0.5, 2.0])(h1, h2, h3)
    expected = 0.5 * a(h1[:, :2], h2[:, :2], h3[:, :2]).total + 2.0 * b(h1[:, 2:], h2[:, 2:], h3[:, 2:]).total
    assert out.total.item() == pytest.approx(expected.item(), abs=1e-12)
    assert out.per_item.shape == (h1.shape[0],)


def test_supervised_losses():
    z = torch.randn(100, 3, dtype=torch.float64)
    assert L.mse_loss(z, z).item() == 0
    assert L.negative_r2_loss(z, z).item() == pytest.approx(-1.0)
    assert L.negative_r2_loss(torch.zeros_like(z) + z.mean(0), z).item() == pytest.approx(0.0, abs=1e-12)


def test_negatives_never_materialise_a_bxbxn_tensor():
    """A batch whose B×B×n float32 tensor would take 2.4 GB runs within a fraction of it."""
    import resource

    b, n = 4096, 36
    h = torch.randn(2 * b, n, requires_grad=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for p in (1.0, 2.0, 3.0):
        L.LpInfoNCE(p=p)(h[:b], h[b:]).total.backward()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 600, f"peak memory grew by {grown_mb:.0f} MB"


@pytest.mark.parametrize("p,pow", [(1.0, True), (2.0, True), (3.0, True), (3.0, False), (1.5, False), (0.5, True)])
def test_fused_kernels_match_the_torch_path(p, pow, monkeypatch):
    """Large batches go through the numba kernels; they agree with the chunked torch path."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(1024, 6, generator=g, requires_grad=True)
    b = torch.randn(1024, 6, generator=g, requires_grad=True)
    w = torch.randn(1024, generator=g)
    assert L._use_kernels(a, b, p, pow)
    out = []
    for kernels in (True, False):
        monkeypatch.setattr(L, "_KERNELS_OK", kernels)
        lse = L.negative_logsumexp(a, b, p, pow, 0.3)
        out.append((lse, *torch.autograd.grad((lse * w).sum(), (a, b))))
    for x, y in zip(*out):
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-5), (x - y).abs().max()


def test_fused_kernels_use_torch_thread_count():
    """Pinning torch to one thread pins the numba kernels too (no oversubscription of the cores)."""
    import numba

    threads = torch.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        torch.set_num_threads(1)
        a = torch.randn(1024, 4, requires_grad=True)
        assert L._use_kernels(a, a, 1.0, True)
        L.negative_logsumexp(a, a.detach(), 1.0, True, 1.0).sum().backward()
        assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def ref_self_weighted(h1, h2, p, tau, eps, compat):
    """Negatives: the other anchors (B×B×n written out), plus the anchor itself with weight eps."""
    b = h1.shape[0]
    neg = (h1[:, None, :] - h1[None, :, :]).abs().pow(p).sum(-1) / tau
    neg = neg.masked_fill(torch.eye(b, dtype=torch.bool), float("inf"))
    pos = (h1 - h2).abs().pow(p).sum(-1) / tau
    terms = [-neg, torch.full((b, 1), math.log(eps) if eps > 0 else -math.inf, dtype=h1.dtype)]
    if compat:
        lneg = torch.logsumexp(torch.cat([*terms, -pos[:, None]], 1), 1)
    else:
        lneg = torch.logsumexp(torch.cat(terms, 1), 1) - math.log(b - 1 + eps)
    return (pos + lneg).mean()


@pytest.mark.parametrize("eps", [1.0, 0.01, 0.0])
@pytest.mark.parametrize("compat", [True, False])
@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("b", [48, 1024])  # 1024: the numba kernels on the CPU
def test_lp_infonce_self_weight_matches_reference(eps, compat, p, b):
    h1, h2, _ = _data(torch.float32, b=b, n=4)
    loss = L.LpInfoNCE(p=p, tau=0.5, self_weight=eps, simclr_compatibility_mode=compat)
    _check_pair(lambda a, c: loss(a, c).total, lambda a, c: ref_self_weighted(a, c, p, 0.5, eps, compat), h1, h2)


def test_lp_infonce_self_weight_one_is_the_original_rolled_negatives():
    h1, h2, _ = _data(torch.float64)
    loss = L.LpInfoNCE(p=1.0, tau=0.3)
    assert loss(h1, h2).total.item() == pytest.approx(loss(h1, h2, torch.roll(h1, 1, 0)).total.item(), rel=1e-12)


def _check_pair(value_fn, ref_fn, h1, h2, atol=2e-5):
    v, r = value_fn(h1, h2), ref_fn(h1, h2)
    assert v.item() == pytest.approx(r.item(), abs=atol, rel=1e-5)
    for a, c in zip(torch.autograd.grad(v, (h1, h2)), torch.autograd.grad(r, (h1, h2))):
        assert torch.allclose(a, c, atol=atol), (a - c).abs().max()


@pytest.mark.parametrize("eps", [1.0, 0.01, 0.0])
@pytest.mark.parametrize("normalize", [True, False])
def test_dot_infonce_self_weight_matches_reference(eps, normalize):
    h1, h2, _ = _data(torch.float64)

    def ref(a, c):
        if normalize:
            a, c = a / a.norm(dim=1, keepdim=True), c / c.norm(dim=1, keepdim=True)
        sim = (a @ a.T).masked_fill(torch.eye(a.shape[0], dtype=torch.bool), float("-inf")) / 0.5
        own = (a * a).sum(1) / 0.5 + (math.log(eps) if eps > 0 else -math.inf)
        pos = (a * c).sum(1) / 0.5
        return (-pos + torch.logsumexp(torch.cat([sim, own[:, None], pos[:, None]], 1), 1)).mean()

    loss = L.DotInfoNCE(normalize=normalize, tau=0.5, self_weight=eps)
    _check_pair(lambda a, c: loss(a, c).total, ref, h1, h2, atol=1e-10)


def test_block_loss_without_negatives_applies_each_blocks_self_weight():
    # the 3DIdent periodic layout: Lp on the box block, dot product on the sphere block. A BlockLoss
    # that handed the rolled batch to each block as explicit negatives ignored self_weight there.
    h1, h2, _ = _data(torch.float64, n=6)
    lp, dot = L.LpInfoNCE(p=2.0, self_weight=0.01), L.DotInfoNCE(self_weight=0.01)
    out = L.BlockLoss([(lp, 0, 3), (dot, 3, 6)])(h1, h2)
    expected = (ref_self_weighted(h1[:, :3], h2[:, :3], 2.0, 1.0, 0.01, True)
                + dot(h1[:, 3:], h2[:, 3:]).total)
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-10)
    weight_one = L.BlockLoss([(L.LpInfoNCE(p=2.0), 0, 3), (L.DotInfoNCE(), 3, 6)])(h1, h2)
    assert abs(out.total.item() - weight_one.total.item()) > 1e-3
    # with weight 1 a block without negatives is the original's rolled-negatives loss
    rolled = L.BlockLoss([(L.LpInfoNCE(p=2.0), 0, 3), (L.DotInfoNCE(), 3, 6)])(h1, h2, torch.roll(h1, 1, 0))
    assert weight_one.total.item() == pytest.approx(rolled.total.item(), rel=1e-12)


@pytest.mark.parametrize("make", [
    lambda: L.LpInfoNCE(p=1.0),
    lambda: L.LpInfoNCE(p=2.0, tau=0.2, self_weight=0.01),
    lambda: L.LpInfoNCE(p=3.0, simclr_compatibility_mode=False),
    lambda: L.DotInfoNCE(normalize=True, self_weight=0.01),
    lambda: L.DotInfoNCE(tau=0.5),
    lambda: L.BlockLoss([(L.DotInfoNCE(normalize=True), 0, 2), (L.LpInfoNCE(p=1.0, self_weight=0.0), 2, 4)]),
], ids=["l1", "l2-self-weight", "l3-mean", "dot-normalized", "dot", "blocks"])
@pytest.mark.parametrize("rows", [(0, 256), (256, 512), (1024, 1536)], ids=["first", "second", "last"])
@pytest.mark.parametrize("B", [64, 2048], ids=["torch", "kernels"])  # 512 × 2048 rows reach the fused kernels
def test_rows_of_a_batch_are_their_terms_of_the_whole_batch(make, rows, B):
    """``batch=(H1, k)``: each row's loss and gradient equal its term in the whole batch's loss."""
    start, stop = (r * B // 2048 for r in rows)
    gen = torch.Generator().manual_seed(0)
    h1 = torch.randn(B, 4, generator=gen, requires_grad=True)
    h2 = (h1.detach() + 0.1 * torch.randn(B, 4, generator=gen)).requires_grad_()
    loss = make()
    whole = loss(h1, h2)
    whole.per_item[start:stop].sum().backward()
    g1, g2 = h1.grad.clone(), h2.grad.clone()
    h1.grad = h2.grad = None
    part = loss(h1[start:stop], h2[start:stop], batch=(h1, start))
    torch.testing.assert_close(part.per_item, whole.per_item[start:stop].detach(), rtol=1e-5, atol=1e-5)
    part.per_item.sum().backward()
    torch.testing.assert_close(h1.grad, g1, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h2.grad, g2, rtol=1e-4, atol=1e-5)


def _kernel_outputs(threads: int) -> list[torch.Tensor]:
    """The fused kernels' lse and gradients for fixed inputs, on ``threads`` torch threads."""
    own = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(2)
        a = torch.randn(700, 7, generator=g, requires_grad=True)
        b = torch.randn(1000, 7, generator=g, requires_grad=True)
        out = []
        for p in (1.0, 2.0, 1.5):
            lse = L.negative_logsumexp(a, b, p, True, 0.2)
            out += [lse, *torch.autograd.grad((lse * torch.linspace(-1, 1, 700)).sum(), (a, b))]
        return out
    finally:
        torch.set_num_threads(own)


def test_fused_kernels_give_the_same_bits_on_any_thread_count():
    """The backward pass summed b's gradient over one chunk of rows per quarter thread: a rerun on
    another thread count trained on other numbers."""
    for x, y in zip(_kernel_outputs(1), _kernel_outputs(2)):
        assert torch.equal(x, y)


def test_fused_kernels_give_the_same_bits_compiled_or_cached(tmp_path):
    """numba compiled the kernels on a cold cache into code that summed in another order than the code
    it cached (``fastmath`` let LLVM reassociate): the first run after a fresh clone differed from every
    later one."""
    import os
    import subprocess
    import sys

    code = ("import hashlib, test_losses as t; "
            "print(hashlib.sha1(b''.join(x.detach().numpy().tobytes() for x in t._kernel_outputs(1))).hexdigest())")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    cold, warm = (subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env=env).stdout for _ in range(2))
    assert any((tmp_path / "numba").rglob("*.nbi")), "the first run did not fill the cache"
    assert cold == warm


def test_rows_outside_the_batch_are_refused():
    h = torch.randn(8, 3)
    with pytest.raises(ValueError, match="do not exist"):
        L.LpInfoNCE(p=1.0)(h[:4], h[:4], batch=(h, 6))


def test_the_kernels_leave_torch_threads_as_set():
    """Starting numba's OpenMP pool reset the process's OpenMP thread count, torch's included, to the
    pool's size: `--threads 1` (or a table task's one CPU) silently became 2 threads, oversubscribing
    the cores five-fold in `clica table`."""
    import os
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1); import clica.losses as L; "
            "a = torch.randn(512, 4, requires_grad=True); "
            "L.negative_logsumexp(a, a, 1.0, True, 0.2, exclude_diagonal=True).sum().backward(); "
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "NUMBA_NUM_THREADS": "2"})
    assert out.stdout.strip() == "1"


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_lp_temperature_is_an_output_scale(p):
    """-|a·d|_p^p / τ = -|d|_p^p / (τ / a^p): with a free output scale, τ sets only the scale the encoder
    settles at (docs/mlp.md, benchmarks/mlp_oracle_loss.py)."""
    h1, h2, _ = _data(torch.float64)
    a = 1.7
    scaled = L.LpInfoNCE(p=p, tau=0.3, self_weight=0.01)(a * h1, a * h2).total.item()
    assert scaled == pytest.approx(L.LpInfoNCE(p=p, tau=0.3 / a ** p, self_weight=0.01)(h1, h2).total.item(), rel=1e-10)


def test_only_the_l2_loss_is_rotation_invariant():
    h1, h2, _ = _data(torch.float64)
    r = torch.linalg.qr(torch.randn(h1.shape[1], h1.shape[1], generator=torch.Generator().manual_seed(0),
                                    dtype=torch.float64)).Q
    for p, invariant in ((2.0, True), (1.0, False), (3.0, False)):
        loss = L.LpInfoNCE(p=p, tau=0.5, self_weight=0.01)
        same = loss(h1 @ r, h2 @ r).total.item() == pytest.approx(loss(h1, h2).total.item(), rel=1e-9)
        assert same == invariant, p


@pytest.mark.parametrize("make", [lambda: L.AlignmentLoss(2.0), lambda: L.UniformityLoss(1.0)],
                         ids=["alignment", "uniformity"])
def test_alignment_and_uniformity_follow_the_batch_protocol(make):
    """Their rows of a larger batch are their terms of the whole batch's loss, as the InfoNCE losses'."""
    gen = torch.Generator().manual_seed(0)
    h1, h2 = torch.randn(2, 32, 3, generator=gen, dtype=torch.float64)
    whole = make()(h1, h2)
    part = make()(h1[8:16], h2[8:16], batch=(h1, 8))
    torch.testing.assert_close(part.per_item, whole.per_item[8:16])


def test_a_loss_that_cannot_split_its_batch_is_refused_under_torchrun():
    class WholeBatch(L.ContrastiveLoss):
        takes_batch = False

        def forward(self, h1, h2, h_neg, batch):
            per_item = (h1 - h2).pow(2).sum(1) - h1.var(0).sum()
            return L.LossOutput(per_item.mean(), per_item)

    h = torch.randn(8, 3)
    assert WholeBatch()(h, h).per_item.shape == (8,)
    with pytest.raises(ClicaError, match="WholeBatch cannot train under torchrun"):
        WholeBatch()(h[:4], h[:4], batch=(h, 0))
