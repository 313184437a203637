"""The LR-learner's network: ``y_hat(x, g, j) = v(x)' A_j e_g`` (Yao et al. 2022, section 4).

One forward pass of the extractor ``v`` per row predicts every metric at once:
the arm's ``J x d`` block ``W[g] = [A_1 e_g, ..., A_J e_g]'`` is built once per
batch and dotted with ``v(x)``, so the network never runs once per metric.

Training uses :meth:`LowRankNet.paged_outcomes` with a layout from
:func:`arm_pages`: the rows of a batch are laid into pages of one arm each, so
the arm part is one batched matrix product over pages instead of a per-row
``(B, J, d)`` gather, which on a CPU costs more than the extractor itself.
"""
from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import nn

__all__ = ["ArmPages", "LowRankNet", "arm_pages", "page_rows_for"]


class LowRankNet(nn.Module):
    """Extractor ``v: R^p -> R^d``, arm embeddings ``E (G, d)``, metric operators ``A (J, d, d)``.

    Parameters
    ----------
    n_features:
        ``p``, the width of the prepared feature matrix.
    n_arms:
        ``G``, arms over all experiments, control arms included.
    n_metrics:
        ``J``.
    d:
        Embedding dimension.
    extractor:
        ``"linear"``: ``v(x) = W x + b``; ``"mlp"``: ``Linear(p, hidden) -> ReLU -> Linear(hidden, d)``
        (the paper's "two layers with ReLU").
    hidden:
        Width of the MLP's hidden layer (unused by the linear extractor).
    generator:
        Seeds the initialisation without touching torch's global random state.

    The initialisation gives ``v(x)`` coordinates of about unit variance on
    standardised inputs, and ``A``, ``E`` entries of variance ``1 / d``, so
    that each output ``v' A_j e_g`` starts with variance of order one, the
    scale of the standardised targets.
    """

    def __init__(
        self,
        n_features: int,
        n_arms: int,
        n_metrics: int,
        d: int = 32,
        extractor: Literal["mlp", "linear"] = "mlp",
        hidden: int = 64,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if extractor == "linear":
            self.extractor = nn.Sequential(nn.Linear(n_features, d))
        elif extractor == "mlp":
            self.extractor = nn.Sequential(
                nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, d)
            )
        else:
            raise ValueError(f"extractor must be 'mlp' or 'linear'; got {extractor!r}")
        self.arm_embeddings = nn.Parameter(torch.empty(n_arms, d))
        self.metric_operators = nn.Parameter(torch.empty(n_metrics, d, d))
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw every parameter afresh (see the class docstring for the scales)."""
        layers = [m for m in self.extractor if isinstance(m, nn.Linear)]
        for i, layer in enumerate(layers):
            # He gain before a ReLU keeps the second moment of the hidden layer
            # equal to that of the input; gain 1 on the output layer.
            gain = math.sqrt(2.0) if i < len(layers) - 1 else 1.0
            layer.weight.normal_(0.0, gain / math.sqrt(layer.in_features), generator=generator)
            layer.bias.zero_()
        d = self.arm_embeddings.shape[1]
        self.arm_embeddings.normal_(0.0, 1.0 / math.sqrt(d), generator=generator)
        self.metric_operators.normal_(0.0, 1.0 / math.sqrt(d), generator=generator)

    @property
    def d(self) -> int:
        """Embedding dimension."""
        return self.arm_embeddings.shape[1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``v(x)``: ``(B, p) -> (B, d)``."""
        return self.extractor(x)

    def arm_weights(self) -> torch.Tensor:
        """``W (G, J, d)`` with ``W[g, j] = A_j e_g``: each arm's linear map from ``v`` to all metrics."""
        return torch.einsum("jde,ge->gjd", self.metric_operators, self.arm_embeddings)

    def outcomes(self, v: torch.Tensor, arms: torch.Tensor) -> torch.Tensor:
        """Standardised outcomes of every metric: ``v (B, d)``, ``arms (B,)`` -> ``(B, J)``."""
        n_arms = self.arm_embeddings.shape[0]
        if n_arms <= v.shape[0]:
            # Few arms: W costs G*J*d^2 once, then J*d per row.
            rows = self.arm_weights()[arms]
            return torch.bmm(rows, v.unsqueeze(2)).squeeze(2)
        # More arms than rows: J*d^2 per row through the gathered embeddings is cheaper.
        u = torch.einsum("bd,jde->bje", v, self.metric_operators)
        return torch.bmm(u, self.arm_embeddings[arms].unsqueeze(2)).squeeze(2)

    def cate(self, v: torch.Tensor, arms: torch.Tensor, controls: torch.Tensor) -> torch.Tensor:
        """Standardised effects ``v' A_j (e_arm - e_control)``: ``(B, d), (B,), (B,) -> (B, J)``."""
        effect = self.arm_embeddings[arms] - self.arm_embeddings[controls]
        u = torch.einsum("bd,jde->bje", v, self.metric_operators)
        return torch.bmm(u, effect.unsqueeze(2)).squeeze(2)

    def forward(self, x: torch.Tensor, arms: torch.Tensor) -> torch.Tensor:
        """Standardised outcomes: ``x (B, p)``, ``arms (B,)`` -> ``(B, J)``, one pass of ``v`` per row."""
        return self.outcomes(self.embed(x), arms)

    def paged_outcomes(
        self, v: torch.Tensor, slots: torch.Tensor, page_arms: torch.Tensor, page_rows: int
    ) -> torch.Tensor:
        """Standardised outcomes of rows laid out in arm pages: ``(B, d) -> (B, J)``.

        ``slots (B,)``: each row's position in the flattened ``(P_b, page_rows)``
        page grid (distinct); ``page_arms (P_b,)``: the arm of every page. Equal
        to ``outcomes(v, arms)``; unused page positions are zero and never read.
        """
        n_pages = page_arms.shape[0]
        paged = v.new_zeros(n_pages * page_rows, v.shape[1]).index_copy(0, slots, v)
        weights = self.arm_weights()[page_arms]
        out = torch.bmm(paged.view(n_pages, page_rows, -1), weights.transpose(1, 2))
        return out.reshape(n_pages * page_rows, -1).index_select(0, slots)


