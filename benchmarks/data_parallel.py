"""Data-parallel training (issue 16): 1 against N ``torchrun`` ranks on the real-data shape.

Draws ``benchmarks/scale.py``'s data (53 experiments x 2 arms, 142 features, 5 metrics) at
``--scale`` (1 = 5.3M exposure rows), standardises the features, and fits one fixed configuration
(``mlp d=32 weight_decay=1``, the one selection chose at scale 1; no search, no jackknife) for
``--epochs`` epochs through the same path the ``lr_learner`` asset takes with ``--workers``
(:mod:`lrl_pipeline.workers.train`: inputs to a folder, ``torchrun``, the learner back), once per
rank count. Prints per rank count: wall seconds (``torchrun`` start to exit), each rank's rows per
second and peak RSS (the mapped feature matrix's pages count in every rank's RSS but are one copy
in the page cache), the summed throughput, and the final validation loss (the same for every rank
count, up to float sums). Usage::

    python benchmarks/data_parallel.py --scale 1 --ranks 1,2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import K_EXPERIMENTS, N_FEATURES, N_METRICS, UNITS_PER_ARM  # noqa: E402

from lrl_core.config import LRLConfig  # noqa: E402
from lrl_core.data import split_by_unit  # noqa: E402
from lrl_core.synthetic import nonlinear_synthetic  # noqa: E402
from lrl_pipeline.workers.train import command, read_learner, write_inputs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def draw(scale: float, seed: int):
    """``(X float32 standardised, train rows, validation rows, n_arms, metrics, controls)``."""
    data = nonlinear_synthetic(K_EXPERIMENTS, int(UNITS_PER_ARM * scale), N_FEATURES, N_METRICS, seed=seed)
    X = data.X.astype(np.float32)
    X -= X.mean(axis=0)
    X /= X.std(axis=0) + 1e-6
    split = split_by_unit(data.unit_ids)[data.units]
    rows = lambda part: (data.units[split == part], data.arms[split == part], data.Y[split == part])  # noqa: E731
    return X, rows(0), rows(1), data.n_arms, list(data.metrics), data.control_arm[data.arm_experiment]


def run(folder: Path, ranks: int) -> dict:
    """One ``torchrun`` of ``ranks`` ranks on the inputs in ``folder``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // ranks))}
    started = time.perf_counter()
    subprocess.run(command(folder, ranks), env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    report = json.loads((folder / "ranks.json").read_text())
    learner = read_learner(folder)
    return {"ranks": ranks, "wall_s": wall, "per_rank": report["ranks"], "backend": report["backend"],
            "epochs": learner.n_epochs_, "val_loss": learner.history_[-1]["val_loss"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--ranks", default="1,2", help="comma-separated rank counts")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default results/data_parallel_<scale>.md)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    X, train, val, n_arms, metrics, controls = draw(args.scale, args.seed)
    print(f"drawn {X.shape[0]:,} units x {X.shape[1]} features, {train[0].size:,} training rows "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    config = LRLConfig(extractor="mlp", d=32, weight_decay=1.0, max_epochs=args.epochs, patience=10_000,
                       interval_refits=0, progress=False, seed=args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="lrl-ddp-bench-") as tmp:
        folder = Path(tmp)
        write_inputs(folder, X, train, val, n_arms, metrics, controls, config)
        del X
        for ranks in [int(r) for r in args.ranks.split(",")]:
            result = run(folder, ranks)
            results.append(result)
            print(f"{ranks} rank(s): {result['wall_s']:.1f} s wall, "
                  f"{sum(r['rows_per_s'] for r in result['per_rank']):,.0f} rows/s in all", flush=True)
    lines = ["| ranks | backend | wall s (torchrun) | fit s (rank 0) | rows/s per rank | rows/s in all | "
             "peak RSS per rank (GB) | epochs | final validation loss |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        per = r["per_rank"]
        rates = ", ".join(f"{p['rows_per_s']:,.0f}" for p in per)
        peaks = ", ".join(f"{p['peak_rss_gb']:.2f}" for p in per)
        total = sum(p["rows_per_s"] for p in per)
        lines.append(f"| {r['ranks']} | {r['backend']} | {r['wall_s']:.1f} | {per[0]['fit_seconds']:.1f} | {rates} | "
                     f"{total:,.0f} | {peaks} | {r['epochs']} | {r['val_loss']:.6f} |")
    text = (f"# Data-parallel training, 1 against N ranks\n\n- command: `python benchmarks/data_parallel.py "
            f"--scale {args.scale:g} --ranks {args.ranks} --epochs {args.epochs}`\n"
            f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs; "
            f"load average before: {os.getloadavg()[0]:.1f}\n\n" + "\n".join(lines) + "\n")
    out = args.out or RESULTS / f"data_parallel_{args.scale:g}.md"
    out.write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
