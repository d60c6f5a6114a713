"""``clica 3dident``: the 3DIdent experiment (the original ``main_3dident.py``).

Every flag of the original keeps its name, default and meaning. Additions of
our own (a run folder, seed, device, image cache and size, a held-out test
folder, the identity scale) are grouped under "clica additions" in ``--help``.

Modes: ``supervised`` (regress the latents, MSE or negative R²),
``unsupervised`` (InfoNCE: dot product on the periodic latents plus Lp/vMF on
the rest) and ``test`` (evaluate a loaded encoder on a folder).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import extras
from ..errors import ClicaError
from ..models import to_device
from ..params import Interval, ParameterError
from ..resources import require_memory, require_per_core
from ..runs import (
    RunDir,
    atomic_torch_save,
    check_fields,
    load_module_state,
    load_torch_file,
    resolve_device,
    seed_everything,
)
from ..training import Solver, require_finite
from .config import Config, flag
from .flags import resume_hint
from .skeleton import Experiment, Session

DESCRIPTION = (
    "Disentanglement with InfoNCE/Contrastive Learning - 3DIdent. Train a ResNet encoder on image "
    "pairs of a 3DIdent folder (the published release or `clica render` output) whose latents are "
    "sampled from a marginal and conditional and matched to the nearest rendered latent; report "
    "linear R², MCC and per-latent errors against the true latents."
)

# settings that define a run: a run folder is only resumed with the same ones
RUN_DEFINING = (
    "offline_dataset", "mode", "encoder", "batch_size", "lr", "optimizer", "position_only",
    "rotation_and_color_only", "rotation_only", "color_only", "no_spotlight_position",
    "no_spotlight_color", "no_spotlight", "non_periodic_rotation_and_color", "dummy_mixing",
    "identity_solution", "identity_mixing_and_solution", "box_constraint", "sphere_constraint",
    "supervised_loss", "unsupervised_loss", "non_periodical_conditional", "sigma", "image_size",
    "approximate_dataset_nn_search", "tau", "self_weight",
)

# what a run folder's checkpoint.pt holds (see run()'s checkpoint())
CHECKPOINT_FIELDS = {"step": int, "model": dict}
CHECKPOINT_OPTIONAL = {"optimizer": (dict, type(None)), "window": dict, "window.sums": dict, "window.count": int}


def _constraint(value: str) -> str | None:
    if value in ("None", "none"):
        return None
    if value not in ("fix", "learnable"):
        raise argparse.ArgumentTypeError(f"invalid choice {value!r} (choose None, fix or learnable)")
    return value


def _image_size(value: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must be N or HxW, got {value!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"image size must be N or HxW with sides ≥ 8, got {value!r}")
    return tuple(parts)


def image_size_of(value) -> tuple[int, int] | None:
    """``image_size`` as the CLI gives it, (H, W), from a config's 32, "32", "32x48" or (32, 48)."""
    if value is None:
        return None
    text = "x".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    try:
        return _image_size(text)
    except argparse.ArgumentTypeError as exc:
        raise ClicaError(f"--image-size: {exc}") from None


# ---------------------------------------------------------------------------
# the config and its checks
# ---------------------------------------------------------------------------

def _save_every_needs_save_model(args) -> None:
    if args.save_every is not None and args.save_model is None:
        raise ParameterError("{} requires {} to be set", "save_every", "save_model")


def _one_constraint(args) -> None:
    if args.box_constraint is not None and args.sphere_constraint is not None:
        raise ParameterError("{} and {} contradict each other: choose one", "box_constraint", "sphere_constraint")


def _model_files(args) -> None:
    if args.save_model is not None:
        parent = Path(args.save_model).parent
        if not parent.is_dir():
            raise ClicaError(f"folder {parent} to save the model in does not exist")
    if args.load_model is not None and not Path(args.load_model).is_file():
        raise ParameterError.of("load_model", f"{args.load_model}: no such file")


def _identity(args) -> None:
    if args.identity_solution and args.identity_mixing_and_solution:
        raise ParameterError("{} and {} contradict each other: choose one", "identity_solution",
                             "identity_mixing_and_solution")
    if args.identity_solution and args.load_model:
        raise ParameterError("{} has no parameters to load: drop {}", "identity_solution", "load_model")
    if args.identity_scale == 0:
        raise ParameterError.of("identity_scale", "must not be 0: the identity solution would map every latent to 0")


def _cores(args) -> None:
    if args.threads is not None:
        require_per_core(args.threads, "--threads", " (torch's choice)")
    require_per_core(args.workers, "--workers", " (in the training process)")


def _batch(args) -> None:
    if args.batch_size < (2 if args.mode == "unsupervised" else 1):
        raise ParameterError.of("batch_size",
                                f"must be at least 2 (negatives come from the batch), got {args.batch_size}")


POSITIVE = Interval(float, 0, closed="neither")
ADDITIONS = "clica additions"


