"""split_by_unit and SPLIT_NAMES (lrl_core/data/splits.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from lrl_core.data import SPLIT_NAMES, split_by_unit


def test_split_is_stable_and_balanced():
    ids = np.arange(100_000, dtype=np.int64)
    split = split_by_unit(ids)
    assert split.dtype == np.int8 and set(np.unique(split)) == {0, 1, 2}
    shares = np.bincount(split, minlength=3) / len(ids)
    np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.01)
    np.testing.assert_array_equal(split_by_unit(ids), split)

    order = np.random.default_rng(0).permutation(len(ids))
    np.testing.assert_array_equal(split_by_unit(ids[order]), split[order])
    np.testing.assert_array_equal(split_by_unit([str(i) for i in ids[:1000]]), split[:1000])
    assert (split_by_unit(ids, salt="other") != split).mean() > 0.2
    assert SPLIT_NAMES[split[0]] in ("train", "validation", "test")
    with pytest.raises(ValueError, match="fractions"):
        split_by_unit(ids, fractions=(0.5, 0.5, 0.5))


def test_split_is_identical_in_another_process():
    code = ("import numpy as np; from lrl_core.data import split_by_unit; "
            "print(''.join(map(str, split_by_unit(np.array(['a', 'b', 'ü'] + [f'u{i}' for i in range(200)])))))")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        for seed in ("1", "2")
    }
    local = "".join(map(str, split_by_unit(np.array(["a", "b", "ü"] + [f"u{i}" for i in range(200)]))))
    assert outputs == {local}
