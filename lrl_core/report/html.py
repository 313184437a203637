"""Self-contained HTML reports: the retrain report and the new-experiment report.

Each builder takes a plain dataclass of DataFrames and arrays, computes the
report's summaries (singular values, BCV ranks, calibration, nearest
experiments), draws the figures, and writes one HTML file with every image
inline as a base64 PNG and the CSS inline: it opens offline, with no CDN.
The file is written to a temporary name and moved into place with
``os.replace``, so a reader never sees half a report.

Each section is ``<section id="..."><h2>...</h2>`` with a one-line "how to
read this"; sections whose inputs are missing still appear and say so.
"""
from __future__ import annotations

import base64
import html
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lrl_core.rank import bcv_rank, singular_values
from lrl_core.report import figures
from lrl_core.report.calibration import Z95, calibration_slopes, decile_calibration
from lrl_core.report.embeddings import nearest_experiments, similarity_matrix

__all__ = [
    "RetrainReportData",
    "ExperimentReportData",
    "ReportResult",
    "RETRAIN_SECTIONS",
    "EXPERIMENT_SECTIONS",
    "build_retrain_report",
    "build_experiment_report",
]

RETRAIN_SECTIONS = ["overview", "risks", "low-rank", "calibration", "embeddings", "training", "model-choice",
                    "data-quality"]
EXPERIMENT_SECTIONS = ["overview", "cate-distribution", "calibration", "standard-errors", "head-vs-tlearner"]
RISK_COLUMNS = ("mu_risk", "tau_risk", "pehe")
HTML_DPI = 100
MARKDOWN_DPI = 72
"""Key figures for Dagster metadata are rendered smaller: they are stored in the event log."""


@dataclass
class RetrainReportData:
    """Inputs of :func:`build_retrain_report`. Only ``risks`` is required.

    Attributes
    ----------
    risks:
        Long table: :func:`lrl_core.metrics.risk_table` outputs stacked over
        models with a ``model`` column, i.e. ``model, experiment_id, arm,
        metric, n, mu_risk, tau_risk, pehe`` (``pehe`` NaN without ground
        truth). One row per (model, experiment, treated arm, metric).
    reference_model:
        The model being judged (the LR-learner); default the first model in
        ``risks``. Relative improvements are ``1 - reference / other``.
    ite_matrices:
        metric -> ``(n_units, n_cols)`` T-learner CATEs of one metric on a
        common set of evaluation units, one column per treated arm.
    ite_labels:
        Column names of the ITE matrices: one list for all metrics, or
        metric -> list when metrics cover different arms.
    calibration:
        Long table of the LR-learner on the test split with columns
        ``experiment_id, arm, metric, cate_hat, y, treated`` (optional
        ``propensity``): for each treated arm, its own rows
        (``treated=True``) and its experiment's control rows
        (``treated=False``), ``cate_hat`` being that arm's predicted CATE
        for every row and ``y`` the row's observed metric (NaN rows are
        ignored).
    embeddings, embedding_labels:
        ``(A, d)`` effect embeddings ``e_(k,t) - e_(k,0)`` of the treated
        arms and their ``(A,)`` labels.
    history, best_epoch:
        ``LRLearner.history_`` (dicts with ``epoch, train_loss, val_loss,
        seconds``) and ``LRLearner.best_epoch_``.
    quarantine:
        Either the summary ``table, reason, rows`` or the per-row quarantine
        of ``validate_raw`` (``table, ..., reason``), which is counted.
    rows_in:
        Raw table name -> rows read.
    meta:
        Free key -> value facts shown in the overview (extractor version,
        created at, device, fit seconds, ...).
    selection:
        ``LRLearner.selection_`` as a table (``extractor, d, weight_decay,
        val_loss, epochs, rung, chosen``); empty or None when nothing was searched.
    served:
        ``pipeline.served_models`` (``experiment_id, arm, metric, model,
        pooled_weight, gain, gain_se, n``): what serves each cell.
    """

    risks: pd.DataFrame
    reference_model: str | None = None
    ite_matrices: Mapping[str, np.ndarray] = field(default_factory=dict)
    ite_labels: Sequence[str] | Mapping[str, Sequence[str]] = ()
    calibration: pd.DataFrame | None = None
    embeddings: np.ndarray | None = None
    embedding_labels: Sequence[str] = ()
    history: Sequence[Mapping] = ()
    best_epoch: int | None = None
    quarantine: pd.DataFrame | None = None
    rows_in: Mapping[str, int] = field(default_factory=dict)
    meta: Mapping[str, object] = field(default_factory=dict)
    selection: pd.DataFrame | None = None
    served: pd.DataFrame | None = None
    title: str = "LR-learner retrain report"
    n_neighbours: int = 3
    bcv_max_units: int = 2000
    """Bi-cross-validation runs 25 SVDs; beyond this many units it uses a seeded subsample of rows."""


