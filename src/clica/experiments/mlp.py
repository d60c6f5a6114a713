"""The MLP-mixing experiment (the original ``main_mlp.py``).

Latents z ~ p(z) and positives z~ ~ p(z~|z) on a box, sphere or R^n are pushed
through a frozen random invertible MLP g; an MLP encoder f is trained on
(g(z), g(z~)) with an InfoNCE loss (Lp, or dot product for ``--p 0``), after a
supervised baseline trained with MSE on z. Scores: linear R² and MCC of f(g(z))
against z.

Use from Python with :class:`MLPConfig` and :func:`run_mlp`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import conditionals, latents, metrics, mixing, plots
from ..errors import ClicaError
from ..losses import mse_loss
from ..models import mlp_encoder
from ..params import Interval, ParameterError
from ..resources import require_memory
from ..runs import RunDir, check_seed, load_module_state, loading, resolve_device, seed_everything
from ..spaces import Box, Real, Sphere
from ..training import Solver, require_finite
from .config import Config, flag
from .flags import apply_preset, resume_hint
from .skeleton import Experiment, Session

DESCRIPTION = (
    "Disentanglement with InfoNCE/Contrastive Learning - MLP Mixing. Trains a supervised "
    "baseline (MSE on the true latents), then an unsupervised encoder with InfoNCE, on "
    "observations g(z) of a random invertible MLP g; reports linear R² and MCC "
    "('Perm. Disentanglement'). Writes config.json, metrics.jsonl, checkpoints, "
    "summary.json and latents_*.png to the run folder."
)

PRESETS = {
    # the original paper's settings are the defaults
    "paper": {},
    # a training recipe (not a setting): MCC ≥ 0.99 in minutes on 2 CPU cores for the headline setting
    "fast": {"batch_size": 1024, "lr": 3e-3, "lr_schedule": "cosine", "n_steps": 10000, "tau": 0.2, "self_weight": 0.01,
             "more_unsupervised": 1, "only_unsupervised": True, "n_log_steps": 250,
             "hidden_scale": 0.4, "encoder_norm": "layer"},
}
# the paper's headline setting (box, uniform marginal, Laplace conditional 0.05, L1 InfoNCE) with the fast recipe
PRESETS["headline"] = {**PRESETS["fast"], "c_p": 1, "p": 1}

# evaluation batches hold at least this many samples per latent: a linear fit or a correlation on
# fewer (say --batch-size 2) scores 1.0 whatever the encoder
MIN_EVAL_PER_LATENT = 100

EVAL_SIZE = 4096

# random matrices whose best condition number is the mixing's threshold (the original's n_iter_cond_thresh)
MIXING_POOL = 25000

# what checkpoint.pt holds (see MLPExperiment.checkpoint_state)
CHECKPOINT_FIELDS = {
    "phase": str, "phase_index": int, "step": int, "encoder": dict, "optimizer": dict,
    "scheduler": (dict, type(None)), "data_rng": torch.Tensor, "mixing": dict,
    "window": dict, "window.sums": dict, "window.count": int,
}


def _exclusive_phases(cfg: "MLPConfig") -> None:
    if cfg.only_supervised and cfg.only_unsupervised:
        raise ParameterError("{} and {} exclude each other", "only_supervised", "only_unsupervised")


def _exclusive_norms(cfg: "MLPConfig") -> None:
    if cfg.sphere_norm and cfg.box_norm:
        raise ParameterError("{} and {} exclude each other", "sphere_norm", "box_norm")


def _seed(cfg: "MLPConfig") -> None:
    check_seed(cfg.seed)


def _memory(cfg: "MLPConfig") -> None:
    require_memory(cfg.memory_bytes(), f"--n {cfg.n} with --batch-size {cfg.batch_size}, --hidden-scale "
                   f"{cfg.hidden_scale:g}, --n-mixing-layer {cfg.n_mixing_layer} and --rej-mult {cfg.rej_mult}",
                   "lower them")


def _mixing(cfg: "MLPConfig") -> None:
    mixing.check_mixing(cfg.n_mixing_layer, cfg.act_fct)


def _sampling(cfg: "MLPConfig") -> None:
    """A marginal or conditional the space cannot hold, or one too wide to sample on it, is refused here."""
    z, z_tilde = cfg.latent_space().sample_pair(256, torch.Generator().manual_seed(0))
    if not (torch.isfinite(z).all() and (z.std(0) > 0).all()):
        raise ParameterError(f"the marginal ({{}} {cfg.m_p:g}, {{}} {cfg.m_param:g}) gives latents that "
                             "are not finite or never vary on this space; choose another", "m_p", "m_param")
    if not (torch.isfinite(z_tilde).all() and (z_tilde != z).any()):
        raise ParameterError(f"the conditional ({{}} {cfg.c_p:g}, {{}} {cfg.c_param:g}) gives positives "
                             "that are not finite or equal their anchors; choose another", "c_p", "c_param")


OPTIONS = "clica options"
AT_LEAST_1 = Interval(int, 1)
POSITIVE = Interval(float, 0, closed="neither")


@dataclass
class MLPConfig(Config):
    """Every setting of an MLP-mixing run; field names are the original's flags."""

    n: int = flag("--n", "--n-latents", default=10, type=int, checks=(AT_LEAST_1,),
                  help="Dimensionality of the latents. Under torchrun write --n-latents: torchrun's own parser "
                       "takes --n for an abbreviation of its options.")
    space_type: str = flag("--space-type", default="box", type=str, choices=("box", "sphere", "unbounded"),
                           help="Latent space.")
    box_min: float = flag("--box-min", default=0.0, type=float,
                          help="Minimal value of the latent box (and of the --box-norm output box).")
    box_max: float = flag("--box-max", default=1.0, type=float,
                          help="Maximal value of the latent box (and of the --box-norm output box).")
    sphere_r: float = flag("--sphere-r", default=1.0, type=float,
                           help="Radius of the latent sphere (--space-type sphere).")
    m_p: float = flag("--m-p", default=0, type=float,
                      help="Marginal: 0 uniform, 1 Laplace, 2 normal, other p generalized normal (projected on a "
                           "sphere, truncated on a box).")
    m_param: float = flag("--m-param", default=1.0, type=float,
                          help="Parameter (scale) of the marginal; only used if it is not uniform.")
    c_p: float = flag("--c-p", default=2, type=float,
                      help="Conditional: 0 von Mises-Fisher (sphere only), 1 Laplace, 2 normal, other p generalized "
                           "normal.")
    c_param: float = flag("--c-param", default=0.05, type=float,
                          help="Parameter of the conditional: scale (Lp) or concentration κ (vMF).")
    rej_mult: int = flag("--rej-mult", default=3, type=int,
                         help="Memory/CPU trade-off of rejection sampling on the box: candidates drawn per pending "
                              "coordinate and round.")
    act_fct: str = flag("--act-fct", default="leaky_relu", type=str,
                        help="Activation of the mixing g: leaky_relu, smooth_leaky_relu, elu, softplus (relu and "
                             "max_out are refused: not invertible).")
    n_mixing_layer: int = flag("--n-mixing-layer", default=3, type=int,
                               help="Number of layers in the nonlinear mixing network g.")
    p: float = flag("--p", "--lp-exponent", default=2, type=float,
                    checks=(Interval(float, 0, says="must be ≥ 0 (0: dot-product loss), got {value}"),),
                    help="Exponent of the model's Lp similarity; 0 is the dot-product (SimCLR) loss with a fixed "
                         "unit-sphere output. Under torchrun write --lp-exponent: torchrun's own parser takes --p for "
                         "an abbreviation of its options.")
    tau: float = flag("--tau", default=1.0, type=float, checks=(POSITIVE,), help="Temperature τ of the InfoNCE loss.")
    self_weight: float = flag(
        "--self-weight", default=1.0, type=float, checks=(Interval(float, 0),), group=OPTIONS,
        help="Weight of the anchor's own term in the InfoNCE log-sum-exp (the original's rolled negatives contain "
             "the anchor: 1). A small weight such as 0.01 removes the compression of the recovered latents near the "
             "box faces that a weight of 1 causes with few negatives.")
    sphere_norm: bool = flag("--sphere-norm", default=False,
                             help="Normalize the encoder output to a sphere of learnable radius.")
    box_norm: bool = flag("--box-norm", default=False, help="Normalize the encoder output to a box of learnable size.")
    lr: float = flag("--lr", default=1e-4, type=float, checks=(POSITIVE,), help="Adam learning rate.")
    lr_schedule: str = flag("--lr-schedule", default="constant", choices=("constant", "cosine"), group=OPTIONS,
                            help="Learning-rate schedule over each phase.")
    batch_size: int = flag("--batch-size", default=6144, type=int,
                           checks=(AT_LEAST_1, Interval(int, 2, says="must be ≥ 2 (negatives come from the batch)")),
                           help="Batch size (negatives come from the batch).")
    n_steps: int = flag("--n-steps", default=100001, type=int, checks=(AT_LEAST_1,),
                        help="Supervised training steps (unsupervised: times --more-unsupervised).")
    more_unsupervised: int = flag(
        "--more-unsupervised", default=3, type=int, checks=(AT_LEAST_1,),
        help="How many times more steps the unsupervised model trains than the supervised one.")
    only_supervised: bool = flag("--only-supervised", default=False, help="Only train the supervised model.")
    only_unsupervised: bool = flag("--only-unsupervised", default=False, help="Only train the unsupervised model.")
    n_log_steps: int = flag("--n-log-steps", default=250, type=int, checks=(AT_LEAST_1,),
                            help="Evaluate and log every this many steps.")
    num_eval_batches: int = flag("--num-eval-batches", default=10, type=int, checks=(AT_LEAST_1,),
                                 help="Number of fresh batches the final scores are averaged over.")
    hidden_scale: float = flag("--hidden-scale", default=1.0, type=float, checks=(POSITIVE,), group=OPTIONS,
                               help="Multiply the encoder's hidden widths (10n, 50n, …, 10n).")
    encoder_norm: str = flag("--encoder-norm", default="none", choices=("none", "layer"), group=OPTIONS,
                             help="'layer': a LayerNorm after each hidden layer of the encoder (not in the original; "
                                  "trains several times faster).")
    checkpoint_every: int = flag("--checkpoint-every", default=1000, type=int, checks=(AT_LEAST_1,), group=OPTIONS,
                                 help="Save a resumable checkpoint every this many steps.")
    seed: int | None = flag("--seed", default=None, type=int,
                            help="Seed for everything (mixing, data, init), 0 … 2^32-1. Default: a random one, "
                                 "recorded in config.json.")
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    checks = (_exclusive_phases, _exclusive_norms, _seed, _memory, _mixing, _sampling)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MLPConfig":
        """The settings of ``clica mlp --preset NAME``, with any field overridden: the Python twin of
        ``clica mlp --preset headline --n-steps 50 --seed 0`` is ``from_preset("headline", n_steps=50, seed=0)``."""
        if name not in PRESETS:
            raise ClicaError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
        return cls(**{**PRESETS[name], "extra": {"preset": name}, **overrides})

    def encoder_widths(self) -> list[int]:
        """The encoder's hidden widths: the original's 10n, 50n, 50n, 50n, 50n, 10n, times ``hidden_scale``."""
        return [max(1, round(self.n * w * self.hidden_scale)) for w in (10, 50, 50, 50, 50, 10)]

    def memory_bytes(self) -> float:
        """A low estimate of the memory a run needs at its peak, before anything is built.

        The mixing's pool of candidate matrices and its layers (float64), the box's rejection
        buffer, the encoder's weights with their gradients and Adam's two moments, its activations
        for both views of a batch, and the batch's B×B similarity matrix.
        """
        widths = [self.n, *self.encoder_widths(), self.n]
        weights = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
        batch = max(self.batch_size, self.eval_batch_size(), 256)
        mixing = (MIXING_POOL + self.n_mixing_layer) * self.n ** 2 * 8
        rejection = batch * self.n * self.rej_mult * 4 if self.space_type == "box" else 0
        return mixing + rejection + 4 * weights * 4 + 2 * batch * sum(widths) * 4 + batch ** 2 * 4

    def eval_batch_size(self) -> int:
        """Samples per final evaluation batch: the batch size, or more when it is too small to score on."""
        return max(self.batch_size, MIN_EVAL_PER_LATENT * self.n)

    def claim(self) -> str:
        """The theory's prediction for this setting: a key of :data:`clica.conditionals.CLAIMS`."""
        return conditionals.claim(conditionals.by_code(self.c_p), conditionals.by_code(self.p), self.space_type)

    def theory(self) -> tuple[str, str] | None:
        """(what the theory identifies the latents up to, the score that should approach 1), or None
        when the setting is outside the theorems (conditional and loss do not match)."""
        claim = self.claim()
        if claim == "none":
            return None
        return conditionals.by_code(self.c_p).identifies, conditionals.CLAIMS[claim].score

    def latent_space(self) -> latents.LatentSpace:
        if self.space_type == "box":
            space = Box(self.n, self.box_min, self.box_max, rej_mult=self.rej_mult)
        elif self.space_type == "sphere":
            space = Sphere(self.n, self.sphere_r)
        else:
            space = Real(self.n)
        return latents.LatentSpace(space, latents.marginal_from_p(self.m_p, self.m_param),
                                   latents.conditional_from_p(self.c_p, self.c_param))

    def loss(self):
        """The loss matched to the conditional of ``--p`` (0: the vMF's dot product)."""
        return conditionals.by_code(self.p).loss(tau=self.tau, self_weight=self.self_weight)

    def output_norm(self) -> str | None:
        """The encoder's output normalisation: --box-norm, --sphere-norm, else what the loss needs."""
        if self.box_norm:
            return "learnable_box"
        if self.sphere_norm:
            return "learnable_sphere"
        return conditionals.by_code(self.p).output_norm

    def phases(self) -> list[tuple[str, int]]:
        """(phase name, number of steps) in training order: supervised first."""
        out = []
        if not self.only_unsupervised:
            out.append(("supervised", self.n_steps))
        if not self.only_supervised:
            out.append(("unsupervised", self.n_steps * self.more_unsupervised))
        return out


