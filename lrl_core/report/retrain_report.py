"""``build_retrain_report``: the self-contained HTML report of one retrain of the pooled model.

Risks against the T-learners, low-rank evidence, calibration, similar
experiments, training curves, model choice and data quality; the overview
quotes the headline of each. The file is written atomically, so a reader
never sees half a report.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lrl_core.atomic import write_text_atomically
from lrl_core.rank import bcv_rank, singular_values
from lrl_core.segment_effects import disagreements
from lrl_core.report.embeddings import nearest_experiments, similarity_matrix
from lrl_core.report.effect_figures import effect_scatter
from lrl_core.report.figures import quarantine_bars, training_curves
from lrl_core.report.html_parts import _details, _esc, _facts, _meta_table, _note, _Page, _plain, _table
from lrl_core.report.low_rank_figures import clustered_heatmap, correlation_heatmap, singular_values_plot
from lrl_core.report.report_data import ReportResult, RetrainReportData
from lrl_core.report.segment_figures import segment_heatmap
from lrl_core.report.risk_figures import risk_bars
from lrl_core.report.summaries import (_calibration_section, _improvement_columns, _models, _present_risks,
                                       _risk_comparison, _with_risk_columns)


def _quarantine_summary(quarantine: pd.DataFrame | None) -> pd.DataFrame:
    if quarantine is None or quarantine.empty:
        return pd.DataFrame({"table": pd.Series(dtype=str), "reason": pd.Series(dtype=str),
                             "rows": pd.Series(dtype="int64")})
    if "rows" in quarantine:
        summary = quarantine[["table", "reason", "rows"]]
    else:
        summary = quarantine.groupby(["table", "reason"], sort=False, dropna=False).size().rename("rows").reset_index()
    return summary.astype({"rows": "int64"}).sort_values("rows", ascending=False, ignore_index=True)


def _ite_labels(data: RetrainReportData, metric: str, n_cols: int) -> list[str]:
    labels = data.ite_labels[metric] if isinstance(data.ite_labels, Mapping) else data.ite_labels
    labels = [str(x) for x in labels] if labels is not None and len(labels) else [f"arm {i}" for i in range(n_cols)]
    if len(labels) != n_cols:
        raise ValueError(f"{len(labels)} ITE labels for {n_cols} columns of metric {metric!r}")
    return labels


def _effective_rank(M: np.ndarray, max_units: int) -> int | None:
    """BCV rank with up to 5 x 5 folds on at most ``max_units`` rows; None when there are too few to hold out."""
    n, K = M.shape
    if K < 2 or n < 2:
        return None
    if n > max_units:
        M = M[np.sort(np.random.default_rng(0).choice(n, max_units, replace=False))]
        n = max_units
    return bcv_rank(M, n_row_folds=min(5, n), n_col_folds=min(5, K)).rank


def _retrain_overview(page: _Page, data: RetrainReportData, reference: str, facts: list[str]) -> None:
    n_exp = data.risks["experiment_id"].nunique()
    n_arms = data.risks[["experiment_id", "arm"]].drop_duplicates().shape[0]
    metrics = list(dict.fromkeys(data.risks["metric"]))
    head = [f"{n_exp} experiments, {n_arms} treated arms, {len(metrics)} metrics "
            f"({', '.join(_esc(m) for m in metrics)}); model judged: <b>{_esc(reference)}</b>."]
    page.section(
        "overview", "Overview",
        "the bullets are the headline checks from each section below; green means the pooled model "
        "beats the baseline, red that it does not.",
        _facts(head + facts) + _meta_table(data.meta),
    )


def _risk_section(page: _Page, risks: pd.DataFrame, reference: str, others: list[str]) -> list[str]:
    averaged = _risk_comparison(risks, ["metric"], reference, others)
    per_experiment = _risk_comparison(risks, ["experiment_id", "arm", "metric"], reference, others)
    facts = []
    for risk, rows in averaged.groupby("risk", sort=False):
        for other in others:
            change = rows[f"Δ vs {other}"].dropna()
            wins = int((change > 0).sum())
            cls = "better-text" if wins * 2 > len(change) else "worse-text"
            facts.append(
                f'{risk}: <span class="{cls}">{_esc(reference)} better than {_esc(other)} '
                f"on {wins} of {len(change)} metrics</span> (mean relative improvement {change.mean():+.1%})."
            )
    # Real experiments never reveal individual effects: say why PEHE is missing rather than leave it out silently.
    no_pehe = "" if "pehe" in _present_risks(risks) else _note(
        "No PEHE: it needs the true effects, which only simulated data has, and none came with these risks.")
    body = (
        "<h3>Averaged over experiments and arms, per metric</h3>"
        + _table(averaged, improvement=_improvement_columns(averaged))
        + no_pehe
        + page.figure(risk_bars(risks), "Bars: mean risk over experiments and arms; error bars: one "
                      "standard error across experiments.", key="risks")
        + "<h3>Per experiment</h3>"
        + _details(f"Show the per-experiment table ({len(per_experiment)} rows: experiment × arm × metric × risk)",
                   _table(per_experiment, improvement=_improvement_columns(per_experiment)))
    )
    page.section(
        "risks", "Held-out risk: pooled model against independent T-learners",
        "lower risk is better; μ-risk is the squared error of observed outcomes, τ-risk the R-loss of the "
        "CATE, PEHE the error against true effects (only on synthetic data). Δ is the relative improvement "
        f"1 − {reference} / baseline: green means {reference} is better.",
        body,
    )
    return facts


def _low_rank_section(page: _Page, data: RetrainReportData) -> list[str]:
    if not data.ite_matrices:
        page.section("low-rank", "Low-rank evidence", "the pooled model assumes effects share a few factors.",
                     _note("No T-learner ITE matrices were supplied."))
        return []
    svals, ranks, rows, heatmaps = {}, {}, [], []
    for metric, M in data.ite_matrices.items():
        M = np.asarray(M, dtype=np.float64)
        labels = _ite_labels(data, metric, M.shape[1])
        # An arm whose T-learner could not be fitted (NaN CATEs) is left out of this metric's matrix.
        finite = np.isfinite(M).all(axis=0)
        M, labels = M[:, finite], [label for label, keep in zip(labels, finite) if keep]
        if M.shape[1] == 0:
            continue
        svals[metric] = singular_values(M)
        ranks[metric] = _effective_rank(M, data.bcv_max_units)
        share = np.square(svals[metric])
        top = share[: ranks[metric]].sum() / share.sum() if ranks[metric] and share.sum() > 0 else np.nan
        rows.append((metric, M.shape[0], M.shape[1], ranks[metric], top))
        heatmaps.append(page.figure(
            correlation_heatmap(M, labels, f"Correlation of T-learner CATEs across arms: {metric}"),
            f"{metric}: rows and columns ordered by hierarchical clustering (average linkage on 1 − correlation).",
            key="correlation" if not heatmaps else None,
        ))
    table = pd.DataFrame(rows, columns=["metric", "units", "arms", "BCV rank", "variance in top BCV-rank components"])
    table["BCV rank"] = table["BCV rank"].astype("Int64")
    body = (
        _table(table, percent=["variance in top BCV-rank components"])
        + page.figure(singular_values_plot(svals, ranks),
                      "Singular values of the column-centred ITE matrix; the dashed line follows the last "
                      "component kept by bi-cross-validation (5 × 5 folds, on a seeded subsample of at most "
                      f"{data.bcv_max_units:,} units).", key="singular_values")
        + "".join(heatmaps)
    )
    page.section(
        "low-rank", "Low-rank evidence (T-learner ITE matrices)",
        "a few large singular values followed by a fast drop, a BCV rank far below the number of arms, and "
        "blocks in the clustered correlation heatmap all say that the experiments' effects share a few "
        "factors, which is what lets the pooled model borrow strength.",
        body,
    )
    return ["Effective rank (BCV) of the T-learner ITE matrix: "
            + ", ".join(f"{_esc(m)} {r if r is not None else '–'} of {k} arms"
                        for m, _, k, r, _ in rows) + "."]


def _embedding_section(page: _Page, data: RetrainReportData) -> None:
    if data.embeddings is None or len(data.embeddings) < 2:
        page.section("embeddings", "Similar experiments by effect embedding",
                     "arms whose effect embeddings point the same way move the same units in the same way.",
                     _note("Fewer than two effect embeddings were supplied."))
        return
    labels = [str(x) for x in data.embedding_labels] or [f"arm {i}" for i in range(len(data.embeddings))]
    near = nearest_experiments(data.embeddings, labels, k=data.n_neighbours)
    wide = near.pivot(index="label", columns="rank", values=["neighbour", "similarity"]).reindex(labels)
    shown = pd.DataFrame({"arm": wide.index})
    for r in sorted(near["rank"].unique()):
        shown[f"nearest {r}"] = wide[("neighbour", r)].to_numpy()
        shown[f"cosine {r}"] = wide[("similarity", r)].to_numpy()
    heat = clustered_heatmap(
        similarity_matrix(data.embeddings), labels, "Cosine similarity of effect embeddings",
        colorbar_label="cosine similarity of e(k,t) − e(k,0)",
    )
    body = _table(shown, label_columns=[c for c in shown if not c.startswith("cosine")]) + page.figure(
        heat, "Rows and columns ordered by hierarchical clustering of the effect embeddings.", key="embeddings"
    )
    page.section(
        "embeddings", "Similar experiments by effect embedding",
        "each arm's effect embedding e(k,t) − e(k,0) drives its CATE on every metric; a cosine near 1 means two "
        "arms move the same units in the same direction, near −1 in opposite directions.",
        body,
    )


def _training_section(page: _Page, data: RetrainReportData) -> list[str]:
    history = list(data.history or [])
    fig = training_curves(history, data.best_epoch)
    if not history:
        page.section("training", "Training curves", "loss per epoch of the pooled model.",
                     _note("No training history was recorded.") + page.figure(fig, "No history."))
        return []
    h = pd.DataFrame(history)
    best = h.loc[h["epoch"] == data.best_epoch] if data.best_epoch is not None else h.iloc[[-1]]
    best = best if not best.empty else h.iloc[[-1]]
    facts = {
        "epochs run": int(len(h)),
        "kept epoch": int(best["epoch"].iloc[0]),
        "validation loss at kept epoch": float(best["val_loss"].iloc[0]) if "val_loss" in h else np.nan,
        "train loss at kept epoch": float(best["train_loss"].iloc[0]) if "train_loss" in h else np.nan,
        "seconds": float(h["seconds"].sum()) if "seconds" in h else np.nan,
    }
    table = pd.DataFrame({"fact": list(facts), "value": [_plain(v) for v in facts.values()]})
    page.section(
        "training", "Training curves",
        "validation loss should fall and flatten; the dashed line is the epoch early stopping kept. A train "
        "loss far below the validation loss means overfitting.",
        page.figure(fig, "Mean squared error on standardised metrics, per epoch.", key="training")
        + _table(table, label_columns=["fact", "value"]),
    )
    return [f"Training ran {facts['epochs run']} epochs and kept epoch {facts['kept epoch']}."]


def _model_choice_section(page: _Page, data: RetrainReportData) -> list[str]:
    facts, body = [], ""
    if data.selection is not None and len(data.selection):
        table = data.selection.sort_values("val_loss").reset_index(drop=True)
        chosen = table[table["chosen"]].iloc[0]
        facts.append(f"Model selection chose a {chosen['extractor']} extractor, d={chosen['d']}, "
                     f"weight_decay={chosen['weight_decay']:g} among {len(table)} candidates.")
        body += "<h3>Candidates, best validation loss first</h3>" + _table(table)
    else:
        body += _note("Nothing was searched: every searchable setting was given.")
    if data.served is not None and len(data.served):
        counts = data.served["model"].value_counts().rename_axis("model").reset_index(name="cells")
        pooled_alone = int((data.served["pooled_weight"] >= 1.0).sum())
        facts.append(f"The pooled model alone serves {pooled_alone} of {len(data.served)} (arm, metric) cells.")
        body += "<h3>What serves each experiment arm and metric</h3>" + _table(counts)
        others = data.served[data.served["pooled_weight"] < 1.0]
        if len(others):
            body += ("<h3>Cells blended with or served by a T-learner</h3>"
                     + _table(others[[c for c in ("experiment_id", "arm", "metric", "model", "pooled_weight", "gain",
                                                  "gain_se", "n", "se_scale") if c in others]].head(100)))
    page.section(
        "model-choice", "Model choice",
        "validation loss on held-out units chose the pooled model's configuration (successive halving: a "
        "candidate's epochs show how far it got). Per arm and metric, held-out units then weighed the pooled "
        "CATE against the T-learners'; a weight below 1 blends in a T-learner, and se_scale is the factor on "
        "the pooled model's standard error that the blend's validated gain leaves.",
        body,
    )
    return facts


def _effects_section(page: _Page, data: RetrainReportData) -> list[str]:
    """Effects across experiments: correlations of true effects by estimator, and the strongest pair's arms."""
    covariance, effects = data.effect_covariance, data.arm_effects
    how = ("each treated arm's estimated effects on two metrics carry noise that the naive covariance "
           "counts as signal; total covariance (tc) subtracts it, the split-sample jive cancels it, "
           "pooled uses the LR-learner's arm effects. The slopes are Lambda_ab / Lambda_aa of each estimator.")
    if covariance is None or covariance.empty:
        page.section("effects", "Effects across experiments", how,
                     _note("No effect covariance for this extractor yet (it is computed by the retrain)."))
        return []
    pairs = covariance[covariance["metric_a"] < covariance["metric_b"]]
    table = pairs.pivot_table(index=["metric_a", "metric_b"], columns="estimator", values="correlation")
    body = "<h3>Correlation of true effects across arms, by estimator</h3>" + _table(table.reset_index())
    reference = "jive" if "jive" in set(pairs["estimator"]) else pairs["estimator"].iloc[0]
    ranked = pairs[pairs["estimator"] == reference].dropna(subset=["correlation"])
    facts = []
    if len(ranked) and effects is not None and not effects.empty:
        best = ranked.loc[ranked["correlation"].abs().idxmax()]
        a, b = best["metric_a"], best["metric_b"]
        wide = effects.pivot_table(index=["experiment_id", "arm"], columns="metric",
                                   values=["effect", "effect_se", "pooled"])
        scatter = pd.DataFrame({"effect_a": wide[("effect", a)], "effect_b": wide[("effect", b)],
                                "se_a": wide[("effect_se", a)], "se_b": wide[("effect_se", b)],
                                "pooled_a": wide[("pooled", a)], "pooled_b": wide[("pooled", b)]})
        entry = covariance.set_index(["estimator", "metric_a", "metric_b"])["covariance"]
        slopes = {name: entry.get((name, a, b), np.nan) / entry.get((name, a, a), np.nan)
                  for name in ("naive", "tc", "jive", "pooled") if (name, a, a) in entry.index}
        body += page.figure(effect_scatter(scatter, a, b, slopes),
                            f"Treated arms' effects on {b} against {a}, the pair with the strongest {reference} "
                            "correlation.")
        facts.append(f"strongest effect correlation ({reference}): {a} and {b}, {best['correlation']:+.2f}")
    page.section("effects", "Effects across experiments", how, body)
    return facts


