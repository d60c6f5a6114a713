"""Where does a trained 3DIdent encoder lose a latent? Linear probes of three layers.

Reads a ``clica 3dident`` run folder (its ``config.json`` and ``checkpoint.pt``),
encodes ``--n`` images of the training folder and as many of the held-out folder,
and fits each true latent linearly from the ResNet's pooled features (512-d for
ResNet-18), its classifier output (10·n) and the encoder's output (n): fitted on
the training images, scored (R²) on the held-out ones. A latent that scores ≈ 0
already at the pooled features was never learned by the backbone; one that
scores high there but not at the output is dropped by the head. With ``--n``
fit samples a probe of d features on pure noise scores about −d/n.

    python benchmarks/threedident_layer_probe.py --run runs/3di-unsup --n 4000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from clica.data.threedident import ThreeDIdentSequential, load_normalization
from clica.experiments.threedident import build_encoder, layout_for, load_state
from clica.metrics import linear_fit


def encode_layers(f, data, n: int, batch: int = 256) -> tuple[np.ndarray, dict]:
    """True latents and the features of the first ``n`` images at three layers of ``f``."""
    backbone, rest = f[0], f[1:]
    pooled = []
    hook = backbone.avgpool.register_forward_hook(lambda m, i, o: pooled.append(o.flatten(1)))
    zs, fc, out = [], [], []
    with torch.no_grad():
        for z, x in data.batches(batch, limit=n):
            h = backbone(x)
            zs.append(z), fc.append(h), out.append(rest(h))
    hook.remove()
    return _cat(zs), {"pooled": _cat(pooled), "classifier": _cat(fc), "output": _cat(out)}


def _cat(xs) -> np.ndarray:
    return torch.cat(xs).numpy().astype(np.float64)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="clica 3dident run folder (config.json, checkpoint.pt)")
    ap.add_argument("--test-dataset", default=None, help="held-out folder (default: the run's --test-dataset)")
    ap.add_argument("--n", type=int, default=4000, help="images to fit on and to score on")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    cfg = SimpleNamespace(**json.loads((run / "config.json").read_text()))
    test_root = args.test_dataset or cfg.test_dataset
    if not test_root:
        ap.error("the run has no --test-dataset: give one")
    layout = layout_for(cfg)
    f = build_encoder(cfg, layout)
    load_state(f, run / "checkpoint.pt")
    f.eval()
    norm = load_normalization(cfg.offline_dataset)[:2]
    kw = dict(image_size=cfg.image_size, cache="auto", normalization=norm)
    z_fit, fit = encode_layers(f, ThreeDIdentSequential(cfg.offline_dataset, layout, **kw), args.n)
    z_test, test = encode_layers(f, ThreeDIdentSequential(test_root, layout, **kw), args.n)
    n = min(len(z_fit), len(z_test))
    print(f"{run}: fit on {n} training images, scored on {n} held-out images")
    print(f"{'layer':11s} {'dim':>5s} {'mean R²':>8s}  per-latent R² ({', '.join(layout.names)})")
    for name in fit:
        # linear_fit's split fits on the first half and scores the second
        r = linear_fit(np.concatenate([z_fit[:n], z_test[:n]]), np.concatenate([fit[name][:n], test[name][:n]]),
                       train_test_split=True)
        print(f"{name:11s} {fit[name].shape[1]:5d} {r.r2:8.3f}  {np.round(r.r2_per_dim, 2).tolist()}")
        if fit[name].shape[1] >= n:
            print(f"  note: {n} samples for {fit[name].shape[1]} features overfit; raise --n")


if __name__ == "__main__":
    main()