def build_mixing(cfg: MLPConfig, say=print) -> torch.nn.Module:
    """The run's mixing g: the original's random invertible MLP, drawn from ``cfg.seed`` (a bounded
    search, see :mod:`clica.mixing`; ``say`` gets its lines)."""
    return mixing.invertible_mlp(cfg.n, cfg.n_mixing_layer, cfg.act_fct, cond_thresh_ratio=0.0,
                                 n_iter_cond_thresh=MIXING_POOL, seed=cfg.seed, say=say)


def build_encoder(cfg: MLPConfig, phase_index: int, device=None) -> torch.nn.Module:
    """The original encoder (widths 10n, 50n, 50n, 50n, 50n, 10n, times ``hidden_scale``)."""
    torch.manual_seed(cfg.seed * 1000 + phase_index)  # init independent of what ran before
    widths = cfg.encoder_widths()
    kwargs = {}
    if cfg.box_norm:
        kwargs = {"low": cfg.box_min, "high": cfg.box_max}
    elif cfg.output_norm() in ("fixed_sphere", "learnable_sphere"):
        kwargs = {"r": cfg.sphere_r}
    return mlp_encoder(cfg.n, cfg.n, widths, cfg.output_norm(), layer_norm=cfg.encoder_norm == "layer",
                       **kwargs).to(device or cfg.device)