@dataclass
class ThreeDIdentConfig(Config):
    """Every setting of a 3DIdent run: one field per flag of ``clica 3dident`` (the original
    ``main_3dident.py`` flags and ours), with the same defaults; ``offline_dataset`` is required.
    Run it with :func:`run_3dident`."""

    batch_size: int = flag(
        "--batch-size", default=512, type=int,
        help="Images per step (unsupervised: pairs; the other images of the batch are the negatives)")
    n_eval_samples: int = flag(
        "--n-eval-samples", default=4096, type=int,
        checks=(Interval(int, 8, says="must be at least 8 (the linear fit uses a train/test split), got {value}"),),
        help="Number of samples for each evaluation")
    lr: float = flag(
        "--lr", default=1e-4, type=float, checks=(POSITIVE,),
        help="Learning rate of the optimizer")
    optimizer: str = flag(
        "--optimizer", default="adam", choices=("adam", "sgd"),
        help="Optimizer of the encoder")
    iterations: int = flag(
        "--iterations", default=30000, type=int, checks=(Interval(int, 0),),
        help="How long to train the model")
    n_log_steps: int = flag(
        "--n-log-steps", default=100, type=int, checks=(Interval(int, 1),),
        help="How often to calculate scores and print them")
    load_model: str | None = flag(
        "--load-model", default=None, type=str,
        help="Path from where to load the model")
    save_model: str | None = flag(
        "--save-model", default=None, type=str,
        help="Path where to save the model")
    save_every: int | None = flag(
        "--save-every", default=None, type=int, checks=(Interval(int, 0, closed="neither"),),
        help="After how many steps to save the model (will always be saved at the end); "
             "writes SAVE_MODEL.iteration_STEP")
    no_cuda: bool = flag(
        "--no-cuda", default=False,
        help="Do not use a GPU even if one is available")
    position_only: bool = flag(
        "--position-only", default=False,
        help="Use only the 3 position latents")
    rotation_and_color_only: bool = flag(
        "--rotation-and-color-only", default=False,
        help="Use only the rotation, spotlight and hue latents")
    rotation_only: bool = flag(
        "--rotation-only", default=False,
        help="Use only the rotation (and spotlight) latents")
    color_only: bool = flag(
        "--color-only", default=False,
        help="Use only the hue latents")
    no_spotlight_position: bool = flag(
        "--no-spotlight-position", default=False,
        help="Drop the spotlight angle (non-periodic setting only)")
    no_spotlight_color: bool = flag(
        "--no-spotlight-color", default=False,
        help="Drop the spotlight hue (non-periodic setting only)")
    no_spotlight: bool = flag(
        "--no-spotlight", default=False,
        help="Both --no-spotlight-position and --no-spotlight-color")
    non_periodic_rotation_and_color: bool = flag(
        "--non-periodic-rotation-and-color", default=False,
        help="Treat rotations and hues as box latents (the 10-column published release) "
             "instead of embedding them on a sphere")
    dummy_mixing: bool = flag(
        "--dummy-mixing", default=False,
        help="Replace the images by a random invertible MLP of the latents (an MLP encoder is trained)")
    identity_solution: bool = flag(
        "--identity-solution", default=False,
        help="Use the identity (flattening) as encoder: scores of the observations themselves")
    identity_mixing_and_solution: bool = flag(
        "--identity-mixing-and-solution", default=False,
        help="Use h(z) = z·scale as the encoder's output (loss of the true solution); "
             "the scale comes from --identity-scale (the original asked for it interactively)")
    approximate_dataset_nn_search: bool = flag(
        "--approximate-dataset-nn-search", default=False,
        help="Match latents with faiss's approximate IVF/HNSW index instead of exact search")
    offline_dataset: str | None = flag(
        "--offline-dataset", default=None, type=str, required=True,
        help="3DIdent folder: raw_latents.npy, latents.npy, images/")
    faiss_omp_threads: int = flag(
        "--faiss-omp-threads", default=16, type=int, checks=(Interval(int, 1),),
        help="Threads for nearest-neighbour search (faiss's OpenMP threads; kd-tree query "
             "threads, capped at the CPU count)")
    box_constraint: str | None = flag(
        "--box-constraint", default=None, type=_constraint, choices=(None, "fix", "learnable"),
        help="Squash the non-periodic outputs into a box (sigmoid), fixed or learnable size")
    sphere_constraint: str | None = flag(
        "--sphere-constraint", default=None, type=_constraint, choices=(None, "fix", "learnable"),
        help="Project the non-periodic outputs on a sphere, fixed or learnable radius")
    workers: int = flag(
        "--workers", default=0, type=int,
        help="DataLoader worker processes that make pairs (0 = in the main process, "
             "which is what the original did despite its help text '0=#cpus')")
    mode: str = flag(
        "--mode", default="supervised", choices=("supervised", "unsupervised", "test"),
        help="supervised: regress the true latents (trains with labels; the original's default, "
             "a baseline); unsupervised: the paper's contrastive method (InfoNCE on pairs, no "
             "labels); test: only evaluate the encoder of --load-model")
    supervised_loss: str = flag(
        "--supervised-loss", default="mse", type=str, choices=("mse", "r2"),
        help="Loss of --mode supervised: mean squared error, or negative R² of the latents")
    unsupervised_loss: str = flag(
        "--unsupervised-loss", default="l2", type=str, choices=("l1", "l2", "l3", "vmf"),
        help="Loss on the non-periodic latents: Lp InfoNCE or normalised dot product (vmf)")
    non_periodical_conditional: str = flag(
        "--non-periodical-conditional", default="l2", choices=("l1", "l2", "l3"),
        help="Conditional of the non-periodic latents: Laplace, normal, generalized normal p=3")
    sigma: float = flag(
        "--sigma", default=0.1, type=float, checks=(POSITIVE,),
        help="Sigma of the conditional distribution (for vMF: 1/kappa)")
    encoder: str = flag(
        "--encoder", default="rn18", choices=("rn18", "rn50", "rn101", "rn152", "rn151"),
        help="ResNet depth (rn151, as printed by the original's help, means ResNet-152)")
    run_dir: str | None = flag(
        "--run-dir", default=None, group=ADDITIONS,
        help="Run folder (config, metrics.jsonl, checkpoints, summary, figure): new, empty, or a clica "
             "3dident run, which the same command resumes; a folder holding anything else is refused "
             "(default: runs/3dident-MODE-TIME)")
    seed: int | None = flag(
        "--seed", default=None, type=int, group=ADDITIONS,
        help="Seed of everything, 0 … 2^32-1. If omitted: training draws one (recorded in config.json), "
             "--mode test uses 0, so the same evaluation prints the same scores on every call")
    device: str | None = flag(
        "--device", default=None, group=ADDITIONS,
        help="torch device (default: cuda if available, else cpu)")
    identity_scale: float = flag(
        "--identity-scale", default=1.0, type=float, group=ADDITIONS,
        help="Scale s of h(z) = s·z for --identity-mixing-and-solution")
    image_cache: str = flag(
        "--image-cache", default="auto", choices=("auto", "build", "off"), group=ADDITIONS,
        help="Decoded-image cache (one memory-mapped uint8 array): auto = use it if built, "
             "build = build it first (once, with progress), off = decode PNGs every step")
    cache_dir: str | None = flag(
        "--cache-dir", default=None, group=ADDITIONS,
        help="Where the image cache lives (default: DATASET/cache)")
    image_size: str | None = flag(
        "--image-size", default=None, type=_image_size, group=ADDITIONS,
        help="Resize images to N or HxW (default: as stored, e.g. 224 for the release)")
    test_dataset: str | None = flag(
        "--test-dataset", default=None, group=ADDITIONS,
        help="Evaluate during training on this held-out 3DIdent folder instead of on "
             "samples of the training folder (its images are normalised with the training "
             "folder's statistics)")
    normalization: str = flag(
        "--normalization", default="model", choices=("model", "folder"), group=ADDITIONS,
        help="--mode test: normalise the images with the statistics the --load-model model was trained "
             "with (model; saved with it by clica) or with the test folder's own stats.json, else the "
             "published constants (folder). A model without statistics (the original's) uses the "
             "folder's")
    nn_backend: str = flag(
        "--nn-backend", default="kdtree", choices=("kdtree", "faiss"), group=ADDITIONS,
        help="Exact nearest-neighbour search: scipy kd-tree (fast on these low-dimensional "
             "latents) or faiss brute force (IndexFlatL2, as the original); "
             "--approximate-dataset-nn-search always uses faiss")
    checkpoint_every: int = flag(
        "--checkpoint-every", default=500, type=int, checks=(Interval(int, 1),), group=ADDITIONS,
        help="Steps between resumable checkpoints in the run folder")
    threads: int | None = flag(
        "--threads", default=None, type=int, group=ADDITIONS,
        help="torch CPU threads (default: torch's choice)")
    tau: float = flag(
        "--tau", default=1.0, type=float, checks=(POSITIVE,), group=ADDITIONS,
        help="Temperature of the InfoNCE losses (the original: 1)")
    self_weight: float = flag(
        "--self-weight", default=1.0, type=float, checks=(Interval(float, 0),), group=ADDITIONS,
        help="Weight of the anchor's own term in the InfoNCE log-sum-exp (the original's rolled "
             "negatives: 1); see clica mlp --self-weight")

    checks = (_save_every_needs_save_model, _one_constraint, _model_files, _identity, _cores, _batch)


