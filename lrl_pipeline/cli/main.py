"""The ``lrl`` argument parser and ``main``, which runs a sub-command and turns expected failures into one line."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from lrl_pipeline import paths
from lrl_pipeline.cli.demo import cmd_demo
from lrl_pipeline.cli.errors import CLIError, is_pipeline_error
from lrl_pipeline.cli.init import cmd_init
from lrl_pipeline.cli.pipeline import cmd_report, cmd_retrain, cmd_status, cmd_update
from lrl_pipeline.cli.policy import cmd_policy
from lrl_pipeline.cli.proxies import ESTIMATOR_CHOICES, cmd_proxies
from lrl_pipeline.cli.score import cmd_score
from lrl_pipeline.cli.segments import cmd_segments
from lrl_pipeline.cli.ui import UI_HOST, UI_PORT, cmd_ui


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lrl``: one sub-command per CONTRACT.md entry, ``--db`` on each."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="PATH",
                        help="DuckDB database file (default: $LRL_DUCKDB_PATH, else ./data/lrl.duckdb)")
    parser = argparse.ArgumentParser(
        prog="lrl", description="Pooled CATE estimation across many experiments and metrics (the LR-learner).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, tuple[Callable[[argparse.Namespace], None], str]] = {
        "init": (cmd_init, "make raw.* views over a folder of Parquet files (the four contract tables)"),
        "demo": (cmd_demo, "write a synthetic data set, retrain, launch one more experiment and update"),
        "retrain": (cmd_retrain, "full retrain: validation, features, pooled model, heads, evaluation"),
        "update": (cmd_update, "fit heads for experiments that have none yet, without retraining"),
        "score": (cmd_score, "CATE of given units for every experiment, treated arm and metric"),
        "report": (cmd_report, "print the path of the latest retrain report (HTML)"),
        "status": (cmd_status, "the current extractor, experiments with and without heads, why the sensor "
                               "waits, recent runs, the next scheduled retrain"),
        "proxies": (cmd_proxies, "which metrics' effects move with a north star's, across experiments, and its "
                                 "best linear proxy"),
        "policy": (cmd_policy, "who should get which arm of an experiment: a policy tree under metric weights and "
                               "guardrails, valued on held-out units"),
        "segments": (cmd_segments, "effects on the segments an experiment left out: Synthetic Interventions and the "
                                   "LR-learner side by side, with the observed effects"),
        "ui": (cmd_ui, f"the Dagster UI over this project (http://{UI_HOST}:{UI_PORT})"),
    }
    for name, (func, text) in commands.items():
        command = sub.add_parser(name, parents=[common], help=text, description=text)
        command.set_defaults(func=func)
    init = sub.choices["init"]
    init.add_argument("--from-parquet", required=True, metavar="DIR",
                      help="folder with <table>.parquet, <table>-*.parquet or <table>/*.parquet for each raw table")
    init.add_argument("--copy", action="store_true", help="load the rows into tables instead of views")
    score = sub.choices["score"]
    score.add_argument("--units", required=True, metavar="IN.parquet",
                       help="unit_id plus the feature columns of raw.unit_features (a .csv file is read as CSV)")
    score.add_argument("--out", required=True, metavar="OUT.parquet",
                       help="long form: unit_id, experiment_id, arm, metric, cate, cate_se, model, in_range")
    score.add_argument("--experiments", metavar="E1,E2", help="only these experiments (comma-separated ids)")
    score.add_argument("--metrics", metavar="M1,M2", help="only these metrics (comma-separated names)")
    proxies = sub.choices["proxies"]
    proxies.add_argument("--north-star", metavar="METRIC", help="the metric to find proxies for (default: each)")
    proxies.add_argument("--estimator", choices=ESTIMATOR_CHOICES, default="jive",
                         help="jive (default), liml, tc (total covariance), pooled (the LR-learner's), naive")
    policy = sub.choices["policy"]
    policy.add_argument("experiment", metavar="EXPERIMENT", help="an experiment with heads on the current extractor")
    policy.add_argument("--weight", action="append", metavar="METRIC=W",
                        help="a metric's weight in the reward (repeat; default: the first metric, weight 1)")
    policy.add_argument("--guardrail", action="append", metavar="METRIC>=MIN",
                        help="the least acceptable effect on a metric (repeat)")
    policy.add_argument("--depth", type=int, help="tree depth, 1 to 4 (default: chosen on held-out units)")
    policy.add_argument("--units", metavar="IN.parquet", help="units to assign an arm (unit_id and the features)")
    policy.add_argument("--out", metavar="OUT.parquet", help="where to write unit_id, arm, segment of --units")
    retrain = sub.choices["retrain"]
    retrain.add_argument("--workers", type=int, metavar="N",
                         help="train the LR-learner on N data-parallel ranks (torchrun through Dagster Pipes; "
                              "default: $LRL_TRAIN_WORKERS, else one in-process fit)")
    segments = sub.choices["segments"]
    segments.add_argument("--by", required=True, metavar="COLUMN", help="a unit feature column whose levels are "
                                                                        "the segments (e.g. country)")
    segments.add_argument("--experiment", metavar="E", help="only this experiment")
    segments.add_argument("--out", metavar="OUT.parquet", help="write the rows (pipeline.segment_effects' columns)")
    return parser


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
    except BrokenPipeError:
        # The reader of the output (`| head`) has closed it: stop quietly, and keep Python from
        # reporting the same error again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        # Pipeline failures carry a message that says what to do; anything
        # else is a bug and keeps its traceback.
        if not is_pipeline_error(exc):
            raise
        print(f"lrl {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0
