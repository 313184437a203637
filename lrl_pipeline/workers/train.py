"""One rank of a data-parallel fit of the LR-learner, launched by ``torchrun`` under Dagster Pipes (issue 16).

The ``lr_learner`` asset writes the fit's inputs to a folder (:func:`write_inputs`)
and runs, through its Pipes client resource::

    python -m torch.distributed.run --standalone --nproc_per_node N -m lrl_pipeline.workers.train FOLDER

Every rank maps the same feature matrix (``X.npy``, memory-mapped, so the
ranks of one machine share one copy in the page cache), reads the rows, and
fits with :class:`lrl_core.distributed.DataParallel`; rank 0 streams the
epochs to Dagster's log, sends every rank's throughput as a Pipes message
and writes the fitted learner (``learner.pt``, read back by :func:`read_learner`) and
the same throughput (``ranks.json``). Outside Dagster, ``open_dagster_pipes`` is a no-op.
A deployment swaps the subprocess client for ``PipesK8sClient`` or another
by configuration (docs/DEPLOY.md); this module is what runs there.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lrl_core.config import LRLConfig
from lrl_core.distributed import from_environment, local_rank
from lrl_core.training import LRLearner, resolve_device

__all__ = ["command", "read_learner", "write_inputs"]


def write_inputs(folder: Path, X: np.ndarray, train: tuple, validation: tuple | None, n_arms: int,
                 metric_names: list[str], controls: np.ndarray, config: LRLConfig) -> None:
    """The fit's inputs as files the ranks read: the matrix, the rows, the configuration."""
    np.save(folder / "X.npy", np.ascontiguousarray(X, dtype=np.float32))
    val = validation if validation is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64),
                                                     np.zeros((0, train[2].shape[1])))
    np.savez(folder / "rows.npz", units=train[0], arms=train[1], Y=train[2], val_units=val[0], val_arms=val[1],
             val_Y=val[2], controls=controls)
    (folder / "config.json").write_text(json.dumps({"config": config.to_dict(), "n_arms": int(n_arms),
                                                    "metric_names": list(metric_names)}))


def command(folder: Path, workers: int) -> list[str]:
    """The ``torchrun`` command line of ``workers`` ranks on one machine; the interpreter is
    ``$LRL_WORKER_PYTHON`` (where the ranks run in another image), else this one."""
    python = os.environ.get("LRL_WORKER_PYTHON") or sys.executable
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={workers}",
            "-m", "lrl_pipeline.workers.train", str(folder)]


def read_learner(folder: Path) -> LRLearner:
    """The learner rank 0 wrote."""
    tensors, meta = torch.load(folder / "learner.pt", weights_only=False)
    return LRLearner.from_state(tensors, meta)


def _fit(folder: Path, parallel, device: torch.device, log) -> tuple[LRLearner, float, int]:
    """The fit of this rank: the learner, its seconds, and the training rows (all ranks')."""
    X = np.load(folder / "X.npy", mmap_mode="r")
    rows = np.load(folder / "rows.npz")
    settings = json.loads((folder / "config.json").read_text())
    validation = ((rows["val_units"], rows["val_arms"], rows["val_Y"]) if rows["val_units"].size else None)

    def on_epoch(record: dict) -> None:
        if record["epoch"] == 1 or record["epoch"] % 10 == 0:
            log(f"{record['candidate']}, epoch {record['epoch']}: train {record['train_loss']:.4f}, "
                f"validation {record['val_loss']:.4f}")

    started = time.perf_counter()
    config = LRLConfig.from_dict(settings["config"]).replace(device=str(device))
    learner = LRLearner(config).fit(
        X, rows["units"], rows["arms"], rows["Y"], n_arms=settings["n_arms"], validation=validation,
        metric_names=settings["metric_names"], callback=on_epoch, controls=rows["controls"], parallel=parallel)
    return learner, time.perf_counter() - started, int(rows["units"].size)


def main(argv: list[str] | None = None) -> None:
    """Run one rank: join the group, fit, report (rank 0), leave."""
    folder = Path((argv if argv is not None else sys.argv[1:])[0])
    device = resolve_device(None)
    if device.type == "cuda":
        # One GPU per rank of this machine; NCCL needs the rank's device set before it starts.
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    parallel = from_environment(device)
    # The ranks share the machine's cores; more threads than cores each would make them wait.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // parallel.world))
    with contextlib.ExitStack() as stack:
        pipes = None
        if parallel.rank == 0:
            from dagster_pipes import open_dagster_pipes

            pipes = stack.enter_context(open_dagster_pipes())
        learner, seconds, rows = _fit(folder, parallel, device,
                                      pipes.log.info if pipes is not None else (lambda _: None))
        share = -(-rows // parallel.world)
        # Rows this rank computed per second over the chosen configuration's epochs, its seconds, and
        # its peak resident memory (the mapped matrix's pages count there, shared with the other ranks).
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        stats = parallel.gather((share * learner.n_epochs_ / seconds, seconds, peak))
        if parallel.rank == 0:
            tensors, meta = learner.to_state()
            torch.save((tensors, meta), folder / "learner.pt")
            report = {"backend": torch.distributed.get_backend(),
                      "ranks": [{"rank": r, "rows": share, "rows_per_s": rate, "fit_seconds": spent,
                                 "peak_rss_gb": peak / 1e9} for r, (rate, spent, peak) in enumerate(stats)]}
            (folder / "ranks.json").write_text(json.dumps(report))
            pipes.report_custom_message(report)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
