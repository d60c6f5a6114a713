"""Disentanglement and identifiability metrics of a representation against ground-truth factors.

Every function takes samples × dimensions arrays (numpy or torch). Linear R² and MCC are clica's own;
MIG, DCI, SAP, Modularity and Explicitness, the BetaVAE and FactorVAE scores are defined as
disentanglement_lib defines them (what each measures and misses: docs/metrics.md).
"""

from ._arrays import constant_columns, to_numpy
from .beta_vae import BetaVAEScore, beta_vae_score
from .consistency import Consistency, consistency
from .dci import DCIResult, dci
from .factor_vae import FactorVAEScore, factor_vae_score
from .ground_truth import GroundTruthData
from .mcc import MCCResult, correlation_matrix, mcc
from .mig import mig
from .modularity import Explicitness, explicitness, modularity
from .r2 import LinearFit, linear_fit, linear_r2
from .sap import sap
from .suite import GENERATOR_FREE, score

__all__ = [
    "to_numpy", "constant_columns", "LinearFit", "linear_fit", "linear_r2", "correlation_matrix", "MCCResult", "mcc",
    "mig", "DCIResult", "dci", "sap", "modularity", "Explicitness", "explicitness", "GroundTruthData",
    "BetaVAEScore", "beta_vae_score", "FactorVAEScore", "factor_vae_score", "GENERATOR_FREE", "score",
    "Consistency", "consistency",
]