@dataclass
class ExperimentReportData:
    """Inputs of :func:`build_experiment_report` for one newly added experiment.

    Attributes
    ----------
    experiment_id:
        The experiment.
    cates:
        Long table over the experiment's units: ``arm, metric, cate`` and
        ``cate_se`` (NaN where unknown); optional ``tlearner_cate``, an
        independent T-learner's CATE of the same unit, arm and metric.
    calibration:
        Held-out units: ``arm, metric, cate_hat, y, treated`` (as in
        :class:`RetrainReportData`, one experiment).
    risks:
        Long table with a ``model`` column (the head and one or more
        T-learners), ``arm, metric, n`` and risk columns, scored on the same
        held-out rows.
    reference_model:
        The head's model name; default the first model in ``risks``.
    meta:
        Free key -> value facts (extractor version, head kind, fit seconds...).
    """

    experiment_id: str
    cates: pd.DataFrame
    calibration: pd.DataFrame | None = None
    risks: pd.DataFrame | None = None
    reference_model: str | None = None
    meta: Mapping[str, object] = field(default_factory=dict)
    title: str | None = None


@dataclass(frozen=True)
class ReportResult:
    """What a builder wrote: the file, its section ids in order, and key figures as markdown."""

    path: Path
    sections: list[str]
    key_figures: dict[str, str]


# ----------------------------------------------------------------------------- HTML pieces

