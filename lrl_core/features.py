"""Feature preparation: median imputation with missing indicators, standardisation, clipping;
categorical columns as indicators of their frequent levels, "other" and NULL."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from lrl_core.data import column_as_float, is_categorical_feature, level_text

_CHUNK_ROWS = 65_536  # bounds the float64 temporaries of transform on millions of rows

MAX_LEVELS = 30
"""Most levels of one categorical column with an indicator of their own; the rest are "other"."""
MIN_LEVEL_UNITS = 5
"""Fewest training units a level needs for an indicator of its own: rarer levels teach the model
nothing it can trust, and are pooled into "other"."""
OTHER_LEVEL, NULL_LEVEL = "(other)", "(null)"
"""Names of the two indicators every categorical column gets besides its levels."""


def count_levels(column: pd.Series) -> dict:
    """Units per level of a categorical column: ``{level text: count}``, NULL under the key None."""
    return {(None if pd.isna(level) else level): int(n)
            for level, n in pd.Series(level_text(column)).value_counts(dropna=False).items()}


def kept_levels(counts: dict) -> list[str]:
    """The levels of a categorical column that get an indicator, most frequent first (ties by text):
    at most :data:`MAX_LEVELS`, each seen on at least :data:`MIN_LEVEL_UNITS` units. ``counts``
    maps a level's text (None: NULL) to its number of training units."""
    ranked = sorted(((-n, level) for level, n in counts.items()
                     if level is not None and level not in (OTHER_LEVEL, NULL_LEVEL) and n >= MIN_LEVEL_UNITS))
    return [level for _, level in ranked[:MAX_LEVELS]]


