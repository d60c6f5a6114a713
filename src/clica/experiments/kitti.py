"""``clica kitti``: the KITTI Masks experiment, with every flag of the original ``main_kitti.py``.

A conv encoder (BetaVAE_H architecture) is trained on pairs of frames at
most ``--kitti-max-delta-t`` apart, or with ``--dataset dsprites|shapes3d|mpi3d|cars3d|smallnorb``
on pairs of images of the SlowVAE benchmarks whose factors follow a sparse transition
(``--data-distribution``, ``--rate-data``, ``--data-k``), or Natural Sprites (``--dataset natural``),
with the Lp InfoNCE loss (``--p``, τ = 1, optional learnable box output ``--box-norm 1``), or, with
``--model slowvae``, the SlowVAE baseline (``--beta --gamma --rate-prior``,
``--betavae`` for γ = 0). After training, and with ``--evaluate`` from a
checkpoint, it scores the representation by MCC as the original did, and with ``--specify`` by the
generator-free metrics of the original's suite (MIG, DCI, SAP, Modularity and Explicitness).

Folders (as the original): results in ``<output-dir>/<experiment-dir>/<seed>``
(config.json, metrics.jsonl, summary.json, evaluation/<ckpt-name>/mcc.json and disentanglement.json),
checkpoints in ``<ckpt-dir>/<experiment-dir>/<seed>`` ("last" every
``--save-step`` and at the end, "<iter>" every 50,000 iterations), TensorBoard
logs in ``<log-dir>/<experiment-dir>/<seed>`` with ``--use-writer``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..conditionals import by_code
from ..data.factor_datasets import SPECS, FactorDataset, load_factor_dataset
from ..data.kitti_masks import PICKLE_NAME, KittiMasks, PairLoader, Prefetcher, resolve_pickle_path
from ..data.natural_sprites import CSV_NAME, NaturalSprites
from ..data.natural_sprites import DEFAULT_DIR as NATURAL_DIR
from ..data.registry import DATASETS
from ..errors import ClicaError
from ..metrics import mcc
from ..models import norm_layer, to_device
from ..models.conv import ConvEncoderNet, ConvVAE
from ..params import Interval, Options, ParameterError, check
from ..resources import require_memory, require_per_core
from ..runs import (
    EVALUATION_SEED,
    RunDir,
    atomic_write_json,
    check_fields,
    load_module_state,
    loading,
    resolve_device,
    seed_everything,
)
from ..slowvae import SlowVAELoss
from ..training import Solver, require_finite
from .config import Config, flag
from .skeleton import Experiment, Session

DESCRIPTION = (
    "Disentanglement with InfoNCE/Contrastive Learning - KITTI Masks. Trains a conv encoder on "
    "pairs of pedestrian-mask frames with the Lp InfoNCE loss (or the SlowVAE baseline with "
    "--model slowvae) and scores it by MCC against centre of mass (y, x) and area. Data: "
    "DIR/kitti_peds_v2.pickle with DIR from --data-dir or $CLICA_DATA_DIR (Zenodo record 3931823), "
    "or synthetic data from `clica data kitti-masks`. With --dataset dsprites, shapes3d, mpi3d, cars3d "
    "or smallnorb: the SlowVAE benchmark from its published files in DIR, pairs made by a sparse "
    "transition of the factors (--data-distribution), scored by MCC against the ground-truth factors; "
    "with --dataset natural: Natural Sprites, sprites moving as objects in videos."
)

Dataset = KittiMasks | FactorDataset | NaturalSprites  # what clica kitti trains on: one interface
NUMBERED_CHECKPOINT_EVERY = 50_000
# the original's metric configs (--specify names) -> clica.metrics.suite names; None: needs a generator
METRICS = {"mcc": "mcc", "mig": "mig", "dci": "dci", "sap_score": "sap", "modularity_explicitness": "modularity",
           "beta_vae_sklearn": "beta_vae", "factor_vae_metric": "factor_vae"}
GENERATOR_METRICS = ("beta_vae", "factor_vae")  # need a ground-truth generator: the factor datasets have one
SUPPORTED_DATASETS = DATASETS
# settings that only mean something for the factor datasets: an error when given with kittimasks
FACTOR_DATASET_SETTINGS = ("data_distribution", "rate_data", "data_k")
# what a checkpoint holds: ours, and the original's (model and optimiser states only)
CHECKPOINT_FIELDS = {"model_states": dict, "model_states.net": dict}
CHECKPOINT_OPTIONAL = {"iter": int, "optim_states": dict, "optim_states.optim": dict, "loader": dict,
                       "loader.generator": torch.Tensor, "loader.perm": (torch.Tensor, type(None)),
                       "loader.pos": int, "window": dict, "window.sums": dict, "window.count": int}
# settings that define a run: a run folder is only resumed with the same ones (others, e.g. --max-iter, may change)
RUN_DEFINING = ("model", "box_norm", "p", "beta", "gamma", "rate_prior", "betavae", "batch_size",
                "z_dim", "lr", "beta1", "beta2", "kitti_max_delta_t", "augment", "seed", "dataset",
                "data_distribution", "rate_data", "data_k", "natural_discrete")


# --------------------------------------------------------------------------- the config and its checks

def check_dataset_flags(args) -> None:
    """Each dataset flag given means something for ``--dataset``."""
    given = getattr(args, "_given", set())
    if "natural_discrete" in given and args.dataset != "natural":
        raise ParameterError(f"{{}} concerns Natural Sprites only ({{}} natural), not {args.dataset}",
                             "natural_discrete", "dataset")
    if args.dataset in ("kittimasks", "natural"):
        for name in FACTOR_DATASET_SETTINGS:
            if name in given:
                raise ParameterError(f"{{}} concerns the factor datasets (dsprites, shapes3d, ...); {args.dataset} "
                                     "pairs are consecutive video frames, so remove it", name)
    if "kitti_max_delta_t" in given and args.dataset != "kittimasks":
        raise ParameterError(f"{{}} concerns KITTI Masks only, not {{}} {args.dataset}; remove it",
                             "kitti_max_delta_t", "dataset")
    if args.dataset in ("kittimasks", "natural"):
        return
    check("data_distribution", args.data_distribution,
          Options(("laplace", "uniform"), says="must be laplace or uniform, got {value!r}"))
    if args.data_distribution == "laplace" and "data_k" in given:
        raise ParameterError("{} sets the uniform transition's number of changing factors; with {} laplace use {}, "
                             "or give {} uniform", "data_k", "data_distribution", "rate_data", "data_distribution")
    if args.data_distribution == "uniform" and "rate_data" in given:
        raise ParameterError("{} sets the laplace transition's rate; with {} uniform use {}, or give {} laplace",
                             "rate_data", "data_distribution", "data_k", "data_distribution")
    if not (args.rate_data == -1 or args.rate_data > 0):
        raise ParameterError.of("rate_data", f"must be positive or -1 (a random rate per pair), got {args.rate_data}")
    if not (args.data_k == -1 or args.data_k >= 1):
        raise ParameterError.of("data_k", f"must be -1 (random) or at least 1, got {args.data_k}")


def _pairs(args) -> None:
    if args.batch_size < 2 or args.batch_size % 2:
        raise ParameterError.of("batch_size", f"must be an even number ≥ 2 (pairs of frames), got {args.batch_size}")


def _factors(args) -> None:
    factors = dataset_shape(args.dataset)[1]
    if args.z_dim < factors:
        raise ParameterError.of("z_dim", f"must be at least {factors} (the number of true factors), got {args.z_dim}")


def _whole_max_iter(args) -> None:
    if args.max_iter < 1 or args.max_iter != int(args.max_iter):
        raise ParameterError.of("max_iter", f"must be a positive whole number, got {args.max_iter}")


def _threads(args) -> None:
    require_per_core(args.threads, "--threads", " (torch's default)")


def _memory(args) -> None:
    """A low estimate, before anything is allocated: the batches made ahead and in use (64×64 floats) with
    ten times as much for the activations, the weights mapping to and from z (with gradients, Adam), and
    an evaluation's frame indices, factors and codes (float64)."""
    batch = args.batch_size * 64 * 64 * 4 * dataset_shape(args.dataset)[0]
    evaluation = max(args.n_eval_samples, args.log_mcc) * 8 * (1 + 3 + 2 * args.z_dim)
    require_memory((args.num_workers + 11) * batch + 4 * 2 * 257 * args.z_dim * 4 + evaluation,
                   f"--batch-size {args.batch_size} with --num-workers {args.num_workers}, --z-dim {args.z_dim}, "
                   f"--n-eval-samples {args.n_eval_samples} and --log-mcc {args.log_mcc}", "lower them")


