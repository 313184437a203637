"""``lrl segments``: effects on the segments an experiment left out, by Synthetic Interventions and the
LR-learner side by side, with the observed effects where the segment was in."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from lrl_pipeline import paths
from lrl_pipeline.cli.context import existing_db
from lrl_pipeline.cli.errors import CLIError
from lrl_pipeline.cli.score import writable_out


def _stored(con, column: str, version: str) -> pd.DataFrame | None:
    """The latest retrain's rows when it segmented by ``column`` on ``version``; else None."""
    from lrl_pipeline.segments import SEGMENT_COLUMNS
    from lrl_pipeline.storage import read_segment_effects

    rows = read_segment_effects(con, version)
    if rows is None:
        return None
    rows = rows[rows["segment_by"] == column]
    return rows[SEGMENT_COLUMNS].reset_index(drop=True) if len(rows) else None


def segment_rows(db: Path, column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows, disagreements)`` by ``column``: as the last retrain stored them, else computed now."""
    from lrl_pipeline.resources import ArtifactStoreResource
    from lrl_core.segment_effects import disagreements
    from lrl_pipeline.segments import compute_segment_effects
    from lrl_pipeline.storage import LRLDatabase

    store = ArtifactStoreResource(root=str(paths.artifacts_dir(db))).store()
    if store.current_version() is None:
        raise CLIError(f"no trained model for {db}: run `lrl retrain` first")
    model = store.load()
    with LRLDatabase(database=str(db)).connect(read_only=True) as con:
        rows = _stored(con, column, model.version)
        if rows is not None:
            return rows, disagreements(rows)
        try:
            found = compute_segment_effects(con, model, column)
        except (ValueError, LookupError) as error:
            raise CLIError(str(error)) from error
    return found.rows, found.disagreements


def _interval(effect: float, se: float) -> str:
    if not np.isfinite(effect):
        return ""
    return f"{effect:+.3f}" + (f" ± {1.96 * se:.3f}" if np.isfinite(se) else "")


def wide_lines(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (experiment, arm, metric, segment): observed, SI (with its test) and LR side by side."""
    keys = ["experiment_id", "arm", "metric", "segment"]
    text = rows.assign(value=[_interval(e, s) for e, s in zip(rows["effect"].astype(float),
                                                                rows["se"].astype(float))])
    wide = text.pivot_table(index=keys, columns="source", values="value", aggfunc="first").reindex(
        columns=["observed", "si", "lr"]).fillna("")
    test = rows[rows["source"] == "si"].set_index(keys)["si_test_passed"]
    wide["si test"] = test.reindex(wide.index).map({True: "passed", False: "FAILED"}).fillna("")
    return wide.reset_index()


def cmd_segments(args: argparse.Namespace) -> None:
    """Effects per segment of one unit feature column: observed where the experiment included the
    segment, Synthetic Interventions and the LR-learner where it did not."""
    db = existing_db(args.db)
    out = writable_out(Path(args.out)) if args.out else None
    rows, disagree = segment_rows(db, args.by)
    if args.experiment is not None:
        known = sorted(rows["experiment_id"].unique())
        if args.experiment not in known:
            raise CLIError(f"no experiment {args.experiment!r} with segment effects: {', '.join(known[:10])}")
        rows = rows[rows["experiment_id"] == args.experiment]
        disagree = disagree[disagree["experiment_id"] == args.experiment]
    excluded = rows[rows["source"] == "si"]
    print(f"Effects by {args.by}: {rows['segment'].nunique()} segments, {rows['experiment_id'].nunique()} "
          f"experiment(s); {len(excluded)} (segment, arm, metric) cells an experiment left out, "
          f"{int(excluded['effect'].notna().sum())} estimated by SI, "
          f"{int((excluded['si_test_passed'] == False).sum())} failing its subspace test")  # noqa: E712
    print("(95% intervals; observed: difference in means; si: Synthetic Interventions; lr: the LR-learner's CATE "
          "averaged over the segment's units)\n")
    print(wide_lines(rows).to_string(index=False))
    if len(disagree):
        print(f"\nSI and the LR-learner disagree beyond their intervals on {len(disagree)} cell(s):")
        print(disagree.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if out is not None:
        rows.to_parquet(out, index=False)
        print(f"\nWrote {len(rows)} rows to {out}")
