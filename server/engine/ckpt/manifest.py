"""Manifest integrity: each manifest carries the xxh3-128 of its own bytes.

A chunk is named by the hash of its bytes, so loading checks every chunk; the manifest (the nested
state, each tensor's dtype, shape and chunk list, the step, the metrics) is what says which chunks
make the checkpoint, and a changed byte there would load silently. So the manifest's JSON ends with
a checksum of everything before it::

    {"format":"deepdive-ckpt/1","name":"step-0000000026","step":26,...,"checksum":"xxh3-128:5c1f..."}

The checksum covers the exact bytes written, up to the comma before ``"checksum"`` (plus the closing
brace): any change to them (a flipped bit, ``"step":26`` edited to ``"step":36``, a reformatted
file) fails it. It detects damage and accidental edits, not tampering: anyone can compute a new one.
The file stays plain JSON, so readers that do not know the field still read it.

Manifests written before checksums existed have none: they load, and ``verify`` reports them as
unchecked. Every manifest, checked or not, must also agree with its file name (``name`` and
``step``) and have this version's format.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

import xxhash

CHECKSUM_KEY = "checksum"
CHECKSUM_KIND = "xxh3-128"
_TAIL = re.compile(rb',"checksum":"xxh3-128:([0-9a-f]{32})"}\s*\Z')


class ManifestError(Exception):
    """A manifest that cannot be trusted. The message is a predicate: "checkpoint X: its manifest <message>"."""


def _digest(body: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(body)


def encode(manifest: dict[str, Any]) -> bytes:
    """The bytes of ``manifest`` as written to disk: compact JSON ending with its checksum."""
    if CHECKSUM_KEY in manifest:
        raise ValueError(f"a manifest must not hold a '{CHECKSUM_KEY}' field of its own")
    body = json.dumps(manifest, separators=(",", ":")).encode()
    return body[:-1] + f',"{CHECKSUM_KEY}":"{CHECKSUM_KIND}:{_digest(body)}"}}'.encode()


def decode(data: bytes) -> tuple[dict[str, Any], bool]:
    """The manifest in ``data`` and whether it had a checksum (False: written before checksums).

    Raises:
        ManifestError: not JSON, not an object, or its checksum does not match its bytes.
    """
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise ManifestError(f"is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ManifestError("is not a JSON object")
    if CHECKSUM_KEY not in manifest:
        return manifest, False
    tail = _TAIL.search(data)
    if tail is None:
        raise ManifestError("has its checksum somewhere other than where it was written (the file was rewritten "
                            "or damaged)")
    if _digest(data[:tail.start()] + b"}") != tail.group(1).decode():
        raise ManifestError("does not match its checksum (changed or damaged since it was saved)")
    del manifest[CHECKSUM_KEY]
    return manifest, True


def check_fields(manifest: dict[str, Any], name: str, fmt: str, name_of_step: Any) -> None:
    """The manifest names itself ``name``, its step maps to that name, and its format is ``fmt``.

    Raises:
        ManifestError: a field disagrees (the message says which); a format mismatch says to upgrade.
    """
    if manifest.get("format") != fmt:
        raise ManifestError(f"has format {manifest.get('format')!r}, this version reads {fmt!r}: upgrade deepdive")
    step = manifest.get("step")
    if manifest.get("name") != name or isinstance(step, bool) or not isinstance(step, int) or name_of_step(step) != name:
        raise ManifestError(f"says name {manifest.get('name')!r}, step {step!r}, which is not this file's "
                            f"checkpoint (damaged or edited)")
    for key, kind in (("tensors", list), ("stats", dict), ("tree", object)):
        if key not in manifest or not isinstance(manifest[key], kind):
            raise ManifestError(f"has no valid '{key}' (damaged or edited)")
    if "dcp" in manifest and not isinstance(manifest["dcp"], dict):
        raise ManifestError("has no valid 'dcp' section (damaged or edited)")


def read(data: bytes, name: str, fmt: str, name_of_step: Any) -> tuple[dict[str, Any], bool]:
    """:func:`decode` then :func:`check_fields`: a manifest fit to load, and whether it was checksummed."""
    manifest, checked = decode(data)
    check_fields(manifest, name, fmt, name_of_step)
    return manifest, checked


def saved_time(data: bytes) -> Optional[float]:
    """The save time a manifest's bytes record, trusted or not (None when unreadable): for ordering only."""
    try:
        value = json.loads(data).get("time")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
