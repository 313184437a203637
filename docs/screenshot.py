"""Screenshot the Dagster UI and the retrain report into docs/.

Run by ``make screenshot`` after ``make demo`` (so the graph shows
materializations and a report exists). Writes

- ``docs/training_lineage.png``: the lineage of the pooled model
  (``lr_learner``: its features, the heads it feeds and the reports, by group);
- ``docs/report_asset.png``: the ``evaluation`` asset's page, whose
  materialization carries the report's path and key figures as metadata;
- ``docs/retrain_report.png``: the top of the latest HTML retrain report.

Starts ``dagster dev`` on a free port with the project's instance, waits
until the code location has loaded, lets headless Chromium render each page,
and stops the server by its process group.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "training_lineage.png"
ASSET_OUT = ROOT / "docs" / "report_asset.png"
REPORT_OUT = ROOT / "docs" / "retrain_report.png"
ASSET = "lr_learner"
REPORT_ASSET = "evaluation"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
START_TIMEOUT_S = 180.0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _default_signals() -> None:
    # A background shell may have set SIGINT/SIGTERM to "ignore", which
    # exec inherits; the server must die when its process group is signalled.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_server(port: int, log: Path) -> subprocess.Popen:
    """``dagster dev`` over workspace.yaml in a new session (its own process group)."""
    from lrl_pipeline import paths

    env = dict(os.environ, DAGSTER_HOME=str(paths.ensure_dagster_home()))
    env.setdefault("LRL_DUCKDB_PATH", str(paths.db_path()))
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"),
           "-h", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as sink:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_default_signals)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def asset_keys(base: str) -> set[str]:
    """Asset keys the UI's GraphQL API reports (empty while the code location loads)."""
    query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
    request = urllib.request.Request(f"{base}/graphql", data=query, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    return {"/".join(node["assetKey"]["path"]) for node in (body.get("data") or {}).get("assetNodes") or []}


def wait_until_loaded(base: str, proc: subprocess.Popen, log: Path) -> None:
    """Block until the webserver answers and the code location's assets are loaded."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"dagster dev exited with {proc.returncode}; its log:\n{log.read_text()[-4000:]}")
        try:
            urllib.request.urlopen(f"{base}/server_info", timeout=5).close()
            if ASSET in asset_keys(base):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1.0)
    sys.exit(f"the UI did not load asset {ASSET!r} within {START_TIMEOUT_S:.0f} s; its log:\n{log.read_text()[-4000:]}")


def latest_report() -> Path | None:
    """The newest retrain report of the project's database (what `lrl report` prints)."""
    from lrl_pipeline import paths
    from lrl_pipeline.reporting import latest_retrain_report

    return latest_retrain_report(paths.artifacts_dir(paths.db_path()))


def screenshot(browser: str, url: str, out: Path, size: str = "1600,1000") -> None:
    """Headless Chromium render of ``url`` into ``out`` (PNG), in a ``"width,height"`` window."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", f"--window-size={size}", "--hide-scrollbars",
               "--virtual-time-budget=20000", f"--screenshot={out}", url]
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=180)


def main() -> int:
    """Take the screenshot; returns the exit status."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if browser is None:
        print("no Chromium found: install it (Debian/Ubuntu: `apt-get install chromium`) and rerun", file=sys.stderr)
        return 1
    report = latest_report()
    if report is None:
        print("no retrain report yet: run `make demo` first", file=sys.stderr)
        return 1
    # The report is one self-contained file: no server needed. A tall window shows the overview,
    # the risk tables and the first figures.
    screenshot(browser, report.resolve().as_uri(), REPORT_OUT, size="1400,3000")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "dagster.log"
        proc = start_server(port, log)
        try:
            wait_until_loaded(base, proc, log)
            screenshot(browser, f"{base}/assets/{ASSET}?view=lineage", OUT)
            screenshot(browser, f"{base}/assets/{REPORT_ASSET}", ASSET_OUT, size="1600,1400")
        finally:
            stop_server(proc)
    for out in (OUT, ASSET_OUT, REPORT_OUT):
        print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
