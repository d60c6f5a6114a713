"""``clica score CODES FACTORS``: score any representation against ground-truth factors.

CODES and FACTORS are ``.npy``, ``.npz`` (one array) or ``.csv`` files, samples × dimensions.
"""

from __future__ import annotations

import argparse
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ClicaError
from .suite import GENERATOR_FREE, KEYS

DESCRIPTION = (
    "Score a representation (CODES) against ground-truth factors (FACTORS) by MCC, linear R², MIG, DCI, SAP, "
    "Modularity and Explicitness, defined as disentanglement_lib defines them (docs/metrics.md). Files: .npy, "
    ".npz with one array, or .csv (comma-separated numbers, an optional header line), samples × dimensions, "
    "row i of both the same sample. The first --train-fraction of rows (in file order) is the train split, "
    "the rest the test split: MIG and Modularity use the train split; DCI, SAP and Explicitness fit on the "
    "train split and score the test split (DCI and Explicitness the train split too); linear R² fits its "
    "affine map (factors from codes) on the train split and "
    "scores the test split; MCC uses all rows. Factors with more distinct values than --num-bins are binned "
    "for MIG, DCI, SAP and Modularity/Explicitness."
)

LABELS = {
    "mcc": "MCC (all rows)", "r2": "linear R² (test split)", "mig": "MIG", "dci_disentanglement": "DCI disentanglement",
    "dci_completeness": "DCI completeness", "dci_informativeness_train": "DCI informativeness (train)",
    "dci_informativeness_test": "DCI informativeness (test)", "sap": "SAP", "modularity": "Modularity",
    "explicitness_train": "Explicitness (train)", "explicitness_test": "Explicitness (test)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("codes", metavar="CODES", help="the representation: .npy, .npz or .csv, samples × dimensions")
    p.add_argument("factors", metavar="FACTORS",
                   help="the ground-truth factors: .npy, .npz or .csv, samples × dimensions")
    p.add_argument("--metrics", default=",".join(GENERATOR_FREE),
                   help="comma-separated metrics from: " + ", ".join(GENERATOR_FREE)
                        + " (modularity includes explicitness); BetaVAE and FactorVAE need a data generator, "
                          "see clica.metrics.beta_vae_score")
    p.add_argument("--train-fraction", type=float, default=0.8,
                   help="fraction of rows, from the first, in the train split (⌈N·fraction⌉ rows)")
    p.add_argument("--num-bins", type=int, default=20, help="histogram bins per code (and per factor with more values)")
    p.add_argument("--seed", type=int, default=0, help="random_state of the DCI and SAP classifiers")
    p.add_argument("--fast-dci", action="store_true",
                   help="DCI with histogram gradient boosting: much faster, not disentanglement_lib's numbers "
                        "(differences in docs/metrics.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def load(path: str, what: str) -> np.ndarray:
    """A numeric array from .npy, .npz (one array) or .csv; a ClicaError naming the file otherwise."""
    file = Path(path)
    if not file.is_file():
        raise ClicaError(f"{what} {path}: no such file")
    suffix = file.suffix.lower()
    try:
        if suffix == ".npy":
            x = np.load(file, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(file, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise ClicaError(f"{what} {path} holds {len(z.files)} arrays ({', '.join(z.files) or 'none'}); "
                                     f"it needs exactly one")
                x = z[z.files[0]]
        elif suffix == ".csv":
            x = _load_csv(file)
        else:
            raise ClicaError(f"{what} {path}: use a .npy, .npz or .csv file")
    except ClicaError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ClicaError(f"{what} {path} cannot be read: {first}") from None
    if x.dtype.kind not in "biuf":
        raise ClicaError(f"{what} {path} holds {x.dtype} values, not numbers")
    if x.ndim not in (1, 2):
        raise ClicaError(f"{what} {path} has shape {x.shape}: it must be samples × dimensions (2-D)")
    return x


def _load_csv(file: Path) -> np.ndarray:
    """Comma-separated numbers; a first line that is not numbers is a header and skipped."""
    try:
        return np.loadtxt(file, delimiter=",", ndmin=2)
    except ValueError:
        return np.loadtxt(file, delimiter=",", ndmin=2, skiprows=1)


def run(args) -> int:
    from sklearn.exceptions import ConvergenceWarning

    from ._arrays import paired
    from .suite import score

    # disentanglement_lib's classifier settings (LogisticRegression's 100 iterations, LinearSVC) often
    # stop before converging; that is part of the definition, not news for each run
    warnings.simplefilter("ignore", ConvergenceWarning)

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in GENERATOR_FREE]
    if unknown or not metrics:
        raise ClicaError(f"--metrics {args.metrics!r}: choose from {', '.join(GENERATOR_FREE)}")
    if args.num_bins < 2:
        raise ClicaError(f"--num-bins must be at least 2, got {args.num_bins}")
    codes, factors = load(args.codes, "CODES"), load(args.factors, "FACTORS")
    try:
        codes, factors = paired(codes, factors, f"CODES {args.codes}", f"FACTORS {args.factors}")
        result = score(codes, factors, metrics, args.train_fraction, args.num_bins, args.seed,
                       "hist" if args.fast_dci else "gbt")
    except ValueError as exc:
        raise ClicaError(str(exc)) from None
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{len(codes)} samples: {result['n_train']} train, {result['n_test']} test"
          + (" (DCI by histogram gradient boosting)" if args.fast_dci and "dci" in metrics else ""))
    for key in (k for m in GENERATOR_FREE if m in metrics for k in KEYS[m]):
        print(f"  {LABELS[key]:<30} {result[key]:.4f}")
    return 0