def scores(z: torch.Tensor, hz: torch.Tensor) -> dict:
    """Linear R² and MCC (Pearson, Hungarian matching), as the original's log lines."""
    return {"linear_r2": metrics.linear_r2(z, hz), "mcc": metrics.mcc(z, hz).score}


class MixedLatents:
    """What every phase of a run shares: the latent space, the mixing g and the evaluation latents."""

    def __init__(self, cfg: MLPConfig, session: Session):
        self.cfg, self.session = cfg, session
        self.device = session.device
        self.latent = cfg.latent_space()
        self.g = build_mixing(cfg, session.echo).to(self.device)
        eval_gen = self._generator(1)
        self.z_eval = self.latent.sample_marginal(EVAL_SIZE, eval_gen, self.device)
        self.x_eval = self.g(self.z_eval)

    def _generator(self, stream: int) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(self.cfg.seed * 7919 + stream)

    @torch.no_grad()
    def encode(self, f, x, chunk: int = 16384):
        return require_finite(torch.cat([f(x[i:i + chunk]) for i in range(0, len(x), chunk)]),
                              "the encoder's outputs")

    def identity_scores(self) -> dict:
        return scores(self.z_eval, self.x_eval)

    @torch.no_grad()
    def final_scores(self, f) -> dict:
        """Linear and permutation scores over ``num_eval_batches`` fresh batches: mean and std."""
        gen = self._generator(2)
        lin, perm = [], []
        for _ in range(self.cfg.num_eval_batches):
            z = self.latent.sample_marginal(self.cfg.eval_batch_size(), gen, self.device)
            s = scores(z, self.encode(f, self.g(z)))
            lin.append(s["linear_r2"])
            perm.append(s["mcc"])
        return {"linear_mean": float(np.mean(lin)), "linear_std": float(np.std(lin)),
                "perm_mean": float(np.mean(perm)), "perm_std": float(np.std(perm))}


