"""Visual item-kNN: cosine nearest neighbours in feature space (Normann, 004; DESIGN.md sec 5).

:meth:`VisualKNN.neighbours` answers the thesis' item-to-item question (the k catalog items most
similar to a query item or a query image's features), exactly, by brute force over query chunks:
one chunk x N similarity block is held at a time (``chunk_size`` queries, at most ~2^25 cells),
so 10^5 items fit in memory. As a user recommender it is the classic item-based kNN on visual
similarity: ``s_ui = Σ_{j ∈ D_u ∩ N_k(i)} cos(f_i, f_j)``, where ``N_k(i)`` are the
``neighbours`` most similar warm items of i (never i itself) and ``D_u`` the user's train items.
A cold item (or new features) is scored the same way from its own neighbour list.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F

from varsec.data.catalog import Dataset
from varsec.errors import ConfigError
from varsec.recsys.base import (
    Param,
    Recommender,
    register_recommender,
    resolve_features,
    warm_item_mask,
)

MAX_BLOCK_CELLS = 1 << 25


def cosine_topk(
    queries: Tensor,
    items: Tensor,
    k: int,
    *,
    exclude: Tensor | None = None,
    allowed: Tensor | None = None,
    chunk_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """Exact top-k cosine neighbours: ``(indices [Q, k], similarities [Q, k])``, best first.

    ``queries`` and ``items`` must be L2-normalised. ``exclude[q]`` (an item index, or -1) is
    never returned for query q; ``allowed`` (bool [N]) restricts the candidates. Differentiable
    in ``queries`` through the returned similarities.
    """
    n_items = len(items)
    rows_per_block = max(1, min(chunk_size, MAX_BLOCK_CELLS // max(n_items, 1)))
    indices, similarities = [], []
    for start in range(0, len(queries), rows_per_block):
        block = queries[start : start + rows_per_block] @ items.T
        masked = block
        if allowed is not None:
            masked = masked.masked_fill(~allowed.unsqueeze(0), -torch.inf)
        if exclude is not None:
            own = exclude[start : start + rows_per_block]
            rows = torch.nonzero(own >= 0).reshape(-1)
            masked = masked.index_put((rows, own[rows]), torch.tensor(-torch.inf))
        top = torch.topk(masked.detach(), k, dim=1).indices
        indices.append(top)
        similarities.append(block.gather(1, top))
    return torch.cat(indices), torch.cat(similarities)


# "knn" is what studies call it; "visual-knn" its earlier Python name.
@register_recommender("knn", aliases=("visual-knn",))
class VisualKNN(Recommender):
    """Visual item-kNN with exact cosine similarity (thesis 004; DESIGN.md section 5)."""

    visual: ClassVar[bool] = True
    needs_features: ClassVar[bool] = True
    item_to_item: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {
        **Recommender.params,
        "neighbours": Param(20, int, low=1, doc="size of N_k(i) in the user score"),
        "chunk_size": Param(1024, int, low=1, doc="queries per similarity block"),
    }

    def _fit(self, dataset: Dataset, features: Any | None, extractor: Any | None) -> None:
        matrix = resolve_features(dataset, features, extractor, type(self).__name__)
        self.attach_extractor(extractor)
        warm = warm_item_mask(dataset)
        if self.hp.neighbours > int(warm.sum()) - 1:
            raise ConfigError(
                f"VisualKNN parameter neighbours ({self.hp.neighbours}) must be smaller than the "
                f"{int(warm.sum())} warm items of catalog {dataset.catalog.name!r}."
            )
        self._build({"feature_dim": int(matrix.shape[1])})
        train = dataset.part("train")
        users, items = torch.as_tensor(train.user), torch.as_tensor(train.item)
        keys = torch.unique(users * self.n_items + items)
        with torch.no_grad():
            self.unit_features.copy_(F.normalize(matrix, dim=1))
            self.warm.copy_(warm)
            self.history_users = keys // self.n_items
            self.history_items = keys % self.n_items
            self._fill_neighbour_graph()
        self.to(self.device)

    def _build(self, shapes: dict[str, Any]) -> None:
        self._feature_dim = int(shapes["feature_dim"])
        n, k = self.n_items, self.hp.neighbours
        self.register_buffer("unit_features", torch.zeros(n, self._feature_dim))
        self.register_buffer("warm", torch.ones(n, dtype=torch.bool))
        self.register_buffer("graph_items", torch.zeros(n, k, dtype=torch.long))
        self.register_buffer("graph_similarity", torch.zeros(n, k))
        history = int(shapes.get("history", 0))
        self.register_buffer("history_users", torch.zeros(history, dtype=torch.long))
        self.register_buffer("history_items", torch.zeros(history, dtype=torch.long))

    def _shapes(self) -> dict[str, Any]:
        return {"feature_dim": self._feature_dim, "history": len(self.history_users)}

    def _fill_neighbour_graph(self) -> None:
        self.graph_items, self.graph_similarity = cosine_topk(
            self.unit_features, self.unit_features, self.hp.neighbours,
            exclude=torch.arange(self.n_items), allowed=self.warm, chunk_size=self.hp.chunk_size,
        )

    # -- item to item -------------------------------------------------------------------------
    def neighbours(
        self,
        query_items: Any | None = None,
        query_features: Tensor | None = None,
        k: int = 10,
        *,
        include_cold: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """The k most cosine-similar catalog items of each query: ``(indices, similarities)``.

        Give either ``query_items`` (catalog indices; an item is never its own neighbour) or
        ``query_features`` (Q x D, e.g. of an attacked image). ``include_cold=False`` restricts
        the answers to warm items.
        """
        self._require_fitted()
        if (query_items is None) == (query_features is None):
            raise ConfigError("give exactly one of query_items and query_features.")
        allowed = None if include_cold else self.warm
        candidates = self.n_items if include_cold else int(self.warm.sum())
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}.")
        if query_items is not None:
            items = self.item_index(query_items)
            if k > candidates - 1:
                raise ConfigError(f"k={k} exceeds the {candidates - 1} other candidate items.")
            return cosine_topk(self.unit_features[items], self.unit_features, k, exclude=items,
                               allowed=allowed, chunk_size=self.hp.chunk_size)
        if k > candidates:
            raise ConfigError(f"k={k} exceeds the {candidates} candidate items.")
        queries = F.normalize(self._check_features_input(query_features), dim=1)
        return cosine_topk(queries, self.unit_features, k, allowed=allowed,
                           chunk_size=self.hp.chunk_size)

    # -- user scores --------------------------------------------------------------------------
    def _history_matrix(self, users: Tensor) -> Tensor:
        """Dense float [U, N]: 1 where ``users[r]`` interacted with the item in train."""
        unique, inverse = torch.unique(users, return_inverse=True)
        position = torch.full((self.n_users,), -1, dtype=torch.long, device=self.device)
        position[unique] = torch.arange(len(unique), device=self.device)
        matrix = torch.zeros(len(unique), self.n_items, device=self.device)
        rows = position[self.history_users]
        keep = rows >= 0
        matrix[rows[keep], self.history_items[keep]] = 1.0
        return matrix[inverse]

    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        neighbour_items = self.graph_items if items is None else self.graph_items[items]
        similarity = self.graph_similarity if items is None else self.graph_similarity[items]
        return self._sum_over_history(users, neighbour_items, similarity)

    def _sum_over_history(
        self, users: Tensor, neighbour_items: Tensor, similarity: Tensor
    ) -> Tensor:
        """``[U, B]``: Σ_t history[u, neighbour_items[b, t]] · similarity[b, t]."""
        history = self._history_matrix(users)
        n_queries, k = neighbour_items.shape
        rows = torch.arange(n_queries, device=self.device).repeat_interleave(k)
        graph = torch.sparse_coo_tensor(
            torch.stack([rows, neighbour_items.reshape(-1)]), similarity.reshape(-1),
            (n_queries, self.n_items),
            check_invariants=False,
        )
        return torch.sparse.mm(graph, history.T).T

    def _score_features(self, users: Tensor, features: Tensor) -> Tensor:
        queries = F.normalize(features, dim=1)
        items, similarity = cosine_topk(queries, self.unit_features, self.hp.neighbours,
                                        allowed=self.warm, chunk_size=self.hp.chunk_size)
        history = self._history_matrix(users)
        return (history[:, items] * similarity.unsqueeze(0)).sum(2)


__all__ = ["VisualKNN", "cosine_topk"]
