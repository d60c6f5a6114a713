"""``ContrastiveICA``: the paper's method as a scikit-learn estimator for one's own data.

It is a thin composition of the library parts the experiments use: the
encoders of :mod:`clica.models` (``mlp_encoder``, the KITTI conv encoder, output
normalisations), the InfoNCE losses of :mod:`clica.losses`, the pairs of
:mod:`clica.data.sequences` (as KITTI Masks), the shared
:func:`clica.training.train_loop` (progress, divergence stop) and the metrics
of :mod:`clica.metrics`. Saved files hold tensors and plain data only and are
read back with :func:`clica.runs.load_torch_file` (``weights_only=True``).
"""

from __future__ import annotations

import copy
import numbers
import os
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, make_constraint
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from torch import nn

from .conditionals import CONDITIONALS
from .data.sequences import EpochSampler, SequencePairs
from .errors import ClicaError
from .metrics import linear_r2, mcc
from .models import mlp_encoder, norm_layer, to_device
from .models.conv import ConvEncoderNet
from .params import ParameterError, literal
from .runs import (
    atomic_torch_save,
    check_fields,
    check_module_state,
    load_module_state,
    load_torch_file,
    resolve_device,
)
from .training import Solver, train_loop

__all__ = ["ContrastiveICA", "ENCODERS"]

ENCODERS = ("mlp", "conv")
METRICS = ("mcc", "r2")
IMAGE_SIZE = 64  # the conv encoder's input: 64×64 images (KITTI Masks)
FILE_FORMAT = "clica.ContrastiveICA"
FILE_VERSION = 1
_ENCODE_CHUNK = {"mlp": 16384, "conv": 512}
VALIDATE_EVERY = 100        # steps between two validation losses
VALIDATION_BATCH = 1024     # pairs per validation batch (fewer when there are fewer): the same for every model
VALIDATION_BATCHES = 8      # at most this many batches (8,192 pairs) make one validation loss
PATIENCE = 5                # n_steps="auto": validations without improvement before training stops
AUTO_TOL = 1e-3             # ... an improvement is a drop of the validation loss by more than this
AUTO_MAX_STEPS = 20_000     # ... and it stops here at the latest
CHOOSE_AT = 400             # n_init > 1: trials are compared after this many steps (a multiple of VALIDATE_EVERY)


# what a parameter must be where its constraints do not say it in words (n_jobs: either interval, or None)
_MUST_BE = {"n_jobs": "None or a non-zero integer (-1: all cores)", "device": "'auto', 'cpu', 'cuda' or a torch.device"}
# the parameters whose wrong value is "unknown", and what to choose instead
_CHOOSE = {"conditional": "one of " + ", ".join(map(repr, CONDITIONALS)),
           "encoder": "'mlp', 'conv' or pass a torch.nn.Module"}


def _must_be(name: str, constraints: list) -> str:
    """``constraints`` (scikit-learn's) in words, as clica's messages say them: "an integer ≥ 2",
    "a finite number > 0", "a number in [0, 1)", "an integer ≥ 1 or 'auto'" (None, allowed, is left out)."""
    if name in _MUST_BE:
        return _MUST_BE[name]
    words = []
    for c in constraints:
        if isinstance(c, StrOptions):
            words.append(" or ".join(map(repr, sorted(c.options))))
        elif isinstance(c, Interval) and c.type is Integral:
            words.append(f"an integer ≥ {c.left}")
        elif isinstance(c, Interval) and c.right == np.inf:
            words.append(f"a finite number {'≥' if c.closed == 'left' else '>'} {c.left}")
        elif isinstance(c, Interval):
            words.append(f"a number in [{c.left}, {c.right})")
    return " or ".join(words)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _is_sequence_list(X, min_ndim: int) -> bool:
    """A list or tuple of arrays (or tensors) with at least ``min_ndim`` dimensions each: sequences."""
    return (isinstance(X, (list, tuple)) and len(X) > 0
            and all(isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim >= min_ndim for x in X))


def _as_numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


