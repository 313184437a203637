"""Feature preparation: median imputation with missing indicators, standardisation, clipping."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from lrl_core.data import column_as_float

_CHUNK_ROWS = 65_536  # bounds the float64 temporaries of transform on millions of rows


class FeatureTransform:
    """Impute, standardise and clip raw features; add a 0/1 indicator per feature that had gaps.

    ``transform`` returns ``[z_1 .. z_m, i_1 .. i_k]``: the ``m`` features
    after median imputation and ``(x - mean) / std``, then the ``k``
    indicators of the features that had any missing value in the fitted
    data. A constant column gets scale 1; a column that was all missing is
    imputed with 0.

    Parameters
    ----------
    clip : standardised values are clipped to ``[-clip, clip]``.
    """

    def __init__(self, clip: float = 10.0):
        self.clip = clip

    def fit(self, features: np.ndarray, feature_names: list[str]) -> "FeatureTransform":
        """Learn medians, means, scales and which features get an indicator.

        Parameters
        ----------
        features : (n, m) float (float32 is not copied), NaN = missing.
        feature_names : (m,) names of the columns.
        """
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != len(feature_names):
            raise ValueError(f"features must be (n, {len(feature_names)}), got {features.shape}")
        return self.fit_columns((features[:, j] for j in range(features.shape[1])), feature_names)

    def fit_columns(self, columns: Iterable[np.ndarray], feature_names: list[str]) -> "FeatureTransform":
        """:meth:`fit` from one (n,) column at a time, in ``feature_names`` order.

        A caller that holds a table column-wise (Arrow, DuckDB) never builds
        the (n, m) matrix: at millions of units that matrix in float64 is
        twice the prepared features the model trains on.
        """
        if len(set(feature_names)) != len(feature_names):
            raise ValueError("feature_names must be distinct")
        m = len(feature_names)
        self.feature_names_ = [str(name) for name in feature_names]
        self.median_ = np.zeros(m)
        self.mean_ = np.zeros(m)
        self.scale_ = np.ones(m)
        self.has_missing_ = np.zeros(m, dtype=bool)
        fitted = 0
        for j, column in enumerate(columns):
            if j >= m:
                raise ValueError(f"more columns than the {m} feature names")
            column = np.asarray(column, dtype=np.float64)
            if np.isinf(column).any():
                raise ValueError(f"feature {self.feature_names_[j]!r} has infinite values")
            observed = column[~np.isnan(column)]
            self.has_missing_[j] = len(observed) < len(column)
            if len(observed):
                self.median_[j] = np.median(observed)
                self.mean_[j] = observed.mean()
                std = observed.std()
                # Relative threshold: a constant column's std is rounding noise, not 0.
                if std > 1e-12 * max(1.0, abs(self.mean_[j])):
                    self.scale_[j] = std
            fitted += 1
        if fitted != m:
            raise ValueError(f"got {fitted} columns for {m} feature names")
        return self

    @property
    def output_names_(self) -> list[str]:
        """(m + k,) names of the prepared columns; indicators are ``<feature>__missing``."""
        return self.feature_names_ + [
            f"{name}__missing" for name, gap in zip(self.feature_names_, self.has_missing_) if gap]

    @property
    def n_features_in_(self) -> int:
        return len(self.feature_names_)

    @property
    def n_features_out_(self) -> int:
        return len(self.output_names_)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Prepared features.

        Parameters
        ----------
        features : (n, m) float in the fitted column order, NaN = missing; float32 is not copied.

        Returns
        -------
        (n, m + k) float32, C-contiguous.
        """
        self._check_fitted()
        features = np.asarray(features)
        m = self.n_features_in_
        if features.ndim != 2 or features.shape[1] != m:
            raise ValueError(f"features must be (n, {m}), got {features.shape}")
        out = np.empty((features.shape[0], self.n_features_out_), dtype=np.float32)
        for start in range(0, features.shape[0], _CHUNK_ROWS):
            # float64 per chunk only: a float32 input is never copied whole.
            chunk = features[start:start + _CHUNK_ROWS].astype(np.float64)
            infinite = np.isinf(chunk).any(axis=0)
            if infinite.any():
                names = [self.feature_names_[j] for j in np.flatnonzero(infinite)]
                raise ValueError(f"infinite values in features {names}")
            self._prepare(chunk, out[start:start + len(chunk)])
        return out

    def _prepare(self, chunk: np.ndarray, out: np.ndarray) -> None:
        """Impute, standardise and clip a finite-or-NaN float64 ``chunk`` (c, m) into ``out`` (c, m + k)."""
        m = self.n_features_in_
        missing = np.isnan(chunk)
        z = (np.where(missing, self.median_, chunk) - self.mean_) / self.scale_
        # Production features are heavy-tailed: one value at 1e4 standard
        # deviations dominates the first layer of an MLP and its gradients,
        # so standardised values are bounded.
        np.clip(z, -self.clip, self.clip, out=z)
        out[:, :m] = z
        out[:, m:] = missing[:, self.has_missing_]

    def in_range(self, prepared: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: rows of :meth:`transform` output none of whose features was clipped,
        i.e. within ``clip`` standard deviations of the training mean everywhere. Outside it the
        model extrapolates, and its effects are guesses."""
        self._check_fitted()
        return (np.abs(prepared[:, : self.n_features_in_]) < np.float32(self.clip)).all(axis=1)

    def nonfinite_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """``(n,)`` bool: rows of ``frame`` with an infinite (or, in a nullable column, NaN) value in
        a feature the transform uses; :meth:`transform_frame` refuses them."""
        self._check_fitted()
        bad = np.zeros(len(frame), dtype=bool)
        for name in self.feature_names_:
            if name in frame.columns and pd.api.types.is_numeric_dtype(frame[name].dtype):
                bad |= column_as_float(frame[name])[1]
        return bad

    def unused_columns(self, frame: pd.DataFrame) -> list[str]:
        """Columns of ``frame`` other than ``unit_id`` that were not fitted on (:meth:`transform_frame` ignores them)."""
        self._check_fitted()
        fitted = set(self.feature_names_)
        return [str(c) for c in frame.columns if c != "unit_id" and c not in fitted]

    def check_columns(self, frame: pd.DataFrame) -> None:
        """``ValueError`` unless ``frame`` has ``unit_id`` and every fitted column, each numeric."""
        self._check_fitted()
        if "unit_id" not in frame.columns:
            raise ValueError("the frame has no 'unit_id' column")
        missing = [name for name in self.feature_names_ if name not in frame.columns]
        if missing:
            raise ValueError(f"missing feature columns {missing} that the model was fitted on")
        non_numeric = [f"{name!r} ({frame[name].dtype})" for name in self.feature_names_
                       if not pd.api.types.is_numeric_dtype(frame[name].dtype)]
        if non_numeric:
            raise ValueError(f"non-numeric feature columns: {', '.join(non_numeric)}")

    def transform_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Prepared features of a DataFrame with ``unit_id`` and the fitted feature columns.

        Columns may come in any order. Columns that were not fitted on (a raw
        column training left out, such as a non-numeric one) are ignored; see
        :meth:`unused_columns`. Feature NULLs are imputed like NaN.

        Returns
        -------
        (len(frame), m + k) float32, rows in ``frame`` order.

        Raises
        ------
        ValueError
            Naming every missing fitted column, every non-numeric fitted
            column, or the columns and units with non-finite values.
        """
        self.check_columns(frame)
        out = np.empty((len(frame), self.n_features_out_), dtype=np.float32)
        # Row chunks: the float64 raw matrix of millions of units would be twice the output.
        chunk = np.empty((min(len(frame), _CHUNK_ROWS), self.n_features_in_), dtype=np.float64)
        bad_rows: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(frame), _CHUNK_ROWS):
            rows = frame.iloc[start:start + _CHUNK_ROWS]
            for j, name in enumerate(self.feature_names_):
                chunk[:len(rows), j], nonfinite = column_as_float(rows[name])
                if nonfinite.any():
                    bad_rows.setdefault(name, []).append(start + np.flatnonzero(nonfinite))
            if not bad_rows:
                self._prepare(chunk[:len(rows)], out[start:start + len(rows)])
        if bad_rows:
            problems = []
            for name in self.feature_names_:
                if name in bad_rows:
                    units = frame["unit_id"].to_numpy()[np.concatenate(bad_rows[name])]
                    shown = ", ".join(map(str, units[:5])) + (f" and {len(units) - 5} more" if len(units) > 5 else "")
                    problems.append(f"{name!r} (unit_id {shown})")
            raise ValueError(f"non-finite feature values in {'; '.join(problems)}")
        return out

    def to_dict(self) -> dict:
        """Plain-JSON form; :meth:`from_dict` restores it exactly."""
        self._check_fitted()
        return {
            "clip": float(self.clip),
            "feature_names": list(self.feature_names_),
            "median": self.median_.tolist(),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "has_missing": self.has_missing_.tolist(),
        }

    @classmethod
    def from_dict(cls, values: dict) -> "FeatureTransform":
        """Inverse of :meth:`to_dict`."""
        transform = cls(clip=values["clip"])
        transform.feature_names_ = list(values["feature_names"])
        transform.median_ = np.asarray(values["median"], dtype=np.float64)
        transform.mean_ = np.asarray(values["mean"], dtype=np.float64)
        transform.scale_ = np.asarray(values["scale"], dtype=np.float64)
        transform.has_missing_ = np.asarray(values["has_missing"], dtype=bool)
        return transform

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise RuntimeError("FeatureTransform is not fitted; call fit first")
