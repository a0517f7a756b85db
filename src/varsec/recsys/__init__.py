"""varsec.recsys: recommenders and their training loop (DESIGN.md sections 1 and 5).

Every model derives from :class:`Recommender` (``fit``, ``score``, ``score_features``,
``score_images``, ``save``/``load``) and registers itself in its own file with
:func:`register_recommender`; pairwise models are trained by
:func:`~varsec.recsys.training.train_pairwise`. :data:`RECOMMENDERS` maps every registered
name and alias to its class; :func:`known_recommenders` lists the names.
"""

from varsec.recsys.alexrank import AlexRank
from varsec.recsys.amr import AMR
from varsec.recsys.base import (
    Param,
    Recommender,
    checkpoint_class,
    create_recommender,
    known_recommenders,
    recommender_class,
    register_recommender,
    registered_names,
)
from varsec.recsys.bpr_mf import BPRMF
from varsec.recsys.dvbpr import DVBPR
from varsec.recsys.knn import VisualKNN, cosine_topk
from varsec.recsys.training import NegativeSampler, PairwiseRecommender, train_pairwise
from varsec.recsys.two_stage import CandidateSets, InjectedRanks, TwoStage
from varsec.recsys.vbpr import VBPR

# A live read-only view of the registry (models registered later appear in it too).
RECOMMENDERS = registered_names()

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
    "checkpoint_class",
    "cosine_topk",
    "create_recommender",
    "known_recommenders",
    "recommender_class",
    "register_recommender",
    "registered_names",
    "train_pairwise",
]