class MLPExperiment(Experiment):
    """The training of one phase's encoder (supervised or unsupervised) on ``mixed``'s observations."""

    def __init__(self, mixed: MixedLatents, phase: str, index: int, n_steps: int):
        super().__init__(mixed.session)
        self.mixed, self.cfg, self.device = mixed, mixed.cfg, mixed.device
        self.phase, self.index, self.n_steps = phase, index, n_steps
        self.path = self.session.run.file("checkpoint.pt")

    def build(self) -> None:
        cfg = self.cfg
        self.f = build_encoder(cfg, self.index, self.device)
        self.solver = Solver(torch.optim.Adam(self.f.parameters(), lr=cfg.lr),
                             self.n_steps if cfg.lr_schedule == "cosine" else None)
        self.loss_fn = cfg.loss()

    def restore(self, state: dict) -> None:  # fields checked by _check_checkpoint
        load_module_state(self.f, state["encoder"], self.path, f"the {self.phase} encoder")
        self.solver.restore(self.path, state["optimizer"], state["scheduler"])
        self.start, self.window = state["step"], state["window"]

    def prepare(self, state: dict | None) -> None:
        session = self.session
        self.data_gen = torch.Generator(self.device).manual_seed(
            session.stream_seed(self.cfg.seed * 7919 + 100 + self.index, self.start))
        if state is not None and not session.world.distributed:
            with loading(self.path, "random generator state"):
                self.data_gen.set_state(state["data_rng"])
        self.batch = session.local_batch(self.cfg.batch_size)
        self.model = session.wrap(self.f)

    def step(self, i: int) -> dict:
        session, bs = self.session, self.batch
        z, zt = self.mixed.latent.sample_pair(bs, self.data_gen, self.device)
        with torch.no_grad():
            x = self.mixed.g(torch.cat([z, zt]))
        if self.phase == "supervised":
            loss = mse_loss(self.model(x[:bs]), z)
            value = session.mean(loss.item())
        else:
            h = self.model(x)
            loss = session.contrastive(self.loss_fn, h[:bs], h[bs:]).total
            value = loss.item()  # the global batch's loss: the same on every rank
        self.solver.step(loss)
        return {"loss": value}

    def evaluate(self, i: int) -> dict:
        self.f.eval()
        out = scores(self.mixed.z_eval, self.mixed.encode(self.f, self.mixed.x_eval))
        self.f.train()
        return out

    def checkpoint_state(self, i: int) -> dict:
        sched = self.solver.scheduler
        return {"phase": self.phase, "phase_index": self.index, "step": i, "encoder": self.f.state_dict(),
                "optimizer": self.solver.optimizer.state_dict(), "scheduler": sched.state_dict() if sched else None,
                "data_rng": self.data_gen.get_state(), "mixing": self.mixed.g.state_dict(), "window": self.window}

    def checkpoint(self, i: int, force: bool = False) -> None:  # saves at every call
        self.session.save(self.checkpoint_state(i), self.path)
        if i == self.n_steps:
            self.session.save({"encoder": self.f.state_dict(), "train_time_s": self.window["elapsed_s"]},
                              self.session.run.file(f"{self.phase}_f.pt"))


