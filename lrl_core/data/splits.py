"""The stable train / validation / test split of units by a keyed hash of their id.

A unit lands in the same split in every process and every retrain, whatever
the order or the type of the ids.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

SPLIT_NAMES = ("train", "validation", "test")


def split_by_unit(unit_ids, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                  salt: str = "lrl-split-v1") -> np.ndarray:
    """Assign units to train (0), validation (1) or test (2) by a stable hash of their id.

    The hash is SipHash (``pd.util.hash_array``) of ``str(unit_id)`` keyed by
    ``salt``, which does not depend on the process, the platform,
    ``PYTHONHASHSEED``, the order of the ids or their type (``17`` and
    ``"17"`` land together): a unit stays in its split across retrains.

    Parameters
    ----------
    unit_ids : (n,) array-like of int or str.
    fractions : shares of train, validation and test; non-negative, summing to 1.
    salt : changes the whole assignment; keep it fixed to keep splits stable.

    Returns
    -------
    (n,) int8 with values in {0, 1, 2}; see ``SPLIT_NAMES``.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative shares summing to 1, got {fractions.tolist()}")
    # hash_array takes a 16-character key; derive it from the salt.
    key = hashlib.blake2b(salt.encode("utf-8"), digest_size=8).hexdigest()
    text = pd.Series(np.asarray(unit_ids, dtype=object)).map(str).to_numpy(dtype=object)
    hashed = pd.util.hash_array(text, hash_key=key, categorize=True)
    uniform = (hashed >> np.uint64(11)).astype(np.float64) * 2.0 ** -53  # top 53 bits -> [0, 1)
    edges = np.cumsum(fractions)[:2]
    return np.searchsorted(edges, uniform, side="right").astype(np.int8)