def add_arguments(p: argparse.ArgumentParser) -> None:
    ThreeDIdentConfig.add_arguments(p)


def check_arguments(args) -> None:
    """The original's assertions, as one-line errors (plus a few checks of our own), after the flags that
    stand for others are expanded."""
    if args.no_spotlight:
        args.no_spotlight_color = args.no_spotlight_position = True
    args.validate()
    if args.encoder == "rn151":
        print("note: --encoder rn151 is taken as ResNet-152 (the original's help listed rn151)")
        args.encoder = "rn152"


def layout_for(args):
    """The latent layout chosen by a run's flags (``args`` or a saved ``config.json`` as a namespace)."""
    from ..data.threedident import latent_layout

    return latent_layout(
        position_only=args.position_only, rotation_and_color_only=args.rotation_and_color_only,
        rotation_only=args.rotation_only, color_only=args.color_only,
        no_spotlight_position=args.no_spotlight_position, no_spotlight_color=args.no_spotlight_color,
        non_periodic_rotation_and_color=args.non_periodic_rotation_and_color)


# ---------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------

def build_encoder(args, layout) -> nn.Module:
    """f: the identity (flatten), the MLP of --dummy-mixing, or a ResNet, with the rescaling head."""
    from ..models import mlp_encoder
    from ..models.resnet import RescalingHead, resnet_encoder

    n = layout.dim
    if args.identity_solution:
        return nn.Flatten()
    head = RescalingHead(layout.n_non_angular, layout.n_angular, args.box_constraint, args.sphere_constraint)
    if args.dummy_mixing:
        return nn.Sequential(mlp_encoder(n, n, [10 * n, 50 * n, 50 * n, 50 * n, 50 * n, 10 * n]), head)
    return resnet_encoder(args.encoder, n, head)


