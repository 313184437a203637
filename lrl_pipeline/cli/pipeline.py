"""``lrl retrain``, ``update``, ``status`` and ``report``: run the pipeline on a database, or say where it stands."""
from __future__ import annotations

import argparse

from lrl_pipeline import paths
from lrl_pipeline.cli.context import existing_db, load_runner
from lrl_pipeline.cli.errors import CLIError
from lrl_pipeline.cli.output import print_retrain_result, progress


def cmd_retrain(args: argparse.Namespace) -> None:
    """Materialize the whole asset graph through Dagster."""
    db = existing_db(args.db)
    if args.workers is not None and args.workers < 1:
        raise CLIError("--workers takes a number of ranks, at least 1")
    config = {"ops": {"lr_learner": {"config": {"workers": args.workers}}}} if args.workers else None
    result = load_runner().run_retrain(db, paths.artifacts_dir(db), progress=progress(), run_config=config)
    print_retrain_result(result)


def cmd_update(args: argparse.Namespace) -> None:
    """Fit heads for experiments that have none on the current extractor."""
    db = existing_db(args.db)
    fitted = load_runner().run_update(db, paths.artifacts_dir(db), progress=progress())
    if fitted:
        print(f"Fitted heads for {len(fitted)} experiment(s): {', '.join(fitted)}")
    else:
        print("Every experiment already has heads on the current extractor; nothing to do.")


def cmd_status(args: argparse.Namespace) -> None:
    """Where the pipeline stands: extractor, heads, why the sensor waits, last runs, next retrain."""
    import dagster as dg

    from lrl_pipeline.status import pipeline_status

    db = existing_db(args.db)
    with dg.DagsterInstance.get() as instance:
        lines = pipeline_status(db, paths.artifacts_dir(db), instance)
    width = max(len(label) for label, _ in lines)
    print(f"Database: {db}")
    for label, text in lines:
        print(f"{label:<{width}}  {text}")


def cmd_report(args: argparse.Namespace) -> None:
    """Print the path of the latest retrain report (an HTML file)."""
    db = existing_db(args.db)
    report = load_runner().latest_report_path(db, paths.artifacts_dir(db))
    if report is None:
        raise CLIError(f"no report yet for {db}: run `lrl retrain`")
    print(report)
