"""The evaluation reports: calibration maths, nearest experiments, and the two HTML files."""
from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from lrl_core.report import (
    EXPERIMENT_SECTIONS,
    RETRAIN_SECTIONS,
    ExperimentReportData,
    RetrainReportData,
    blp_calibration,
    build_experiment_report,
    build_retrain_report,
    calibration_slopes,
    decile_calibration,
    figure_to_markdown,
    nearest_experiments,
)
from lrl_core.report.figures import quarantine_bars

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- simulated inputs


def simulated_rct(n: int, seed: int = 0):
    """A randomised experiment with known, strongly heterogeneous effect ``tau = 1 + 2 x``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    treated = rng.random(n) < 0.4
    tau = 1.0 + 2.0 * x
    y = 0.5 * x + treated * tau + rng.normal(size=n)
    return tau, y, treated


def calibration_frame(rng, experiments, arms, metrics, n=300):
    """Long test-split table: per treated arm, its rows and its control's, with a noisy but informative CATE."""
    parts = []
    for e, exp in enumerate(experiments):
        for arm in arms[exp]:
            for j, metric in enumerate(metrics):
                x = rng.normal(size=n)
                tau = (e % 3 - 1) + (1.0 + 0.5 * j) * x
                t = rng.random(n) < 0.5
                y = 10.0 * j + x + t * tau + rng.normal(scale=0.5, size=n)
                parts.append(pd.DataFrame({"experiment_id": exp, "arm": arm, "metric": metric,
                                           "cate_hat": tau + rng.normal(scale=0.3, size=n), "y": y, "treated": t}))
    return pd.concat(parts, ignore_index=True)


def retrain_data(rng, full: bool = True) -> RetrainReportData:
    experiments = [f"exp_{k:02d}" for k in range(6)]
    arms = {exp: ["treatment"] if k != 2 else ["treatment", "treatment_b"] for k, exp in enumerate(experiments)}
    metrics = ["revenue", "sessions"]
    labels = [f"{exp}/{arm}" for exp in experiments for arm in arms[exp]]
    rows = []
    for model, scale in (("LR-learner", 0.8), ("T-learner (OLS)", 1.0), ("T-learner (XGBoost)", 1.1)):
        for exp in experiments:
            for arm in arms[exp]:
                for metric in metrics:
                    rows.append({"model": model, "experiment_id": exp, "arm": arm, "metric": metric, "n": 400,
                                 "mu_risk": scale * rng.uniform(0.9, 1.1), "tau_risk": scale * rng.uniform(0.5, 0.6),
                                 "pehe": scale * rng.uniform(0.01, 0.03)})
    risks = pd.DataFrame(rows)
    if not full:
        return RetrainReportData(risks=risks.drop(columns="pehe"))
    n_units, A = 250, len(labels)
    factors = rng.normal(size=(n_units, 2))
    ite = {m: factors @ rng.normal(size=(2, A)) + 0.1 * rng.normal(size=(n_units, A)) for m in metrics}
    ite["sessions"][:, 0] = np.nan  # a T-learner that could not be fitted: left out of that matrix
    history = [{"epoch": e, "train_loss": 1.0 / (1 + 0.3 * e), "val_loss": 1.1 / (1 + 0.25 * e) + 0.002 * e,
                "seconds": 0.05} for e in range(1, 41)]
    quarantine = pd.DataFrame({
        "table": ["outcomes"] * 5 + ["exposures"] * 2 + ["unit_features"],
        "unit_id": [1, 2, 3, 4, 5, 6, 7, None],
        "reason": ["non-finite value"] * 3 + ["unexposed unit"] * 2 + ["duplicate assignment"] * 2
        + ["non-numeric feature column"],
    })
    return RetrainReportData(
        risks=risks,
        ite_matrices=ite,
        ite_labels=labels,
        calibration=calibration_frame(rng, experiments, arms, metrics),
        embeddings=rng.normal(size=(A, 4)),
        embedding_labels=labels,
        history=history,
        best_epoch=24,
        quarantine=quarantine,
        rows_in={"unit_features": 2000, "exposures": 3500, "outcomes": 7000},
        meta={"extractor version": "20240101T000000-abc", "device": "cpu", "fit seconds": 2.0},
    )