def build_loss(args, layout):
    """The unsupervised loss of the original for the layout (blocks: non-periodic, periodic)."""
    from ..conditionals import CONDITIONALS, by_name
    from ..losses import BlockLoss

    common = dict(tau=args.tau, self_weight=args.self_weight)
    spherical = CONDITIONALS["vmf"].loss(**common)
    # the vMF loss projects the non-periodic outputs onto the unit sphere (the original's normalised dot product)
    nonspherical = by_name(args.unsupervised_loss).loss(project=True, **common)
    k, n = layout.n_non_angular, layout.dim
    if layout.n_angular == 0:
        return nonspherical
    if k == 0:
        return spherical
    return BlockLoss([(nonspherical, 0, k), (spherical, k, n)])


def encoder_name(args, layout) -> str:
    """How errors name the encoder a file is loaded into."""
    kind = "the MLP encoder" if args.dummy_mixing else f"the {args.encoder} encoder"
    return f"{kind} ({layout.dim} latents)"


def model_file(f: nn.Module, normalization) -> dict:
    """What ``--save-model`` writes: the encoder's state and the image statistics it was trained with."""
    out = {"model": f.state_dict()}
    if normalization is not None:
        mean, std = normalization[:2]
        out["normalization"] = {"mean": list(mean), "std": list(std)}
    return out


def load_state(f: nn.Module, path, name: str = "this encoder") -> tuple | None:
    """Load a state dict saved by us or by the original ``main_3dident.py``; return the image
    statistics (mean, std) the model was trained with when the file carries them, else ``None``.

    The original wrapped f in DataParallel (``module.`` prefixes) and kept its
    rescaling layers either as ``3.r`` / ``3.max_abs_bound`` or inside a lambda
    (not saved at all); those are mapped onto our head, and head parameters the
    file lacks keep their initial values, exactly as loading did in the original.
    The file is read without running code (``weights_only``); one that does not
    fit ``f`` (``name`` in the message) is a one-line error.
    """
    state = load_torch_file(path)
    normalization = None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        # our model file or run-folder checkpoint
        check_fields(state, path, optional={"normalization": dict, "normalization.mean": list,
                                            "normalization.std": list}, what="a 3dident model")
        if "normalization" in state:
            mean, std = state["normalization"].get("mean"), state["normalization"].get("std")
            if not (len(mean or []) == len(std or []) == 3 and all(isinstance(v, float) for v in mean + std)
                    and min(std) > 0):
                raise ClicaError(f"{path} holds malformed image statistics: mean {mean}, std {std}")
            normalization = (tuple(mean), tuple(std))
        state = state["model"]
    if not isinstance(state, dict):
        raise ClicaError(f"cannot load {path} into {name}: it holds a {type(state).__name__}, not a state dict")
    state = {(k[7:] if isinstance(k, str) and k.startswith("module.") else k): v for k, v in state.items()}
    head = f[-1] if isinstance(f, nn.Sequential) else None
    from ..models.resnet import RescalingHead

    if isinstance(head, RescalingHead):
        i = len(f) - 1
        if f"{i}.max_abs_bound" in state:  # the original's learnable SoftclipLayer
            state[f"{i}.non_periodic.width"] = state.pop(f"{i}.max_abs_bound")
        if f"{i}.r" in state:  # the original's learnable RescaleLayer
            part = "periodic" if head.n_non_angular == 0 else "non_periodic"
            state[f"{i}.{part}.r"] = state.pop(f"{i}.r")
    head_prefix = f"{len(f) - 1}." if isinstance(head, RescalingHead) else None
    load_module_state(f, state, path, name, may_lack=lambda k: bool(head_prefix) and k.startswith(head_prefix))
    return normalization


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------

