"""How a retrain's cost grows with the data (issue 13): one table and one plot from the JSON that
``benchmarks/scale.py --scale S`` writes for each scale.

Reads ``results/scale_<S>_cpu.json`` for every ``--scales`` entry found, prints a markdown table
(exposure rows, each retrain step's seconds, the retrain over the steps every run has (validation,
features, load, fit with selection and jackknife, save, heads; the effects step, newer, apart), peak
RSS of the largest step and its
ratio to the float32 feature matrix, XGBoost T-learners' extrapolated seconds), the growth exponent
between consecutive scales (``log(cost ratio) / log(rows ratio)``: 1 is linear), and saves a
log-log plot of seconds and peak memory against rows. Usage::

    python benchmarks/scale.py --scale 0.3      # once per scale (each writes its JSON)
    python benchmarks/scale_growth.py --scales 0.1,0.3,1
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = ["validation", "features", "load", "fit", "heads"]


def load(scales: list[str], folder: Path) -> pd.DataFrame:
    """One row per scale whose JSON exists: rows, step seconds, retrain seconds, peaks, XGBoost."""
    rows = []
    for scale in scales:
        path = folder / f"scale_{scale}_cpu.json"
        if not path.is_file():
            print(f"(no {path.name}: run `python benchmarks/scale.py --scale {scale}` first)")
            continue
        found = json.loads(path.read_text())
        summary, train = found["summary"], found["train"]
        parts = summary["retrain_parts_s"]
        rows.append({
            "scale": float(scale), "date": found["meta"]["date"][:16],
            # Which code, and how fast the machine was: runs on this shared machine differ up to 4x.
            "code": found["meta"].get("code", "-"),
            "matmul GFLOP/s": train.get("matmul_gflops", np.nan),
            "exposure rows": found["generate"]["n_rows"],
            **{f"{step} s": parts.get(step, np.nan) for step in STEPS},
            # The same steps at every scale (runs before 2026-12-01 had no effects step).
            "retrain s": sum(parts.get(step, 0.0) for step in (*STEPS, "save")),
            "effects s": parts.get("effects", np.nan),
            "epochs": train.get("epochs"),
            "peak GB": summary["peak_rss_max"] / 1e9,
            "matrix GB": train["feature_matrix_bytes"] / 1e9,
            "peak / matrix": summary["memory_ratio"],
            "XGBoost T s": found["baselines"]["xgb_all_s"],
        })
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).sort_values("exposure rows", ignore_index=True)


def exponents(frame: pd.DataFrame) -> pd.DataFrame:
    """Growth exponent of retrain seconds, fit seconds and peak memory between consecutive scales."""
    out = []
    for a, b in zip(frame.index[:-1], frame.index[1:]):
        rows = np.log(frame.loc[b, "exposure rows"] / frame.loc[a, "exposure rows"])
        out.append({"from scale": frame.loc[a, "scale"], "to scale": frame.loc[b, "scale"],
                    **{f"{col} exponent": np.log(frame.loc[b, col] / frame.loc[a, col]) / rows
                       for col in ("retrain s", "fit s", "peak GB")}})
    return pd.DataFrame(out)


def plot(frame: pd.DataFrame, path: Path) -> None:
    """Seconds (retrain, fit, XGBoost T-learners) and peak memory against rows, log-log, with a
    line of slope 1 through the smallest scale for reference."""
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    time_ax, memory_ax = fig.subplots(1, 2)
    rows = frame["exposure rows"].to_numpy(dtype=float)
    for column, style in (("retrain s", "o-"), ("fit s", "s--"), ("XGBoost T s", "^:")):
        time_ax.plot(rows, frame[column], style, label=column.removesuffix(" s"))
    time_ax.plot(rows, frame["retrain s"].iloc[0] * rows / rows[0], color="#bbbbbb", lw=1, label="linear")
    memory_ax.plot(rows, frame["peak GB"], "o-", label="peak RSS, largest step")
    memory_ax.plot(rows, frame["matrix GB"], "s--", label="float32 feature matrix")
    memory_ax.plot(rows, 2 * frame["matrix GB"], color="#bbbbbb", lw=1, label="2x the matrix (target)")
    for ax, label in ((time_ax, "seconds"), (memory_ax, "GB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("exposure rows")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle("benchmarks/scale.py: cost against rows (2 CPUs)")
    fig.savefig(path, dpi=100, facecolor="white")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="0.1,0.3,1,2", help="comma-separated scales to read")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the scale_<S>_cpu.json files")
    args = parser.parse_args(argv)
    frame = load([s.strip() for s in args.scales.split(",") if s.strip()], args.results)
    if frame.empty:
        raise SystemExit("no scale results found")
    table = frame.to_markdown(index=False, floatfmt=".3g")
    growth = exponents(frame).to_markdown(index=False, floatfmt=".2f") if len(frame) > 1 else ""
    plot(frame, args.results / "scale_growth.png")
    text = (f"# Retrain cost against rows\n\n- command: `python benchmarks/scale_growth.py --scales {args.scales}`\n"
            f"- plot: `scale_growth.png`\n\n{table}\n\n{growth}\n")
    (args.results / "scale_growth.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