class _Pairs:
    """Positive pairs over the rows of ``x``: row i with row i of ``xp`` (explicit pairs), or the pairs of
    :class:`~clica.data.sequences.SequencePairs` ``seqs``."""

    def __init__(self, x: torch.Tensor, xp: torch.Tensor | None = None, seqs: SequencePairs | None = None):
        self.x, self.xp, self.seqs = x, xp, seqs

    def __len__(self) -> int:
        return len(self.x) if self.seqs is None else len(self.seqs)

    def get(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The anchors and positives of the pairs ``idx``."""
        if self.seqs is None:
            idx = idx.to(self.x.device)
            return self.x[idx], self.xp[idx]
        first, second = self.seqs.pair_indices(idx, generator)
        return self.x[first.to(self.x.device)], self.x[second.to(self.x.device)]


def _split(X: np.ndarray, Xp, seqs: SequencePairs | None, fraction: float):
    """The last ``fraction`` of the rows (in time order) held out, but at least 2 pairs: ``((X, Xp, seqs)
    for training, the same for validation or None)``. Sequences are cut where the held-out rows begin, so
    no pair spans both parts."""
    if fraction == 0:
        return (X, Xp, seqs), None
    n_val = int(round(fraction * len(X)))
    if seqs is None:
        cut = min(len(X) - n_val, len(X) - 2)
        return (X[:cut], Xp[:cut], None), (X[cut:], Xp[cut:], None)
    cut = min(len(X) - n_val, int(seqs.starts[-2]) if len(seqs) >= 2 else 0)
    begin = np.concatenate([[0], np.cumsum(seqs.lengths)[:-1]])
    head = np.clip(cut - begin, 0, seqs.lengths)
    return ((X[:cut], None, SequencePairs(head, seqs.max_delta_t)),
            (X[cut:], None, SequencePairs(seqs.lengths - head, seqs.max_delta_t)))


def _matched_box_width(pairs: _Pairs, temperature: float) -> float:
    """The box width at which the L1 InfoNCE loss matches the data's speed, to start training from.

    For sources uniform on [0, 1] that move by a Laplace step of scale b between a pair, random
    points lie 1/3 apart per source and positives b apart; InfoNCE is optimal at the width τ/b,
    that is 3τ × (random-pair distance / positive-pair distance). The ratio is measured on the
    observations (median L1 distances over up to 20,000 pairs; a locally linear mixing keeps it).
    A fixed start of 1 fits b ≈ τ/1 only: slower sources (b = 0.01 needs a width of 20) stayed out
    of reach of the optimiser.
    """
    gen = torch.Generator().manual_seed(0)
    n = min(len(pairs), 20_000)
    anchors, positives = pairs.get(torch.randperm(len(pairs), generator=gen)[:n], gen)
    others = pairs.x[torch.randint(len(pairs.x), (n,), generator=gen).to(pairs.x.device)]
    near = (anchors - positives).abs().sum(1).median()
    far = (anchors - others).abs().sum(1).median()
    return float(3 * temperature * far / near) if near > 0 else 1.0


class _Trial:
    """One encoder trained from one seed, in stages: ``train(n)`` goes on to step n (fewer when
    ``n_steps="auto"`` stops it), so the trials can be compared after a few hundred steps and only the
    chosen one trained on. A fixed ``n_steps`` follows a cosine learning-rate schedule over all of them and
    keeps the last state; ``n_steps="auto"`` keeps the learning rate, stops after ``PATIENCE`` validations
    without an improvement of ``AUTO_TOL`` (at ``AUTO_MAX_STEPS`` at the latest) and keeps the best state.
    A trial pickles, so joblib's workers can train the first stage and hand it back."""

    def __init__(self, est: "ContrastiveICA", seed: int, index: int, input_shape: tuple, train: _Pairs,
                 val: _Pairs | None, box_width: float | None):
        self.auto = est.n_steps == "auto"
        self.n_steps = AUTO_MAX_STEPS if self.auto else est.n_steps
        self.seed, self.train_pairs, self.val = seed, train, val
        net, self.k = est._build_encoder(input_shape, est.n_components, seed, box_width)
        self.net = to_device(net, train.x.device).train()
        self.batch = min(est.batch_size, len(train))
        self.loss_fn = est._loss()
        self.solver = Solver(torch.optim.Adam(self.net.parameters(), lr=est.learning_rate),
                             None if self.auto else self.n_steps)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.order = EpochSampler(len(train), self.batch, self.gen)
        self.desc = "ContrastiveICA" if est.n_init == 1 else f"ContrastiveICA {index + 1}/{est.n_init}"
        self.verbose = bool(est.verbose)
        self.step, self.until, self.stopped = 0, 0, False
        self.loss_curve, self.validation_curve, self.validation_steps = [], [], []
        self.validation_loss, self.best_step, self.best_state = None, 0, None

    def _step(self, i: int) -> dict:
        x1, x2 = self.train_pairs.get(self.order.next(), self.gen)
        h = self.net(torch.cat([x1, x2]))
        loss = self.loss_fn(h[:self.batch], h[self.batch:]).total
        self.solver.step(loss)
        self.step = i
        value = loss.item()
        self.loss_curve.append(value)
        return {"loss": value}

    def _validate(self, i: int) -> bool:
        """Measure the held-out loss every ``VALIDATE_EVERY`` steps and at the end of each stage; True: stop."""
        if self.val is None or (i % VALIDATE_EVERY and i != self.until):
            return False
        v = _mean_loss(self.net, self.loss_fn, self.val)
        self.validation_curve.append(v)
        self.validation_steps.append(i)
        if not self.auto or self.validation_loss is None or v < self.validation_loss - AUTO_TOL:
            self.validation_loss, self.best_step = v, i
            if self.auto:
                self.best_state = copy.deepcopy(self.net.state_dict())
        self.stopped = self.auto and (i - self.best_step) >= PATIENCE * VALIDATE_EVERY
        return self.stopped

    def train(self, until: int) -> "_Trial":
        """Train on to step ``until`` (or until ``n_steps="auto"`` stops); returns the trial."""
        if not self.stopped and until > self.step:
            self.until = until
            train_loop(self._step, n_steps=until, start_step=self.step, log_every=max(1, self.n_steps // 10),
                       desc=self.desc, verbose=self.verbose, done=self._validate)
        return self

    def encoder(self) -> nn.Module:
        """The trained encoder in eval mode: its last state, or with ``n_steps="auto"`` its best one."""
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)
        return self.net.eval()


def _mean_loss(net: nn.Module, loss_fn, pairs: _Pairs) -> float:
    """The mean InfoNCE loss of ``net`` over fixed batches of ``pairs`` (the same batches every call):
    up to ``VALIDATION_BATCHES`` batches of ``VALIDATION_BATCH`` pairs, the batch's other anchors as
    negatives."""
    gen = torch.Generator().manual_seed(0)
    batch = min(VALIDATION_BATCH, len(pairs))
    order = torch.randperm(len(pairs), generator=gen)
    n_batches = min(VALIDATION_BATCHES, len(pairs) // batch)
    was = net.training
    net.eval()
    total = 0.0
    with torch.no_grad():
        for b in range(n_batches):
            x1, x2 = pairs.get(order[b * batch:(b + 1) * batch], gen)
            h = net(torch.cat([x1, x2]))
            total += loss_fn(h[:batch], h[batch:]).total.item()
    net.train(was)
    return total / n_batches


class ContrastiveICA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Nonlinear ICA by contrastive learning (Zimmermann et al., ICML 2021) on your own data.

    An encoder f is trained with InfoNCE so that f(x) and f(x̃) of a *positive
    pair* are close and f(x) of the other samples in the batch are far. When
    the positives are a sample's noisy neighbours in latent space (a
    conditional p(z̃ | z) of the kind chosen by ``conditional``), f recovers the
    latent sources up to permutation, sign and scale (Laplace), or an
    orthogonal map (normal, vMF), for any smooth invertible mixing.

    ``fit`` accepts three kinds of data:

    * a **time series** X (N × d, rows in time order): positives are
      (x_t, x_{t+k}) with k uniform in 1..``max_delta_t``, clipped at the end of
      the series, as in KITTI Masks;
    * a **set of sequences**: ``groups`` (one sequence id per row; rows of a
      sequence keep their order, sequences are taken in order of first
      appearance) or X as a list of arrays (T_i × d each; the same pairs as
      ``groups``); a sequence of one row starts no pair;
    * **explicit pairs**: ``fit(X, X_positive=Xp)`` with Xp of X's shape; row i
      of Xp is the positive of row i of X.

    Negatives are the other anchors of the batch (the losses' default). Each
    step draws ``batch_size`` anchors without replacement (epochs over a random
    permutation). With fewer possible anchors than ``batch_size`` the batch
    shrinks to all of them (``batch_size_`` says what was used); fewer than 2
    anchors is a ``ValueError``.

    Images (``encoder="conv"``) are N × C × 64 × 64 or N × 64 × 64 arrays, fed
    as they are. Vectors (``encoder="mlp"``) are standardised per feature with
    the training data's mean and standard deviation (``mean_``, ``scale_``;
    constant features are only centred), so their units do not matter.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of sources to recover (the encoder's output width). None: as
        many as input features for ``encoder="mlp"``, the module's output width
        for a custom encoder; ``encoder="conv"`` needs a number.
    conditional : {"laplace", "normal", "vmf"}, default="laplace"
        The assumed conditional of a positive's latents given the anchor's, which
        sets the loss: "laplace" the L1 InfoNCE loss with a learnable box on the
        encoder output (sources up to permutation, sign and scale: MCC); "normal"
        the L2 loss, no output normalisation (sources up to an orthogonal map:
        use ``score(..., metric="r2")``); "vmf" the dot-product loss on the unit
        sphere (latents on a sphere, up to an orthogonal map). Each is a row of
        :data:`clica.conditionals.CONDITIONALS`, and so is any row added there.
    max_delta_t : int, default=1
        Largest time offset k of a positive in time-series and sequence mode.
    temperature : float, default=0.2
        The InfoNCE temperature τ.
    encoder : {"mlp", "conv"} or torch.nn.Module, default="mlp"
        "mlp": an MLP with LayerNorm after each hidden layer (widths
        ``hidden_units``); "conv": the KITTI Masks conv encoder (BetaVAE_H
        architecture) for 64 × 64 images; or your own module mapping a batch of
        samples to n_components outputs (a deep copy is trained; the output
        normalisation of ``conditional`` is appended to it, so ``encoder_`` is
        ``Sequential(your module, normalisation)``). A custom module is saved as
        its state dict: ``load`` needs a module of the same architecture.
    hidden_units : tuple of int, default=(64, 64, 64)
        Hidden widths of the "mlp" encoder. Chosen on the families of
        ``benchmarks/estimator_suite.py``: (256, 256, 256, 256), the earlier
        default, reached the same MCC or lower at 3–4 times the time.
    n_steps : int or "auto", default=2000
        Optimisation steps (batches), with a cosine learning-rate decay to 0.
        "auto": a constant learning rate until the validation loss has not
        improved (by 0.001) for 5 validations (500 steps), at most 20,000 steps;
        the encoder of the lowest validation loss is kept.
    batch_size : int, default=1024
        Positive pairs per step; the negatives of each anchor are the batch's other anchors.
    learning_rate : float, default=3e-3
        Adam's learning rate, decayed to 0 over ``n_steps`` by a cosine schedule.
    self_weight : float, default=0.01
        Weight of the anchor's own term in the InfoNCE log-sum-exp (the original
        code's negatives contain the anchor: weight 1). A small weight keeps the
        recovered sources from being squeezed towards the faces of the box.
    validation_fraction : float in [0, 1), default=0.1
        The last fraction of the rows (in time order; for sequences, the rows
        after the cut, which splits the sequence it falls into) is held out:
        no pair spans the cut. Every 100 steps the InfoNCE loss of the held-out
        pairs is measured (``validation_curve_``), the criterion by which
        ``n_steps="auto"`` stops and ``n_init`` chooses. 0: train on every row.
    n_init : int, default=3
        Encoders trained from different seeds; the one with the lowest
        validation loss after 400 steps is kept and trained on to ``n_steps``,
        the others stop there (``trials_`` lists them all). The theory's
        criterion: the identifying encoder minimises the InfoNCE loss. A seed
        that lands in a poor optimum shows it in its loss, already at step 400:
        on 13 families × 3 seeds the early choice kept encoders as good as the
        choice after all 2,000 steps (docs/estimator.md), at less than half the time.
    n_jobs : int or None, default=None
        Trials trained at once by joblib up to the choice (None or 1: one after
        the other; -1: all cores); the chosen one trains on in this process.
        The joblib backend in effect is used: the process backend on one
        machine, or Ray's on a cluster
        (``with joblib.parallel_backend("ray"): ica.fit(X)`` after
        ``ray.util.joblib.register_ray()``). Results equal the sequential
        ones up to floating-point summation order.
    device : str or torch.device, default="auto"
        "auto" (CUDA when available, else the CPU), "cpu", "cuda", "cuda:1", ...
    random_state : int, RandomState instance or None, default=None
        Seeds the encoder's initialisation and the pair sampling (torch's global
        generator is left untouched); an int gives the same fit every time on the CPU.
    verbose : bool, default=False
        Show a progress bar (a log line every 30 s when not on a terminal) and
        the mean loss ten times during training.

    The defaults are our recipe, not the paper's settings (τ = 1, self weight 1,
    lr 1e-4, batch 6144, no LayerNorm, 300k steps): the fast recipe of ``clica
    mlp --preset fast`` (LayerNorm in the encoder, τ = 0.2, self weight 0.01,
    lr 3e-3 with cosine decay, batch 1024), which trains in minutes on a CPU,
    with a smaller encoder (64, 64, 64), 10 % of the rows held out and the best
    of 3 seeds by the held-out loss, chosen on data families it was not tuned
    on (docs/estimator.md).

    Attributes
    ----------
    encoder_ : torch.nn.Module
        The trained encoder (in eval mode), on ``device_``.
    n_components_ : int
        The number of recovered sources.
    n_features_in_ : int
        Number of features (for images: channels) of the training data.
    feature_names_in_ : ndarray of str
        Column names, when X was a DataFrame with string column names.
    input_shape_ : tuple of int
        The shape of one sample (``(d,)`` for vectors, ``(C, 64, 64)`` for images).
    mean_, scale_ : ndarray of shape (d,) or None
        Standardisation of the "mlp" encoder's input (None for other encoders).
    loss_curve_ : list of float
        The training loss of every step (of the kept trial).
    validation_loss_ : float or None
        The kept encoder's loss on the held-out pairs (None when
        ``validation_fraction=0``).
    validation_curve_, validation_steps_ : list of float, list of int
        The validation loss and the step it was measured after.
    trials_ : list of dict
        One record per trial: ``random_state``, ``n_iter`` (the steps it trained)
        and ``validation_loss`` (its last: at the choice for the trials left behind).
    best_trial_ : int
        The kept trial's index in ``trials_``.
    n_iter_ : int
        Steps trained (of the kept trial).
    n_pairs_ : int
        Number of anchors trained on (pair starts, or explicit pairs, outside the validation part).
    batch_size_ : int
        Pairs per step actually used.
    device_ : str
        The device the encoder trained on.

    Notes
    -----
    Scikit-learn conventions: parameters are stored as given and checked in
    ``fit``; ``clone``, ``get_params``/``set_params``, pipelines and pickling
    work; ``transform`` before ``fit`` raises ``NotFittedError``. ``fit``'s
    second positional argument is scikit-learn's ``y`` and is ignored, so that
    ``Pipeline``, ``cross_val_score(ica, X, Z)`` and ``GridSearchCV`` can pass
    the true sources Z on to ``score``; explicit positives go by keyword,
    ``X_positive=``. In a ``Pipeline``, ``X_positive`` does not pass through the
    earlier steps: give pairs as sequences of two rows instead (``groups``).
    A list of sequences makes ``transform`` return a list.

    scikit-learn's ``check_estimator`` passes in full (``tests/test_estimator.py``
    runs it with a tiny ``n_steps``); only ``check_array_api_input`` is skipped,
    by scikit-learn itself, unless ``SCIPY_ARRAY_API=1`` is set.

    Examples
    --------
    >>> from clica import ContrastiveICA
    >>> ica = ContrastiveICA(n_components=5, random_state=0).fit(X)      # X: N × d time series
    >>> S = ica.transform(X)                                             # N × 5 recovered sources
    >>> ica.score(X, Z)                                                  # MCC against known sources Z
    >>> ica.save("ica.pt"); ica2 = ContrastiveICA.load("ica.pt")
    """

    def __init__(self, n_components=None, *, conditional="laplace", max_delta_t=1, temperature=0.2,
                 encoder="mlp", hidden_units=(64, 64, 64), n_steps=2000, batch_size=1024,
                 learning_rate=3e-3, self_weight=0.01, validation_fraction=0.1, n_init=3, n_jobs=None,
                 device="auto", random_state=None, verbose=False):
        self.n_components = n_components
        self.conditional = conditional
        self.max_delta_t = max_delta_t
        self.temperature = temperature
        self.encoder = encoder
        self.hidden_units = hidden_units
        self.n_steps = n_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.self_weight = self_weight
        self.validation_fraction = validation_fraction
        self.n_init = n_init
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ checks

    _parameter_constraints: dict = {
        "conditional": [StrOptions(set(CONDITIONALS))],
        "encoder": [StrOptions(set(ENCODERS)), nn.Module],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "max_delta_t": [Interval(Integral, 1, None, closed="left")],
        "n_steps": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_jobs": [Interval(Integral, None, -1, closed="right"), Interval(Integral, 1, None, closed="left"), None],
        "temperature": [Interval(Real, 0, np.inf, closed="neither")],
        "learning_rate": [Interval(Real, 0, np.inf, closed="neither")],
        "self_weight": [Interval(Real, 0, np.inf, closed="left")],
        "hidden_units": "no_validation",  # checked with the encoder that uses it, in _validate_params
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def _validate_params(self) -> None:
        """scikit-learn's check of ``_parameter_constraints`` (a bool is no number here), worded as one
        line that names the parameter (``batch_size must be an integer ≥ 2, got 1``), then the checks
        across parameters."""
        for name, constraints in self._parameter_constraints.items():
            value = getattr(self, name)
            if constraints == "no_validation" or any(
                    make_constraint(c).is_satisfied_by(value) and not (isinstance(value, bool) and isinstance(
                        c, Interval)) for c in constraints):
                continue
            if name in _CHOOSE:
                raise ParameterError(f"unknown {{}} {literal(repr(value))}; choose {literal(_CHOOSE[name])}", name)
            raise ParameterError.of(name, f"must be {_must_be(name, constraints)}, got {value!r}")
        if self.encoder == "conv" and self.n_components is None:
            raise ValueError("encoder='conv' needs n_components (the number of sources to recover)")
        if self.validation_fraction == 0 and (self.n_steps == "auto" or self.n_init > 1):
            raise ValueError(f"{'n_steps=auto' if self.n_steps == 'auto' else f'n_init={self.n_init}'} chooses by the "
                             "validation loss: it needs validation_fraction > 0")
        if self.encoder == "mlp":
            hu = self.hidden_units
            if not (isinstance(hu, (list, tuple)) and all(isinstance(w, numbers.Integral) and not isinstance(w, bool)
                                                          and w >= 1 for w in hu)):
                raise ParameterError.of("hidden_units", f"must be a tuple of positive integers, got {hu!r}")
        self._device()

    def _device(self) -> torch.device:
        """The torch device of ``device`` (a str or torch.device, see ``_parameter_constraints``)."""
        return resolve_device(None if self.device == "auto" else str(self.device))

    def _sequence_ndim(self) -> int:
        """Dimensions of one sequence's array (frames × sample dims) when X is a list of sequences."""
        return 3 if self.encoder == "conv" else 2

    def _check_array(self, X, name: str = "X", mode: str = "transform") -> np.ndarray:
        """A finite float array with the dimensions the encoder needs.

        ``mode``: "fit" (sets ``n_features_in_`` and ``feature_names_in_``), "extra" (another
        training array, e.g. X_positive) or "transform" (checks them). Images become float32,
        other input float64 unless it is float32 already.
        """
        dtype = [np.float32, np.float64] if self.encoder == "conv" else [np.float64, np.float32]
        kw = dict(allow_nd=True, dtype=dtype, ensure_all_finite=False)
        if self.encoder == "conv":
            X = _as_numpy(X)
            if np.ndim(X) == 3:  # N × H × W: one channel
                X = np.asarray(X)[:, None]
        ndim = getattr(X, "ndim", None)
        if ndim is None and isinstance(X, (list, tuple)):
            try:
                ndim = np.ndim(X)
            except ValueError:  # a ragged nested list: scikit-learn's check below says so
                pass
        if isinstance(ndim, int) and ndim < 2:
            raise ValueError(f"{name} is {ndim}-D: give a 2-D array, samples × features "
                             "(Reshape your data with X.reshape(-1, 1) for one feature)")
        if mode == "extra":
            X = check_array(X, input_name=name, **kw)
        else:
            X = validate_data(self, X, reset=mode == "fit", **kw)
        if not np.isfinite(X).all():
            bad = int(np.flatnonzero(~np.isfinite(X.reshape(len(X), -1)).all(1))[0])
            what = "NaN" if np.isnan(X[bad]).any() else "infinity"
            raise ValueError(f"{name} contains {what} (first in row {bad}); ContrastiveICA needs finite values")
        if self.encoder == "mlp" and X.ndim != 2:
            raise ValueError(f"{name} has shape {X.shape}: encoder='mlp' needs a 2-D array (samples × features); "
                             "use encoder='conv' for images")
        if self.encoder == "conv":
            if X.ndim != 4 or X.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
                raise ValueError(f"{name} has shape {X.shape}: encoder='conv' needs images N × C × 64 × 64 "
                                 "or N × 64 × 64")
        return X

    def _check_shape(self, X: np.ndarray, name: str) -> None:
        if tuple(X.shape[1:]) != tuple(self.input_shape_):
            raise ValueError(f"{name} has samples of shape {tuple(X.shape[1:])}, but ContrastiveICA was fitted on "
                             f"samples of shape {tuple(self.input_shape_)}")

    def _pair_data(self, X, X_positive, groups, mode: str = "fit"):
        """(X, positives or None, SequencePairs or None): validated, sequences in their order.

        ``mode``: "fit" (X sets ``n_features_in_``) or "transform" (X is checked against it)."""
        if _is_sequence_list(X, self._sequence_ndim()):
            if groups is not None:
                raise ValueError("give either groups or X as a list of sequences, not both")
            if X_positive is not None:
                raise ValueError("X_positive needs X as one array (explicit pairs), not a list of sequences")
            parts = [self._check_array(x, f"X[{i}]", "extra") for i, x in enumerate(X)]
            shapes = {p.shape[1:] for p in parts}
            if len(shapes) > 1:
                raise ValueError(f"the sequences in X have samples of different shapes: {sorted(shapes)}")
            lengths = [len(p) for p in parts]
            X = self._check_array(np.concatenate(parts), mode=mode)
            return X, None, SequencePairs(lengths, self.max_delta_t)
        X = self._check_array(X, mode=mode)
        n = len(X)
        if X_positive is not None:
            if groups is not None:
                raise ValueError("give either groups (sequences) or X_positive (explicit pairs), not both")
            Xp = self._check_array(X_positive, "X_positive", "extra")
            if Xp.shape != X.shape:
                raise ValueError(f"X_positive has shape {Xp.shape}, X has shape {X.shape}: row i of X_positive is "
                                 "the positive of row i of X, so they need the same shape")
            return X, Xp.astype(X.dtype, copy=False), None
        if groups is None:
            return X, None, SequencePairs([n], self.max_delta_t)
        groups = np.asarray(_as_numpy(groups))
        if groups.ndim != 1 or len(groups) != n:
            raise ValueError(f"groups has shape {groups.shape}, X has {n} rows: give one sequence id per row of X")
        try:
            _, first, codes = np.unique(groups, return_index=True, return_inverse=True)
        except TypeError:
            raise ValueError("groups holds ids that cannot be compared (mixed types?)") from None
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))  # sequences in order of first appearance
        codes = rank[codes.reshape(-1)]
        order = np.argsort(codes, kind="stable")
        return X[order], None, SequencePairs(np.bincount(codes, minlength=len(first)), self.max_delta_t)

    # ------------------------------------------------------------------ building blocks

    def _loss(self):
        return CONDITIONALS[self.conditional].loss(tau=self.temperature, self_weight=self.self_weight)

    def _build_encoder(self, input_shape: tuple, n_components: int | None, seed: int,
                       box_width: float | None = None) -> tuple[nn.Module, int]:
        """The untrained encoder (initialised from ``seed`` without touching torch's global generator);
        the built-in MLP's box starts at ``box_width`` when one is given."""
        norm = CONDITIONALS[self.conditional].estimator_output_norm
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.encoder == "mlp":
                k = n_components or input_shape[0]
                net = mlp_encoder(input_shape[0], k, list(self.hidden_units), norm, layer_norm=True,
                                  **({} if box_width is None else {"high": box_width}))
            elif self.encoder == "conv":
                k = n_components
                net = ConvEncoderNet(k, nc=input_shape[0], output_layer=norm_layer(norm, k))
            else:
                body = copy.deepcopy(self.encoder)
                with torch.no_grad():
                    was = body.training
                    body.eval()
                    try:
                        probe = body(torch.zeros((2, *input_shape), dtype=torch.float32,
                                                 device=next(body.parameters(), torch.zeros(0)).device))
                    except Exception as exc:
                        raise ValueError(f"the encoder module fails on a batch of samples of shape {input_shape}: "
                                         f"{type(exc).__name__}: {_one_line(exc)[:200]}") from None
                    body.train(was)
                if not (isinstance(probe, torch.Tensor) and probe.ndim == 2):
                    raise ValueError("the encoder module must return a 2-D tensor (batch × n_components), got "
                                     + (f"shape {tuple(probe.shape)}" if isinstance(probe, torch.Tensor)
                                        else type(probe).__name__))
                k = n_components or probe.shape[1]
                if probe.shape[1] != k:
                    raise ValueError(f"the encoder module returns {probe.shape[1]} outputs, but n_components is {k}")
                net = nn.Sequential(body, norm_layer(norm, k))
        return net, k

    @staticmethod
    def _standardise(X: np.ndarray, mean, scale) -> torch.Tensor:
        """X as a float32 tensor, standardised with ``mean`` and ``scale`` (None: as it is)."""
        x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        if mean is not None:
            x = (x - torch.from_numpy(mean.astype(np.float32))) / torch.from_numpy(scale.astype(np.float32))
        return x

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, *, X_positive=None, groups=None):
        """Train the encoder; returns ``self``.

        X : array (N × d; images N × C × 64 × 64) or list of arrays (sequences).
        y : ignored (scikit-learn's target; see the class notes).
        X_positive : array of X's shape, optional: explicit positives, row by row.
        groups : array of N sequence ids, optional: X holds several sequences.
        """
        self._validate_params()
        X, Xp, seqs = self._pair_data(X, X_positive, groups)
        n_pairs = len(X) if seqs is None else len(seqs)
        if n_pairs < 2:
            what = "pairs" if seqs is None else f"pair starts ({len(seqs.lengths)} sequence(s))"
            raise ValueError(f"got {len(X)} sample{'s' if len(X) != 1 else ''} forming {n_pairs} positive {what}: "
                             "ContrastiveICA needs at least 2 (the other anchors of a batch are the negatives)")
        if self.encoder == "mlp" and self.n_components is not None and self.n_components > X.shape[1]:
            raise ValueError(f"n_components={self.n_components} is more than the {X.shape[1]} features of X: the "
                             "sources are recovered from an injective mixing, so there are at most as many "
                             "as features")
        train, val = _split(X, Xp, seqs, self.validation_fraction)
        n_train, n_val = len(_Pairs(*train)), 0 if val is None else len(_Pairs(*val))  # counts only
        if val is not None and min(n_train, n_val) < 2:
            raise ValueError(f"validation_fraction={self.validation_fraction} leaves {n_train} pairs to train on and "
                             f"{n_val} to validate on; each needs at least 2: give more samples or "
                             "validation_fraction=0")
        rs = check_random_state(self.random_state)
        seeds = [int(rs.randint(np.iinfo(np.int32).max)) for _ in range(self.n_init)]
        device = self._device()
        input_shape = tuple(int(s) for s in X.shape[1:])
        mean = scale = None
        if self.encoder == "mlp":
            mean, std = X.mean(0), X.std(0)
            scale = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)

        def pairs(part) -> _Pairs | None:
            if part is None:
                return None
            x, xp, sq = part
            return _Pairs(self._standardise(x, mean, scale).to(device),
                          None if xp is None else self._standardise(xp, mean, scale).to(device), sq)

        train_pairs, val_pairs = pairs(train), pairs(val)
        boxed = self.encoder == "mlp" and CONDITIONALS[self.conditional].estimator_output_norm == "learnable_box"
        box_width = _matched_box_width(train_pairs, self.temperature) if boxed else None
        trials = [_Trial(self, seed, i, input_shape, train_pairs, val_pairs, box_width)
                  for i, seed in enumerate(seeds)]
        n_steps = trials[0].n_steps
        choose_at = n_steps if len(trials) == 1 else min(n_steps, CHOOSE_AT)
        if len(trials) == 1 or self.n_jobs in (None, 1):
            trials = [t.train(choose_at) for t in trials]
        else:
            from joblib import Parallel, delayed

            trials = Parallel(n_jobs=self.n_jobs)(delayed(t.train)(choose_at) for t in trials)
        best = min(range(len(trials)), key=lambda i: (trials[i].validation_loss if val is not None else 0.0, i))
        kept = trials[best].train(n_steps)
        # fitted attributes only once training has finished: a failed refit leaves the previous fit intact
        self.input_shape_, self.mean_, self.scale_ = input_shape, mean, scale
        self.encoder_ = to_device(kept.encoder(), device)
        self.n_components_ = int(kept.k)
        self.loss_curve_ = kept.loss_curve
        self.validation_loss_ = kept.validation_loss
        self.validation_curve_ = kept.validation_curve
        self.validation_steps_ = kept.validation_steps
        self.n_iter_ = kept.step
        self.trials_ = [{"random_state": t.seed, "validation_loss": t.validation_loss, "n_iter": t.step}
                        for t in trials]
        self.best_trial_ = int(best)
        self.n_pairs_ = int(n_train)
        self.batch_size_ = int(min(self.batch_size, n_train))
        self.device_ = str(device)
        return self

    # ------------------------------------------------------------------ transform and score

    @property
    def _n_features_out(self):
        return self.n_components_

    def _encode(self, X: np.ndarray) -> np.ndarray:
        device = torch.device(self.device_)
        chunk = _ENCODE_CHUNK.get(self.encoder if isinstance(self.encoder, str) else "conv", 512)
        x = self._standardise(X, self.mean_, self.scale_)
        self.encoder_.eval()
        with torch.no_grad():
            out = [self.encoder_(x[i:i + chunk].to(device)).float().cpu() for i in range(0, len(x), chunk)]
        h = torch.cat(out).numpy() if out else np.zeros((0, self.n_components_), np.float32)
        return h.astype(X.dtype, copy=False)

    def _transform_one(self, X, name: str = "X") -> np.ndarray:
        X = self._check_array(X, name)
        self._check_shape(X, name)
        return self._encode(X)

    def transform(self, X):
        """The recovered sources f(X): array (N × n_components), or a list of arrays for a list of sequences.

        The output has X's float dtype (float32 stays float32, everything else becomes float64).
        """
        check_is_fitted(self)
        if _is_sequence_list(X, self._sequence_ndim()):
            return [self._transform_one(x, f"X[{i}]") for i, x in enumerate(X)]
        return self._transform_one(X)

    def score(self, X, y=None, metric: str = "mcc", *, X_positive=None, groups=None) -> float:
        """Without ``y``: the negative InfoNCE loss of the pairs of X (higher is better); with the known
        sources ``y`` (N × k, k ≤ n_components): how well ``transform(X)`` recovers them.

        **No ground truth** (``y=None``): X's positive pairs are formed as ``fit`` forms them (a time
        series, ``groups``, a list of sequences or ``X_positive``) and the loss is averaged over fixed
        batches of up to 1,024 pairs, as ``validation_loss_``. The theory's criterion: the identifying
        encoder minimises it, so ``GridSearchCV(ica, grid, cv=TimeSeriesSplit())`` selects
        parameters without true sources. Compare models of the same ``conditional`` and
        ``temperature`` only: they set the loss's scale.

        **Known sources** ``y``: ``metric="mcc"``: mean |Pearson correlation| of each source with the output
        matched to it (Hungarian matching): 1 = recovered up to permutation, sign and
        scale. ``metric="r2"``: R² of the best affine map from the outputs to the
        sources (fitted and scored on the same samples), averaged over sources:
        1 = recovered up to an invertible linear map. Lists of sequences are concatenated.
        """
        if y is None:
            check_is_fitted(self)
            X, Xp, seqs = self._pair_data(X, X_positive, groups, "transform")
            self._check_shape(X, "X")
            n = len(X) if seqs is None else len(seqs)
            if n < 2:
                raise ValueError(f"X forms {n} positive pair{'s' if n != 1 else ''}: the InfoNCE score needs at "
                                 "least 2 (the other anchors of a batch are the negatives)")
            x = self._standardise(X, self.mean_, self.scale_).to(self.device_)
            xp = None if Xp is None else self._standardise(Xp, self.mean_, self.scale_).to(self.device_)
            return -_mean_loss(self.encoder_, self._loss(), _Pairs(x, xp, seqs))
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose 'mcc' or 'r2'")
        hz = self.transform(X)
        if isinstance(hz, list):
            hz = np.concatenate(hz)
        if isinstance(y, (list, tuple)) and len(y) and all(np.ndim(_as_numpy(v)) == 2 for v in y):
            y = np.concatenate([np.asarray(_as_numpy(v)) for v in y])
        z = check_array(_as_numpy(y), ensure_2d=False, dtype=np.float64, input_name="y")
        z = z[:, None] if z.ndim == 1 else z
        if z.ndim != 2 or len(z) != len(hz):
            raise ValueError(f"y has shape {z.shape}, X has {len(hz)} samples: give the true sources as N × k")
        if z.shape[1] > hz.shape[1]:
            raise ValueError(f"y has {z.shape[1]} sources, more than the {hz.shape[1]} components recovered")
        constant = np.flatnonzero(np.ptp(z, axis=0) == 0) if len(z) else []
        if len(constant):
            raise ValueError(f"source {int(constant[0])} of y never varies: no encoder can be scored on it "
                             "(correlation and R² are undefined); drop that column")
        if metric == "mcc":
            return float(mcc(z, hz).score)
        return float(linear_r2(z, hz))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ------------------------------------------------------------------ files

    def _check_fitted(self, fitted: dict, path) -> tuple:
        """The saved fitted attributes' types, ranges and agreement, checked before anything is built
        from them (a doctored file gets one line); returns the input shape."""
        what = f"{path} is not a saved ContrastiveICA:"
        check_fields(fitted, path, optional={
            "n_features_in_": int, "mean_": (torch.Tensor, type(None)), "scale_": (torch.Tensor, type(None)),
            "feature_names_in_": list, "loss_curve_": list, "n_iter_": int, "n_pairs_": int,
            "batch_size_": int, "device_": str, "validation_loss_": (float, type(None)), "validation_curve_": list,
            "validation_steps_": list, "trials_": list, "best_trial_": int}, what="a saved ContrastiveICA")
        shape = fitted["input_shape_"]
        want = {"mlp": 1, "conv": 3}.get(self.encoder if isinstance(self.encoder, str) else "", None)
        if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape) or (
                want is not None and len(shape) != want):
            raise ClicaError(f"{what} its input_shape_ {shape!r} is not the shape of a sample for encoder "
                             f"{self.encoder if isinstance(self.encoder, str) else 'module'!r}")
        if self.encoder == "conv" and tuple(shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
            raise ClicaError(f"{what} its input_shape_ {shape!r} is not C × {IMAGE_SIZE} × {IMAGE_SIZE}")
        if fitted["n_components_"] < 1 or isinstance(fitted["n_components_"], bool):
            raise ClicaError(f"{what} n_components_ is {fitted['n_components_']!r}, not a positive integer")
        if fitted.get("n_features_in_", shape[0]) != shape[0]:
            raise ClicaError(f"{what} n_features_in_ {fitted['n_features_in_']!r} does not match its input_shape_ "
                             f"{shape!r}")
        names = fitted.get("feature_names_in_")
        if names is not None and (len(names) != shape[0] or not all(isinstance(n, str) for n in names)):
            raise ClicaError(f"{what} feature_names_in_ is not {shape[0]} names")
        for name in ("mean_", "scale_"):
            v = fitted.get(name)
            if v is not None and (tuple(v.shape) != tuple(shape) or not torch.isfinite(v).all()
                                  or (name == "scale_" and not (v > 0).all())):
                raise ClicaError(f"{what} its {name} (shape {tuple(v.shape)}) is not a finite "
                                 f"{'positive ' if name == 'scale_' else ''}array of its input shape {tuple(shape)}")
        if (fitted.get("mean_") is None) != (fitted.get("scale_") is None):
            raise ClicaError(f"{what} it has one of mean_ and scale_ without the other")
        for name in ("n_iter_", "n_pairs_", "batch_size_"):
            if fitted.get(name, 0) < 0:
                raise ClicaError(f"{what} {name} is negative")
        for name in ("loss_curve_", "validation_curve_", "validation_steps_"):
            if not all(isinstance(v, (int, float)) for v in fitted.get(name, [])):
                raise ClicaError(f"{what} its {name} holds values that are not numbers")
        if not all(isinstance(t, dict) for t in fitted.get("trials_", [])):
            raise ClicaError(f"{what} its trials_ are not records")
        return tuple(shape)

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted estimator to ``path`` (atomically) as tensors and plain data only.

        The file holds the parameters, the encoder's state dict and the fitted
        attributes; :meth:`load` reads it without running code. A custom encoder
        module is saved as its state dict only: loading needs a module of the same
        architecture (``ContrastiveICA.load(path, encoder=MyNet(...))``).
        """
        check_is_fitted(self)
        params = self.get_params(deep=False)
        custom = isinstance(self.encoder, nn.Module)
        params["encoder"] = None if custom else self.encoder
        params["hidden_units"] = [int(w) for w in self.hidden_units] if isinstance(
            self.hidden_units, (list, tuple)) else self.hidden_units
        params["device"] = str(self.device)
        if not (self.random_state is None or isinstance(self.random_state, numbers.Integral)):
            params["random_state"] = None  # a RandomState object is not plain data
        elif self.random_state is not None:
            params["random_state"] = int(self.random_state)
        fitted: dict[str, Any] = {
            "n_components_": self.n_components_, "n_features_in_": int(self.n_features_in_),
            "input_shape_": list(self.input_shape_), "loss_curve_": [float(v) for v in self.loss_curve_],
            "n_iter_": self.n_iter_, "n_pairs_": self.n_pairs_, "batch_size_": self.batch_size_,
            "device_": self.device_, "validation_loss_": self.validation_loss_,
            "validation_curve_": [float(v) for v in self.validation_curve_],
            "validation_steps_": [int(v) for v in self.validation_steps_],
            "trials_": [dict(t) for t in self.trials_], "best_trial_": self.best_trial_,
            "mean_": None if self.mean_ is None else torch.from_numpy(np.asarray(self.mean_, np.float64)),
            "scale_": None if self.scale_ is None else torch.from_numpy(np.asarray(self.scale_, np.float64)),
        }
        if hasattr(self, "feature_names_in_"):
            fitted["feature_names_in_"] = [str(c) for c in self.feature_names_in_]
        atomic_torch_save(path, {
            "format": FILE_FORMAT, "version": FILE_VERSION, "params": params,
            "custom_encoder": type(self.encoder).__name__ if custom else None,
            "encoder_state": {k: v.detach().cpu() for k, v in self.encoder_.state_dict().items()},
            "fitted": fitted,
        })

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: nn.Module | None = None, device=None) -> "ContrastiveICA":
        """A fitted estimator from a file written by :meth:`save` (read with ``weights_only=True``).

        ``encoder``: a module of the saved custom encoder's architecture (needed
        exactly when the estimator was fitted with one). ``device``: where to put
        the encoder (default: the saved ``device`` parameter, with "auto" resolved
        on this machine). File problems raise :class:`clica.errors.ClicaError`
        with one line naming the file.
        """
        state = load_torch_file(path)
        what = "a saved ContrastiveICA"
        check_fields(state, path, {"format": str, "version": int, "params": dict, "encoder_state": dict,
                                   "fitted": dict, "fitted.input_shape_": list, "fitted.n_components_": int},
                     what=what)
        if state["format"] != FILE_FORMAT:
            raise ClicaError(f"{path} is not {what} (its format is {state['format']!r})")
        if state["version"] > FILE_VERSION:
            raise ClicaError(f"{path} was written by a newer clica (file version {state['version']}); upgrade clica")
        params = dict(state["params"])
        unknown = set(params) - set(cls().get_params(deep=False))
        if unknown:
            raise ClicaError(f"{path} is not {what}: unknown parameters {sorted(unknown)}")
        custom = state.get("custom_encoder")
        if custom is not None:
            if encoder is None:
                raise ClicaError(f"{path} holds a ContrastiveICA with a custom encoder ({custom}): pass a module of "
                                 f"the same architecture, ContrastiveICA.load(path, encoder={custom}(...))")
            params["encoder"] = encoder
        elif encoder is not None:
            raise ClicaError(f"{path} holds a ContrastiveICA with the built-in encoder {params.get('encoder')!r}: "
                             "do not pass encoder=")
        if isinstance(params.get("hidden_units"), list):
            params["hidden_units"] = tuple(params["hidden_units"])
        if device is not None:
            params["device"] = str(device)
        est = cls(**params)
        try:
            est._validate_params()
        except ValueError as exc:
            raise ClicaError(f"cannot load {path}: {exc}") from None
        fitted = state["fitted"]
        shape = est._check_fitted(fitted, path)
        try:
            with torch.device("meta"):  # sizes first: the file must not choose what gets allocated
                probe, _ = est._build_encoder(shape, fitted["n_components_"], 0)
            check_module_state(probe.state_dict(), state["encoder_state"], path, "the encoder")
            net, k = est._build_encoder(shape, fitted["n_components_"], 0)
        except ValueError as exc:
            raise ClicaError(f"cannot load {path}: {exc}") from None
        load_module_state(net, state["encoder_state"], path, "the encoder")
        dev = est._device()
        est.encoder_ = to_device(net, dev).eval()
        est.n_components_ = int(k)
        est.input_shape_ = shape
        est.n_features_in_ = int(fitted.get("n_features_in_", shape[0]))
        for name in ("mean_", "scale_"):
            v = fitted.get(name)
            setattr(est, name, None if v is None else v.numpy().astype(np.float64))
        if "feature_names_in_" in fitted:
            est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
        est.loss_curve_ = list(fitted.get("loss_curve_", []))
        est.validation_loss_ = fitted.get("validation_loss_")
        est.validation_curve_ = list(fitted.get("validation_curve_", []))
        est.validation_steps_ = list(fitted.get("validation_steps_", []))
        est.trials_ = [dict(t) for t in fitted.get("trials_", [])]
        est.best_trial_ = int(fitted.get("best_trial_", 0))
        est.n_iter_ = int(fitted.get("n_iter_", len(est.loss_curve_)))
        est.n_pairs_ = int(fitted.get("n_pairs_", 0))
        est.batch_size_ = int(fitted.get("batch_size_", 0))
        est.device_ = str(dev)
        return est