CSS = """
:root { --ink: #1f2933; --muted: #52606d; --line: #d9e2ec; --band: #f5f7fa; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0; background: #fff; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 10px; margin-bottom: 8px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
.subtitle { color: var(--muted); margin: 0; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line);
      padding: 8px 0; margin-bottom: 12px; z-index: 2; font-size: 0.92em; }
nav a { color: var(--accent); text-decoration: none; margin-right: 18px; }
nav a:hover { text-decoration: underline; }
section { margin: 30px 0 10px; }
h2 { font-size: 1.3em; border-bottom: 1px solid var(--line); padding-bottom: 4px; margin-bottom: 6px; }
h3 { font-size: 1.05em; margin: 18px 0 6px; }
.how { color: var(--muted); font-style: italic; margin: 4px 0 12px; max-width: 900px; }
.note { background: var(--band); border-left: 4px solid var(--line); padding: 8px 12px; color: var(--muted); }
ul.facts { margin: 6px 0 12px; padding-left: 20px; }
ul.facts li { margin: 3px 0; }
.table-wrap { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 0.86em; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: var(--band); font-weight: 600; }
thead tr:first-child th { border-bottom: 1px solid #bcccdc; }
td.label, th.label { text-align: left; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
tbody tr td.better { background: #e6f4ea; color: #137333; font-weight: 600; }
tbody tr td.worse { background: #fce8e6; color: #c5221f; font-weight: 600; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 0.88em; margin-top: 4px; }
details { margin: 8px 0 14px; }
summary { cursor: pointer; color: var(--accent); }
.better-text { color: #137333; font-weight: 600; }
.worse-text { color: #c5221f; font-weight: 600; }
footer { color: var(--muted); font-size: 0.8em; margin-top: 40px; border-top: 1px solid var(--line); padding-top: 8px; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    """Table cell text: 4-decimal floats, thousands-separated integers, a dash for missing."""
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and not np.isfinite(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if value != 0 and abs(value) < 1e-4 or abs(value) >= 1e7:
            return f"{value:.3e}"
        return f"{value:.4f}"
    return _esc(value)


def _fmt_change(value) -> tuple[str, str]:
    """Relative improvement as a signed percentage and its cell class (positive = reference better)."""
    if value is None or not np.isfinite(value):
        return "–", ""
    return f"{value:+.1%}", "better" if value > 0 else "worse" if value < 0 else ""


def _table(frame: pd.DataFrame, improvement: Sequence[str] = (), percent: Sequence[str] = (),
           label_columns: Sequence[str] = ()) -> str:
    """An HTML table of ``frame`` (index not shown).

    Columns in ``improvement`` are shown as signed percentages, green where
    positive (the reference model is better) and red where negative;
    ``percent`` columns as plain percentages; ``label_columns`` (and any
    non-numeric column) are left-aligned.
    """
    if frame.empty:
        return '<p class="note">No rows.</p>'
    columns = list(frame.columns)
    left = {c for c in columns if c in set(label_columns) or not pd.api.types.is_numeric_dtype(frame[c])}
    head = "<tr>" + "".join(
        f'<th class="label">{_esc(c)}</th>' if c in left else f"<th>{_esc(c)}</th>" for c in columns
    ) + "</tr>"
    body = []
    for row in frame.itertuples(index=False, name=None):
        cells = []
        for name, value in zip(columns, row):
            if name in improvement:
                text, cls = _fmt_change(value)
            elif name in percent:
                text, cls = ("–" if not np.isfinite(value) else f"{value:.1%}"), ""
            else:
                text, cls = _fmt(value), "label" if name in left else ""
            cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table><thead>{head}</thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{_esc(summary)}</summary>{body}</details>"


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _facts(items: Sequence[str]) -> str:
    """Bullet list; items are trusted HTML fragments built by this module."""
    return '<ul class="facts">' + "".join(f"<li>{item}</li>" for item in items) + "</ul>" if items else ""


class _Page:
    """Accumulates sections and figures, then renders the document."""

    def __init__(self, title: str, subtitle: str):
        self.title = title
        self.subtitle = subtitle
        self.sections: list[tuple[str, str, str]] = []
        self.key_figures: dict[str, str] = {}

    def figure(self, fig, caption: str, key: str | None = None) -> str:
        """Embed ``fig`` as a base64 PNG (and keep it as a key figure under ``key``); the figure is consumed."""
        png = figures.figure_to_png(fig, dpi=HTML_DPI)
        if key is not None:
            self.key_figures[key] = figures.figure_to_markdown(fig, dpi=MARKDOWN_DPI)
        alt = figures.figure_title(fig)
        encoded = base64.b64encode(png).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{_esc(alt)}">'
                f"<figcaption>{_esc(caption)}</figcaption></figure>")

    def section(self, section_id: str, heading: str, how_to_read: str, body: str) -> None:
        self.sections.append((section_id, heading, f'<p class="how">How to read this: {_esc(how_to_read)}</p>{body}'))

    def render(self) -> str:
        nav = "".join(f'<a href="#{sid}">{_esc(h)}</a>' for sid, h, _ in self.sections)
        body = "".join(
            f'<section id="{sid}"><h2>{_esc(h)}</h2>{content}</section>' for sid, h, content in self.sections
        )
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(self.title)}</title><style>{CSS}</style></head><body><main>"
            f'<header><h1>{_esc(self.title)}</h1><p class="subtitle">{_esc(self.subtitle)}</p></header>'
            f"<nav>{nav}</nav>{body}"
            "<footer>Generated by lrl_core.report; self-contained (no network needed).</footer>"
            "</main></body></html>"
        )


def _write_atomically(text: str, path) -> Path:
    """Write to a unique temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would make the report unreadable to others; "x" honours the umask.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------------- shared summaries


def _models(risks: pd.DataFrame, reference: str | None) -> tuple[str, list[str]]:
    """The reference model and the others, in order of appearance."""
    models = list(dict.fromkeys(risks["model"]))
    if reference is None:
        reference = models[0]
    if reference not in models:
        raise ValueError(f"reference model {reference!r} not among the risk table's models {models}")
    return reference, [m for m in models if m != reference]


def _with_risk_columns(risks: pd.DataFrame) -> pd.DataFrame:
    """``risks`` with every risk column present (NaN where the caller had none, e.g. no PEHE)."""
    missing = {r: np.nan for r in RISK_COLUMNS if r not in risks}
    return risks.assign(**missing) if missing else risks


def _present_risks(risks: pd.DataFrame) -> list[str]:
    return [r for r in RISK_COLUMNS if r in risks and risks[r].notna().any()]


