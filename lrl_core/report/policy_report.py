"""``build_policy_report``: one experiment's policy as a page a product team can read.

The segments (rules, size, the arm each gets and the predicted reward of
every arm there), and the policy's doubly robust value per metric against
everyone on control, everyone on the best single arm and the per-unit argmax.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrl_core.atomic import write_text_atomically
from lrl_core.report.html_parts import _esc, _facts, _meta_table, _Page, _table
from lrl_core.report.plotting import PALETTE, _styled
from lrl_core.report.report_data import ReportResult

POLICY_SECTIONS = ["overview", "segments", "value"]


@dataclass
class PolicyReportData:
    """``segments``: ``segment, rule, units, arm`` plus one ``reward <arm>`` column per arm (the model's
    predicted reward there); ``values``: ``policy, metric, estimator, value, se``; ``objective``: text."""

    experiment_id: str
    objective: str
    segments: pd.DataFrame
    values: pd.DataFrame
    meta: Mapping[str, object] = field(default_factory=dict)


@_styled
def policy_value_bars(values: pd.DataFrame, title: str = "Value of each policy (doubly robust, 95%)") -> Figure:
    """Per metric, each policy's DR value with its 95% interval."""
    dr = values[values["estimator"] == "dr"]
    metrics = list(dict.fromkeys(dr["metric"]))
    fig = Figure(figsize=(max(6.0, 3.2 * len(metrics)), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics), squeeze=False)[0])
    for ax, metric in zip(axes, metrics):
        part = dr[dr["metric"] == metric]
        x = np.arange(len(part))
        ax.bar(x, part["value"], yerr=1.96 * part["se"], color=[PALETTE[i % len(PALETTE)] for i in x], capsize=3)
        ax.set_xticks(x, part["policy"], rotation=20)
        ax.set_title(metric)
    fig.suptitle(title)
    return fig


def build_policy_report(data: PolicyReportData, path) -> ReportResult:
    """Write one experiment's policy page to ``path`` (sections :data:`POLICY_SECTIONS`)."""
    if data.segments.empty or data.values.empty:
        raise ValueError("the policy report needs segments and values")
    page = _Page(f"Policy: {data.experiment_id}", f"Objective: {data.objective}")
    page.section(
        "segments", "Segments and the arm each gets",
        "each row is a segment of the training units, written in the features' own units; reward columns are "
        "the model's predicted reward of each arm there, and a segment gets the best arm that passes every "
        "guardrail on a 95% lower bound of its doubly robust effect (its own, or its parent segment's shifted "
        "by the model's difference between the two, whichever is higher; control when none passes).",
        _table(data.segments, label_columns=["rule", "arm"]))
    dr = data.values[data.values["estimator"] == "dr"]
    table = dr.assign(interval=[f"± {1.96 * s:.3g}" for s in dr["se"]]).drop(columns=["estimator", "se"])
    page.section(
        "value", "Value on the test split",
        "the mean outcome had every test unit followed each policy, by doubly robust scores on randomised "
        "units; compare the tree with control, the best single arm and the per-unit argmax (which needs no "
        "segments and honours no guardrail).",
        _table(table, label_columns=["policy", "metric"])
        + page.figure(policy_value_bars(data.values), "Doubly robust value per policy and metric.", key="value"))
    facts = [f"{len(data.segments)} segments; arms given: "
             + ", ".join(f"{_esc(arm)} to {int(units):,} units"
                         for arm, units in data.segments.groupby("arm")["units"].sum().items())]
    first = dr["metric"].iloc[0]
    by_policy = dr[dr["metric"] == first].set_index("policy")
    if {"tree", "control"} <= set(by_policy.index):
        gain = by_policy.loc["tree", "value"] - by_policy.loc["control", "value"]
        facts.append(f"{_esc(first)}: the tree's value {by_policy.loc['tree', 'value']:.4g} against control's "
                     f"{by_policy.loc['control', 'value']:.4g} ({gain:+.4g}).")
    page.section("overview", "Overview", "the segments and the value, in two lines.",
                 _facts(facts) + _meta_table({"experiment": data.experiment_id, "objective": data.objective,
                                              **data.meta}))
    page.sections.insert(0, page.sections.pop())
    path = write_text_atomically(path, page.render())
    return ReportResult(path=path, sections=[s[0] for s in page.sections], key_figures=page.key_figures)