def _sweeps(args) -> None:
    if args.random_search and args.betavae and not args.search_beta:
        raise ParameterError("{} with {} searches nothing unless {} is given", "random_search", "betavae",
                             "search_beta")
    if (args.random_search or args.random_seeds) and args.evaluate:
        raise ParameterError("{} cannot be combined with {} or {}", "evaluate", "random_search", "random_seeds")
    if args.random_search and args.random_seeds:
        raise ParameterError("choose one of {} and {}", "random_search", "random_seeds")


def _metrics(args) -> None:
    specified_metrics(args.specify, args.dataset)


POSITIVE = Interval(float, 0, closed="neither")
AT_LEAST_1 = Interval(int, 1, says="must be at least 1, got {value}")
SLOWVAE_WEIGHT = Interval(float, 0, says="must be ≥ 0 (a weight of the SlowVAE loss), got {value}")
ADAM_DECAY = Interval(float, 0, 1, says="must be in [0, 1) (an Adam moment's decay), got {value}")


@dataclass
class KittiConfig(Config):
    """Every setting of a KITTI Masks run: one field per flag of ``clica kitti`` (the original
    ``main_kitti.py`` flags and ours), with the same defaults. Run it with :func:`run_kitti`;
    ``KittiConfig.from_dict(json.load(...))`` rebuilds a run's config.json."""

    box_norm: int = flag(
        "--box-norm", default=0, type=int, checks=(Options((0, 1)),),
        help="1: learnable box output (sigmoid times a learnable width per dimension)")
    p: float = flag(
        "--p", "--lp-exponent", default=1, type=float, checks=(POSITIVE,),
        help="exponent of the Lp InfoNCE loss (1: Laplace conditional); under torchrun write "
             "--lp-exponent (torchrun's own parser takes --p for an abbreviation of its options)")
    experiment_dir: str = flag(
        "--experiment-dir", default="", type=str,
        help="specify path; empty: <data>/<p>_<box-norm>, or <data>/slowvae_<beta>_<gamma>_<rate-prior> "
             "for SlowVAE, where <data> is kittimasks_<max-delta-t>, <dataset>_laplace_<rate-data>, "
             "<dataset>_uniform_<data-k>, natural or natural_discrete")
    evaluate: bool = flag(
        "--evaluate", default=False,
        help="evaluate the checkpoint --ckpt-name instead of training; the frames and the noise "
             "rows come from a fixed seed (0, as after training), so every call prints the same MCC")
    specify: str = flag(
        "--specify", default="", type=str,
        help="use argument to only compute a subset of metrics: the original's names "
             f"({', '.join(METRICS)}), '_'-separated; a metric is computed when a part occurs in "
             "its name, e.g. mcc_mig_dci. Empty: MCC only. MCC is always computed (the summary); "
             "the others go to evaluation/<ckpt-name>/disentanglement.json. "
             "beta_vae_sklearn and factor_vae_metric (disentanglement_lib's settings: slow on a CPU) need "
             "a data generator: the factor datasets, not kittimasks")
    random_search: bool = flag(
        "--random-search", default=False,
        help="random search: --num_runs draws of seed and SlowVAE beta/gamma/rate-prior as the original")
    random_seeds: bool = flag(
        "--random-seeds", default=False,
        help="train --num_runs random seeds (drawn from --seed) and report MCC mean ± std")
    seed: int = flag(
        "--seed", default=2, type=int,
        help="random seed")
    beta: float = flag(
        "--beta", default=1, type=float, checks=(SLOWVAE_WEIGHT,),
        help="SlowVAE: weight for kl to normal")
    gamma: float = flag(
        "--gamma", default=10, type=float, checks=(SLOWVAE_WEIGHT,),
        help="SlowVAE: weight for kl to laplace")
    rate_prior: float = flag(
        "--rate-prior", default=6, type=float, checks=(POSITIVE,),
        help="SlowVAE: rate (or inverse scale) for prior laplace (larger -> sparser)")
    data_distribution: str = flag(
        "--data-distribution", default="laplace", type=str,
        help="(laplace, uniform) how the second image of a pair differs from the first (not for "
             "kittimasks): laplace: every non-categorical factor index takes a discretised Laplace "
             "step of scale log(factor size)/--rate-data, at least one factor changes; uniform: "
             "--data-k factors change to another value. Categorical factors (shape) never change")
    rate_data: float = flag(
        "--rate-data", default=1, type=float,
        help="rate (or inverse scale) for data laplace (larger -> sparser). (-1 = rand: a rate "
             "uniform in [1, 10) per pair)")
    data_k: int = flag(
        "--data-k", default=-1, type=int,
        help="k for data uniform (-1 = rand: 1 to the number of non-categorical factors, per pair)")
    betavae: bool = flag(
        "--betavae", default=False,
        help="SlowVAE: standard beta-VAE training (gamma=0)")
    search_beta: bool = flag(
        "--search-beta", default=False,
        help="random search also over beta")
    output_dir: str = flag(
        "--output-dir", default="outputs", type=str,
        help="output directory; each seed's run folder OUTPUT_DIR/<experiment-dir>/<seed> must be new, "
             "empty, or a clica kitti run (resumed)")
    log_dir: str = flag(
        "--log-dir", default="logs", type=str,
        help="TensorBoard log directory (with --use-writer)")
    ckpt_dir: str = flag(
        "--ckpt-dir", default="checkpoints", type=str,
        help="checkpoint directory")
    max_iter: float = flag(
        "--max-iter", default=300000, type=float,
        help="maximum training iteration")
    dataset: str = flag(
        "--dataset", default="kittimasks", type=str,
        checks=(Options(SUPPORTED_DATASETS, says="{value} is not one of " + ", ".join(SUPPORTED_DATASETS)),),
        help="dataset name (dsprites, cars3d, smallnorb, shapes3d, mpi3d, kittimasks, natural); the "
             "published files in --data-dir, see docs/kitti.md")
    batch_size: int = flag(
        "--batch-size", default=64, type=int,
        help="batch size in images (batch-size/2 pairs)")
    num_workers: int = flag(
        "--num-workers", default=2, type=int, checks=(Interval(int, 0),),
        help="batches prepared ahead by a background thread (0: in the training thread)")
    image_size: int = flag(
        "--image-size", default=64, type=int,
        checks=(Options((64,), says="{value}: only 64 (64×64 masks) is supported"),),
        help="image size. now only (64,64) is supported")
    use_writer: bool = flag(
        "--use-writer", default=False,
        help="log to TensorBoard in --log-dir")
    z_dim: int = flag(
        "--z-dim", default=10, type=int,
        help="dimension of the representation z")
    lr: float = flag(
        "--lr", default=1e-4, type=float, checks=(POSITIVE,),
        help="learning rate")
    beta1: float = flag(
        "--beta1", default=0.9, type=float, checks=(ADAM_DECAY,),
        help="Adam optimizer beta1")
    beta2: float = flag(
        "--beta2", default=0.999, type=float, checks=(ADAM_DECAY,),
        help="Adam optimizer beta2")
    ckpt_name: str = flag(
        "--ckpt-name", default="last", type=str,
        help="checkpoint to resume from or evaluate ('last' or an iteration number)")
    log_step: int = flag(
        "--log-step", default=1000, type=int, checks=(AT_LEAST_1,),
        help="number of iterations after which the loss is logged")
    save_step: int = flag(
        "--save-step", default=10000, type=int, checks=(AT_LEAST_1,),
        help="number of iterations after which the 'last' checkpoint is saved")
    kitti_max_delta_t: int = flag(
        "--kitti-max-delta-t", default=1, type=int, checks=(AT_LEAST_1,),
        help="max t difference between frames sampled from kitti data loader (kittimasks only)")
    natural_discrete: bool = flag(
        "--natural-discrete", default=False,
        help="discretize natural sprites (x, y, area to 32, 32, 6 histogram bins; --dataset natural)")
    verbose: bool = flag(
        "--verbose", default=False,
        help="print evaluation details")
    cuda: bool = flag(
        "--cuda", default=False,
        help="use CUDA (an error when none is available)")
    num_runs: int = flag(
        "--num_runs", default=10, type=int, checks=(AT_LEAST_1,),
        help="runs for --random-seeds / --random-search")
    data_dir: str | None = flag(
        "--data-dir", default=None, type=str,
        help="folder holding the dataset's published file(s) ("
             + ", ".join([PICKLE_NAME, *(s.files[0] if s.files else f"the {s.title} .mat files"
             for s in SPECS.values()), CSV_NAME])
             + "), or the file itself (default: $CLICA_DATA_DIR, else ./data/kitti, or for the other "
             "datasets the original's folders "
             + ", ".join(f"./{d}" for d in [*(s.default_dir for s in SPECS.values()), NATURAL_DIR]) + ")")
    model: str = flag(
        "--model", default="contrastive", choices=("contrastive", "slowvae"),
        help="contrastive: Lp InfoNCE encoder; slowvae: the SlowVAE baseline")
    augment: bool = flag(
        "--augment", default=False,
        off=("--no-augment", "no augmentation: the default; kept so that older commands still run"),
        help="augment pairs with a random affine + horizontal flip (off by default: the "
             "original never switched it on, and the paper trains without it)")
    correlation: str = flag(
        "--correlation", default="spearman", choices=("spearman", "pearson"),
        help="correlation used by MCC (the original: spearman)")
    n_eval_samples: int = flag(
        "--n-eval-samples", default=10_000, type=int, checks=(AT_LEAST_1,),
        help="frames used for MCC")
    threads: int = flag(
        "--threads", default=0, type=int,
        help="torch CPU threads (0: torch's default)")
    log_mcc: int = flag(
        "--log-mcc", default=0, type=int, metavar="N",
        checks=(Interval(int, 0, says="must be ≥ 0 (0: off), got {value}"),),
        help="also log MCC on N frames at every log step (0: off)")

    checks = (check_dataset_flags, _pairs, _factors, _whole_max_iter, _threads, _memory, _sweeps, _metrics)


