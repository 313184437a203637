"""Versioned, atomically written model artifacts with a ``CURRENT`` pointer.

Layout under ``root``::

    CURRENT                         # the current version's name, replaced with os.replace
    versions/<version>/weights.safetensors
    versions/<version>/model.json   # config, learner metadata, feature transform, metadata
    versions/.tmp-<version>/        # a save in progress (or a crashed one): never listed

A version is written into a temporary directory inside ``versions/``, its
files and the directory are fsynced, and only then is it renamed into place,
so a reader sees either no version or a complete one; ``CURRENT`` moves only
after that. Loading reads tensors with safetensors and JSON, never pickle.
Version names sort by creation time (UTC timestamp plus a random suffix).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import write_text_atomically
from .training import LRLearner

__all__ = ["ArtifactStore", "CorruptArtifact", "LoadedModel", "Transform"]


class CorruptArtifact(ValueError):
    """A saved version's files exist but cannot be read (truncated, overwritten, foreign); names the file."""

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_TMP = ".tmp-"
_WEIGHTS = "weights.safetensors"
_MODEL = "model.json"
FORMAT = "lrl.artifact/1"


class Transform(Protocol):
    """What the store needs of a feature transform: a plain-JSON round trip."""

    def to_dict(self) -> dict: ...

    @classmethod
    def from_dict(cls, values: dict) -> "Transform": ...


@dataclass(frozen=True)
class LoadedModel:
    """A loaded version: the fitted learner, its feature transform, the saved metadata."""

    learner: Any  # the store's learner_type, an LRLearner by default
    transform: Any
    metadata: dict
    version: str


def _check_version(version: str) -> str:
    """A version name is used as a path component: letters, digits, ``_`` and ``-`` only."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ValueError(f"invalid version name {version!r}")
    return version


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk (directories: so that renames inside it persist)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArtifactStore:
    """Saved LR-learners under ``root`` (see the module docstring for the layout).

    Parameters
    ----------
    root:
        Directory of the store; created on first save.
    transform_type:
        Class whose ``from_dict`` rebuilds the saved feature transform; default
        :class:`lrl_core.features.FeatureTransform`. The class is fixed by the
        caller, never read from the artifact, so loading runs no code named by
        a file.
    learner_type:
        Class whose ``from_state(tensors, meta, device=...)`` rebuilds what was
        saved with its ``to_state()``; default :class:`~lrl_core.training.LRLearner`
        (the pipeline also keeps its T-learners, :class:`~lrl_core.baselines.TLearners`).
    """

    def __init__(self, root: str | os.PathLike, transform_type: type | None = None,
                 learner_type: type = LRLearner) -> None:
        self.root = Path(root)
        self.transform_type = transform_type
        self.learner_type = learner_type

    @property
    def _versions_dir(self) -> Path:
        return self.root / "versions"

    def _transform_type(self) -> type:
        if self.transform_type is None:
            from .features import FeatureTransform  # lazily: features is optional for a store user

            return FeatureTransform
        return self.transform_type

    # ---------------------------------------------------------------- write
    def save(
        self, learner, transform: Transform | None, metadata: dict | None = None, make_current: bool = True
    ) -> str:
        """Write a new version atomically and (by default) make it current; returns its name."""
        tensors, learner_meta = learner.to_state()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        version = f"{stamp}-{secrets.token_hex(3)}"
        document = {
            "format": FORMAT,
            "version": version,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "learner": learner_meta,
            "transform": None if transform is None else transform.to_dict(),
            "transform_type": None if transform is None else type(transform).__qualname__,
            "metadata": dict(metadata or {}),
        }
        text = json.dumps(document, indent=1, allow_nan=True, default=_json_default)
        self._versions_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._versions_dir / f"{_TMP}{version}"
        tmp.mkdir()
        try:
            save_file(tensors, str(tmp / _WEIGHTS))
            with open(tmp / _MODEL, "w", encoding="utf-8") as f:
                f.write(text)
            for name in (_WEIGHTS, _MODEL):
                _fsync(tmp / name)
            _fsync(tmp)
            os.rename(tmp, self._versions_dir / version)
            _fsync(self._versions_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if make_current:
            self.set_current(version)
        return version

    def set_current(self, version: str) -> None:
        """Point ``CURRENT`` at a complete version, atomically (temp file + ``os.replace``)."""
        if version not in self.versions():
            raise FileNotFoundError(f"no complete version {_check_version(version)!r} in {self.root}")
        # The temporary name starts with _TMP so that prune() clears one a crash left behind.
        write_text_atomically(self.root / "CURRENT", version + "\n", tmp_prefix=f"{_TMP}CURRENT-")
        _fsync(self.root)

    # ----------------------------------------------------------------- read
    def current_version(self) -> str | None:
        """The name in ``CURRENT``, or ``None`` before the first save."""
        try:
            text = (self.root / "CURRENT").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return _check_version(text)

    def versions(self) -> list[str]:
        """Complete versions, oldest first; temporary and malformed directories are ignored."""
        if not self._versions_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self._versions_dir.iterdir()
            if _VERSION.match(p.name) and (p / _WEIGHTS).is_file() and (p / _MODEL).is_file()
        )

    def load(self, version: str | None = None, device: str | None = None) -> LoadedModel:
        """Load ``version`` (default: the current one) onto ``device`` (default CPU)."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise FileNotFoundError(f"no current model in {self.root}")
        path = self._versions_dir / _check_version(version)
        if not ((path / _WEIGHTS).is_file() and (path / _MODEL).is_file()):
            raise FileNotFoundError(f"no complete version {version!r} in {self.root}")
        try:
            document = json.loads((path / _MODEL).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CorruptArtifact(f"{path / _MODEL} is unreadable ({error})") from error
        if document.get("format") != FORMAT:
            raise ValueError(f"{path / _MODEL} has unknown format {document.get('format')!r}")
        try:
            tensors = load_file(str(path / _WEIGHTS))
            learner = self.learner_type.from_state(tensors, document["learner"], device=device)
        except (OSError, SafetensorError, KeyError, RuntimeError) as error:
            # A truncated or foreign file: say which one, never a bare library traceback.
            raise CorruptArtifact(f"{path / _WEIGHTS} is unreadable ({error})") from error
        transform = None
        if document["transform"] is not None:
            transform = self._transform_type().from_dict(document["transform"])
        return LoadedModel(learner, transform, document["metadata"], version)

    # ---------------------------------------------------------------- prune
    def prune(
        self, keep: int = 3, protect: set[str] | frozenset[str] = frozenset(), stale_after_s: float = 3600.0
    ) -> list[str]:
        """Delete all but the newest ``keep`` versions, the current one and ``protect``.

        Temporary files and directories older than ``stale_after_s`` (crashed
        saves) go too; younger ones may be saves in progress. A version is first renamed
        to a temporary name, so it disappears from :meth:`versions` at once.
        Returns the deleted versions.
        """
        versions = self.versions()
        kept = set(versions[-keep:] if keep > 0 else []) | set(protect)
        current = self.current_version()
        if current is not None:
            kept.add(current)
        removed = []
        for version in versions:
            if version in kept:
                continue
            doomed = self._versions_dir / f"{_TMP}deleted-{version}"
            os.rename(self._versions_dir / version, doomed)
            shutil.rmtree(doomed)
            removed.append(version)
        now = time.time()
        for folder in (self.root, self._versions_dir):
            for p in folder.iterdir() if folder.is_dir() else ():
                if p.name.startswith(_TMP) and now - p.stat().st_mtime > stale_after_s:
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
        return removed