def _risk_comparison(risks: pd.DataFrame, keys: list[str], reference: str, others: list[str]) -> pd.DataFrame:
    """The paper's Tables 3-4 layout: one row per ``keys`` combination and risk, one column per model
    (mean over the remaining rows), then ``Δ vs <other>`` = ``1 - reference / other`` per baseline."""
    present = _present_risks(risks)
    long = risks.melt(id_vars=[*keys, "model"], value_vars=present, var_name="risk")
    wide = long.pivot_table(index=[*keys, "risk"], columns="model", values="value", aggfunc="mean",
                            sort=False, dropna=False)
    table = pd.DataFrame(index=wide.index)
    for model in [reference, *others]:
        table[model] = wide[model] if model in wide else np.nan
    for other in others:
        table[f"Δ vs {other}"] = 1.0 - table[reference] / table[other]
    table = table.reset_index()
    table["risk"] = table["risk"].map(lambda r: figures.RISK_NAMES.get(r, r))
    return table


def _improvement_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if str(c).startswith("Δ vs")]


def _pooled_calibration(frame: pd.DataFrame, by: Sequence[str], strata: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Decile tables per group of ``by``, bins shared across ``strata`` but differences taken within them."""
    tables = {}
    for key, group in frame.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        labels = group[list(strata)].astype(str).agg("/".join, axis=1) if strata else None
        tables[" / ".join(map(str, key))] = decile_calibration(
            group["cate_hat"].to_numpy(), group["y"].to_numpy(), group["treated"].to_numpy(), strata=labels
        )
    return tables


def _slope_summary(slopes: pd.DataFrame, by: str = "metric") -> pd.DataFrame:
    """Per ``by`` group: how many slopes, their median, and how many intervals exclude 0 / include 1."""
    s = slopes[slopes["slope"].notna()].copy()
    s["signal"] = (s["slope"] - Z95 * s["slope_se"]) > 0
    s["covers_one"] = (s["slope"] - Z95 * s["slope_se"] <= 1) & (s["slope"] + Z95 * s["slope_se"] >= 1)
    return (
        s.groupby(by, sort=False)
        .agg(comparisons=("slope", "size"), median_slope=("slope", "median"),
             ci_above_zero=("signal", "sum"), ci_covers_one=("covers_one", "sum"))
        .reset_index()
        .astype({"comparisons": "int64", "ci_above_zero": "int64", "ci_covers_one": "int64"})
    )


def _slopes_display(slopes: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    shown = slopes[[*keys, "n", "slope", "slope_se", "ate", "ate_se", "p_value"]].copy()
    return shown.rename(columns={"slope_se": "slope SE", "ate": "ATE", "ate_se": "ATE SE", "p_value": "p (slope = 0)"})


def _meta_table(meta: Mapping[str, object]) -> str:
    if not meta:
        return ""
    frame = pd.DataFrame({"fact": [str(k) for k in meta], "value": [_plain(v) for v in meta.values()]})
    return _table(frame, label_columns=["fact", "value"])


def _plain(value) -> str:
    if isinstance(value, float | np.floating):
        return _fmt(value)
    return str(value)


# ----------------------------------------------------------------------------- retrain report


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
        + page.figure(figures.risk_bars(risks), "Bars: mean risk over experiments and arms; error bars: one "
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
            figures.correlation_heatmap(M, labels, f"Correlation of T-learner CATEs across arms: {metric}"),
            f"{metric}: rows and columns ordered by hierarchical clustering (average linkage on 1 − correlation).",
            key="correlation" if not heatmaps else None,
        ))
    table = pd.DataFrame(rows, columns=["metric", "units", "arms", "BCV rank", "variance in top BCV-rank components"])
    table["BCV rank"] = table["BCV rank"].astype("Int64")
    body = (
        _table(table, percent=["variance in top BCV-rank components"])
        + page.figure(figures.singular_values_plot(svals, ranks),
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
    return [f"Effective rank (BCV) of the T-learner ITE matrix: "
            + ", ".join(f"{_esc(m)} {r if r is not None else '–'} of {k} arms"
                        for m, _, k, r, _ in rows) + "."]


def _calibration_section(page: _Page, frame: pd.DataFrame | None, keys: list[str], pooled_by: list[str],
                         strata: list[str], section_title: str, slopes_title: str) -> list[str]:
    if frame is None or frame.empty:
        page.section("calibration", section_title, "calibration needs held-out randomised outcomes.",
                     _note("No held-out units were supplied for calibration."))
        return []
    deciles = _pooled_calibration(frame, pooled_by, strata)
    slopes = calibration_slopes(frame, by=keys)
    summary = _slope_summary(slopes, by="metric")
    body = (
        page.figure(figures.calibration_plot(deciles),
                    "Units binned by decile of predicted CATE; points: observed treated − control difference in "
                    "means (95% interval), differences taken within each experiment arm and averaged.",
                    key="calibration")
        + "<h3>Calibration slope (best linear predictor)</h3>"
        + _table(summary.rename(columns={"comparisons": "comparisons", "median_slope": "median slope",
                                         "ci_above_zero": "95% CI above 0", "ci_covers_one": "95% CI covers 1"}))
        + page.figure(figures.calibration_slopes_plot(slopes, title=slopes_title),
                      "Slope of the true CATE on the predicted one per comparison with its 95% interval (HC1).")
        + _details(f"Show all {len(slopes)} slopes", _table(_slopes_display(slopes, keys)))
    )
    page.section(
        "calibration", section_title,
        "points near the dashed 45° line mean predicted effects match observed ones in size; a slope near 1 "
        "means the predicted heterogeneity is right, near 0 that it carries no signal, above 1 that it is "
        "understated.",
        body,
    )
    if summary.empty:
        return ["Calibration slopes could not be estimated (too few treated or control units)."]
    median = summary.set_index("metric")["median_slope"]
    return ["Median calibration slope per metric (1 = calibrated): "
            + ", ".join(f"{_esc(m)} {v:.2f}" for m, v in median.items()) + "."]


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
    heat = figures.clustered_heatmap(
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
    fig = figures.training_curves(history, data.best_epoch)
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
        blended = data.served[data.served["model"] != counts["model"].iloc[0]] if len(counts) > 1 else data.served[:0]
        pooled_alone = int((data.served["pooled_weight"] >= 1.0).sum())
        facts.append(f"The pooled model alone serves {pooled_alone} of {len(data.served)} (arm, metric) cells.")
        body += "<h3>What serves each experiment arm and metric</h3>" + _table(counts)
        others = data.served[data.served["pooled_weight"] < 1.0]
        if len(others):
            body += ("<h3>Cells blended with or served by a T-learner</h3>"
                     + _table(others[["experiment_id", "arm", "metric", "model", "pooled_weight", "gain", "gain_se",
                                      "n"]].head(100)))
    page.section(
        "model-choice", "Model choice",
        "validation loss on held-out units chose the pooled model's configuration (successive halving: a "
        "candidate's epochs show how far it got). Per arm and metric, held-out units then weighed the pooled "
        "CATE against the T-learners'; a weight below 1 blends in a T-learner.",
        body,
    )
    return facts


def _data_quality_section(page: _Page, quarantine: pd.DataFrame | None, rows_in: Mapping[str, int]) -> list[str]:
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
        + page.figure(figures.quarantine_bars(summary, rows_in), "Rows read and rows left out by validation.")
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
    candidates, what serves each cell) and ``data-quality`` (rows in, rows
    quarantined by reason).

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
    facts += _data_quality_section(page, data.quarantine, data.rows_in)
    _retrain_overview(page, data, reference, facts)
    # The overview is built last (it quotes the other sections) but shown first.
    page.sections.insert(0, page.sections.pop())
    path = _write_atomically(page.render(), path)
    return ReportResult(path=path, sections=[s[0] for s in page.sections], key_figures=page.key_figures)


# ----------------------------------------------------------------------------- new-experiment report


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
        + page.figure(figures.cate_histograms(cates), "Per-unit CATE of each arm and metric.", key="cate_distribution"),
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
            figures.se_vs_cate(cates), "Each point a unit; outside the grey cone a unit's CATE differs from 0 at 5%.")
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
            + page.figure(figures.risk_bars(risks, by=("arm", "metric"), title="Held-out risk: head against T-learner"),
                          "Risks on the experiment's held-out rows (lower is better).", key="head_vs_tlearner")
        )
        if "tlearner_cate" in cates and cates["tlearner_cate"].notna().any():
            body += page.figure(figures.cate_agreement(cates), "Per-unit CATE of the head against the T-learner's.")
        for other in others:
            for risk in _present_risks(risks):
                means = risks.groupby("model")[risk].mean()
                change = 1.0 - means[reference] / means[other]
                cls = "better-text" if change > 0 else "worse-text"
                facts.append(f'{figures.RISK_NAMES[risk]} of the head vs {_esc(other)}: '
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
    path = _write_atomically(page.render(), path)
    return ReportResult(path=path, sections=[s[0] for s in page.sections], key_figures=page.key_figures)
