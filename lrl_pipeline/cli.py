"""The ``lrl`` command: the user's front door to the pipeline (see CONTRACT.md).

Every command resolves the database (``--db``, else ``LRL_DUCKDB_PATH``, else
``data/lrl.duckdb`` under the working directory) and points ``DAGSTER_HOME`` at
the project's instance before anything runs, so runs started here show in the
UI. Expected failures print one line saying what to do and exit non-zero.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from lrl_pipeline import paths

__all__ = ["CLIError", "DEMO_SHAPE", "build_parser", "demo_pehe", "main"]

UI_HOST = "127.0.0.1"
UI_PORT = 3000
RISK_TITLES = {
    "mu_risk": "mu-risk (held-out squared error of observed outcomes)",
    "tau_risk": "tau-risk (R-loss of the CATE)",
    "pehe": "PEHE (squared error against the true CATE, in the metric's own units)",
}

DEMO_SHAPE = dict(
    n_experiments=20, n_per_arm=1000, n_features=20, n_metrics=5,
    # Two three-arm experiments; the last one (the "new launch") is a plain A/B test.
    n_arms_per_experiment=[3 if k in (4, 12) else 2 for k in range(20)],
    overlap=0.1, feature_missing_rate=0.02, missing_metric_rate=0.05, seed=0,
)
"""Arguments of ``nonlinear_synthetic`` for ``lrl demo``: 20 experiments, 1000 units per arm,
10% of units also in a second experiment, a few missing features and metrics."""


class CLIError(Exception):
    """An expected failure; its message is shown to the user as one line."""


def _fmt(frame: pd.DataFrame) -> str:
    """Render a table for the terminal, floats to 4 decimals."""
    if frame.empty:
        return "(empty)"
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def _existing_db(explicit: str | None) -> Path:
    """The database path, which must exist: every command but ``demo`` and ``ui`` reads it."""
    db = paths.db_path(explicit)
    if not db.is_file():
        raise CLIError(f"no database at {db}: run `lrl demo` or point --db / LRL_DUCKDB_PATH at your data")
    return db


def _runner():
    # Imported on use: loading Dagster takes seconds, and `lrl --help` or a
    # missing-database error should not wait for it.
    from lrl_pipeline import runner

    return runner


def _print_summary(summary: pd.DataFrame, extra: pd.DataFrame | None = None) -> None:
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
            print(f"\n{title}\n{_fmt(table)}")


def _print_retrain_result(result, extra: pd.DataFrame | None = None) -> None:
    print(f"\nRetrained extractor {result.extractor_version} on {result.n_rows} exposure rows "
          f"from {result.n_experiments} experiments in {result.seconds:.1f} s "
          f"({result.n_quarantined} quarantine rows)")
    print(f"Model: {result.chosen}")
    if result.served:
        print("Served per experiment arm and metric: "
              + ", ".join(f"{name} {count}" for name, count in result.served.items())
              + " (a T-learner or a blend only where held-out units showed it better; pipeline.served_models)")
    _print_summary(result.summary, extra)


def _print_locations(db: Path, artifacts: Path) -> None:
    print(f"\nDatabase:  {db}  (tables pipeline.evaluation, pipeline.head_evaluation, pipeline.experiment_heads)")
    print(f"Artifacts: {artifacts}")
    report = _runner().latest_report_path(db, artifacts)
    if report is not None:
        print(f"Reports:   {report.parent}  (latest retrain report: {report.name})")
    print(f"Dagster:   {paths.dagster_home()}")
    print(f"Open the UI with `lrl ui` (or `make ui`) at http://{UI_HOST}:{UI_PORT}")


# ------------------------------------------------------------------ demo


def _demo_data():
    from lrl_core.synthetic import nonlinear_synthetic

    return nonlinear_synthetic(**DEMO_SHAPE)


def _held_back(tables: dict[str, pd.DataFrame], experiment_id: str) -> dict[str, pd.DataFrame]:
    """The raw tables without one experiment's registry, exposure and outcome rows."""
    return {name: frame if name == "unit_features" else frame[frame["experiment_id"] != experiment_id]
            for name, frame in tables.items()}


