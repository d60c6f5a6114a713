"""The table of conditionals: each conditional p(z~ | z) by name, with what the theory pairs with it.

A row holds the distribution (a :mod:`clica.latents` class), the loss matched to it, the encoder
output normalisation that loss needs, and what the theory claims with the matched loss and the
score that shows it (:data:`CLAIMS`). ``clica mlp``, ``clica 3dident``, ``clica kitti``,
:class:`~clica.estimator.ContrastiveICA` and ``clica table`` all read it. The older vocabularies are
translated at their edges: the original's ``--c-p``/``--p`` numbers by :func:`by_code`, 3DIdent's
``l1``/``l2``/``l3`` by :func:`by_name`.

Adding a conditional is a distribution class and one row (docs/architecture.md shows it)::

    CONDITIONALS["logistic"] = Conditional(Logistic, lp_loss(1.0), code=7)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import latents
from .losses import ContrastiveLoss, DotInfoNCE, LpInfoNCE

__all__ = ["Claim", "CLAIMS", "Conditional", "CONDITIONALS", "lp_loss", "dot_loss", "generalized_normal", "by_code",
           "by_name", "claim"]


@dataclass(frozen=True)
class Claim:
    """What the theory predicts: its label in the table, the claim, the target, the score and its check.

    Parameters
    ----------
    label : str
        The claim's name in ``clica table``'s output.
    claim : str
        What the theory says, in words.
    target : str
        What the scores should reach.
    score : {"mcc", "linear_r2"} or None
        The score that approaches 1 when the claim holds (None: no claim).
    check : callable or None
        ``check(linear_r2, mcc) -> bool``: whether mean scores meet the target (None: nothing to check).
    """

    label: str
    claim: str
    target: str
    score: str | None = None
    check: Callable[[float, float], bool] | None = None


CLAIMS = {
    "permutation": Claim("permutation", "identified up to permutation and sign: MCC → 1", "MCC ≥ 0.99", "mcc",
                         lambda r2, mcc: mcc >= 0.99),
    "orthogonal": Claim("orthogonal", "identified up to an orthogonal map: linear R² → 1", "R² ≥ 0.99", "linear_r2",
                        lambda r2, mcc: r2 >= 0.99),
    "rotation": Claim("rotation only", "identified only up to a rotation: linear R² → 1 while MCC stays low",
                      "R² ≥ 0.99, MCC low", "linear_r2", lambda r2, mcc: r2 >= 0.99 and mcc < 0.9),
    "none": Claim("—", "no theorem applies (its assumptions do not hold): the scores are reported, no target",
                  "report"),
}


def lp_loss(p: float) -> Callable[..., ContrastiveLoss]:
    """The loss matched to an Lp conditional of exponent ``p``: Lp InfoNCE with SimCLR's log-sum-exp.

    Parameters
    ----------
    p : float
        The exponent of the similarity -|h - h'|_p^p / τ.

    Returns
    -------
    callable
        ``make(tau=1.0, self_weight=1.0, project=False)`` → :class:`~clica.losses.LpInfoNCE`;
        ``project`` is ignored (an Lp conditional lives on any space).
    """
    def make(tau: float = 1.0, self_weight: float = 1.0, project: bool = False) -> ContrastiveLoss:
        return LpInfoNCE(p=p, tau=tau, simclr_compatibility_mode=True, self_weight=self_weight)
    return make


def dot_loss(tau: float = 1.0, self_weight: float = 1.0, project: bool = False) -> ContrastiveLoss:
    """The loss matched to the von Mises–Fisher conditional: dot-product InfoNCE.

    Parameters
    ----------
    tau, self_weight : float
        As in :class:`~clica.losses.DotInfoNCE`.
    project : bool
        The encoder's outputs are not on the sphere: the loss projects them onto it first.

    Returns
    -------
    DotInfoNCE
    """
    return DotInfoNCE(normalize=project, tau=tau, self_weight=self_weight)


@dataclass(frozen=True)
class Conditional:
    """One row of the table: a conditional and what goes with it.

    Parameters
    ----------
    distribution : callable
        Its parameter (a scale, or the vMF's concentration κ) → a :mod:`clica.latents` distribution.
    loss : callable
        ``loss(tau=, self_weight=, project=)`` → the :class:`~clica.losses.ContrastiveLoss` matched to it.
    output_norm : str or None
        The output normalisation its matched loss needs on the encoder (a kind of
        :func:`clica.models.norm_layer`; None: none), as ``clica mlp`` uses it.
    estimator_output_norm : str or None
        The output normalisation that :class:`~clica.estimator.ContrastiveICA`'s encoders end with.
    identifies : str or None
        What the latents are identified up to with the matched loss, in words.
    claim : str
        The :data:`CLAIMS` key of the theory's prediction with the matched loss.
    claim_by_space : mapping
        Space type (``box``, ``sphere``, ``unbounded``) → the :data:`CLAIMS` key where it differs from ``claim``.
    code : float or None
        Its number in the original's ``--c-p`` (and, for its loss, ``--p``) vocabulary.
    """

    distribution: Callable[[float], object]
    loss: Callable[..., ContrastiveLoss]
    output_norm: str | None = None
    estimator_output_norm: str | None = None
    identifies: str | None = None
    claim: str = "none"
    claim_by_space: Mapping[str, str] = field(default_factory=dict)
    code: float | None = None


def _permutation(p: float) -> str:
    return f"permutation and sign (matched L{p:g} conditional and loss)"


CONDITIONALS: dict[str, Conditional] = {
    "laplace": Conditional(latents.Laplace, lp_loss(1.0), estimator_output_norm="learnable_box",
                           identifies=_permutation(1), claim="permutation", code=1),
    "normal": Conditional(latents.Normal, lp_loss(2.0),
                          identifies="an orthogonal map (Normal conditional, L2 loss: a rotation is left)",
                          claim="orthogonal", claim_by_space={"unbounded": "rotation"}, code=2),
    "vmf": Conditional(latents.VonMisesFisher, dot_loss, output_norm="fixed_sphere",
                       estimator_output_norm="fixed_sphere",
                       identifies="an orthogonal map (vMF conditional, dot-product loss on the sphere)",
                       claim_by_space={"sphere": "orthogonal"}, code=0),
}
"""The conditionals by name; add a row to add one."""


def generalized_normal(p: float) -> Conditional:
    """The generalised normal of exponent ``p`` (density ∝ exp(-(|x - μ|/scale)^p)) with its Lp loss.

    Parameters
    ----------
    p : float
        The exponent; one row per value (``generalized_normal(3) is generalized_normal(3.0)``).

    Returns
    -------
    Conditional
    """
    return _generalized_normal(float(p))


@functools.cache
def _generalized_normal(p: float) -> Conditional:
    return Conditional(lambda scale: latents.GeneralizedNormal(scale, p), lp_loss(p), identifies=_permutation(p),
                       claim="permutation", code=p)


def by_code(code: float) -> Conditional:
    """The conditional of the original's ``--c-p`` number (or, for its loss, ``--p``).

    Parameters
    ----------
    code : float
        A row's ``code`` (0 vMF, 1 Laplace, 2 normal); any other p: the generalised normal of exponent p.

    Returns
    -------
    Conditional
    """
    return next((row for row in CONDITIONALS.values() if row.code == code), None) or generalized_normal(code)


def by_name(name: str) -> Conditional:
    """A row by its name, or by 3DIdent's ``l1``/``l2``/``l3`` (the Lp conditional of that exponent).

    Parameters
    ----------
    name : str
        A key of :data:`CONDITIONALS`, or ``l`` followed by an exponent.

    Returns
    -------
    Conditional
    """
    return CONDITIONALS[name] if name in CONDITIONALS else by_code(float(name[1:]))


def claim(conditional: Conditional, loss: Conditional, space: str) -> str:
    """The theory's prediction for data of ``conditional`` on ``space`` trained with ``loss``'s matched loss.

    Parameters
    ----------
    conditional : Conditional
        The conditional the positives are drawn from.
    loss : Conditional
        The conditional whose matched loss trains the encoder.
    space : str
        The latent space type: ``box``, ``sphere`` or ``unbounded``.

    Returns
    -------
    str
        A :data:`CLAIMS` key; ``"none"`` when the loss is not the conditional's.
    """
    if conditional is not loss:
        return "none"
    return conditional.claim_by_space.get(space, conditional.claim)
