"""The paper's semi-synthetic study (section 5.4, Table 2) on scikit-learn's digits.

Potential outcomes are a trained classifier's (standardised) class logits;
experiment ``c`` compares class ``c`` with class 0 (9 experiments, one
metric); every training unit joins each experiment with probability
``--share`` (the paper: 10%) and within it control or treatment at random.
See :func:`lrl_core.synthetic.digits_semi_synthetic`.

Models, all on the same prepared features (``FeatureTransform``):

- the LR-learner with its default configuration (MLP extractor) but a
  weaker prior (``weight_decay``, see ``LR_CONFIG``);
- independent T-learners: XGBoost (``XGBTLearner`` defaults) and OLS;
- a reference without heterogeneity: each arm's training mean, i.e. the
  difference-in-means ATE as every unit's CATE.

PEHE is against the true CATE (the outcomes carry no noise, as in the
paper); mu-risk is on the held-out units' observed outcomes. Averaged over
``--reps`` seeds, each a fresh classifier, allocation and train/test split.

Usage::

    python benchmarks/semi_synthetic.py [--reps 5] [--share 0.1] [--seed 0]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lrl_core.baselines import OLSTLearner, XGBTLearner
from lrl_core.config import LRLConfig
from lrl_core.features import FeatureTransform
from lrl_core.synthetic import SyntheticData, digits_semi_synthetic
from lrl_core.training import LRLearner
from paper_table1 import score, to_markdown

RESULTS = Path(__file__).resolve().parent / "results"

# Table 2 of the paper (CIFAR-100, 99 experiments; a different data set, for orientation only).
PAPER = {"LR-learner": (0.5277, 0.2560), "XGBoost T-learner": (0.5787, 0.2696),
         "Linear T-learner": (0.6118, 0.2897)}

# The default configuration but for the prior: weight_decay 100 (a prior sized
# for noisy outcomes over many rows) over-shrinks these ~1,300 noise-free rows.
# 1.0 had the lowest validation loss of 0 / 1 / 10 / 100 on two tuning seeds
# (998, 999), never on the seeds scored here; see benchmarks/README.md.
LR_CONFIG = LRLConfig(weight_decay=1.0, progress=False)


class ArmMeans:
    """Each arm's mean training outcome for every unit: the CATE is the experiment's ATE."""

    def fit(self, X, units, arms, Y, n_arms: int) -> "ArmMeans":
        """``Y (r, J)`` rows in arms ``arms (r,)``; ``X`` and ``units`` are ignored."""
        sums = np.zeros((n_arms, Y.shape[1]))
        np.add.at(sums, arms, Y)
        self.means_ = sums / np.bincount(arms, minlength=n_arms)[:, None]
        return self

    def predict_outcomes(self, X, arms) -> np.ndarray:
        """``(n, len(arms), J)``: the same for every unit."""
        return np.broadcast_to(self.means_[np.asarray(arms)], (len(X), len(arms), self.means_.shape[1]))


def run_rep(rep: int, args, log) -> list[dict]:
    """Fit and score every model on one seed's semi-synthetic data."""
    data: SyntheticData = digits_semi_synthetic(share=args.share, seed=1000 * args.seed + rep,
                                                features=args.features)
    names = [f"h{i}" for i in range(data.X.shape[1])]
    transform = FeatureTransform().fit(data.X, names)
    X, X_eval = transform.transform(data.X), transform.transform(data.eval.X)
    fit = dict(units=data.units, arms=data.arms, Y=data.Y, n_arms=data.n_arms)
    models = {
        "LR-learner": lambda: LRLearner(LR_CONFIG.replace(seed=rep)).fit(X, **fit),
        # One thread per model: on tiny per-arm data OpenMP threads only contend.
        "XGBoost T-learner": lambda: XGBTLearner(n_jobs=1, seed=rep, progress=False).fit(X, **fit),
        "Linear T-learner": lambda: OLSTLearner().fit(X, **fit),
        "ATE only": lambda: ArmMeans().fit(X, **fit),
    }
    records = []
    for name, make in models.items():
        started = time.perf_counter()
        model = make()
        seconds = time.perf_counter() - started
        res = score(model.predict_outcomes, X_eval, data)
        records.append({"rep": rep, "model": name, "pehe": res["pehe_cate"], "mu_risk": res["mu_risk"],
                        "fit_s": seconds, "train_rows": len(data.Y)})
        log(f"  rep={rep} {name:>17s}: PEHE {res['pehe_cate']:.4f}  mu-risk {res['mu_risk']:.4f}  ({seconds:.1f}s)")
    return records


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="seeds to average over")
    parser.add_argument("--share", type=float, default=0.1, help="probability a unit joins each experiment")
    parser.add_argument("--seed", type=int, default=0, help="base seed; replication r uses 1000 * seed + r")
    parser.add_argument("--features", choices=("hidden", "pixels"), default="hidden",
                        help="the classifier's first hidden layer (as the paper) or the raw pixels")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", flush=True)

    log(f"digits semi-synthetic: {args.features} features, share {args.share}, {args.reps} reps, "
        f"LR-learner {LR_CONFIG}")
    runs = pd.DataFrame([rec for rep in range(args.reps) for rec in run_rep(rep, args, log)])
    grouped = runs.groupby("model", sort=False)
    table = grouped[["pehe", "mu_risk", "fit_s"]].mean()
    table["pehe_se"] = grouped["pehe"].std(ddof=1) / np.sqrt(grouped["pehe"].count())
    table["mu_risk_se"] = grouped["mu_risk"].std(ddof=1) / np.sqrt(grouped["mu_risk"].count())
    table["wins_pehe"] = runs.assign(best=runs.groupby("rep")["pehe"].transform("min") == runs["pehe"]) \
        .groupby("model", sort=False)["best"].sum()
    table["paper PEHE (CIFAR-100)"] = [PAPER.get(m, (np.nan, np.nan))[0] for m in table.index]
    table["paper mu (CIFAR-100)"] = [PAPER.get(m, (np.nan, np.nan))[1] for m in table.index]
    table = table.reset_index()

    elapsed = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "semi_synthetic" + ("" if args.features == "hidden" else f"_{args.features}")
    runs.to_csv(RESULTS / f"{stem}_runs.csv", index=False)
    table.to_csv(RESULTS / f"{stem}.csv", index=False)
    (RESULTS / f"{stem}.md").write_text(
        f"Digits semi-synthetic ({args.features} features, share {args.share}, mean over {args.reps} seeds; "
        f"PEHE against the true CATE, "
        f"in units of the logits' standard deviation)\n\n" + to_markdown(table, digits=4)
        + f"\n\nruntime {elapsed:.0f} s\n")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    log(f"total runtime {elapsed:.0f} s")


if __name__ == "__main__":
    main()