class EvalSet:
    """A fixed set of (z, image index) to score the encoder on."""

    def __init__(self, data, indices: np.ndarray, batch_size: int, requested: int | None = None):
        from ..metrics import constant_columns

        self.data, self.indices, self.batch_size = data, np.asarray(indices), batch_size
        self.z = torch.from_numpy(data.latents[self.indices])
        if requested is not None and len(self.indices) < requested:
            print(f"note: --n-eval-samples {requested} but {data.folder.root} holds {len(self.indices)} "
                  f"images: scoring on all {len(self.indices)}")
        constant = constant_columns(self.z)
        if constant:
            names = ", ".join(data.layout.names[i] for i in constant) if data.layout else str(constant)
            raise ClicaError(f"latent(s) {names} take a single value in {data.folder.root}: R² and MCC cannot "
                             "score a latent that does not vary; drop it with a layout flag (say "
                             "--no-spotlight-position for a --fixed-spotlight render)")

    def chunks(self):
        for s in range(0, len(self.indices), self.batch_size):
            idx = self.indices[s:s + self.batch_size]
            x = self.data.loader.load(idx) if self.data.images else None
            yield self.z[s:s + self.batch_size], x


def evaluate(args, f, g, evalset: EvalSet, device) -> tuple[dict, np.ndarray, np.ndarray]:
    """Linear R² (train/test split), MCC, per-latent MSE and linear-fit MSE, as the original printed."""
    from ..metrics import linear_fit, mcc

    was_training = f.training
    f.eval()
    hs = []
    with torch.no_grad():
        for z, x in evalset.chunks():
            if args.identity_mixing_and_solution:
                h = z
            else:
                if args.dummy_mixing:
                    x = g(z.to(device))
                h = f(x.to(device, non_blocking=True)).float().cpu()
            hs.append(h)
    f.train(was_training)
    z = evalset.z.numpy().astype(np.float64)
    h = require_finite(torch.cat(hs), "the encoder's outputs").numpy().astype(np.float64)
    fit = linear_fit(z, h, train_test_split=True)
    record = {"r2": fit.r2}
    record["mcc"] = mcc(z, h).score if h.shape[1] >= z.shape[1] else float("nan")
    record["r2_per_latent"] = [round(float(v), 4) for v in fit.r2_per_dim]
    if h.shape == z.shape and not args.identity_solution:
        record["mse"] = [round(float(v), 5) for v in ((z - h) ** 2).mean(0)]
    record["lin_mse"] = [round(float(v), 5) for v in fit.mse_per_dim]
    return record, z, h


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------

def _config(args) -> dict:
    return {"command": "3dident", **args.to_dict()}


def _open_run(args, session: Session) -> tuple[RunDir, dict | None]:
    """The run folder (locked by ``session``) after checking a saved run's settings, and its checkpoint if any."""
    run = session.run
    state = None
    old = session.saved_config()
    if old is not None:
        session.require_same(old, args.to_dict(), RUN_DEFINING, "use another --run-dir or the same flags to resume")
        if args.seed is None:
            args.seed = run.saved_seed(old, required=False)
        state = session.load(run.file("checkpoint.pt"), CHECKPOINT_FIELDS, CHECKPOINT_OPTIONAL,
                             what="a 3dident checkpoint")
    return run, state


def run(args) -> int:
    run_3dident(ThreeDIdentConfig.from_args(args))
    return 0


def run_3dident(cfg, run_dir=None) -> dict:
    """Train (or with ``mode="test"`` evaluate) as ``clica 3dident`` does with these settings (a
    :data:`ThreeDIdentConfig`), in ``run_dir`` (default: ``cfg.run_dir``, else a new folder under
    runs/); return the summary written to ``summary.json``."""
    extras.require("3dident")
    if cfg.offline_dataset is None:
        raise ClicaError("--offline-dataset is required: the 3DIdent folder to train on")
    args = cfg.copy(**({"run_dir": str(run_dir)} if run_dir is not None else {}))
    args.image_size = image_size_of(args.image_size)
    session = Session(resolve_device(args.device, args.no_cuda))
    if args.run_dir is None:
        args.run_dir = session.default_folder(f"3dident-{args.mode}-{{time}}")
    return _run(args, session)


def _run(args, session: Session) -> dict:
    from ..data.threedident import ThreeDIdentFolder

    check_arguments(args)
    layout = layout_for(args)
    needs_images = not (args.dummy_mixing or args.identity_mixing_and_solution)
    folder = ThreeDIdentFolder.open(args.offline_dataset, require_images=needs_images)
    layout.select(folder.raw_latents, folder.root)  # clear error on a column mismatch, before any work
    test_folder = None
    if args.test_dataset:
        test_folder = ThreeDIdentFolder.open(args.test_dataset, require_images=needs_images)
        layout.select(test_folder.raw_latents, test_folder.root)

    if needs_images and args.mode == "supervised":
        _require_batch_norm_statistics(args, session, folder)
    _require_memory(args, session, folder, layout, needs_images)
    with session.open(args.run_dir, "3dident"):
        return _train(args, session, layout, folder, test_folder, needs_images)


