"""Search over independent Bernoulli connection probabilities.

This subpackage works on any vector of Bernoulli parameters and depends neither on the
network nor on Stable-Baselines3. It provides sampling into packed bits, centered-rank
fitness shaping, the natural-gradient estimate, and the SATR, EC and plain
natural-gradient updates.
"""

from sb3_satr.search.base import DIAGNOSTIC_KEYS, BernoulliUpdate
from sb3_satr.search.baselines import ECUpdate, NaturalGradientUpdate
from sb3_satr.search.distribution import bernoulli_kl, mean_entropy, mode_connections, sample_population
from sb3_satr.search.estimators import SIGNAL_ESTIMATORS, GradientEstimate, SignalEstimator, estimate_gradient
from sb3_satr.search.satr import (
    KL_REDUCTIONS,
    SATR_SIGNAL_ESTIMATORS,
    TRUST_REGION_BUDGETS,
    KLReduction,
    SATRSignalEstimator,
    SATRUpdate,
    TrustRegionBudget,
)
from sb3_satr.search.shaping import centered_ranks, natural_gradient

__all__ = [
    "DIAGNOSTIC_KEYS",
    "KL_REDUCTIONS",
    "KLReduction",
    "SATR_SIGNAL_ESTIMATORS",
    "SATRSignalEstimator",
    "SIGNAL_ESTIMATORS",
    "TRUST_REGION_BUDGETS",
    "BernoulliUpdate",
    "ECUpdate",
    "GradientEstimate",
    "NaturalGradientUpdate",
    "SATRUpdate",
    "SignalEstimator",
    "TrustRegionBudget",
    "bernoulli_kl",
    "centered_ranks",
    "estimate_gradient",
    "mean_entropy",
    "mode_connections",
    "natural_gradient",
    "sample_population",
]