def _segments_section(page: _Page, data: RetrainReportData) -> list[str]:
    """Effects by segment: the heatmap of observed and SI-extrapolated cells, and where SI and the
    LR-learner disagree beyond their intervals."""
    rows = data.segment_effects
    how = ("where an experiment left a segment out, Synthetic Interventions (a low-rank tensor of segment "
           "means) and the LR-learner (its CATE averaged over the segment's units) each extrapolate; they rest "
           "on different assumptions, so a cell where they disagree beyond their 95% intervals, or where SI's "
           "subspace test fails, should not be trusted without a test on that segment.")
    if rows is None or rows.empty:
        page.section("segments", "Effects by segment", how,
                     _note("No segment effects for this extractor: set segment_by (run config of "
                           "segment_effects) or $LRL_SEGMENT_BY to a unit feature column."))
        return []
    column = str(rows["segment_by"].iloc[0]) if "segment_by" in rows else "segment"
    body = "".join(page.figure(segment_heatmap(rows, metric), f"Effects on {metric} by {column}.")
                   for metric in sorted(rows["metric"].unique())[:3])
    disagree = disagreements(rows)
    si = rows[rows["source"] == "si"]
    failed = int((si["si_test_passed"] == False).sum())  # noqa: E712 (nullable boolean)
    if len(disagree):
        body += ("<h3>Cells where SI and the LR-learner disagree beyond their intervals</h3>"
                 + _table(disagree.head(50)))
    else:
        body += _note("SI and the LR-learner agree within their intervals on every left-out cell.")
    page.section("segments", f"Effects by segment ({column})", how, body)
    return [f"{len(si)} left-out segment cells by {column}: SI estimated {int(si['effect'].notna().sum())}, "
            f"its test failed on {failed}, SI and the LR-learner disagree on {len(disagree)}."]


