"""Simulated inputs of the report builders and checks of the HTML they write; no tests of its own.

Imported by the ``test_report_*.py`` files (one per module of ``lrl_core.report``), and loaded
by path by ``tests/pipeline/test_reporting.py`` for ``check_report``: it keeps this name
and imports nothing from ``tests/``.
"""
from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np
import pandas as pd

from lrl_core.report import ExperimentReportData, RetrainReportData

__all__ = ["PNG_HEADER", "ReportParser", "assert_not_blank", "calibration_frame", "check_report", "decode_png",
           "experiment_data", "retrain_data"]


PNG_HEADER = b"\x89PNG\r\n\x1a\n"


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
        categories={"country": {"us": 900, "<b>de</b>": 600, "(other)": 400, "(null)": 100}},
        arm_effects=pd.DataFrame([
            {"experiment_id": label.split("/")[0], "arm": label.split("/")[1], "metric": metric,
             "effect": effect, "effect_se": 0.05, "pooled": 0.9 * effect}
            for label, base in zip(labels, rng.normal(size=len(labels)))
            for metric, effect in zip(metrics, (base, 0.5 * base + 0.1 * rng.normal()))]),
        effect_covariance=pd.DataFrame([
            {"metric_a": a, "metric_b": b, "estimator": name, "covariance": cov, "correlation": cov / np.sqrt(var_a * var_b),
             "se": 0.01, "n_arms": len(labels)}
            for name, shift in (("naive", 0.1), ("tc", 0.0), ("jive", 0.0), ("pooled", -0.05))
            for a, b, cov, var_a, var_b in (("revenue", "revenue", 1.0 + shift, 1.0 + shift, 1.0 + shift),
                                            ("revenue", "sessions", 0.5, 1.0 + shift, 0.26 + shift),
                                            ("sessions", "revenue", 0.5, 0.26 + shift, 1.0 + shift),
                                            ("sessions", "sessions", 0.26 + shift, 0.26 + shift, 0.26 + shift))]),
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
