"""varsec.recsys: recommenders and their training loop (DESIGN.md sections 1 and 5).

Every model derives from :class:`Recommender` (``fit``, ``score``, ``score_features``,
``score_images``, ``save``/``load``); pairwise models are trained by
:func:`~varsec.recsys.training.train_pairwise`. :data:`RECOMMENDERS` maps config names to classes.
"""

from varsec.recsys.alexrank import AlexRank
from varsec.recsys.amr import AMR
from varsec.recsys.base import Param, Recommender
from varsec.recsys.bpr_mf import BPRMF
from varsec.recsys.dvbpr import DVBPR
from varsec.recsys.knn import VisualKNN, cosine_topk
from varsec.recsys.training import NegativeSampler, PairwiseRecommender, train_pairwise
from varsec.recsys.two_stage import CandidateSets, InjectedRanks, TwoStage
from varsec.recsys.vbpr import VBPR

RECOMMENDERS: dict[str, type[Recommender]] = {
    "bpr-mf": BPRMF,
    "vbpr": VBPR,
    "amr": AMR,
    "dvbpr": DVBPR,
    "alexrank": AlexRank,
    "visual-knn": VisualKNN,
}


def create_recommender(name: str, **hyperparameters: object) -> Recommender:
    """Build the recommender registered as ``name`` (see :data:`RECOMMENDERS`)."""
    from varsec.errors import ConfigError

    if name not in RECOMMENDERS:
        raise ConfigError(f"unknown recommender {name!r} (known: {', '.join(RECOMMENDERS)}).")
    return RECOMMENDERS[name](**hyperparameters)


__all__ = [
    "AMR",
    "BPRMF",
    "DVBPR",
    "RECOMMENDERS",
    "VBPR",
    "AlexRank",
    "CandidateSets",
    "InjectedRanks",
    "NegativeSampler",
    "PairwiseRecommender",
    "Param",
    "Recommender",
    "TwoStage",
    "VisualKNN",
    "cosine_topk",
    "create_recommender",
    "train_pairwise",
]
