"""The UI loads the project: the webserver over workspace.yaml serves the asset graph.

Starts ``dagster-webserver`` as a user's ``lrl ui`` would (the project's
workspace.yaml, a ``DAGSTER_HOME``), asks its GraphQL API for the asset
nodes and checks groups and lineage edges. The server runs in its own
session with default signal handlers and is stopped by its process group.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lrl_pipeline.paths import project_root

WEBSERVER = Path(sys.executable).parent / "dagster-webserver"
START_TIMEOUT_S = 90.0
QUERY = "{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }"

pytestmark = pytest.mark.skipif(not WEBSERVER.exists(), reason=f"dagster-webserver is not installed at {WEBSERVER}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _default_signals() -> None:
    # A non-interactive parent may ignore SIGINT/SIGTERM, and exec inherits that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def asset_nodes(tmp_path_factory) -> dict[str, dict]:
    """Asset nodes keyed by '/'-joined asset key, as the running UI reports them."""
    home = tmp_path_factory.mktemp("dagster_home")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, DAGSTER_HOME=str(home), LRL_DUCKDB_PATH=str(home / "store.duckdb"))
    env.pop("LRL_ARTIFACTS_DIR", None)
    log = home / "webserver.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(WEBSERVER), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=project_root(), env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_default_signals)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        nodes = []
        while time.monotonic() < deadline and not nodes:
            assert proc.poll() is None, f"webserver exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=5).close()
                # The server answers before the code location has loaded: wait for the graph too.
                nodes = (_graphql(base, QUERY).get("data") or {}).get("assetNodes") or []
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if not nodes:
                time.sleep(1.0)
        assert nodes, f"no asset graph within {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return {"/".join(n["assetKey"]["path"]): n for n in nodes}


def _deps(node: dict) -> set[str]:
    return {"/".join(d["path"]) for d in node["dependencyKeys"]}


def test_ui_serves_every_stage_as_a_group(asset_nodes):
    groups = {node["groupName"] for node in asset_nodes.values()}
    assert {"ingest", "features", "training", "heads", "reports"} <= groups
    assert asset_nodes["lr_learner"]["groupName"] == "training"
    assert asset_nodes["experiment_heads"]["groupName"] == "heads"


def test_ui_lineage_runs_from_raw_tables_to_reports(asset_nodes):
    edges = {
        "valid_exposures": "raw/exposures",
        "unit_features": "valid_unit_features",
        "training_examples": "unit_features",
        "lr_learner": "training_examples",
        "t_learners": "training_examples",
        "experiment_heads": "lr_learner",
        "evaluation": "experiment_heads",
        "head_evaluation": "experiment_heads",
    }
    for asset, upstream in edges.items():
        assert upstream in _deps(asset_nodes[asset]), f"{asset} should depend on {upstream}"
    # The extractor is not fed by the heads it serves.
    assert "experiment_heads" not in _deps(asset_nodes["lr_learner"])
