"""``build_experiment_report``: the self-contained HTML report of one new experiment's head.

CATE distributions, calibration on held-out units, standard errors and the
head against an independent T-learner; written atomically like the retrain report.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lrl_core.atomic import write_text_atomically
from lrl_core.report.calibration import Z95
from lrl_core.report.cate_figures import cate_agreement, cate_histograms, se_vs_cate
from lrl_core.report.html_parts import _esc, _facts, _meta_table, _note, _Page, _table
from lrl_core.report.plotting import RISK_NAMES
from lrl_core.report.report_data import ExperimentReportData, ReportResult
from lrl_core.report.risk_figures import risk_bars
from lrl_core.report.summaries import (_calibration_section, _improvement_columns, _models, _present_risks,
                                       _risk_comparison, _with_risk_columns)


def _cate_summary(cates: pd.DataFrame) -> pd.DataFrame:
    def stats(values: pd.Series) -> pd.Series:
        v = values.to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        q = np.quantile(v, [0.1, 0.5, 0.9]) if v.size else [np.nan] * 3
        return pd.Series({"units": v.size, "mean (ATE)": v.mean() if v.size else np.nan,
                          "sd": v.std(ddof=1) if v.size > 1 else np.nan, "p10": q[0], "median": q[1],
                          "p90": q[2], "share > 0": (v > 0).mean() if v.size else np.nan})

    table = cates.groupby(["arm", "metric"], sort=False)["cate"].apply(stats).unstack().reset_index()
    return table.astype({"units": "int64"})


def _se_summary(cates: pd.DataFrame) -> pd.DataFrame:
    c = cates[np.isfinite(cates["cate"]) & np.isfinite(cates["cate_se"])].copy()
    c["significant"] = np.abs(c["cate"]) > Z95 * c["cate_se"]
    return (
        c.groupby(["arm", "metric"], sort=False)
        .agg(units=("cate", "size"), median_se=("cate_se", "median"), max_se=("cate_se", "max"),
             mean_abs_cate=("cate", lambda v: float(np.abs(v).mean())), share_significant=("significant", "mean"))
        .reset_index()
        .rename(columns={"median_se": "median SE", "max_se": "max SE", "mean_abs_cate": "mean |CATE|",
                         "share_significant": "share |CATE| > 1.96 SE"})
    )


def build_experiment_report(data: ExperimentReportData, path) -> ReportResult:
    """Write the report of one new experiment's head to ``path`` (one self-contained HTML file).

    Sections (ids, in order): ``overview``, ``cate-distribution`` (per arm
    and metric), ``calibration`` (held-out deciles and BLP slopes per arm
    and metric), ``standard-errors`` (SE summary and SE against CATE), and
    ``head-vs-tlearner`` (risks of the head against independent T-learners
    on the same rows, and per-unit agreement). Returns a
    :class:`ReportResult` with key figures ``cate_distribution``,
    ``calibration`` and ``head_vs_tlearner`` (those available).
    """
    cates = data.cates
    if cates is None or cates.empty:
        raise ValueError("the experiment report needs a non-empty CATE table")
    title = data.title or f"New experiment report: {data.experiment_id}"
    page = _Page(title, f"Linear head on the frozen extractor, experiment {data.experiment_id}")
    facts = []

    summary = _cate_summary(cates)
    page.section(
        "cate-distribution", "Distribution of estimated CATEs",
        "the spread of each histogram is the heterogeneity the head finds; its mean is the average effect.",
        _table(summary, percent=["share > 0"])
        + page.figure(cate_histograms(cates), "Per-unit CATE of each arm and metric.", key="cate_distribution"),
    )
    for row in summary.to_dict("records"):
        facts.append(f"{_esc(row['arm'])} / {_esc(row['metric'])}: average effect {row['mean (ATE)']:+.4f}, "
                     f"{row['share > 0']:.0%} of units with a positive CATE.")

    facts += _calibration_section(
        page, data.calibration, keys=["arm", "metric"], pooled_by=["arm", "metric"], strata=[],
        section_title="Calibration on held-out units",
        slopes_title="Calibration slope (best linear predictor) per arm and metric",
    )

    if "cate_se" in cates and cates["cate_se"].notna().any():
        se_body = _table(_se_summary(cates), percent=["share |CATE| > 1.96 SE"]) + page.figure(
            se_vs_cate(cates), "Each point a unit; outside the grey cone a unit's CATE differs from 0 at 5%.")
    else:
        se_body = _note("The head reported no standard errors.")
    page.section(
        "standard-errors", "Standard errors",
        "the standard error of each unit's CATE comes from the closed-form ridge head; large errors relative to "
        "the CATE mean the head cannot separate that unit's effect from zero.",
        se_body,
    )

    risks = data.risks
    if risks is not None and not risks.empty:
        risks = _with_risk_columns(risks)
        reference, others = _models(risks, data.reference_model)
        comparison = _risk_comparison(risks, ["arm", "metric"], reference, others)
        body = (
            _table(comparison, improvement=_improvement_columns(comparison))
            + page.figure(risk_bars(risks, by=("arm", "metric"), title="Held-out risk: head against T-learner"),
                          "Risks on the experiment's held-out rows (lower is better).", key="head_vs_tlearner")
        )
        if "tlearner_cate" in cates and cates["tlearner_cate"].notna().any():
            body += page.figure(cate_agreement(cates), "Per-unit CATE of the head against the T-learner's.")
        for other in others:
            for risk in _present_risks(risks):
                means = risks.groupby("model")[risk].mean()
                change = 1.0 - means[reference] / means[other]
                cls = "better-text" if change > 0 else "worse-text"
                facts.append(f'{RISK_NAMES[risk]} of the head vs {_esc(other)}: '
                             f'<span class="{cls}">{change:+.1%}</span> (positive = head better).')
    else:
        reference, body = "head", _note("No risk comparison was supplied.")
    page.section(
        "head-vs-tlearner", "Head against an independent T-learner",
        f"Δ is the relative improvement 1 − {reference} / T-learner on the same held-out rows: green means the "
        "head, which borrows the pooled extractor, beats a model fitted on this experiment alone.",
        body,
    )

    page.section("overview", "Overview", "headline numbers from the sections below.",
                 _facts(facts) + _meta_table({"experiment": data.experiment_id, **data.meta}))
    page.sections.insert(0, page.sections.pop())
    path = write_text_atomically(path, page.render())
    return ReportResult(path=path, sections=[s[0] for s in page.sections], key_figures=page.key_figures)