def _require_batch_norm_statistics(args, session: Session, folder) -> None:
    """A ResNet pools its input 32-fold; in training mode each BatchNorm needs more than one value per
    channel, so one image of at most 32 px per process cannot train (torch would fail at the first step)."""
    side = max(args.image_size or folder.image_shape())
    per_process = session.local_batch(args.batch_size)
    if per_process * math.ceil(side / 32) ** 2 < 2:
        raise ClicaError(f"--batch-size {args.batch_size} gives {per_process} image of {side} px per process: "
                         "the ResNet's BatchNorm layers see a single value per channel and cannot train; use "
                         "--batch-size ≥ 2 (per process) or images larger than 32 px")


def _require_memory(args, session: Session, folder, layout, needs_images: bool) -> None:
    """Refuse, before anything is allocated, a batch or an evaluation set that cannot fit in memory.

    A low estimate: a step's images (two per pair in unsupervised mode) with the ResNet's
    activations, at least ten times the input (its first layers alone hold more), and the
    evaluation's latents, matched latents and encodings, float32.
    """
    images = session.local_batch(args.batch_size) * (2 if args.mode == "unsupervised" else 1)
    size = tuple(args.image_size or folder.image_shape()) if needs_images else ()
    pixels = 3 * math.prod(size) if size else 0
    evaluation = args.n_eval_samples * (2 * folder.dim + 2 * layout.dim)
    require_memory(4 * (11 * images * pixels + evaluation),
                   f"--batch-size {args.batch_size} with --n-eval-samples {args.n_eval_samples}"
                   + (f" at {'x'.join(map(str, size))} px" if size else ""),
                   "lower them" + (" or --image-size" if size else ""))


