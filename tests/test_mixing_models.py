import pytest
import torch

from clica.errors import ClicaError
from clica.mixing import invertible_mlp
from clica.models import BoxNorm, SphereNorm, mlp_encoder, to_device


@pytest.mark.parametrize("act", ["leaky_relu", "smooth_leaky_relu", "elu", "softplus"])
def test_mixing_is_injective(act):
    g = invertible_mlp(6, 3, act, n_iter_cond_thresh=500, seed=0)
    z = torch.rand(64, 6, dtype=torch.float64)
    g = g.double()
    # full-rank Jacobian at every sample
    for zi in z[:16]:
        J = torch.autograd.functional.jacobian(g, zi)
        assert torch.linalg.matrix_rank(J) == 6
    # and z is recovered from g(z) layer by layer: linear solves and bisection through the
    # strictly increasing activations
    x = g(z)
    for layer in reversed(list(g)):
        if isinstance(layer, torch.nn.Linear):
            x = torch.linalg.solve(layer.weight, x.T).T
        else:
            lo, hi = torch.full_like(x, -1e3), torch.full_like(x, 1e3)
            for _ in range(80):
                mid = (lo + hi) / 2
                below = layer(mid) < x
                lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
            x = (lo + hi) / 2
    assert torch.allclose(x, z, atol=1e-8)


def test_mixing_deterministic_and_conditioned():
    a, b = invertible_mlp(5, 2, seed=3, n_iter_cond_thresh=1000), invertible_mlp(5, 2, seed=3, n_iter_cond_thresh=1000)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = invertible_mlp(5, 2, seed=4, n_iter_cond_thresh=1000)
    assert not torch.equal(a[0].weight, c[0].weight)
    for layer in (a[0], a[2]):
        assert torch.linalg.cond(layer.weight.double()) <= a.condition_threshold + 1e-6
        assert torch.allclose(layer.weight.norm(dim=0), torch.ones(5), atol=1e-5)
    assert not any(p.requires_grad for p in a.parameters())


def test_mixing_errors():
    with pytest.raises(ClicaError, match="max_out"):
        invertible_mlp(3, 2, "max_out")
    with pytest.raises(ClicaError, match="unknown activation"):
        invertible_mlp(3, 2, "tanhh")


def test_encoder_shapes_and_normalisations():
    f = mlp_encoder(4, 4, [40, 200, 40], "learnable_sphere", r=2.0)
    out = f(torch.randn(8, 4))
    assert torch.allclose(out.norm(dim=1), torch.full((8,), 2.0), atol=1e-5)
    assert isinstance(f[-1], SphereNorm) and f[-1].r.requires_grad
    f = mlp_encoder(4, 4, [8], "fixed_box", low=-1.0, high=2.0)
    out = f(torch.randn(100, 4) * 10)
    assert out.min() >= -1 and out.max() <= 2
    assert isinstance(f[-1], BoxNorm) and not f[-1].width.requires_grad
    linear = [m for m in mlp_encoder(3, 3, [30, 150], None) if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == [30, 150, 3]


def test_encoder_layer_norm_option():
    f = mlp_encoder(3, 3, [16, 16], None, layer_norm=True)
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in f) == 2
    assert f(torch.randn(5, 3)).shape == (5, 3)


def test_to_device_cpu_uses_channels_last_and_keeps_outputs_and_state():
    from clica.models.conv import ConvVAE

    torch.manual_seed(0)
    ref = ConvVAE(4, nc=1).eval()
    net = ConvVAE(4, nc=1).eval()
    net.load_state_dict(ref.state_dict())
    net = to_device(net, "cpu")
    convs = [m.weight for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        for a, b in zip(net(x), ref(x)):
            torch.testing.assert_close(a.contiguous(), b, rtol=1e-4, atol=1e-5)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, ref.state_dict()[k])


def _weights_hash(g) -> str:
    import hashlib

    return hashlib.sha1(b"".join(p.numpy().tobytes() for p in g.parameters())).hexdigest()[:16]


@pytest.mark.parametrize("n,layers,ratio,pool,seed,expected", [
    # computed with the unbounded search (commit 3471d44): seeds it finished keep their mixing bit for bit
    (3, 3, 0.0, 25000, 9, "555b14d58b088217"),
    (5, 2, 0.25, 1000, 3, "1cde392c23079d6f"),
    pytest.param(4, 3, 0.0, 25000, 0, "fbeb341249834741", marks=pytest.mark.slow),
    pytest.param(10, 3, 0.0, 25000, 0, "ed3097b60d69912a", marks=pytest.mark.slow),
    pytest.param(10, 3, 0.0, 25000, 2, "dad3e5c8dd0c534f", marks=pytest.mark.slow),
])
def test_bounded_search_keeps_the_original_mixing_where_it_finished(n, layers, ratio, pool, seed, expected):
    g = invertible_mlp(n, layers, cond_thresh_ratio=ratio, n_iter_cond_thresh=pool, seed=seed, say=None)
    assert _weights_hash(g) == expected and g.fallback_layers == 0
    assert max(g.condition_numbers) <= g.condition_threshold


def test_a_seed_whose_search_would_not_end_builds_in_seconds_and_says_so(monkeypatch):
    """`clica mlp --n 4 --seed 1` waited more than 300 s for three matrices better than the best of 25,000."""
    import threading

    from clica import mixing

    monkeypatch.setattr(mixing, "SAY_AFTER_S", 0.0)
    said, built = [], []
    worker = threading.Thread(target=lambda: built.append(invertible_mlp(
        4, 3, cond_thresh_ratio=0.0, n_iter_cond_thresh=25000, seed=1, say=said.append)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert built, "the mixing was not built within 60 s"
    g = built[0]
    assert g.fallback_layers == 3 and max(g.condition_numbers) < 1.2 * g.condition_threshold
    assert said[0].startswith("building the mixing g: searching random 4×4 matrices")
    assert said[1].startswith("note: 626,688 draws found 0 of the 3 mixing matrices")


@pytest.mark.slow
@pytest.mark.parametrize("n", [4, 10, 20])
def test_every_seed_builds_its_mixing_within_seconds(n):
    import time

    for seed in range(100):
        t = time.perf_counter()
        g = invertible_mlp(n, 3, cond_thresh_ratio=0.0, n_iter_cond_thresh=25000, seed=seed, say=None)
        assert time.perf_counter() - t < 30, (n, seed)
        assert max(g.condition_numbers) < 1.5 * g.condition_threshold
