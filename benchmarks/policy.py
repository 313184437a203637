"""Policy trees with guardrails on planted worlds (issue 15): share of the oracle's gain, guardrail
breaches, DR interval coverage, by data size and guardrail tolerance.

World: :func:`lrl_core.synthetic.policy_world.planted_policy_world` (4 arms, a reward metric and a
guardrail metric that the most attractive arm breaks where ``x1 <= 0``). Oracle: per unit, the arm
with the best true reward among those whose true guardrail effect meets the tolerance (control if
none beats it). Usage::

    python benchmarks/policy.py            # 10 seeds per row, depth chosen and held at 3; a markdown table
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from lrl_core.policy import Objective, fit_policy_tree, policy_value
from lrl_core.synthetic.policy_world import planted_policy_world


def run(n: int, tolerance: float, seed: int, depths=range(1, 5)) -> tuple[float, float, bool, int]:
    """(share of the oracle's true gain, share of test units given a breaching arm, DR covers, depth)."""
    w = planted_policy_world(seed, n)
    objective = Objective(weights={0: 1.0}, guardrails={1: tolerance})
    known = w.role < 2
    policy = fit_policy_tree(w.X[known], w.model[known], w.arm[known], w.y[known], w.shares, objective,
                             ["x0", "x1", "x2"], validation=w.role[known] == 1, depths=depths)
    test = w.role == 2
    truth, rows = w.mu[test], np.arange(int(test.sum()))
    assigned = policy.assign(w.X[test])
    allowed = truth[:, :, 1] - truth[:, :1, 1] >= tolerance
    gain = np.where(allowed, truth[:, :, 0] - truth[:, :1, 0], -np.inf)
    oracle = np.where(gain.max(axis=1) > 0, gain.argmax(axis=1), 0)
    share = (truth[rows, assigned, 0] - truth[:, 0, 0]).mean() / (truth[rows, oracle, 0] - truth[:, 0, 0]).mean()
    value = policy_value(assigned, w.model[test], w.arm[test], w.y[test], w.shares)
    covers = abs(value.value[0] - truth[rows, assigned, 0].mean()) <= 1.96 * value.se[0]
    return share, float((~allowed[rows, assigned]).mean()), bool(covers), policy.depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    print("| depth | units | guardrail tolerance | share of oracle gain: min / median | seeds at >= 0.9 "
          "| breaching assignments (max share) | DR covers | depths | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, depths in (("chosen (1-4)", range(1, 5)), ("3 (held)", [3])):
        for n in (8_000, 20_000):
            for tolerance in (-0.1, -0.3):
                started = time.perf_counter()
                runs = [run(n, tolerance, seed, depths) for seed in range(args.seeds)]
                shares = [r[0] for r in runs]
                print(f"| {label} | {n:,} | {tolerance} | {min(shares):.3f} / {np.median(shares):.3f} "
                      f"| {sum(s >= 0.9 for s in shares)} of {len(runs)} | {max(r[1] for r in runs):.4f} "
                      f"| {sum(r[2] for r in runs)} of {len(runs)} | {sorted({r[3] for r in runs})} "
                      f"| {time.perf_counter() - started:.1f} |")


if __name__ == "__main__":
    main()