class ThreeDIdentExperiment(Experiment):
    """One 3DIdent training: the encoder f (and --dummy-mixing's g) on pairs drawn from ``folder``, scored
    on ``test_folder`` or on samples of ``folder``."""

    def __init__(self, args, session: Session, layout, folder, test_folder, needs_images: bool):
        super().__init__(session)
        self.args, self.layout, self.folder, self.test_folder = args, layout, folder, test_folder
        self.device = session.device
        self.data_kw = dict(images=needs_images, image_size=args.image_size, cache=args.image_cache,
                            cache_dir=args.cache_dir)
        self.rng = np.random.default_rng(args.seed + 1)  # the evaluation samples
        self.path = session.run.file("checkpoint.pt")
        self.last_eval: dict = {}

    def build(self) -> None:
        """f, g, the losses and (when something trains) the solver."""
        from ..losses import SUPERVISED_LOSSES

        args, echo = self.args, self.session.echo
        self.f = to_device(build_encoder(args, self.layout), self.device)
        self.g = None
        if args.dummy_mixing:
            from ..mixing import invertible_mlp

            self.g = invertible_mlp(self.layout.dim, n_layers=3, act_fct="leaky_relu", cond_thresh_ratio=0.0,
                                    n_iter_cond_thresh=25000, seed=args.seed, say=echo).to(self.device)
            for prm in self.g.parameters():
                prm.requires_grad_(False)
        if args.identity_mixing_and_solution:
            echo(f"Using identity function for h(z) = f(g(z)) = {args.identity_scale}·z")
        params = [q for q in self.f.parameters() if q.requires_grad]
        self.solver = None
        if params and not args.identity_mixing_and_solution and args.mode != "test":
            self.solver = Solver(torch.optim.Adam(params, lr=args.lr) if args.optimizer == "adam"
                                 else torch.optim.SGD(params, lr=args.lr))
        self.supervised_loss = SUPERVISED_LOSSES[args.supervised_loss]
        self.contrastive_loss = build_loss(args, self.layout)

    def restore(self, state: dict) -> None:
        args = self.args
        load_module_state(self.f, state["model"], self.path, encoder_name(args, self.layout))
        if self.solver is not None and state.get("optimizer"):
            self.solver.restore(self.path, state["optimizer"])
        self.start, self.window = state["step"], state.get("window", {})
        if self.start < 0:
            raise ClicaError(f"{self.path} is not a 3dident checkpoint: step {self.start}")
        self.session.require_not_past(self.start, args.iterations, "--iterations")
        self.session.echo(f"resuming {self.session.run.path} from step {self.start}")

    def prepare(self, state: dict | None) -> None:
        """The pairs (batch i of each rank's stream is seeded from (stream seed, i): a resumed run continues
        it exactly, so ``state`` holds nothing more of it) and the evaluation set."""
        from ..data.threedident import ThreeDIdentPairs, ThreeDIdentSequential, latent_space_for

        args, session, folder, echo = self.args, self.session, self.folder, self.session.echo
        self.model = session.wrap(self.f)  # f itself in one process
        latent_space = latent_space_for(self.layout, args.non_periodical_conditional, args.sigma)
        t_index = time.monotonic()
        self.pairs = ThreeDIdentPairs(folder.root, latent_space, self.layout, folder=folder,
                                      batch_size=session.local_batch(args.batch_size),
                                      approximate=args.approximate_dataset_nn_search, nn_backend=args.nn_backend,
                                      nn_threads=args.faiss_omp_threads, seed=session.stream_seed(args.seed),
                                      uint8=self.device.type == "cuda", start_batch=self.start, **self.data_kw)
        echo(f"nearest-neighbour index over {folder.n} latents built in {time.monotonic() - t_index:.1f}s "
             f"({'approximate faiss IVF/HNSW' if args.approximate_dataset_nn_search else 'exact, ' + args.nn_backend})")
        _describe_images(self.pairs, echo)
        if self.test_folder is not None:
            # the encoder sees held-out images normalised exactly as its training images
            test_data = ThreeDIdentSequential(
                self.test_folder.root, self.layout, folder=self.test_folder, **self.data_kw,
                normalization=(*self.pairs.normalization, f"the training folder's ({self.pairs.normalization_source})"))
            self.evalset = EvalSet(test_data, self.rng.permutation(self.test_folder.n)[:args.n_eval_samples],
                                   args.batch_size, requested=args.n_eval_samples)
        else:
            idx, _ = self.pairs.sample_indices(args.n_eval_samples, seed=args.seed + 2)
            self.evalset = EvalSet(self.pairs, idx, args.batch_size)
        if args.workers > 0:
            self.batches = iter(torch.utils.data.DataLoader(self.pairs, batch_size=None, num_workers=args.workers,
                                                            pin_memory=self.device.type == "cuda", prefetch_factor=2,
                                                            worker_init_fn=_worker_init))
        else:
            self.batches = iter(self.pairs)

    def _input(self, x):
        x = x.to(self.device, non_blocking=True)
        return self.pairs.loader.normalize(x) if x.dtype == torch.uint8 else x  # normalised on the device

    def step(self, i: int) -> dict:
        args, session, g = self.args, self.session, self.g
        (z1, z2), (x1, x2) = next(self.batches)
        z1 = z1.to(self.device, non_blocking=True)
        if args.dummy_mixing:
            x1 = g(z1)
        elif x1 is not None:
            x1 = self._input(x1)
        if args.mode == "supervised":
            if args.identity_mixing_and_solution:
                h1 = z1 * args.identity_scale
            else:
                h1 = self.model(x1)
            loss = self.supervised_loss(h1, z1)
            stats = {"loss": session.mean(float(loss.detach()))}  # a loss of this process's batch
        else:
            z2 = z2.to(self.device, non_blocking=True)
            if args.identity_mixing_and_solution:
                h1, h2 = z1 * args.identity_scale, z2 * args.identity_scale
            else:
                x2 = g(z2) if args.dummy_mixing else self._input(x2)
                if session.world.distributed:  # DDP: one forward pass per backward pass
                    h1, h2 = self.model(torch.cat([x1, x2])).chunk(2)
                else:
                    h1, h2 = self.f(x1), self.f(x2)
            out = session.contrastive(self.contrastive_loss, h1, h2)
            loss = out.total
            stats = {"loss": loss, "loss_std": out.per_item.detach().std()}
            if len(out.parts) > 1:
                stats.update({f"loss_{k}": v for k, v in out.parts.items()})
        if self.solver is not None and loss.requires_grad:
            self.solver.step(loss)
        return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in stats.items()}

    def evaluate(self, i: int) -> dict:
        record, z, h = evaluate(self.args, self.f, self.g, self.evalset, self.device)
        self.last_eval.update(record=record, z=z, h=h)
        return record

    def checkpoint_state(self, i: int) -> dict:
        return {**model_file(self.f, self.pairs.normalization),
                "optimizer": self.solver.optimizer.state_dict() if self.solver else None,
                "step": i, "seed": self.args.seed, "window": self.window}

    def checkpoint(self, i: int, force: bool = False) -> None:
        """checkpoint.pt every ``--checkpoint-every`` steps, at the end and when stopped; with
        ``--save-every`` also the model file SAVE_MODEL.iteration_STEP."""
        args = self.args
        final = i == args.iterations
        if force or final or i % args.checkpoint_every == 0:
            self.session.save(self.checkpoint_state(i), self.path)
        if args.save_model and args.save_every and i % args.save_every == 0 and not final:
            path = f"{args.save_model}.iteration_{i}"
            atomic_torch_save(path, model_file(self.f, self.pairs.normalization))
            self.session.echo(f"Model saved as {path}")


