"""The definitions load, group the assets by stage and put every database user in the duckdb pool."""
from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg

from lrl_pipeline.definitions import build_definitions

GROUPS = {
    "ingest": {"raw/unit_features", "raw/experiments", "raw/exposures", "raw/outcomes", "valid_unit_features",
               "valid_experiments", "valid_exposures", "valid_outcomes", "quarantine"},
    "features": {"unit_features", "training_examples"},
    "training": {"lr_learner", "t_learners"},
    "effects": {"arm_effects", "effect_covariance", "metric_proxies", "segment_effects"},
    "heads": {"experiment_rows", "experiment_heads"},
    "reports": {"head_evaluation", "experiment_policies", "evaluation"},
}


def test_assets_are_grouped_by_stage(tmp_path):
    defs = build_definitions(tmp_path / "lrl.duckdb", tmp_path / "artifacts")
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())
    assert groups == GROUPS


def test_every_database_user_is_in_the_duckdb_pool(tmp_path):
    defs = build_definitions(tmp_path / "lrl.duckdb", tmp_path / "artifacts")
    pools = {}
    for name in ("retrain_job", "head_job", "report_job"):
        for node in defs.resolve_job_def(name).graph.node_defs:
            pools[node.name] = node.pool
    assert pools and set(pools.values()) == {"duckdb"}, pools
    # The raw tables are the platform's: no job materializes them.
    graph = defs.resolve_asset_graph()
    assert not any(graph.get(dg.AssetKey(["raw", n])).is_materializable
                   for n in ("unit_features", "experiments", "exposures", "outcomes"))


def test_the_lineage_skips_no_stage_between_raw_rows_and_heads(tmp_path):
    defs = build_definitions(tmp_path / "lrl.duckdb", tmp_path / "artifacts")
    graph = defs.resolve_asset_graph()

    def parents(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey.from_user_string(key)).parent_keys}

    # Only validation reads raw rows: the full one, and a new experiment's own partition run.
    readers = {k.to_user_string() for k in graph.get_all_asset_keys()
               if any(p.to_user_string().startswith("raw/") for p in graph.get(k).parent_keys)}
    assert readers == {"valid_unit_features", "valid_experiments", "valid_exposures", "valid_outcomes",
                       "quarantine", "experiment_rows"}
    assert parents("unit_features") == {"valid_unit_features"}
    assert "unit_features" in parents("training_examples") and parents("lr_learner") == {"training_examples"}
    assert parents("experiment_heads") == {"experiment_rows", "lr_learner"}
    assert parents("head_evaluation") == {"experiment_heads"}


def test_heads_are_partitioned_by_experiment(tmp_path):
    defs = build_definitions(tmp_path / "lrl.duckdb", tmp_path / "artifacts")
    graph = defs.resolve_asset_graph()
    for key in ("experiment_rows", "experiment_heads", "head_evaluation"):
        partitions = graph.get(dg.AssetKey(key)).partitions_def
        assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name == "experiment"


def test_importing_the_definitions_does_not_touch_cuda(tmp_path):
    code = ("import torch, lrl_pipeline.definitions as d; "
            "assert d.defs is not None; print(torch.cuda.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "LRL_DUCKDB_PATH": str(tmp_path / "x.duckdb")}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert not (tmp_path / "x.duckdb").exists()  # nor the database