def _categories_table(categories: Mapping[str, Mapping[str, int]]) -> str:
    """One row per categorical feature column: its kept levels with their units, and what was pooled."""
    if not categories:
        return ""
    rows = pd.DataFrame([{
        "column": name,
        "levels kept": sum(1 for level in counts if level not in ("(other)", "(null)")),
        "levels (training units)": ", ".join(f"{level} ({n:,})" for level, n in counts.items()
                                             if level not in ("(other)", "(null)")),
        "units in other": counts.get("(other)", 0),
        "units NULL": counts.get("(null)", 0),
    } for name, counts in categories.items()])
    return ("<h3>Categorical features</h3>"
            + _note("Each kept level has an indicator; rarer levels, and levels first seen when scoring, "
                    "share the 'other' indicator, NULL has its own.")
            + _table(rows))


def _data_quality_section(page: _Page, quarantine: pd.DataFrame | None, rows_in: Mapping[str, int],
                          categories: Mapping[str, Mapping[str, int]]) -> list[str]:
    summary = _quarantine_summary(quarantine)
    per_table = summary.groupby("table", sort=False)["rows"].sum()
    tables = list(dict.fromkeys([*rows_in, *per_table.index]))
    overview = pd.DataFrame({
        "table": tables,
        "rows in": [rows_in.get(t, np.nan) for t in tables],
        "rows quarantined": [int(per_table.get(t, 0)) for t in tables],
    })
    with np.errstate(invalid="ignore", divide="ignore"):
        overview["share quarantined"] = overview["rows quarantined"] / overview["rows in"]
    body = (
        _table(overview, percent=["share quarantined"])
        + ("<h3>By reason</h3>" + _table(summary) if not summary.empty else _note("No rows quarantined."))
        + page.figure(quarantine_bars(summary, rows_in), "Rows read and rows left out by validation.")
        + _categories_table(categories)
    )
    page.section(
        "data-quality", "Data quality",
        "quarantined rows were left out of training and reported by reason; a jump here usually means an "
        "upstream change, not a modelling problem.",
        body,
    )
    total = int(summary["rows"].sum())
    return [f"{total:,} rows quarantined" + (f" over {len(summary)} reasons." if total else ".")]


