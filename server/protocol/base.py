"""What every payload module of the protocol shares: wire names, limits on client text, vocabulary types.

Wire names: LSP payloads use camelCase keys (LSP's convention) for snake_case attributes. Classes
marked :func:`keys_as_named` keep their attribute names on the wire: the hub's websocket messages and
the job options, whose keys the engine, the command line and the job store already use. A field's
``WIRE_NAME`` metadata overrides both (one job option has a camelCase key).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import attrs

from deepdive.vocabulary import (
    CODEGEN_BACKENDS, COMPRESS_TARGETS, DEVICES, FRAMEWORKS, GRAD_COMPRESSIONS, PRUNE_IMPORTANCES, QUANTIZE_MODES,
    TRAIN_PRECISIONS, TUNE_DIRECTIONS, TUNE_PRUNERS, TUNE_SAMPLERS, TUNE_TRIAL_STATES, TUNE_VALUES,
)

# Limits on the text a client sends, so that one oversized request cannot stall the daemon (issue
# #18: the code generator spent 11-14 s reading a 40 MB prompt, and other requests waited seconds).
# A str field of a request's params is at most MAX_NAME_CHARS long unless its metadata says otherwise.
MAX_CHARS = "deepdive.max_chars"
MAX_PROMPT_CHARS = 64 * 1024
"""A code-generation prompt: a sentence or a few paragraphs, never a file."""
MAX_DOCUMENT_CHARS = 2 * 1024 * 1024
"""A script's text (tune/applyBest): parsing 2 MB of Python takes about 0.7 s, and a training script is far smaller."""
MAX_NAME_CHARS = 4096
"""Kinds, ids, titles, paths, URLs and model names (PATH_MAX is 4096)."""

WIRE_NAME = "deepdive.wire_name"
"""Field metadata: the field's key on the wire, where it is not the class's convention."""
TS_TYPE = "deepdive.ts_type"
"""Field metadata: the TypeScript type of a field whose Python type is looser (a dict checked elsewhere)."""

# The vocabularies as types: a field of one of these types takes the list's values, and the TypeScript
# side names the type after the list (`QuantizeMode` is `(typeof Vocabularies.quantizeModes)[number]`).
TrainPrecision = Literal[TRAIN_PRECISIONS]  # type: ignore[valid-type]
GradCompression = Literal[GRAD_COMPRESSIONS]  # type: ignore[valid-type]
QuantizeMode = Literal[QUANTIZE_MODES]  # type: ignore[valid-type]
CompressTarget = Literal[COMPRESS_TARGETS]  # type: ignore[valid-type]
PruneImportance = Literal[PRUNE_IMPORTANCES]  # type: ignore[valid-type]
TuneSampler = Literal[TUNE_SAMPLERS]  # type: ignore[valid-type]
TunePruner = Literal[TUNE_PRUNERS]  # type: ignore[valid-type]
TuneDirection = Literal[TUNE_DIRECTIONS]  # type: ignore[valid-type]
TuneValue = Literal[TUNE_VALUES]  # type: ignore[valid-type]
TrialState = Literal[TUNE_TRIAL_STATES]  # type: ignore[valid-type]
CodegenBackend = Literal[CODEGEN_BACKENDS]  # type: ignore[valid-type]
Framework = Literal[FRAMEWORKS]  # type: ignore[valid-type]
Device = Literal[DEVICES]  # type: ignore[valid-type]

VOCABULARY_TYPES: dict[str, str] = {
    "TrainPrecision": "trainPrecisions", "GradCompression": "gradCompressions", "QuantizeMode": "quantizeModes",
    "CompressTarget": "compressTargets", "PruneImportance": "pruneImportances", "TuneSampler": "tuneSamplers",
    "TunePruner": "tunePruners", "TuneDirection": "tuneDirections", "TuneValue": "tuneValues",
    "TrialState": "tuneTrialStates", "CodegenBackend": "codegenBackends", "Framework": "frameworks", "Device": "devices",
}
"""The TypeScript name of each vocabulary's type, by the vocabulary's name."""

_KEYS_AS_NAMED: set[type] = set()
C = TypeVar("C", bound=type)


def keys_as_named(cls: C) -> C:
    """Mark an attrs class whose wire keys are its attribute names (snake_case), not camelCase."""
    _KEYS_AS_NAMED.add(cls)
    return cls


def camel(name: str) -> str:
    """``timeout_s`` -> ``timeoutS``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def wire_name(cls: type, field: attrs.Attribute) -> str:
    """The key ``field`` of ``cls`` has in JSON."""
    named: Any = field.metadata.get(WIRE_NAME)
    if named:
        return str(named)
    return field.name if cls in _KEYS_AS_NAMED else camel(field.name)
