"""Experiments that resemble each other by their learned effect embeddings.

The LR-learner's CATE of arm ``(k, t)`` is ``v(x)' A_j (e_(k,t) - e_(k,0))``
for every metric ``j``, so the effect embedding ``e_(k,t) - e_(k,0)`` says
what the arm does to every unit and metric at once. Arms whose effect
embeddings point the same way move the same units in the same direction:
the downstream use the paper suggests (finding similar experiments).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["similarity_matrix", "nearest_experiments"]


def similarity_matrix(embeddings, metric: str = "cosine") -> np.ndarray:
    """Pairwise similarity of ``embeddings (A, d)`` -> ``(A, A)``; larger is closer.

    ``"cosine"``: cosine of the angle (in ``[-1, 1]``; a zero embedding, an
    arm with no effect at all, is similar to nothing: 0). ``"euclidean"``:
    the negative Euclidean distance.
    """
    E = np.asarray(embeddings, dtype=np.float64)
    if E.ndim != 2:
        raise ValueError(f"embeddings must be (A, d); got shape {E.shape}")
    if metric == "cosine":
        norms = np.linalg.norm(E, axis=1)
        unit = E / np.where(norms > 0, norms, 1.0)[:, None]
        return np.clip(unit @ unit.T, -1.0, 1.0)
    if metric == "euclidean":
        sq = np.square(E).sum(axis=1)
        return -np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * E @ E.T, 0.0))
    raise ValueError(f"metric must be 'cosine' or 'euclidean'; got {metric!r}")


def nearest_experiments(embeddings, labels, k: int = 3, metric: str = "cosine") -> pd.DataFrame:
    """The ``k`` nearest other arms of each arm by effect embedding.

    Parameters
    ----------
    embeddings:
        ``(A, d)`` effect embeddings ``e_(k,t) - e_(k,0)``, one row per
        treated arm.
    labels:
        ``(A,)`` names of the rows (e.g. ``"exp_07/treatment"``).
    k:
        Neighbours per arm (at most ``A - 1``).
    metric:
        ``"cosine"`` or ``"euclidean"``, see :func:`similarity_matrix`.

    Returns
    -------
    DataFrame with columns ``label, neighbour, rank, similarity``:
    ``A * min(k, A - 1)`` rows, rank 1 the closest; ties broken by row order.
    """
    labels = [str(label) for label in labels]
    S = similarity_matrix(embeddings, metric)
    A = S.shape[0]
    if len(labels) != A:
        raise ValueError(f"{len(labels)} labels for {A} embeddings")
    k = min(int(k), A - 1)
    if k <= 0:
        return pd.DataFrame({"label": [], "neighbour": [], "rank": np.array([], dtype=np.int64),
                             "similarity": np.array([], dtype=np.float64)})
    # Never one's own neighbour.
    np.fill_diagonal(S, -np.inf)
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]  # (A, k)
    names = np.asarray(labels, dtype=object)
    return pd.DataFrame(
        {
            "label": np.repeat(names, k),
            "neighbour": names[order].reshape(-1),
            "rank": np.tile(np.arange(1, k + 1), A),
            "similarity": np.take_along_axis(S, order, axis=1).reshape(-1),
        }
    )