class FeatureTransform:
    """Impute, standardise and clip raw features; add a 0/1 indicator per feature that had gaps;
    encode categorical columns as 0/1 indicators of their levels.

    ``transform`` returns ``[z_1 .. z_m, i_1 .. i_k, c_1 .. c_l]``: the ``m``
    numeric features (``feature_names_``) after median imputation and
    ``(x - mean) / std``, the ``k`` indicators of the numeric features that
    had any missing value in the fitted data, then for each categorical column
    (``categories_``: name -> kept levels, see :func:`kept_levels`) one
    indicator per kept level, one for "other" (a rare level, or one never
    seen in training) and one for NULL. A constant column gets scale 1; a
    column that was all missing is imputed with 0.

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

    def fit_frame(self, frame: pd.DataFrame) -> "FeatureTransform":
        """Fit on a DataFrame of ``unit_id`` and feature columns, numeric and categorical
        (:func:`lrl_core.data.is_categorical_feature`); other columns are an error."""
        names = [str(c) for c in frame.columns if c != "unit_id"]
        categorical = [n for n in names if is_categorical_feature(frame[n].dtype)]
        numeric = [n for n in names if n not in set(categorical)]
        return self.fit_columns((column_as_float(frame[n])[0] for n in numeric), numeric,
                                {n: count_levels(frame[n]) for n in categorical})

    def fit_columns(self, columns: Iterable[np.ndarray], feature_names: list[str],
                    level_counts: dict[str, dict] | None = None) -> "FeatureTransform":
        """:meth:`fit` from one (n,) column at a time, in ``feature_names`` order.

        A caller that holds a table column-wise (Arrow, DuckDB) never builds
        the (n, m) matrix: at millions of units that matrix in float64 is
        twice the prepared features the model trains on. ``level_counts``:
        for each categorical column, its training units per level text (None:
        NULL), e.g. from a ``GROUP BY``.
        """
        level_counts = dict(level_counts or {})
        if len(set(feature_names) | set(level_counts)) != len(feature_names) + len(level_counts):
            raise ValueError("feature_names and categorical columns must be distinct")
        self.categories_ = {str(name): kept_levels(counts) for name, counts in level_counts.items()}
        self.level_counts_ = {}
        for name, counts in level_counts.items():
            kept = self.categories_[str(name)]
            self.level_counts_[str(name)] = {
                **{level: int(counts[level]) for level in kept},
                OTHER_LEVEL: int(sum(n for level, n in counts.items() if level is not None and level not in kept)),
                NULL_LEVEL: int(counts.get(None, 0))}
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
        """(m + k + l,) names of the prepared columns; indicators are ``<feature>__missing`` and
        ``<column>=<level>`` (with ``(other)`` and ``(null)``)."""
        return self.feature_names_ + [
            f"{name}__missing" for name, gap in zip(self.feature_names_, self.has_missing_) if gap] + [
            f"{name}={level}" for name, levels in self.categories_.items()
            for level in [*levels, OTHER_LEVEL, NULL_LEVEL]]

    @property
    def columns_(self) -> list[str]:
        """Every raw column the transform reads: the numeric features, then the categorical ones."""
        return self.feature_names_ + list(self.categories_)

    @property
    def n_features_in_(self) -> int:
        """``m``, the numeric features (the first ``m`` prepared columns)."""
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
        if self.categories_:
            raise ValueError(f"this transform encodes categorical columns {list(self.categories_)}: "
                             "use transform_frame")
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
        """Impute, standardise and clip a finite-or-NaN float64 ``chunk`` (c, m) into ``out``'s first m + k columns."""
        m = self.n_features_in_
        missing = np.isnan(chunk)
        z = (np.where(missing, self.median_, chunk) - self.mean_) / self.scale_
        # Production features are heavy-tailed: one value at 1e4 standard
        # deviations dominates the first layer of an MLP and its gradients,
        # so standardised values are bounded.
        np.clip(z, -self.clip, self.clip, out=z)
        out[:, :m] = z
        out[:, m:m + int(self.has_missing_.sum())] = missing[:, self.has_missing_]

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
        fitted = set(self.columns_)
        return [str(c) for c in frame.columns if c != "unit_id" and c not in fitted]

    def describe_split(self, column: int, threshold: float) -> tuple[str, str]:
        """A tree's split of prepared ``column`` at ``threshold`` in the raw feature's terms:
        ``(left branch, right branch)``; standardised values back in the feature's units (a
        missing value was imputed with the median, so it goes where the median goes)."""
        self._check_fitted()
        name, m = self.output_names_[column], self.n_features_in_
        if column < m:
            raw = threshold * self.scale_[column] + self.mean_[column]
            return f"{name} <= {raw:.4g}", f"{name} > {raw:.4g}"
        if column < m + int(self.has_missing_.sum()):
            base = name.removesuffix("__missing")
            return f"{base} is known", f"{base} is missing"
        base, level = name.split("=", 1)
        label = {OTHER_LEVEL: "a rare or new level", NULL_LEVEL: "NULL"}.get(level, repr(level))
        return f"{base} is not {label}", f"{base} is {label}"

    def other_levels(self, frame: pd.DataFrame) -> dict[str, int]:
        """Per categorical column of ``frame``, how many of its non-NULL values are not a kept level
        (rare in training, or never seen there): those rows are encoded as "other"."""
        self._check_fitted()
        counts = {}
        for name, levels in self.categories_.items():
            text = level_text(frame[name])
            n = int((pd.notna(text) & ~pd.Series(text).isin(levels).to_numpy()).sum())
            if n:
                counts[name] = n
        return counts

    def check_columns(self, frame: pd.DataFrame) -> None:
        """``ValueError`` unless ``frame`` has ``unit_id`` and every fitted column, numeric ones numeric."""
        self._check_fitted()
        if "unit_id" not in frame.columns:
            raise ValueError("the frame has no 'unit_id' column")
        missing = [name for name in self.columns_ if name not in frame.columns]
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
        self._encode_categories(frame, out[:, self.n_features_out_ - self.n_categorical_out_:])
        return out

    @property
    def n_categorical_out_(self) -> int:
        """``l``, the indicator columns of the categorical columns (the last ``l`` prepared columns)."""
        return sum(len(levels) + 2 for levels in self.categories_.values())

    def _encode_categories(self, frame: pd.DataFrame, out: np.ndarray) -> None:
        """The indicators of every categorical column of ``frame`` into ``out (n, l)``."""
        start = 0
        for name, levels in self.categories_.items():
            text = pd.Series(level_text(frame[name]))
            position = pd.Categorical(text, categories=levels).codes  # -1: not a kept level, or NULL
            block = np.zeros((len(frame), len(levels) + 2), dtype=np.float32)
            null = text.isna().to_numpy()
            block[np.flatnonzero(position >= 0), position[position >= 0]] = 1.0
            block[(position < 0) & ~null, len(levels)] = 1.0
            block[null, len(levels) + 1] = 1.0
            out[:, start:start + block.shape[1]] = block
            start += block.shape[1]

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
            "categories": {name: {"levels": levels, "counts": self.level_counts_[name]}
                           for name, levels in self.categories_.items()},
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
        # Transforms saved before categorical columns were encoded have none.
        categories = values.get("categories", {})
        transform.categories_ = {name: list(c["levels"]) for name, c in categories.items()}
        transform.level_counts_ = {name: dict(c["counts"]) for name, c in categories.items()}
        return transform

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise RuntimeError("FeatureTransform is not fitted; call fit first")