def add_arguments(p: argparse.ArgumentParser) -> None:
    KittiConfig.add_arguments(p)


def dataset_shape(name: str) -> tuple[int, int]:
    """Image channels and scored factors of dataset ``name``, known before its files are read."""
    if name in SPECS:
        return SPECS[name].channels, len(SPECS[name].scored or SPECS[name].factor_sizes)
    cls = KittiMasks if name == "kittimasks" else NaturalSprites
    return cls.channels, len(cls.factor_names)


def specified_metrics(specify: str, dataset: str = "kittimasks") -> list[str]:
    """The original's metric names that ``--specify`` selects (a name is selected when a '_'-separated
    part of ``specify`` occurs in it; empty: mcc); those that need a data generator are refused for
    KITTI Masks."""
    parts = [part for part in specify.split("_") if part]
    chosen = [name for name in METRICS if any(part in name for part in parts)] if parts else ["mcc"]
    if not chosen:
        raise ClicaError(f"--specify {specify!r} selects no metric: choose from {', '.join(METRICS)}")
    generator = [name for name in chosen if METRICS[name] in GENERATOR_METRICS]
    if generator and dataset not in SPECS:
        raise ClicaError(f"--specify {specify!r} selects {' and '.join(generator)}, which need a dataset with a "
                         f"ground-truth generator (factors sampled, then observations made from them); KITTI Masks "
                         f"and Natural Sprites have none here (the factor datasets, e.g. --dataset dsprites, have one)")
    return chosen