def build_retrain_report(data: RetrainReportData, path) -> ReportResult:
    """Write the retrain report for ``data`` to ``path`` (one self-contained HTML file).

    Sections (ids, in order): ``overview`` (headline checks and ``meta``),
    ``risks`` (the paper's Tables 3-4 layout per metric, per experiment,
    relative improvements), ``low-rank`` (singular values, BCV rank and
    clustered correlation heatmap per metric; Figures 2-3), ``calibration``
    (pooled decile plots per metric and BLP slopes per experiment, arm and
    metric), ``embeddings`` (nearest arms by effect embedding),
    ``training`` (loss curves, kept epoch), ``model-choice`` (model selection's
    candidates, what serves each cell), ``effects`` (correlations of effects
    across experiments by estimator, the strongest pair's arm effects),
    ``segments`` (effects by segment, observed and extrapolated by SI, where SI
    and the LR-learner disagree) and ``data-quality`` (rows in, rows quarantined by reason, the levels kept of
    each categorical feature).

    Returns a :class:`ReportResult`; ``key_figures`` maps ``risks``,
    ``singular_values``, ``correlation``, ``calibration``, ``embeddings``,
    ``training`` (those available) to markdown images for Dagster metadata.
    """
    if data.risks is None or data.risks.empty:
        raise ValueError("the retrain report needs a non-empty risk table")
    risks = _with_risk_columns(data.risks)
    reference, others = _models(risks, data.reference_model)
    page = _Page(data.title, f"{reference} against {', '.join(others) if others else 'no baseline'}")
    facts = _risk_section(page, risks, reference, others)
    facts += _low_rank_section(page, data)
    facts += _calibration_section(
        page, data.calibration, keys=["experiment_id", "arm", "metric"], pooled_by=["metric"],
        strata=["experiment_id", "arm"], section_title="Calibration on the test split",
        slopes_title="Calibration slope (best linear predictor) per experiment arm and metric",
    )
    _embedding_section(page, data)
    facts += _training_section(page, data)
    facts += _model_choice_section(page, data)
    facts += _effects_section(page, data)
    facts += _segments_section(page, data)
    facts += _data_quality_section(page, data.quarantine, data.rows_in, data.categories)
    _retrain_overview(page, data, reference, facts)
    # The overview is built last (it quotes the other sections) but shown first.
    page.sections.insert(0, page.sections.pop())
    path = write_text_atomically(path, page.render())
    return ReportResult(path=path, sections=[s[0] for s in page.sections], key_figures=page.key_figures)
