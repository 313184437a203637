"""The model store as a Dagster resource (the database's resource lives with its SQL, in ``storage``)."""
from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from lrl_core.artifacts import ArtifactStore
from lrl_core.baselines import TLearners

__all__ = ["ArtifactStoreResource"]


class ArtifactStoreResource(dg.ConfigurableResource):
    """The versioned model store (extractor weights, feature transform, a ``CURRENT`` pointer)."""

    root: str = Field(description="Directory holding versions/ and CURRENT.")

    def store(self) -> ArtifactStore:
        """A fresh :class:`lrl_core.artifacts.ArtifactStore` over ``root`` (resources are frozen)."""
        return ArtifactStore(self.root)

    def baseline_store(self) -> ArtifactStore:
        """The T-learner baselines of each retrain, under ``root/t_learners``."""
        return ArtifactStore(Path(self.root) / "t_learners", learner_type=TLearners)