def experiment_data(rng) -> ExperimentReportData:
    arms, metrics = ["treatment", "treatment_b"], ["revenue", "sessions"]
    parts = []
    for arm in arms:
        for j, metric in enumerate(metrics):
            tau = 0.3 + (1 + j) * rng.normal(size=500)
            parts.append(pd.DataFrame({"arm": arm, "metric": metric, "cate": tau,
                                       "cate_se": rng.uniform(0.1, 0.5, size=500),
                                       "tlearner_cate": tau + rng.normal(scale=0.5, size=500)}))
    risks = pd.DataFrame([
        {"model": model, "arm": arm, "metric": metric, "n": 250, "mu_risk": scale * rng.uniform(0.9, 1.1),
         "tau_risk": scale * rng.uniform(0.5, 0.6), "pehe": np.nan}
        for model, scale in (("head", 0.9), ("T-learner (OLS)", 1.0)) for arm in arms for metric in metrics
    ])
    calibration = calibration_frame(rng, ["exp_new"], {"exp_new": arms}, metrics).drop(columns="experiment_id")
    return ExperimentReportData(experiment_id="exp_new", cates=pd.concat(parts, ignore_index=True),
                                calibration=calibration, risks=risks, meta={"head": "ridge"})


# ----------------------------------------------------------------------------- HTML inspection


class ReportParser(HTMLParser):
    """Collects section ids with their headings, image sources and every linked URL."""

    def __init__(self):
        super().__init__()
        self.sections: list[str] = []
        self.section_headings: dict[str, str] = {}
        self.images: list[str] = []
        self.urls: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "h2" and self.sections:
            self._in_h2 = True
            self.section_headings.setdefault(self.sections[-1], "")
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if key in attrs and tag in ("img", "script", "link", "a", "iframe", "source"):
                self.urls.append(attrs[key] or "")
        if tag in ("script", "link", "iframe"):
            self.urls.append(f"<{tag}>")

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.section_headings[self.sections[-1]] += data


