"""The base of every training config block: strict keys, and settings added later left out
of the dump at their defaults.

Why here and not in :mod:`.config`: the classifier's config lives beside its training
code (:mod:`.classifier.train`), which :mod:`.config` imports, so the base both share sits
below both.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

__all__ = ["ConfigModel"]


class ConfigModel(BaseModel):
    """Unknown keys are errors (a typo must not silently train the default)."""

    model_config = ConfigDict(extra="forbid")

    #: Keys left out of the config's dump while they hold these values: settings added
    #: after work dirs existed, so those keep their config hash (and resume) until used.
    _omit_at: ClassVar[dict[str, Any]] = {}

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for key, value in self._omit_at.items():
                if key in data and data[key] == value:
                    del data[key]
        return data
