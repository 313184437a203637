"""What the commands print: risk tables, the retrain summary, where things live, progress lines."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pandas as pd

from lrl_pipeline import paths
from lrl_pipeline.cli.context import load_runner
from lrl_pipeline.cli.ui import UI_HOST, UI_PORT

RISK_TITLES = {
    "mu_risk": "mu-risk (held-out squared error of observed outcomes)",
    "tau_risk": "tau-risk (R-loss of the CATE)",
    "pehe": "PEHE (squared error against the true CATE, in the metric's own units)",
}


def fmt(frame: pd.DataFrame) -> str:
    """Render a table for the terminal, floats to 4 decimals."""
    if frame.empty:
        return "(empty)"
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def print_summary(summary: pd.DataFrame, extra: pd.DataFrame | None = None) -> None:
    """One table per risk from ``runner.summary_table`` (columns ``"<risk> <model>"``).

    ``extra``: more per-metric columns (``metric`` plus ``"<risk> <name>"``) merged in.
    """
    if extra is not None:
        summary = summary.merge(extra, on="metric", how="left")
    print("\nTest split, per metric, mean over experiments and arms; risks in units of the metric's "
          "variance, lower is better; improvement = 1 - LR-learner / other.")
    for risk, title in RISK_TITLES.items():
        columns = [c for c in summary.columns if c.startswith(f"{risk} ")]
        if columns:
            table = summary[["metric", *columns]].rename(columns=lambda c: c.removeprefix(f"{risk} "))
            print(f"\n{title}\n{fmt(table)}")


def print_retrain_result(result, extra: pd.DataFrame | None = None) -> None:
    """What a retrain did: extractor, rows, chosen and served models, then the risk tables."""
    print(f"\nRetrained extractor {result.extractor_version} on {result.n_rows} exposure rows "
          f"from {result.n_experiments} experiments in {result.seconds:.1f} s "
          f"({result.n_quarantined} quarantine rows)")
    print(f"Model: {result.chosen}")
    if result.served:
        print("Served per experiment arm and metric: "
              + ", ".join(f"{name} {count}" for name, count in result.served.items())
              + " (a T-learner or a blend only where held-out units showed it better; pipeline.served_models)")
    print_summary(result.summary, extra)


def print_locations(db: Path, artifacts: Path) -> None:
    """Where the database, artifacts, reports and Dagster home are, and how to open the UI."""
    print(f"\nDatabase:  {db}  (tables pipeline.evaluation, pipeline.head_evaluation, pipeline.experiment_heads)")
    print(f"Artifacts: {artifacts}")
    report = load_runner().latest_report_path(db, artifacts)
    if report is not None:
        print(f"Reports:   {report.parent}  (latest retrain report: {report.name})")
    print(f"Dagster:   {paths.dagster_home()}")
    print(f"Open the UI with `lrl ui` (or `make ui`) at http://{UI_HOST}:{UI_PORT}")


def progress() -> Callable[[str], None]:
    """A progress printer that puts the seconds since the command started before each stage."""
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", flush=True)

    return say
