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

Growth is only read within one series: the same code on a machine at the same speed (this shared
machine's fp32 matmul rate has ranged 54-214 GFLOP/s between runs, so seconds from two days do not
make one curve). ``--earlier DIR`` adds an older series (its own table, exponents and curves in the
plot, drawn dashed) beside the current one.
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


def plot(series: list[tuple[str, pd.DataFrame]], path: Path) -> None:
    """Seconds (retrain, fit, XGBoost T-learners) and peak memory against rows, log-log, one set of
    curves per series (the first solid, the others dashed), with a slope-1 line and the 2x-matrix
    target for reference."""
    fig = Figure(figsize=(11.0, 5.5), layout="constrained")
    time_ax, memory_ax = fig.subplots(1, 2)
    colours = {"retrain s": "C0", "fit s": "C1", "XGBoost T s": "C2", "peak GB": "C3"}
    for k, (name, frame) in enumerate(series):
        line = "-" if k == 0 else "--"
        rows = frame["exposure rows"].to_numpy(dtype=float)
        for column, marker in (("retrain s", "o"), ("fit s", "s"), ("XGBoost T s", "^")):
            time_ax.plot(rows, frame[column], marker + line, color=colours[column],
                         alpha=1.0 if k == 0 else 0.5, label=f"{column.removesuffix(' s')}, {name}")
        memory_ax.plot(rows, frame["peak GB"], "o" + line, color=colours["peak GB"],
                       alpha=1.0 if k == 0 else 0.5, label=f"peak RSS, largest step, {name}")
    rows, first = series[0][1]["exposure rows"].to_numpy(dtype=float), series[0][1]
    time_ax.plot(rows, first["retrain s"].iloc[0] * rows / rows[0], color="#bbbbbb", lw=1, label="linear")
    every = pd.concat([frame for _, frame in series]).drop_duplicates("scale").sort_values("exposure rows")
    memory_ax.plot(every["exposure rows"], every["matrix GB"], "s:", color="black", label="float32 feature matrix")
    memory_ax.plot(every["exposure rows"], 2 * every["matrix GB"], color="#bbbbbb", lw=1,
                   label="2x the matrix (target)")
    for ax, label in ((time_ax, "seconds"), (memory_ax, "GB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("exposure rows")
        ax.set_ylabel(label)
        ax.legend(fontsize=8, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.suptitle("benchmarks/scale.py: cost against rows (2 CPUs)\n"
                 + "; ".join(_label(name, frame) for name, frame in series), fontsize=10)
    fig.savefig(path, dpi=100, facecolor="white")


def describe(name: str, frame: pd.DataFrame) -> str:
    """A series' markdown: its table and, with two scales or more, the growth exponents."""
    text = f"## {_label(name, frame)}\n\n{frame.to_markdown(index=False, floatfmt='.3g')}\n"
    if len(frame) > 1:
        text += f"\n{exponents(frame).to_markdown(index=False, floatfmt='.2f')}\n"
    return text


def _label(name: str, frame: pd.DataFrame) -> str:
    """A series' name with what its runs share: the dates and the machine's matmul rate."""
    days = sorted({date[:10] for date in frame["date"]})
    rate = frame["matmul GFLOP/s"]
    dates = " to ".join([days[0], days[-1]] if len(days) > 1 else days)
    return f"{name} ({dates}, matmul {rate.min():.0f}-{rate.max():.0f} GFLOP/s)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="0.1,0.3,1,2", help="comma-separated scales to read")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the scale_<S>_cpu.json files")
    parser.add_argument("--earlier", type=Path, default=None,
                        help="folder of an earlier series' scale_<S>_cpu.json files, shown beside the current")
    args = parser.parse_args(argv)
    scales = [s.strip() for s in args.scales.split(",") if s.strip()]
    series = [(name, frame) for name, frame in
              (("current", load(scales, args.results)),
               ("earlier", load(scales, args.earlier) if args.earlier else pd.DataFrame()))
              if not frame.empty]
    if not series:
        raise SystemExit("no scale results found")
    plot(series, args.results / "scale_growth.png")
    command = f"python benchmarks/scale_growth.py --scales {args.scales}"
    if args.earlier:
        command += f" --earlier {args.earlier}"
    text = (f"# Retrain cost against rows\n\n- command: `{command}`\n- plot: `scale_growth.png`\n\n"
            + "\n".join(describe(name, frame) for name, frame in series))
    (args.results / "scale_growth.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