def default_save_dir(cfg: MLPConfig, session: Session) -> str:
    """``runs/mlp-TIME-seedS``, drawing the seed if there is none (the same on every rank)."""
    cfg.seed = session.seed(cfg.seed)
    return session.default_folder(f"mlp-{{time}}-seed{cfg.seed}")


# settings that define a run: a run folder is only resumed with the same ones (a resumed run may change
# its length, see _check_new_length, where it runs, and how it was asked for)
RUN_DEFINING = (
    "n", "space_type", "box_min", "box_max", "sphere_r", "m_p", "m_param", "c_p", "c_param", "rej_mult", "act_fct",
    "n_mixing_layer", "p", "tau", "self_weight", "sphere_norm", "box_norm", "lr", "lr_schedule", "batch_size",
    "more_unsupervised", "only_supervised", "only_unsupervised", "n_log_steps", "num_eval_batches", "hidden_scale",
    "encoder_norm", "checkpoint_every",
)


def run_mlp(cfg: MLPConfig, save_dir: str | Path | None = None, resume: bool = False, echo=print) -> dict:
    """Train and evaluate in ``save_dir`` (default: a new ``runs/mlp-TIME-seedS``); return the summary
    written to ``summary.json``.

    The run folder is locked while the run lasts: a second process on it gets a one-line error.
    Under ``torchrun`` the processes train one model on the global batch (see :mod:`.skeleton`).
    """
    cfg.validate()
    session = Session(cfg.device, echo)
    if save_dir is None:
        if resume:
            raise ClicaError("--resume-training needs --save-dir: the run folder to resume")
        save_dir = default_save_dir(cfg, session)
    if resume and session.is_main:
        RunDir(save_dir).read_config()  # resuming a folder that holds no run: an error before anything is created
    with session.open(save_dir, "mlp"):
        return _run(cfg, session, resume)