def _refuse_foreign_data(db: Path, demo_ids: list[str]) -> None:
    """Stop before ``lrl demo`` replaces raw tables that hold someone's own experiments."""
    if not db.is_file():
        return
    from lrl_pipeline.storage import LRLDatabase, experiment_ids

    with LRLDatabase(database=str(db)).connect(read_only=True, timeout_s=30.0) as con:
        try:
            ids = set(experiment_ids(con))
        except LookupError:
            return
    foreign = sorted(ids - set(demo_ids))
    if foreign:
        raise CLIError(f"{db} already holds other experiments ({', '.join(foreign[:3])}, ...) that `lrl demo` "
                       "would replace: pass --db with a new file")


def demo_pehe(data, scores: pd.DataFrame) -> pd.DataFrame:
    """PEHE of served CATEs against the generator's true CATE, per metric.

    ``data``: the demo's ``SyntheticData`` (unit ids are row indices of its
    ``X``); ``scores``: ``lrl score`` long form for some of its units. Returns
    ``metric``, ``"pehe lr_heads"`` and ``"pehe true_cate_variance"`` (the
    PEHE of predicting no heterogeneity at all, for scale).
    """
    exp_index = {e: k for k, e in enumerate(data.experiments)}
    arm_index = {(data.experiments[data.arm_experiment[g]], name): g for g, name in enumerate(data.arm_names)}
    units = scores["unit_id"].to_numpy(dtype=np.int64)
    arms = np.array([arm_index[key] for key in zip(scores["experiment_id"], scores["arm"])], dtype=np.int64)
    controls = data.control_arm[np.array([exp_index[e] for e in scores["experiment_id"]], dtype=np.int64)]
    metric = np.array([data.metrics.index(m) for m in scores["metric"]], dtype=np.int64)
    truth = data.true_cate(units, arms, controls)[np.arange(len(scores)), metric]
    frame = pd.DataFrame({"metric": scores["metric"].to_numpy(), "sq_err": (scores["cate"].to_numpy() - truth) ** 2,
                          "truth": truth, "cell": list(zip(arms, metric))})
    # Variance of the true CATE within each (arm, metric) cell: what a constant effect would miss.
    frame["centred_sq"] = (frame["truth"] - frame.groupby("cell")["truth"].transform("mean")) ** 2
    out = frame.groupby("metric", sort=True).agg(pehe=("sq_err", "mean"), variance=("centred_sq", "mean"))
    out.columns = ["pehe lr_heads", "pehe true_cate_variance"]
    return out.reset_index()


def _progress() -> Callable[[str], None]:
    """A progress printer that puts the seconds since the command started before each stage."""
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", flush=True)

    return say


def cmd_demo(args: argparse.Namespace) -> None:
    """Write a synthetic data set, retrain on it, then launch one new experiment and update."""
    from lrl_core.data import split_by_unit
    from lrl_pipeline.storage import write_raw_tables

    runner = _runner()
    db = paths.db_path(args.db)
    artifacts = paths.artifacts_dir(db)
    data = _demo_data()
    _refuse_foreign_data(db, data.experiments)
    tables = data.raw_tables()
    newest = data.experiments[-1]
    first = _held_back(tables, newest)
    print(f"Writing a synthetic data set into {db}: {len(data.experiments) - 1} experiments, "
          f"{len(tables['unit_features'])} units, {len(first['exposures'])} exposures, "
          f"{len(data.metrics)} metrics ({newest} is held back, to be launched later)")
    write_raw_tables(db, first, replace=True)
    progress = _progress()
    result = runner.run_retrain(db, artifacts, progress=progress)

    print(f"\nLaunching a new experiment, {newest}: its head is fitted on the saved extractor, no retrain")
    write_raw_tables(db, {name: tables[name] for name in ("experiments", "exposures", "outcomes")}, replace=True)
    fitted = runner.run_update(db, artifacts, progress=progress)

    # The generator knows the true effects: score held-out units as `lrl score` would.
    units = tables["unit_features"][split_by_unit(data.unit_ids) == 2]
    scores = runner.score_units(db, artifacts, units)
    _print_retrain_result(result, demo_pehe(data, scores))
    print(f"(PEHE of the CATEs `lrl score` gives {len(units)} test-split units for every experiment; "
          "true_cate_variance is the PEHE of the best constant effect per arm.)")
    print(f"\nHeads fitted for the new experiment without retraining: {', '.join(fitted) or '(none)'}")
    _print_locations(db, artifacts)


# -------------------------------------------------------------- commands