def decode_png(src: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    raw = base64.b64decode(src[len(prefix):], validate=True)
    assert raw.startswith(PNG_HEADER)
    return mpimg.imread(io.BytesIO(raw), format="png")


def assert_not_blank(pixels: np.ndarray) -> None:
    """The image has content: pixel values vary and a visible share of pixels is not background."""
    rgb = pixels[..., :3]
    assert rgb.std() > 0.01
    background = np.all(np.abs(rgb - rgb[0, 0]) < 0.02, axis=-1)
    assert (~background).mean() > 0.005


def check_report(path, expected_sections, n_images):
    text = path.read_text(encoding="utf-8")
    parser = ReportParser()
    parser.feed(text)
    assert parser.sections == expected_sections
    for section in expected_sections:
        assert parser.section_headings.get(section, "").strip(), f"section {section} has no <h2>"
    assert len(parser.images) == n_images
    for src in parser.images:
        assert_not_blank(decode_png(src))
    # Nothing to fetch: no scripts or stylesheets, only in-page anchors and data URIs.
    assert not [u for u in parser.urls if not (u.startswith("#") or u.startswith("data:image/png;base64,"))]
    assert "http" not in re.sub(r'src="data:[^"]*"', "", text).lower()
    return text, parser


# ----------------------------------------------------------------------------- calibration maths


def test_blp_slope_is_one_for_true_cate_and_zero_for_shuffled():
    tau, y, treated = simulated_rct(20_000)
    rng = np.random.default_rng(1)
    true = blp_calibration(tau, y, treated)
    assert abs(true["slope"] - 1.0) < 0.15
    assert 0 < true["slope_se"] < 0.1
    assert abs(true["ate"] - tau.mean()) < 0.15
    assert true["p_value"] < 1e-6
    shuffled = blp_calibration(rng.permutation(tau), y, treated)
    assert abs(shuffled["slope"]) < 0.15
    # Doubling the predicted spread halves the slope: the test measures the size of heterogeneity.
    overstated = blp_calibration(3.0 * tau, y, treated)
    assert abs(overstated["slope"] - 1.0 / 3.0) < 0.1


def test_blp_degenerate_inputs_give_nan_not_errors():
    tau, y, treated = simulated_rct(200)
    assert np.isnan(blp_calibration(np.ones_like(tau), y, treated)["slope"])
    assert np.isnan(blp_calibration(tau, y, np.zeros_like(treated))["slope"])
    y_missing = y.copy()
    y_missing[:50] = np.nan
    assert blp_calibration(tau, y_missing, treated)["n"] == 150


def test_decile_calibration_tracks_the_true_cate():
    tau, y, treated = simulated_rct(20_000, seed=2)
    table = decile_calibration(tau, y, treated)
    assert list(table.columns) == ["bin", "n", "mean_pred", "observed_diff", "ci_low", "ci_high"]
    assert table["n"].tolist() == [2000] * 10
    assert np.all(np.diff(table["mean_pred"]) > 0)
    assert np.all(np.diff(table["observed_diff"]) > 0)
    assert np.all(table["ci_low"] < table["observed_diff"]) and np.all(table["observed_diff"] < table["ci_high"])
    covered = (table["ci_low"] <= table["mean_pred"]) & (table["mean_pred"] <= table["ci_high"])
    assert covered.sum() >= 7
    # An uninformative prediction leaves every bin near the average effect.
    flat = decile_calibration(np.random.default_rng(3).permutation(tau), y, treated)
    assert flat["observed_diff"].max() - flat["observed_diff"].min() < 1.0 < (
        table["observed_diff"].max() - table["observed_diff"].min())


def test_decile_calibration_strata_remove_between_stratum_confounding():
    rng = np.random.default_rng(4)
    n = 4000
    stratum = np.repeat([0, 1], n // 2)
    treated = rng.random(n) < np.where(stratum == 0, 0.2, 0.8)
    y = 10.0 * stratum + 1.0 * treated + rng.normal(scale=0.3, size=n)
    cate_hat = rng.normal(size=n)
    pooled = decile_calibration(cate_hat, y, treated, n_bins=2)
    stratified = decile_calibration(cate_hat, y, treated, n_bins=2, strata=stratum)
    assert np.all(np.abs(pooled["observed_diff"] - 1.0) > 3.0)
    assert np.all(np.abs(stratified["observed_diff"] - 1.0) < 0.1)


def test_decile_bins_without_both_arms_are_nan():
    cate_hat = np.arange(100, dtype=float)
    treated = cate_hat >= 90  # the top decile has no control units, the others no treated ones
    treated[[3, 5, 7, 15, 17]] = True
    table = decile_calibration(cate_hat, cate_hat, treated)
    assert np.isnan(table["observed_diff"].iloc[9]) and np.isnan(table["ci_low"].iloc[9])
    assert np.isfinite(table["observed_diff"].iloc[0]) and np.isnan(table["observed_diff"].iloc[1:9]).sum() == 7


def test_calibration_slopes_per_group():
    rng = np.random.default_rng(5)
    frame = calibration_frame(rng, ["a", "b"], {"a": ["t"], "b": ["t", "u"]}, ["m1"], n=2000)
    slopes = calibration_slopes(frame)
    assert slopes[["experiment_id", "arm", "metric"]].values.tolist() == [["a", "t", "m1"], ["b", "t", "m1"],
                                                                          ["b", "u", "m1"]]
    # cate_hat = tau + noise: attenuated a little (var(tau) / (var(tau) + 0.09)), never far from 1.
    assert np.all(np.abs(slopes["slope"] - 0.92) < 0.2)
    assert (slopes["n"] == 2000).all()


# ----------------------------------------------------------------------------- embeddings


def test_nearest_experiments_by_cosine():
    E = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0], [-1.0, 0.0]])
    labels = ["a", "a2", "b", "b2", "anti_a"]
    near = nearest_experiments(E, labels, k=2)
    assert list(near.columns) == ["label", "neighbour", "rank", "similarity"]
    assert len(near) == 10 and not (near["label"] == near["neighbour"]).any()
    first = near[near["rank"] == 1].set_index("label")["neighbour"]
    assert first.to_dict() == {"a": "a2", "a2": "a", "b": "b2", "b2": "b", "anti_a": "b"}
    assert np.all(np.diff(near["similarity"].to_numpy().reshape(5, 2), axis=1) <= 0)
    assert len(nearest_experiments(E[:2], labels[:2], k=5)) == 2
    euclid = nearest_experiments(E, labels, k=1, metric="euclidean").set_index("label")["neighbour"]
    assert euclid["a"] == "a2"