def _run(cfg: MLPConfig, session: Session, resume: bool) -> dict:
    echo, run = session.echo, session.run
    saved = session.saved_config()
    state = None
    if resume:
        saved_cfg = {k: v for k, v in saved.items() if k in MLPConfig.__dataclass_fields__}
        cfg.seed = run.saved_seed(saved)
        session.require_same(saved_cfg, dataclasses.asdict(cfg), RUN_DEFINING, "cannot resume it with them")
        _check_new_length(cfg, saved_cfg.get("n_steps"), echo)
        state = session.load(run.file("checkpoint.pt"), CHECKPOINT_FIELDS, {"window.elapsed_s": (int, float)},
                             what="an MLP checkpoint")
        if state is not None:
            _check_checkpoint(state, run.file("checkpoint.pt"), cfg)
            session.require_not_past(_n_steps_trained(state, cfg, saved_cfg.get("n_steps", 0)), cfg.n_steps,
                                     "--n-steps")
    elif saved is not None:
        raise ClicaError(f"{run.path} already holds a run; use --resume-training to continue it or choose another "
                         "--save-dir")
    cfg.seed = session.seed(cfg.seed)
    seed_everything(cfg.seed)
    session.write_config({"command": "mlp", **dataclasses.asdict(cfg)})
    world = f"  processes: {session.world.size}" if session.world.distributed else ""
    echo(f"run folder: {run.path}  seed: {cfg.seed}{world}")
    if cfg.eval_batch_size() > cfg.batch_size:
        echo(f"note: the final scores use batches of {cfg.eval_batch_size()} latents, not --batch-size "
             f"{cfg.batch_size}: fewer samples than {MIN_EVAL_PER_LATENT} per latent make a fit look perfect")

    mixed = MixedLatents(cfg, session)
    if state is not None and not _same_tensors(mixed.g.state_dict(), state["mixing"]):
        raise ClicaError(f"cannot resume {run.path}: the saved mixing differs from the one its seed gives")
    if state is not None and session.world.distributed:
        echo("note: under torchrun a resumed run draws fresh latents on each process, from a stream given by "
             "the seed and the step it resumes at")
    if session.is_main:
        ident = mixed.identity_scores()
        echo(f"the observations g(z) themselves (the original's 'Id. Lin./Perm. Disentanglement'): linear R² "
             f"{ident['linear_r2']:.4f}, MCC {ident['mcc']:.4f}; a trained encoder should score well above them")
    else:
        ident = None

    summary = {"seed": cfg.seed, "identity": ident, "phases": {}}
    train_time = 0.0
    phases = cfg.phases()
    if resume:
        order = [name for name, _ in phases]
        done = (order.index(state["phase"]), state["step"]) if state else (-1, 0)
        if session.is_main:
            run.filter_metrics(lambda r: (order.index(r["phase"]), r["step"]) <= done)
    for index, (phase, n_steps) in enumerate(phases):
        phase_state = None
        if state is not None:
            saved_index = state["phase_index"]
            if index < saved_index:
                f = build_encoder(cfg, index, session.device)
                path = run.file(f"{phase}_f.pt")
                done_state = session.load(path, {"encoder": dict}, {"train_time_s": (int, float)},
                                          what=f"a {phase} encoder file")
                if done_state is None:
                    raise ClicaError(f"cannot resume {run.path}: {path} of the finished {phase} phase is missing")
                load_module_state(f, done_state["encoder"], path, f"the {phase} encoder")
                train_time += float(done_state.get("train_time_s", 0.0))
                summary["phases"][phase] = _phase_summary(mixed, f, phase)
                continue
            if index == saved_index:
                phase_state = state
        resumed = f", resuming from step {phase_state['step']}" if phase_state else ""
        echo(f"{phase} training: {n_steps} steps{resumed}")
        experiment = MLPExperiment(mixed, phase, index, n_steps)
        experiment.build()
        if phase_state is not None:
            experiment.restore(phase_state)
        experiment.prepare(phase_state)
        experiment.train(n_steps=n_steps, log_every=cfg.n_log_steps, checkpoint_every=cfg.checkpoint_every,
                         desc=phase, phase=phase)
        train_time += experiment.window.get("elapsed_s", 0.0)
        summary["phases"][phase] = _phase_summary(mixed, experiment.f, phase)
    summary["train_time_s"] = round(train_time, 2)  # all sessions of a resumed run
    last = phases[-1][0]
    session.finish(summary)
    if session.is_main:
        echo(verdict(cfg, last, summary["phases"][last], run))
    return summary


