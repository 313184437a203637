"""``lrl policy`` (lrl_pipeline/cli/policy.py, lrl_pipeline/policies.py) on the package's small database."""
from __future__ import annotations

import re

from lrl_pipeline import cli


def test_policy_prints_segments_and_values_and_refuses_bad_input_in_one_line(cli_env, updated, capsys):
    data = updated["data"]
    experiment = data.experiments[1]  # three arms
    metric = data.metrics[1]
    assert cli.main(["policy", experiment, "--guardrail", f"{metric}>=-0.5", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert f"Experiment {experiment}: reward {data.metrics[0]} x 1; guardrails {metric} >= -0.5" in out
    assert "Segments (training split):" in out and "depth 1" in out
    for policy in ("tree", "control", "best_arm", "argmax"):
        assert re.search(rf"^{policy} +\S", out, re.MULTILINE), policy
    assert re.search(r"-?\d+(\.\d+)?(e-?\d+)? ± \d", out)

    for argv, message in (
            (["policy", experiment, "--guardrail", "latency>-1"], "write METRIC>=NUMBER"),
            (["policy", experiment, "--weight", "nope=1"], "no metric nope"),
            (["policy", "no_such_experiment"], "no heads of experiment 'no_such_experiment'"),
            (["policy", experiment, "--depth", "7"], "--depth takes 1 to 4")):
        assert cli.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_policy_assigns_an_arm_and_a_segment_to_given_units(cli_env, updated, tmp_path, capsys):
    import pandas as pd

    experiment = updated["data"].experiments[0]
    units = updated["tables"]["unit_features"].head(25)
    units.to_parquet(tmp_path / "units.parquet", index=False)
    out = tmp_path / "assigned.parquet"
    assert cli.main(["policy", experiment, "--units", str(tmp_path / "units.parquet"), "--out", str(out)]) == 0
    assigned = pd.read_parquet(out)
    assert list(assigned.columns) == ["unit_id", "arm", "segment"]
    assert assigned["unit_id"].tolist() == units["unit_id"].tolist()
    arms = set(updated["tables"]["exposures"].query("experiment_id == @experiment")["arm"])
    assert set(assigned["arm"]) <= arms and (assigned["segment"] >= 0).all()
    assert f"Wrote the arm of 25 unit(s) to {out}" in capsys.readouterr().out
    assert cli.main(["policy", experiment, "--units", str(tmp_path / "units.parquet")]) == 1
    assert "--units and --out go together" in capsys.readouterr().err
