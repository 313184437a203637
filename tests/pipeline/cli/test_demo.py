"""``lrl demo`` (lrl_pipeline/cli/demo.py): it keeps others' data, and its PEHE."""
from __future__ import annotations

import numpy as np
import pandas as pd

from lrl_core.synthetic import nonlinear_synthetic
from lrl_pipeline import cli
from lrl_pipeline.storage import write_raw_tables, LRLDatabase


def test_demo_refuses_to_replace_someone_elses_experiments(cli_env, tmp_path, capsys):
    db = tmp_path / "theirs.duckdb"
    registry = pd.DataFrame({"experiment_id": ["checkout_v2"], "launched_at": [pd.Timestamp("2026-01-01")]})
    write_raw_tables(db, {"experiments": registry})
    assert cli.main(["demo", "--db", str(db)]) == 1
    assert "checkout_v2" in capsys.readouterr().err
    with LRLDatabase(database=str(db)).connect(read_only=True) as con:
        assert con.execute("SELECT experiment_id FROM raw.experiments").fetchall() == [("checkout_v2",)]


def test_demo_pehe_is_zero_for_true_effects_and_grows_with_error():
    data = nonlinear_synthetic(n_experiments=3, n_per_arm=20, n_features=4, n_metrics=2, seed=5)
    rows = [(u, data.experiments[data.arm_experiment[g]], data.arm_names[g], m, g, j)
            for u in range(0, 60, 7) for g in data.treatment_arms for j, m in enumerate(data.metrics)]
    frame = pd.DataFrame(rows, columns=["unit_id", "experiment_id", "arm", "metric", "g", "j"])
    truth = data.true_cate(frame["unit_id"], frame["g"], data.arm_controls[frame["g"]])
    frame["cate"] = truth[np.arange(len(frame)), frame["j"]]

    exact = cli.demo_pehe(data, frame)
    shifted = cli.demo_pehe(data, frame.assign(cate=frame["cate"] + 0.5))
    assert list(exact["metric"]) == data.metrics
    np.testing.assert_allclose(exact["pehe lr_heads"], 0.0, atol=1e-12)
    np.testing.assert_allclose(shifted["pehe lr_heads"], 0.25, rtol=1e-9)
    assert (exact["pehe true_cate_variance"] > 0).all()


def test_status_after_a_demo_says_every_experiment_has_heads(tmp_path, monkeypatch, capsys):
    """Issue 12: `lrl status` against the database `lrl demo` leaves (the demo's steps on a smaller world)."""
    import re

    from lrl_pipeline.cli import demo

    shape = dict(demo.DEMO_SHAPE, n_experiments=4, n_per_arm=60, n_features=5, n_metrics=2,
                 n_arms_per_experiment=[2, 3, 2, 2])
    monkeypatch.setattr(demo, "DEMO_SHAPE", shape)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    db = tmp_path / "demo.duckdb"
    assert cli.main(["demo", "--db", str(db)]) == 0
    demo_out = capsys.readouterr().out
    newest = re.search(r"Heads fitted for the new experiment without retraining: (\S+)", demo_out).group(1)

    assert cli.main(["status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^extractor +\S+, trained", out, re.MULTILINE)
    assert "4 registered; 4 with heads on the current extractor" in out
    assert "nothing to do: every experiment has heads" in out and "head_job" in out
    assert newest.startswith("exp_")