def cmd_retrain(args: argparse.Namespace) -> None:
    """Materialize the whole asset graph through Dagster."""
    db = _existing_db(args.db)
    result = _runner().run_retrain(db, paths.artifacts_dir(db), progress=_progress())
    _print_retrain_result(result)


def cmd_update(args: argparse.Namespace) -> None:
    """Fit heads for experiments that have none on the current extractor."""
    db = _existing_db(args.db)
    fitted = _runner().run_update(db, paths.artifacts_dir(db), progress=_progress())
    if fitted:
        print(f"Fitted heads for {len(fitted)} experiment(s): {', '.join(fitted)}")
    else:
        print("Every experiment already has heads on the current extractor; nothing to do.")


def _read_units(source: Path) -> pd.DataFrame:
    """The units to score from a Parquet or CSV file, refused in one line when unusable."""
    if not source.is_file():
        raise CLIError(f"no units file at {source}: pass a parquet (or .csv) file with unit_id and the feature columns")
    try:
        units = pd.read_csv(source) if source.suffix.lower() == ".csv" else pd.read_parquet(source)
    except Exception as exc:  # pyarrow and the CSV parser raise several types for an unreadable file
        kind = "CSV" if source.suffix.lower() == ".csv" else "parquet (name a .csv file to read CSV)"
        raise CLIError(f"cannot read {source} as {kind}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    if "unit_id" not in units.columns:
        raise CLIError(f"{source} has no unit_id column: give unit_id plus the feature columns of raw.unit_features")
    if units.empty:
        raise CLIError(f"{source} has no units to score")
    duplicated = units.loc[units["unit_id"].duplicated(), "unit_id"].unique()
    if len(duplicated):
        shown = ", ".join(map(str, duplicated[:5])) + (" ..." if len(duplicated) > 5 else "")
        raise CLIError(f"{source} lists {len(duplicated)} unit_id(s) more than once ({shown}): give each unit once")
    return units


def _writable_out(out: Path) -> Path:
    """``out`` if a file can be written there (its folder is created), else one line saying why."""
    if out.is_dir():
        raise CLIError(f"--out {out} is a directory: give a file name, e.g. {out / 'scores.parquet'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the folder of --out {out}: {exc.strerror or exc}") from exc
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise CLIError(f"cannot write --out {out}: permission denied")
    return out


def cmd_score(args: argparse.Namespace) -> None:
    """CATE for the given units, long form, into a parquet file."""
    db = _existing_db(args.db)
    out = _writable_out(Path(args.out))
    units = _read_units(Path(args.units))
    scores = _runner().score_units(db, paths.artifacts_dir(db), units)
    # Not written into the file: pandas would store attrs in the parquet metadata.
    ignored = scores.attrs.pop("ignored_columns", [])
    left_out = scores.attrs.pop("left_out_units", [])
    for column, wanted in (("experiment_id", args.experiments), ("metric", args.metrics)):
        if wanted:
            names = [name.strip() for name in wanted.split(",") if name.strip()]
            unknown = sorted(set(names) - set(scores[column]))
            if unknown:
                raise CLIError(f"no {column} {', '.join(unknown)} among the scored ones: "
                               f"{', '.join(sorted(scores[column].unique())[:20])}")
            scores = scores[scores[column].isin(names)].reset_index(drop=True)
    scores.to_parquet(out, index=False)
    if ignored:
        print(f"Ignored {len(ignored)} column(s) the model left out: {', '.join(ignored)}")
    print(f"Wrote {len(scores)} CATE rows ({units['unit_id'].nunique()} units, "
          f"{scores['experiment_id'].nunique()} experiments, {scores['metric'].nunique()} metrics) to {out}")
    if left_out:
        shown = ", ".join(map(str, left_out[:5])) + (f" and {len(left_out) - 5} more" if len(left_out) > 5 else "")
        print(f"Left out {len(left_out)} unit(s) with an infinite feature value: unit_id {shown}")
    outside = scores.loc[~scores["in_range"], "unit_id"].nunique()
    if outside:
        print(f"{outside} unit(s) lie beyond the training range in some feature (in_range = false): "
              "their effects are extrapolations")
    served = scores["model"].value_counts()
    print("Served by " + ", ".join(f"{name} {count / len(scores):.0%}" for name, count in served.items())
          + " (see pipeline.served_models)")


def cmd_status(args: argparse.Namespace) -> None:
    """Where the pipeline stands: extractor, heads, why the sensor waits, last runs, next retrain."""
    import dagster as dg

    from lrl_pipeline.status import pipeline_status

    db = _existing_db(args.db)
    with dg.DagsterInstance.get() as instance:
        lines = pipeline_status(db, paths.artifacts_dir(db), instance)
    width = max(len(label) for label, _ in lines)
    print(f"Database: {db}")
    for label, text in lines:
        print(f"{label:<{width}}  {text}")


def cmd_report(args: argparse.Namespace) -> None:
    """Print the path of the latest retrain report (an HTML file)."""
    db = _existing_db(args.db)
    report = _runner().latest_report_path(db, paths.artifacts_dir(db))
    if report is None:
        raise CLIError(f"no report yet for {db}: run `lrl retrain`")
    print(report)


def cmd_ui(args: argparse.Namespace) -> None:
    """Replace this process with ``dagster dev`` over the project's workspace."""
    db = paths.db_path(args.db)
    workspace = paths.project_root() / "workspace.yaml"
    if not workspace.is_file():
        raise CLIError(f"no workspace.yaml in {workspace.parent}: `lrl ui` needs the project checkout")
    # The code server and run workers resolve the database from the
    # environment: an absolute path keeps them on this shell's file.
    os.environ["LRL_DUCKDB_PATH"] = str(db)
    print(f"Dagster UI for {db} at http://{UI_HOST}:{UI_PORT} (Ctrl-C stops it)", flush=True)
    # workspace.yaml's working_directory is relative to the current directory.
    os.chdir(workspace.parent)
    os.execv(sys.executable, [sys.executable, "-m", "dagster", "dev", "-w", str(workspace),
                              "-h", UI_HOST, "-p", str(UI_PORT)])


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lrl``: one sub-command per CONTRACT.md entry, ``--db`` on each."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="PATH",
                        help="DuckDB database file (default: $LRL_DUCKDB_PATH, else ./data/lrl.duckdb)")
    parser = argparse.ArgumentParser(
        prog="lrl", description="Pooled CATE estimation across many experiments and metrics (the LR-learner).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, tuple[Callable[[argparse.Namespace], None], str]] = {
        "demo": (cmd_demo, "write a synthetic data set, retrain, launch one more experiment and update"),
        "retrain": (cmd_retrain, "full retrain: validation, features, pooled model, heads, evaluation"),
        "update": (cmd_update, "fit heads for experiments that have none yet, without retraining"),
        "score": (cmd_score, "CATE of given units for every experiment, treated arm and metric"),
        "report": (cmd_report, "print the path of the latest retrain report (HTML)"),
        "status": (cmd_status, "the current extractor, experiments with and without heads, why the sensor "
                               "waits, recent runs, the next scheduled retrain"),
        "ui": (cmd_ui, f"the Dagster UI over this project (http://{UI_HOST}:{UI_PORT})"),
    }
    for name, (func, text) in commands.items():
        command = sub.add_parser(name, parents=[common], help=text, description=text)
        command.set_defaults(func=func)
    score = sub.choices["score"]
    score.add_argument("--units", required=True, metavar="IN.parquet",
                       help="unit_id plus the feature columns of raw.unit_features (a .csv file is read as CSV)")
    score.add_argument("--out", required=True, metavar="OUT.parquet",
                       help="long form: unit_id, experiment_id, arm, metric, cate, cate_se, model, in_range")
    score.add_argument("--experiments", metavar="E1,E2", help="only these experiments (comma-separated ids)")
    score.add_argument("--metrics", metavar="M1,M2", help="only these metrics (comma-separated names)")
    return parser


def _is_pipeline_error(exc: BaseException) -> bool:
    # Only a loaded runner can have raised its PipelineError; looking it up
    # here avoids importing Dagster just to classify an error.
    runner = sys.modules.get("lrl_pipeline.runner")
    return runner is not None and isinstance(exc, runner.PipelineError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lrl`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    paths.ensure_dagster_home()
    try:
        args.func(args)
    except CLIError as exc:
        print(f"lrl {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lrl {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Pipeline failures carry a message that says what to do; anything
        # else is a bug and keeps its traceback.
        if not _is_pipeline_error(exc):
            raise
        print(f"lrl {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