def verdict(cfg: MLPConfig, phase: str, result: dict, run: RunDir) -> str:
    """A few lines that say what the final scores mean, what the theory predicts, and where the figure is."""
    n_eval = cfg.eval_batch_size()
    lines = [
        f"result of the {phase} encoder ({cfg.num_eval_batches} fresh batches of {n_eval} latents):",
        f"  linear R² {result['linear_mean']:.4f} ± {result['linear_std']:.4f}: how well an affine map of the "
        "encoder's output recovers the true latents (1 = exactly)",
        f"  MCC       {result['perm_mean']:.4f} ± {result['perm_std']:.4f}: mean correlation of each latent with "
        "the output matched to it (1 = recovered up to permutation, sign and scale)",
    ]
    theory = cfg.theory()
    if phase == "supervised":
        lines.append("  (the supervised baseline regresses the true latents: an upper bound, not the method)")
    elif theory is None:
        lines.append("  theory: this conditional and loss do not match, so the theorems promise nothing here; "
                     "the paper found identification often holds all the same")
    else:
        what, key = theory
        score = result["linear_mean" if key == "linear_r2" else "perm_mean"]
        name = "linear R²" if key == "linear_r2" else "MCC"
        status = "reached" if score >= 0.99 else "not reached (train longer; recipes in docs/mlp.md)"
        lines.append(f"  theory: identified up to {what}, so {name} should approach 1: {score:.4f}, "
                     f"≥ 0.99 {status}")
    lines.append(f"  figure: {run.file(f'latents_{phase}.png')} (each true latent against its recovered one)")
    return "\n".join(lines)


def _check_new_length(cfg: MLPConfig, saved_steps, echo) -> None:
    """A resumed run may change --n-steps only where that leaves the steps already taken valid."""
    if saved_steps is None or saved_steps == cfg.n_steps:
        return
    if cfg.lr_schedule == "cosine":
        raise ClicaError(f"cannot resume with --n-steps {cfg.n_steps}: the run's cosine learning-rate schedule "
                         f"spans its {saved_steps} steps; resume with --n-steps {saved_steps}")
    echo(f"note: --n-steps changed from {saved_steps} to {cfg.n_steps}: the run continues to the new length "
         "(constant learning rate, so the steps already taken are unchanged)")