class ArmPages(NamedTuple):
    """Layout of fixed batches for :meth:`LowRankNet.paged_outcomes` (see :func:`arm_pages`)."""

    order: np.ndarray
    """``(r,)`` reordering of the rows: each batch keeps its rows, now grouped by arm."""
    slots: np.ndarray
    """``(r,)`` position of each reordered row in its batch's page grid."""
    page_arms: np.ndarray
    """``(n_batches, max_pages)`` arm of each page; padding pages hold arm 0 and no rows."""
    page_rows: int


def page_rows_for(batch_size: int, n_arms: int) -> int:
    """Rows per page: a power of two near ``batch_size / (4 G)``, in ``[1, 256]``.

    Each arm wastes less than one page per batch, so the padding stays below
    about a quarter of the batch while pages stay long enough for an efficient
    batched product.
    """
    target = max(batch_size / (4 * max(n_arms, 1)), 1.0)
    return int(min(2 ** math.floor(math.log2(target)), 256))


def arm_pages(arms: np.ndarray, batch_size: int, n_arms: int) -> ArmPages:
    """Page layout of rows cut into consecutive batches of ``batch_size``.

    ``arms (r,)`` is the arm of each row in batch order (the last batch may be
    short). Rows of one batch and arm fill pages of ``page_rows`` in turn.
    """
    arms = np.asarray(arms, dtype=np.int64)
    r = arms.shape[0]
    page_rows = page_rows_for(batch_size, n_arms)
    n_batches = -(-r // batch_size)
    key = (np.arange(r) // batch_size) * n_arms + arms
    # Keys are batch-major, so sorting keeps every batch on its own rows.
    order = np.argsort(key, kind="stable")
    key = key[order]
    counts = np.bincount(key, minlength=n_batches * n_arms)
    rank = np.arange(r) - (np.cumsum(counts) - counts)[key]
    pages = -(-counts.reshape(n_batches, n_arms) // page_rows)
    first_page = (np.cumsum(pages, axis=1) - pages).ravel()
    page = first_page[key] + rank // page_rows
    page_arms = np.zeros((n_batches, int(pages.sum(axis=1).max(initial=0))), dtype=np.int64)
    page_arms[key // n_arms, page] = key % n_arms
    return ArmPages(order, page * page_rows + rank % page_rows, page_arms, page_rows)