# --------------------------------------------------------------------------- models

def build_model(args, channels: int = 1) -> nn.Module:
    """The contrastive encoder (``net.encoder``) or the SlowVAE (``net.encoder``, ``net.decoder``), for
    images with ``channels`` channels."""
    if args.model == "slowvae":
        return ConvVAE(args.z_dim, nc=channels)
    norm = norm_layer("learnable_box" if args.box_norm else None, args.z_dim)
    return ConvEncoderNet(args.z_dim, nc=channels, output_layer=norm)


def representation(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The representation scored by MCC: the encoder output, or the SlowVAE posterior mean."""
    return net.encode(x)


def _state_dict_for(net: nn.Module, state: dict) -> dict:
    """Accept the original code's checkpoints too (its box layer called the width max_abs_bound)."""
    out = {}
    for k, v in state.items():
        out[k.replace("max_abs_bound", "width") if isinstance(k, str) else k] = v
    return out


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def encode_frames(net: nn.Module, dataset: Dataset, idx: np.ndarray, device,
                  batch: int = 500) -> np.ndarray:
    """The representation of the dataset's images ``idx``, read ``batch`` at a time."""
    return np.concatenate([encode_images(net, dataset.images(torch.as_tensor(idx[i:i + batch]), device), device)
                           for i in range(0, len(idx), batch)])


@torch.no_grad()
def encode_images(net: nn.Module, x: torch.Tensor, device, batch: int = 500) -> np.ndarray:
    """The representation of images ``x`` (n, C, 64, 64), in batches, in eval mode."""
    was_training = net.training
    net.eval()
    out = [representation(net, x[i:i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]
    net.train(was_training)
    return torch.cat(out).numpy()


@dataclass
class FrameScores:
    """An MCC evaluation: ``scores`` (what ``mcc.json`` holds), the frames' true factors ``z``, their
    representation ``hz`` and the output dimension matched to each factor (``assignment``)."""

    scores: dict
    z: np.ndarray
    hz: np.ndarray
    assignment: np.ndarray


def score_frames(net: nn.Module, dataset: Dataset, device, n_samples: int = 10_000,
                 method: str = "spearman", seed: int = 0) -> FrameScores:
    """MCC as the original's evaluation: ``n_samples`` frames (no augmentation), the k true factors
    (``dataset.latents``) padded with standard-normal noise rows to the representation's width,
    Hungarian matching on |correlation|, mean |correlation| of the k matched factors."""
    idx = dataset.eval_indices(n_samples, seed)
    hz = encode_frames(net, dataset, idx, device)
    z = dataset.latents[torch.as_tensor(idx)].numpy().astype(np.float64)
    require_finite(torch.as_tensor(hz), "the encoder's outputs")
    rs = np.random.RandomState(seed)
    noise = rs.normal(size=(len(z), max(hz.shape[1] - z.shape[1], 0)))
    padded = np.concatenate([z, noise], axis=1)
    result = mcc(padded, hz, method=method)
    k = z.shape[1]
    scores = {
        "mcc": float(result.per_factor[:k].mean()),
        "per_factor": {name: float(v) for name, v in zip(dataset.factor_names, result.per_factor[:k])},
        "assignment": {name: int(j) for name, j in zip(dataset.factor_names, result.assignment[:k])},
        "correlation": method,
        "n_samples": int(n_samples),
    }
    return FrameScores(scores, z, hz, result.assignment[:k])


def evaluate_mcc(net: nn.Module, dataset: Dataset, device, n_samples: int = 10_000,
                 method: str = "spearman", seed: int = 0) -> dict:
    """The scores of :func:`score_frames`."""
    return score_frames(net, dataset, device, n_samples, method, seed).scores


# --------------------------------------------------------------------------- folders

def data_dir_name(args) -> str:
    """The data part of the default experiment folder: ``kittimasks_<max-delta-t>``, or for a factor
    dataset ``<dataset>_laplace_<rate-data>`` / ``<dataset>_uniform_<data-k>``."""
    if args.dataset == "kittimasks":
        return f"{args.dataset}_{args.kitti_max_delta_t}"
    if args.dataset == "natural":
        return "natural_discrete" if args.natural_discrete else "natural"
    setting = args.rate_data if args.data_distribution == "laplace" else args.data_k
    return f"{args.dataset}_{args.data_distribution}_{setting:g}"


def experiment_dir(args) -> str:
    if args.experiment_dir:
        return args.experiment_dir
    data = data_dir_name(args)
    if args.model == "slowvae":
        gamma = 0 if args.betavae else args.gamma
        return os.path.join(data, f"slowvae_{args.beta:g}_{gamma:g}_{args.rate_prior:g}")
    return os.path.join(data, f"{args.p:g}_{args.box_norm}")


class _Writer:
    def __init__(self, log_dir: Path | None, args):
        self.w = None
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ClicaError("--use-writer needs TensorBoard: pip install tensorboard") from None
        self.w = SummaryWriter(str(log_dir))
        for k, v in sorted(vars(args).items()):
            if not k.startswith("_"):
                self.w.add_text(k, str(v))

    def scalars(self, record: dict, step: int, prefix: str = "") -> None:
        if self.w is None:
            return
        for k, v in record.items():
            if k not in ("step", "time_s") and isinstance(v, (int, float)) and math.isfinite(v):
                self.w.add_scalar(f"{prefix}{k}", v, step)

    def close(self):
        if self.w is not None:
            self.w.close()


class _LiveRun(RunDir):
    """A run folder whose metric lines also go to TensorBoard as they are written."""

    def __init__(self, path, writer: _Writer):
        super().__init__(path)
        self.writer = writer

    def log_metrics(self, record: dict) -> None:
        super().log_metrics(record)
        self.writer.scalars(record, record["step"], "train/")


# --------------------------------------------------------------------------- one run

def _config(args, seed: int, data_path: Path, dataset: Dataset, device) -> dict:
    cfg = {"command": "kitti", **args.to_dict()}
    cfg.update(seed=seed, max_iter=int(args.max_iter), data_file=str(data_path), data_frames=dataset.n_frames,
               gamma=0.0 if args.betavae else args.gamma, device=str(device))
    if isinstance(dataset, KittiMasks):
        cfg.update(data_sequences=dataset.n_sequences)
    return cfg


def run_one(args, seed: int, dataset: Dataset, data_path: Path, session: Session) -> dict:
    """Train (or with ``--evaluate`` only evaluate) one seed; return its summary. The seed's run
    folder is locked meanwhile: a second process on it gets a one-line error."""
    with session.open(Path(args.output_dir) / experiment_dir(args) / str(seed), "kitti"):
        return _run_one(args, seed, dataset, data_path, session)


class KittiExperiment(Experiment):
    """One seed's training of the contrastive encoder (or the SlowVAE) on ``dataset``."""

    def __init__(self, args, seed: int, dataset: Dataset, data_path: Path, session: Session):
        super().__init__(session)
        self.args, self.seed, self.dataset = args, seed, dataset
        folder = experiment_dir(args)
        self.ckpts = RunDir(Path(args.ckpt_dir) / folder / str(seed))
        self.ckpt_path = self.ckpts.file(args.ckpt_name)
        self.log_dir = Path(args.log_dir) / folder / str(seed) if args.use_writer else None
        self.max_iter = int(args.max_iter)
        self.config = _config(args, seed, data_path, dataset, session.device)

    def build(self) -> None:
        args = self.args
        seed_everything(self.seed)
        self.net = to_device(build_model(args, self.dataset.channels), self.session.device)
        self.solver = Solver(torch.optim.Adam(self.net.parameters(), lr=args.lr, betas=(args.beta1, args.beta2)))
        if args.model == "slowvae":
            self.loss_fn = SlowVAELoss(args.beta, 0.0 if args.betavae else args.gamma, args.rate_prior)
        else:
            self.loss_fn = by_code(args.p).loss(tau=1.0)

    def restore(self, state: dict) -> None:
        """The model, and for a checkpoint of ours past iteration 0 the optimiser and the log window."""
        args, path = self.args, self.ckpt_path
        load_module_state(self.net, _state_dict_for(self.net, state["model_states"]["net"]), path,
                          f"--model {args.model} (--z-dim {args.z_dim}, --box-norm {args.box_norm})")
        self.start = state.get("iter", 0)
        if self.start < 0:
            raise ClicaError(f"{path} is not a KITTI checkpoint: iteration {self.start}")
        if self.start > 0:
            if "optim_states" in state:
                self.solver.restore(path, state["optim_states"]["optim"])
            self.window = state.get("window", {})

    def prepare(self, state: dict | None) -> None:
        session, args = self.session, self.args
        images = session.local_batch(args.batch_size)
        if images % 2:
            raise ClicaError(f"--batch-size {args.batch_size} gives each of the {session.world.size} processes "
                             f"{images} images, not whole pairs; use a multiple of {2 * session.world.size}")
        self.loader = PairLoader(self.dataset, images, augment=args.augment,
                                 seed=session.stream_seed(self.seed, self.start), device=session.device)
        if state is not None and self.start > 0 and "loader" in state and not session.world.distributed:
            check_fields(state, self.ckpt_path, {"loader.generator": torch.Tensor, "loader.pos": int},
                         what="a KITTI checkpoint")
            with loading(self.ckpt_path, "data-loader state"):
                self.loader.load_state_dict(state["loader"])
        self.source = Prefetcher(self.loader, args.num_workers) if args.num_workers > 0 else self.loader
        self.model = session.wrap(self.net)
        self.net.train()

    def step(self, i: int) -> dict:
        x, _ = self.source.next_batch()
        if self.args.model == "slowvae":
            x_logits, mu, logvar = self.model(x)
            out = self.loss_fn(x, x_logits, mu, logvar)
        else:
            h = self.model(x)
            out = self.session.contrastive(self.loss_fn, h[0::2], h[1::2])
        self.solver.step(out.total)
        stats = {"loss": out.total.detach(), **{k: v.detach() for k, v in out.parts.items()}}
        if self.args.model == "slowvae":  # a loss of this process's batch: the mean over processes is logged
            stats = {k: self.session.mean(float(v)) for k, v in stats.items()}
        return stats

    def evaluate(self, i: int) -> dict:
        args = self.args
        if not args.log_mcc:
            return {}
        return {"mcc": evaluate_mcc(self.net, self.dataset, self.session.device, args.log_mcc, args.correlation,
                                    seed=1)["mcc"]}

    def checkpoint_state(self, i: int) -> dict:
        return {"iter": i, "model_states": {"net": self.net.state_dict()},
                "optim_states": {"optim": self.solver.optimizer.state_dict()}, "loader": self.source.state_dict(),
                "config": self.config, "window": self.window}

    def checkpoint(self, i: int, force: bool = False) -> None:
        """"last" every ``--save-step`` iterations, at the end and when stopped; "<i>" every 50,000."""
        state = self.checkpoint_state(i)
        if force or i % self.args.save_step == 0 or i == self.max_iter:
            self.session.save(state, self.ckpts.file("last"))
        if i % NUMBERED_CHECKPOINT_EVERY == 0:
            self.session.save(state, self.ckpts.file(str(i)))

    def close(self) -> None:
        """Stop the prefetching thread, if any."""
        if self.source is not self.loader:
            self.source.close()


def _run_one(args, seed: int, dataset: Dataset, data_path: Path, session: Session) -> dict:
    experiment = KittiExperiment(args, seed, dataset, data_path, session)
    experiment.build()
    state = session.load(experiment.ckpt_path, CHECKPOINT_FIELDS, CHECKPOINT_OPTIONAL, what="a KITTI checkpoint")
    if state is not None:
        experiment.restore(state)
    start, max_iter, config = experiment.start, experiment.max_iter, experiment.config
    if args.evaluate:
        if state is None:
            raise ClicaError(f"--evaluate: no checkpoint {experiment.ckpt_path}; train first or "
                             f"pass the --ckpt-name / --experiment-dir / --seed of a trained run")
        return _evaluate_and_save(args, experiment.net, dataset, session, start, config, log_dir=experiment.log_dir)
    if state is not None:
        session.require_not_past(start, max_iter, "--max-iter")
    if state is not None and start > 0:
        session.require_same(session.saved_config() or {}, config, RUN_DEFINING,
                             "use another --output-dir/--ckpt-dir/--experiment-dir or delete it")
    experiment.prepare(state)
    try:
        if state is not None and start > 0:
            session.echo(f"resuming {session.run.path} from checkpoint '{args.ckpt_name}' at iteration {start}")
            if session.world.distributed:
                session.echo("note: under torchrun a resumed run draws fresh pairs on each process, from a stream "
                             "given by the seed and the iteration it resumes at")
        session.truncate_metrics(start if state is not None else 0)
        session.write_config(config)
        writer = _Writer(experiment.log_dir if session.is_main else None, args)
        t0 = time.monotonic()
        # checkpoint() is called every step that is a multiple of the smaller period and decides itself
        every = math.gcd(args.save_step, NUMBERED_CHECKPOINT_EVERY)
        experiment.train(n_steps=max_iter, log_every=args.log_step, checkpoint_every=every,
                         log_to=_LiveRun(session.run.path, writer), desc=f"kitti {args.model} seed {seed}")
    finally:
        experiment.close()
    train_s = time.monotonic() - t0
    summary = _evaluate_and_save(args, experiment.net, dataset, session, max_iter, config, log_dir=None,
                                 writer=writer, train_s=train_s, resumed_from=start)
    writer.close()
    return summary


def _evaluate_and_save(args, net, dataset, session: Session, iteration: int, config: dict, log_dir=None,
                       writer: _Writer | None = None, train_s: float | None = None, resumed_from: int = 0) -> dict:
    """Score the encoder by MCC and write ``evaluation/<ckpt-name>/`` and (after training) the summary; on
    rank 0 only, evaluation runs once."""
    if not session.is_main:
        return {}
    t0 = time.monotonic()
    scored = score_frames(net, dataset, session.device, args.n_eval_samples, args.correlation, seed=EVALUATION_SEED)
    res, z, hz, assign = scored.scores, scored.z, scored.hz, scored.assignment
    res.update(iteration=iteration, checkpoint=args.ckpt_name, model=args.model,
               elapsed_s=round(time.monotonic() - t0, 2))
    out_dir = session.run.path / "evaluation" / args.ckpt_name
    atomic_write_json(out_dir / "mcc.json", res)
    others = [METRICS[name] for name in specified_metrics(args.specify, args.dataset) if name != "mcc"]
    if others:
        _save_disentanglement(z, hz, others, out_dir / "disentanglement.json", args.specify, dataset,
                              lambda x: encode_images(net, torch.from_numpy(x), session.device))

    def figure() -> Path:
        from ..plots import true_vs_predicted

        path = out_dir / "true_vs_predicted.png"
        true_vs_predicted(z, hz, path, names=list(dataset.factor_names), assignment=assign, method=args.correlation,
                          title=f"{dataset.title}, {args.model}: MCC {res['mcc']:.3f} "
                                f"(mean |{args.correlation.capitalize()} ρ| of the matched dimensions)")
        return path

    if args.verbose:
        print(f"MCC on {res['n_samples']} frames ({args.correlation}): "
              + ", ".join(f"{k} {v:.3f} (dim {res['assignment'][k]})" for k, v in res["per_factor"].items()))
    summary = {"seed": config["seed"], "model": args.model, "iteration": iteration, "mcc": res["mcc"],
               "per_factor": res["per_factor"], "correlation": args.correlation}
    if train_s is not None:
        steps = iteration - resumed_from
        summary.update(train_s=round(train_s, 1), steps_trained=steps,
                       steps_per_s=round(steps / train_s, 2) if train_s > 0 else None)
    session.finish(None if args.evaluate else summary, figure)
    if writer is None and log_dir is not None:
        writer = _Writer(log_dir, args)
        writer.scalars({"mcc": res["mcc"]}, iteration, "eval/")
        writer.close()
    elif writer is not None:
        writer.scalars({"mcc": res["mcc"]}, iteration, "eval/")
    print(f"seed {config['seed']}: MCC {res['mcc']:.4f} ({args.model}, iteration {iteration}); "
          f"results in {out_dir / 'mcc.json'}", flush=True)
    return summary


def _save_disentanglement(z: np.ndarray, hz: np.ndarray, metrics: list[str], path: Path, specify: str,
                          dataset, representation) -> None:
    """Score the encoded evaluation frames by ``clica.metrics.score`` (the factors binned into 20 bins,
    the first 80 % of frames the train split, as ``clica score``), and with a factor dataset the BetaVAE
    and FactorVAE scores from its generator (disentanglement_lib's settings, seed 0); write them as JSON."""
    from .. import metrics as suite

    t0 = time.monotonic()
    free = [m for m in metrics if m not in GENERATOR_METRICS]
    try:
        scores = suite.score(hz, z, free, seed=0) if free else {}
    except ValueError as exc:
        raise ClicaError(f"--specify {specify}: {exc}") from None
    if "beta_vae" in metrics:
        r = suite.beta_vae_score(dataset, representation, seed=0)
        scores.update(beta_vae_train=r.train_accuracy, beta_vae_eval=r.eval_accuracy)
    if "factor_vae" in metrics:
        r = suite.factor_vae_score(dataset, representation, seed=0)
        scores.update(factor_vae_train=r.train_accuracy, factor_vae_eval=r.eval_accuracy,
                      factor_vae_active_dims=r.num_active_dims)
    atomic_write_json(path, {**scores, "factors": list(dataset.factor_names), "specify": specify,
                             "elapsed_s": round(time.monotonic() - t0, 2)})
    print(", ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float)) + f"; results in {path}")


# --------------------------------------------------------------------------- entry point

def _draw_seed(rs: np.random.RandomState, taken: set) -> int:
    while True:
        s = int(rs.randint(1_000_000, 9_999_999))
        if s not in taken:
            taken.add(s)
            return s


def load_dataset(args) -> tuple[Dataset, Path]:
    """The dataset ``--dataset`` names, from ``--data-dir`` (or ``$CLICA_DATA_DIR``), and its path."""
    if args.dataset == "kittimasks":
        path = resolve_pickle_path(args.data_dir)
        return KittiMasks.from_file(path, max_delta_t=args.kitti_max_delta_t), path
    if args.dataset == "natural":
        dataset = NaturalSprites.from_dir(args.data_dir, args.natural_discrete)
        return dataset, dataset.source
    dataset = load_factor_dataset(args.dataset, args.data_dir, args.data_distribution, args.rate_data, args.data_k)
    return dataset, dataset.source


def run(args) -> int:
    run_kitti(KittiConfig.from_args(args))
    return 0


def run_kitti(cfg) -> dict:
    """Train (or evaluate) as ``clica kitti`` does with these settings (a :data:`KittiConfig`); return
    the run's summary, or for ``--random-seeds``/``--random-search`` the MCC mean, std and runs."""
    args = cfg.copy()  # the run fills in settings (seed, ...): never the caller's object
    args.validate()
    if args.cuda and not torch.cuda.is_available():
        raise ClicaError("--cuda given but CUDA is not available on this machine; drop --cuda to run on the CPU")
    session = Session(resolve_device("cuda" if args.cuda else "cpu"))
    device = session.device
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset, data_path = load_dataset(args)
    if len(dataset) < args.batch_size // 2:
        raise ClicaError(f"{data_path} has {len(dataset)} pair starts, fewer than one batch of "
                         f"{args.batch_size // 2} pairs; lower --batch-size")
    session.echo(f"{dataset.describe()} from {data_path}; "
                 f"device {device}" + (f", {session.world.size} processes" if session.world.distributed else ""))

    if not (args.random_search or args.random_seeds):
        return run_one(args, args.seed, dataset, data_path, session)

    # seeds (and search draws) come from --seed, so a sweep is reproducible
    rs = np.random.RandomState(args.seed)
    taken: set = set()
    results = []
    for k in range(args.num_runs):
        a = args.copy()
        seed = _draw_seed(rs, taken)
        if args.random_search:
            a.beta = float(rs.uniform(1, 16)) if args.search_beta else 1.0
            a.gamma = float(rs.uniform(1, 16)) if not args.betavae else 0.0
            a.rate_prior = float(rs.uniform(1, 10)) if not args.betavae else 1.0
        session.echo(f"run {k + 1}/{args.num_runs}: seed {seed}" + (
            f", beta {a.beta:.3f} gamma {a.gamma:.3f} rate-prior {a.rate_prior:.3f}" if args.random_search else ""))
        s = run_one(a, seed, dataset, data_path, session)
        results.append({**s, "beta": a.beta, "gamma": a.gamma, "rate_prior": a.rate_prior,
                        "experiment_dir": experiment_dir(a)})
    if not session.is_main:  # the runs' scores live on rank 0
        return {}
    scores = np.array([r["mcc"] for r in results], dtype=float)
    mean, std = float(np.nanmean(scores)), float(np.nanstd(scores))
    kind = "random_search" if args.random_search else "random_seeds"
    out = (Path(args.output_dir) / (args.experiment_dir or data_dir_name(args))
           / f"{kind}_{args.model}_{args.seed}.json")
    aggregate = {"mcc_mean": mean, "mcc_std": std, "runs": results}
    atomic_write_json(out, aggregate)
    if args.random_search:
        best = max(results, key=lambda r: -1 if math.isnan(r["mcc"]) else r["mcc"])
        print(f"best: MCC {best['mcc']:.4f} seed {best['seed']} beta {best['beta']:.3f} "
              f"gamma {best['gamma']:.3f} rate-prior {best['rate_prior']:.3f}")
    print(f"MCC over {len(scores)} runs: {mean:.4f} ± {std:.4f} (mean ± std); results in {out}", flush=True)
    return aggregate