def _n_steps_trained(state: dict, cfg: MLPConfig, saved_n_steps: int) -> int:
    """The run's training so far in units of --n-steps: a finished earlier phase counts its full
    length, the checkpoint's phase its steps over the phase's multiple (--more-unsupervised)."""
    index = state["phase_index"]
    multiple = cfg.phases()[index][1] // cfg.n_steps
    return max(saved_n_steps if index > 0 else 0, math.ceil(state["step"] / multiple))


def _check_checkpoint(state, path, cfg: MLPConfig) -> None:
    """One-line errors for a checkpoint.pt whose phase and step are not this run's."""
    order = [name for name, _ in cfg.phases()]
    if state["phase"] not in order or order.index(state["phase"]) != state["phase_index"]:
        raise ClicaError(f"{path} is not a checkpoint of this run: phase {state['phase']!r} "
                         f"(number {state['phase_index']}) is not one of its phases ({', '.join(order)})")
    if state["step"] < 0:
        raise ClicaError(f"{path} is not a checkpoint of this run: step {state['step']}")


def _same_tensors(own: dict, saved: dict) -> bool:
    return saved.keys() == own.keys() and all(
        torch.is_tensor(saved[k]) and saved[k].shape == own[k].shape and torch.equal(own[k], saved[k].to(own[k].device))
        for k in own)


def _phase_summary(mixed: MixedLatents, f, phase: str) -> dict | None:
    """The phase's final scores and figure (rank 0; evaluation runs once)."""
    session = mixed.session
    if not session.is_main:
        return None
    f.eval()
    result = mixed.final_scores(f)
    plots.true_vs_predicted(mixed.z_eval, mixed.encode(f, mixed.x_eval), session.run.file(f"latents_{phase}.png"),
                            title=f"{phase}: true vs recovered latents")
    if phase == "supervised" and not mixed.cfg.only_supervised:  # the last phase's scores end the run
        session.echo(f"{phase}: linear R² {result['linear_mean']:.4f} (std {result['linear_std']:.4f}), "
                     f"MCC {result['perm_mean']:.4f} (std {result['perm_std']:.4f})")
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    groups = MLPConfig.add_arguments(p)
    p.add_argument("--save-dir", type=str, default="",
                   help="Run folder (config, metrics, checkpoints, summary, figures): new, empty, or a clica mlp "
                        "run to resume; a folder holding anything else is refused. Default: "
                        "runs/mlp-<time>-seed<seed>.")
    p.add_argument("--resume-training", action="store_true",
                   help="Resume the run in --save-dir from its last checkpoint and continue to --n-steps.")
    g = groups[OPTIONS]
    g.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="'paper': the original defaults. 'fast': a training recipe, not a setting: batch 1024, lr 3e-3 "
                        "with cosine decay, tau 0.2, self weight 0.01, 10000 unsupervised steps only, encoder widths "
                        "× 0.4 with LayerNorm. 'headline': the paper's headline setting (box, uniform marginal, "
                        "Laplace conditional 0.05: --c-p 1 --p 1) with the fast recipe; MCC ≥ 0.99 in 2–4 "
                        "minutes on 2 CPU cores. Flags you give explicitly still win.")
    g.add_argument("--device", type=str, default=None, help="Torch device (default: cuda if available, else cpu).")
    g.add_argument("--no-cuda", action="store_true", help="Do not use CUDA even if available.")


def config_from_args(args: argparse.Namespace) -> MLPConfig:
    apply_preset(args, PRESETS[args.preset])
    # settings only: the resume hint reads the command line from args itself
    return MLPConfig.from_dict(vars(args)).copy(device=str(resolve_device(args.device, args.no_cuda)),
                                                extra={"preset": args.preset})


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    save_dir = args.save_dir
    if args.resume_training and not save_dir:
        raise ClicaError("--resume-training needs --save-dir: the run folder to resume")
    if not save_dir:
        save_dir = default_save_dir(cfg, Session(cfg.device))
    with resume_hint(args, f"--save-dir {save_dir}", "--resume-training"):
        run_mlp(cfg, save_dir, resume=args.resume_training)
    return 0