def _train(args, session: Session, layout, folder, test_folder, needs_images: bool) -> dict:
    echo = session.echo  # one line per run, not one per process
    run_dir, state = _open_run(args, session)
    if args.mode == "test" and not session.is_main:
        return {}  # evaluation runs once
    args.seed = session.seed(args.seed, evaluation=args.mode == "test")
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    session.write_config({**_config(args), "latent_dimensions": layout.dimensions,
                          "latent_space": layout.describe(), "latent_names": list(layout.names)})

    echo(f"Using dataset: {folder.root} ({folder.n} images, raw latents {folder.dim}-d)")
    echo(f"Using latent dimensions: {None if layout.dimensions is None else list(layout.dimensions)} "
         f"-> {layout.describe()}")
    echo(f"#Latents: {layout.dim}, #Non-periodic latents: {layout.n_non_angular}, "
         f"#Periodic latents: {layout.n_angular}")
    processes = f"  processes: {session.world.size}" if session.world.distributed else ""
    echo(f"run folder: {run_dir.path}  seed: {args.seed}  device: {session.device}{processes}")

    experiment = ThreeDIdentExperiment(args, session, layout, folder, test_folder, needs_images)
    experiment.build()
    if args.mode == "test":
        return _test(experiment)
    if state is not None:
        experiment.restore(state)
    elif args.load_model is not None:
        load_state(experiment.f, args.load_model, encoder_name(args, layout))
        echo(f"Model loaded: {args.load_model}")
    session.truncate_metrics(experiment.start)
    experiment.prepare(state)

    t0 = time.monotonic()
    if experiment.start == args.iterations:
        echo(f"{run_dir.path} already finished {experiment.start} steps; evaluating")
        if session.is_main:
            experiment.evaluate(experiment.start)
    else:
        with resume_hint(args, f"--run-dir {run_dir.path}"):
            experiment.train(n_steps=args.iterations, log_every=args.n_log_steps, checkpoint_every=1,
                             desc=f"3dident {args.mode}", phase=args.mode)
    if not session.is_main:
        return {}  # rank 0 evaluated, and writes the model and the summary
    if args.save_model:
        atomic_torch_save(args.save_model, model_file(experiment.f, experiment.pairs.normalization))
        echo(f"Saving final model at: {args.save_model}")
    last = experiment.last_eval
    return _finish(session, last["record"], last["z"], last["h"], layout, args, elapsed=time.monotonic() - t0)


def _test(experiment: ThreeDIdentExperiment) -> dict:
    """``--mode test``: score the encoder of ``--load-model`` (or the identity) on the folder, once."""
    from ..data.threedident import ThreeDIdentSequential

    args, session, folder, echo = experiment.args, experiment.session, experiment.folder, experiment.session.echo
    model_normalization = None  # the image statistics the loaded model was trained with
    if args.load_model is not None:
        model_normalization = load_state(experiment.f, args.load_model, encoder_name(args, experiment.layout))
        echo(f"Model loaded: {args.load_model}")
    normalization = None
    if args.normalization == "model" and model_normalization is not None:
        normalization = (*model_normalization, f"the statistics {args.load_model} was trained with")
    elif args.normalization == "model" and experiment.data_kw["images"] and args.load_model:
        echo(f"note: {args.load_model} carries no image statistics (saved by the original code or an "
             "older clica); the test folder's are used")
    data = ThreeDIdentSequential(folder.root, experiment.layout, folder=folder, normalization=normalization,
                                 **experiment.data_kw)
    evalset = EvalSet(data, experiment.rng.permutation(folder.n)[:args.n_eval_samples], args.batch_size,
                      requested=args.n_eval_samples)
    _describe_images(data, echo)
    record, z, h = evaluate(args, experiment.f, experiment.g, evalset, session.device)
    echo(f"Lin. Disentanglement: {record['r2']:.6f}, MCC: {record['mcc']:.4f}, "
         f"MSE: {record.get('mse')}, lin. fit MSE: {record['lin_mse']}")
    session.run.log_metrics({"step": 0, "phase": "test", **record})
    return _finish(session, record, z, h, experiment.layout, args, elapsed=0.0)


def _worker_init(_):
    torch.set_num_threads(1)


def _describe_images(data, echo) -> None:
    if not data.images:
        echo("images: not loaded (latents only)")
        return
    src = "memory-mapped uint8 cache" if data.cached else "PNG decoding (build a cache with --image-cache build)"
    h, w = data.loader.size
    echo(f"images: {h}x{w} from {src}; normalised with {data.normalization_source}")


def _finish(session: Session, record: dict, z, h, layout, args, elapsed: float) -> dict:
    from ..plots import true_vs_predicted

    def figure():
        if not z.shape[1] <= h.shape[1] <= 64:
            return None
        path = session.run.file("true_vs_predicted.png")
        true_vs_predicted(z, h, path, names=list(layout.names),
                          title=f"3DIdent {args.mode}: R² {record['r2']:.3f}, MCC {record['mcc']:.3f}")
        return path

    summary = {"mode": args.mode, "seed": args.seed, "iterations": args.iterations,
               "train_seconds": round(elapsed, 1), **record}
    session.finish(summary, figure)
    session.echo(f"final: linear R² {record['r2']:.4f}  MCC {record['mcc']:.4f}  "
                 f"(summary: {session.run.file('summary.json')})")
    if math.isnan(record["mcc"]):
        session.echo("note: MCC needs at least as many outputs as latents")
    return summary
