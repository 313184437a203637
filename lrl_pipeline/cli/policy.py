"""``lrl policy``: who should get which arm of one experiment, under metric weights and guardrails."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

from lrl_pipeline import paths
from lrl_pipeline.cli.context import existing_db
from lrl_pipeline.cli.errors import CLIError
from lrl_pipeline.cli.score import read_units, writable_out


def _pairs(items: list[str], operator: str, flag: str, example: str) -> dict[str, float]:
    """``METRIC<operator>NUMBER`` arguments as ``{metric: number}``; one line naming a bad one."""
    out = {}
    for item in items:
        match = re.fullmatch(rf"\s*([^>=\s]+)\s*{operator}\s*([-+0-9.eE]+)\s*", item)
        if not match:
            raise CLIError(f"{flag} {item!r}: write METRIC{operator}NUMBER, e.g. {example}")
        out[match.group(1)] = float(match.group(2))
    return out


def cmd_policy(args: argparse.Namespace) -> None:
    """The policy tree's segments and its value against control, the best single arm and the argmax."""
    from lrl_pipeline.policies import experiment_policy

    if args.depth is not None and not 1 <= args.depth <= 4:
        raise CLIError("--depth takes 1 to 4")
    if (args.units is None) != (args.out is None):
        raise CLIError("--units and --out go together: the units to assign, and where to write their arms")
    db = existing_db(args.db)
    out = writable_out(Path(args.out)) if args.out else None
    units = read_units(Path(args.units)) if args.units else None
    result = experiment_policy(db, paths.artifacts_dir(db), args.experiment,
                               _pairs(args.weight or [], "=", "--weight", "revenue=1"),
                               _pairs(args.guardrail or [], ">=", "--guardrail", "'latency>=-0.01'"), args.depth)
    weights = ", ".join(f"{result.metrics[m]} x {w:g}" for m, w in result.objective.weights.items())
    guards = ", ".join(f"{result.metrics[m]} >= {g:g}" for m, g in result.objective.guardrails.items()) or "none"
    print(f"Experiment {result.experiment_id}: reward {weights}; guardrails {guards} (judged on a 95% lower "
          f"bound of each segment's doubly robust effect); depth {result.policy.depth}")
    print("\nSegments (training split):")
    print(result.segments.to_string(index=False))
    table = result.values[result.values["estimator"] == "dr"].copy()
    table["value (95%)"] = [f"{v:.4g} ± {1.96 * s:.2g}" for v, s in zip(table["value"], table["se"])]
    print("\nValue per metric on the test split (doubly robust: the mean outcome had every unit followed the policy):")
    print(table.pivot(index="policy", columns="metric", values="value (95%)").loc[list(dict.fromkeys(table["policy"]))]
          .to_string())
    if units is not None:
        assigned = assign_units(result, units)
        assigned.to_parquet(out, index=False)
        print(f"\nWrote the arm of {len(assigned)} unit(s) to {out} (unit_id, arm, segment)")


def assign_units(result, units: pd.DataFrame) -> pd.DataFrame:
    """``unit_id, arm, segment`` of each given unit under the fitted policy, its features prepared by
    the transform of the model the policy was fitted with."""
    from lrl_pipeline.storage import prepare_frame

    try:
        result.transform.check_columns(units)
    except ValueError as error:
        raise CLIError(f"units do not match the model's features: {error}") from error
    leaves = result.policy.tree.apply(prepare_frame(units, result.transform))
    segment_of = {s["leaf"]: i for i, s in enumerate(result.policy.segments)}
    return pd.DataFrame({"unit_id": units["unit_id"].to_numpy(),
                         "arm": [result.arms[result.policy.arms[leaf]] for leaf in leaves],
                         "segment": [segment_of[leaf] for leaf in leaves]})
