"""``lrl score``: CATEs for a file of units, with the checks on its input and output files."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from lrl_pipeline import paths
from lrl_pipeline.cli.context import existing_db, load_runner
from lrl_pipeline.cli.errors import CLIError
from lrl_pipeline.cli.output import progress


def read_units(source: Path) -> pd.DataFrame:
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


def writable_out(out: Path) -> Path:
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
    db = existing_db(args.db)
    out = writable_out(Path(args.out))
    units = read_units(Path(args.units))
    scores = load_runner().score_units(db, paths.artifacts_dir(db), units, progress=progress())
    # Not written into the file: pandas would store attrs in the parquet metadata.
    ignored = scores.attrs.pop("ignored_columns", [])
    left_out = scores.attrs.pop("left_out_units", [])
    headless = scores.attrs.pop("arms_without_heads", [])
    other_levels = scores.attrs.pop("other_levels", {})
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
    if other_levels:
        shown = ", ".join(f"{column} ({n})" for column, n in other_levels.items())
        print(f"Scored as level 'other' the units whose value the model did not keep (unseen or rare in "
              f"training): {shown}")
    outside = scores.loc[~scores["in_range"], "unit_id"].nunique()
    if outside:
        print(f"{outside} unit(s) lie beyond the training range in some feature (in_range = false): "
              "their effects are extrapolations")
    if headless:
        shown = ", ".join(headless[:5]) + (f" and {len(headless) - 5} more" if len(headless) > 5 else "")
        print(f"No head, so no rows, for {len(headless)} arm(s) in raw.exposures: {shown} (launched since the "
              "last head run: `lrl update` or the sensor fits them; quarantined: see `lrl status`)")
    served = scores["model"].value_counts()
    print("Served by " + ", ".join(f"{name} {count / len(scores):.0%}" for name, count in served.items())
          + " (see pipeline.served_models)")