# ----------------------------------------------------------------------------- the reports


def test_retrain_report_has_every_section_and_a_nonempty_figure(tmp_path):
    data = retrain_data(np.random.default_rng(6))
    result = build_retrain_report(data, tmp_path / "reports" / "retrain.html")
    assert result.path.exists() and result.sections == RETRAIN_SECTIONS
    # Risk bars, singular values, a correlation heatmap per metric (2), calibration deciles and slopes,
    # the embedding heatmap, training curves and data quality.
    text, parser = check_report(result.path, RETRAIN_SECTIONS, n_images=9)
    # Tables 3-4 layout: every model and a relative improvement per baseline, coloured by direction.
    for name in ("LR-learner", "T-learner (OLS)", "T-learner (XGBoost)", "Δ vs T-learner (OLS)"):
        assert f"<th>{name}</th>" in text, name
    for risk in ("μ-risk", "τ-risk", "PEHE"):
        assert f'<td class="label">{risk}</td>' in text, risk
    assert 'class="better"' in text
    assert re.search(r"<td>\d+\.\d{4}</td>", text)
    assert "BCV rank" in text and "kept epoch" in text and "non-finite value" in text
    assert re.search(r"revenue \d+ of 7 arms, sessions \d+ of 6 arms", text)
    assert set(result.key_figures) >= {"risks", "singular_values", "correlation", "calibration", "training"}
    for markdown in result.key_figures.values():
        match = re.fullmatch(r"!\[([^\]]+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
        assert match, markdown[:80]
        assert_not_blank(decode_png("data:image/png;base64," + match.group(2)))
    # Written atomically: no temporary file is left beside the report.
    assert [p.name for p in result.path.parent.iterdir()] == ["retrain.html"]


def test_retrain_report_with_only_risks_still_has_every_section(tmp_path):
    data = retrain_data(np.random.default_rng(7), full=False)
    result = build_retrain_report(data, tmp_path / "retrain.html")
    text, _ = check_report(result.path, RETRAIN_SECTIONS, n_images=3)
    assert "No rows quarantined" in text
    assert '<td class="label">μ-risk</td>' in text and '<td class="label">PEHE</td>' not in text


def test_experiment_report_has_every_section_and_a_nonempty_figure(tmp_path):
    data = experiment_data(np.random.default_rng(8))
    result = build_experiment_report(data, tmp_path / "exp_new.html")
    assert result.sections == EXPERIMENT_SECTIONS
    # Histograms, calibration deciles, slopes, SE scatter, risk bars, agreement scatter.
    text, _ = check_report(result.path, EXPERIMENT_SECTIONS, n_images=6)
    assert "Δ vs T-learner (OLS)" in text and "share |CATE| &gt; 1.96 SE" in text
    assert set(result.key_figures) == {"cate_distribution", "calibration", "head_vs_tlearner"}


def test_report_rewrite_replaces_the_file(tmp_path):
    path = tmp_path / "r.html"
    path.write_text("stale")
    build_retrain_report(retrain_data(np.random.default_rng(9), full=False), path)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_figure_to_markdown_and_empty_quarantine_figure():
    empty = pd.DataFrame({"table": pd.Series(dtype=str), "reason": pd.Series(dtype=str),
                          "rows": pd.Series(dtype="int64")})
    markdown = figure_to_markdown(quarantine_bars(empty, {"outcomes": 10}), title="Data quality")
    assert markdown.startswith("![Data quality](data:image/png;base64,")
    assert_not_blank(decode_png(markdown[len("![Data quality]("):-1]))


def test_builders_reject_inputs_they_cannot_report(tmp_path):
    data = retrain_data(np.random.default_rng(10), full=False)
    with pytest.raises(ValueError, match="reference model"):
        build_retrain_report(RetrainReportData(risks=data.risks, reference_model="nope"), tmp_path / "x.html")
    with pytest.raises(ValueError, match="risk table"):
        build_retrain_report(RetrainReportData(risks=data.risks.iloc[:0]), tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()
