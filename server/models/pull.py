"""``deepdive model pull``: a pinned GGUF file from the Hugging Face hub into the user's cache.

Through huggingface_hub (it honours ``HF_ENDPOINT``, proxies and tokens, and its downloader retries a
broken connection from where it stopped, with a Range request), in steps that make the pull safe:

1. ``HEAD`` the file at the pinned commit: the hub announces its size and, for large files, its
   sha256. Another file than the pinned one is refused before a byte is downloaded.
2. Download into ``FILE.part`` beside the destination. An interrupted pull (Ctrl-C, a dead network
   after huggingface_hub's retries) keeps it, and the next pull of the same pin continues it.
3. Hash what arrived. A mismatch deletes it and says so; a match is renamed into place (after
   fsync) with a ``.sha256`` note, so that the next pull does not hash 500 MB again.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional

from deepdive.fsutil import atomic_write_text

from . import ModelError
from .catalog import Pin
from .gguf import read_gguf
from .local import sha256_of
from .paths import models_dir

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PullError(ModelError):
    """The pull failed or was refused; one line that says why and what to do."""


class Interrupted(Exception):
    """The pull was interrupted; ``kept`` bytes of ``total`` stay in the partial file for a resume."""

    def __init__(self, kept: int, total: int) -> None:
        super().__init__(f"interrupted: {kept:,} of {total:,} bytes kept; run the same command to resume")
        self.kept, self.total = kept, total


def destination(pin: Pin) -> Path:
    """Where the pinned file goes: the cache, one folder per repository."""
    return models_dir() / pin.repo.replace("/", "--") / pin.filename


def _note(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def is_verified(path: Path, sha256: str) -> bool:
    """True when ``path`` was hashed to ``sha256`` and has not changed since (size, mtime)."""
    try:
        note = json.loads(_note(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return note == {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def mark_verified(path: Path, sha256: str) -> None:
    st = path.stat()
    atomic_write_text(_note(path), json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))


def _hub_error(exc: BaseException, pin: Pin, endpoint: str) -> PullError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    short = pin.revision[:12]
    if status == 404:
        code = getattr(exc, "response").headers.get("X-Error-Code", "")
        if code == "RepoNotFound":
            return PullError(f"no repository {pin.repo} on the hub at {endpoint} (HTTP 404)")
        if code == "RevisionNotFound":
            return PullError(f"{pin.repo} has no revision {short} (HTTP 404)")
        return PullError(f"{pin.repo} has no file {pin.filename} at revision {short} (HTTP 404)")
    if status in (401, 403):
        return PullError(f"the hub refused {pin.repo} (HTTP {status}): a gated or private repository needs "
                         "`huggingface-cli login` first")
    if status is not None:
        return PullError(f"the hub answered HTTP {status} for {pin.repo}/{pin.filename}: try again later")
    return PullError(f"cannot reach the Hugging Face hub at {endpoint}: {type(exc).__name__}: "
                     f"{' '.join(str(exc).split())[:160]} (this machine may be offline; HF_ENDPOINT sets a mirror)")


def _metadata(pin: Pin, endpoint: str) -> Any:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    url = hf_hub_url(pin.repo, pin.filename, revision=pin.revision, endpoint=endpoint)
    try:
        return get_hf_file_metadata(url, endpoint=endpoint, timeout=15)
    except OfflineModeIsEnabled:
        raise PullError("HF_HUB_OFFLINE is set: unset it to pull (pull downloads from the hub)") from None
    except HfHubHTTPError as exc:
        raise _hub_error(exc, pin, endpoint) from None
    except Exception as exc:  # noqa: BLE001 - httpx2's connection errors, timeouts
        raise _hub_error(exc, pin, endpoint) from None


def _check_announced(pin: Pin, meta: Any) -> int:
    """The file's size; PullError when the hub announces another file than the pinned one."""
    if meta.commit_hash and meta.commit_hash != pin.revision:
        raise PullError(f"the hub resolved revision {pin.revision[:12]} of {pin.repo} to commit "
                        f"{meta.commit_hash[:12]}: not the pinned one, not downloaded")
    size = meta.size if meta.size is not None else pin.size_bytes
    etag = (meta.etag or "").lower()
    other_hash = _SHA256.match(etag) and etag != pin.sha256
    other_size = pin.size_bytes >= 0 and meta.size is not None and meta.size != pin.size_bytes
    if other_hash or other_size:
        said = etag if _SHA256.match(etag) else "another file"
        pinned = f"{pin.sha256} ({pin.size_bytes:,} bytes)" if pin.size_bytes >= 0 else pin.sha256
        raise PullError(
            f"the hub's {pin.repo}/{pin.filename} at {pin.revision[:12]} is {said} ({size:,} bytes), "
            f"not the pinned {pinned}: not downloaded"
        )
    return size


def _download(pin: Pin, meta: Any, part: Path, size: int, tqdm_class: Any) -> None:
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    state = part.with_name(part.name + ".json")
    wanted = {"repo": pin.repo, "revision": pin.revision, "filename": pin.filename, "sha256": pin.sha256}
    try:
        same = json.loads(state.read_text()) == wanted
    except (OSError, ValueError):
        same = False
    if not same or (part.exists() and size >= 0 and part.stat().st_size > size):
        part.unlink(missing_ok=True)  # a partial file of another pin (or too long): start over
    atomic_write_text(state, json.dumps(wanted))
    resume = part.stat().st_size if part.exists() else 0
    with open(part, "r+b" if resume else "wb") as f:
        f.seek(resume)
        try:
            http_get(meta.location, f, resume_size=resume, headers=build_hf_headers(),
                     expected_size=size if size >= 0 else None, displayed_filename=pin.filename,
                     tqdm_class=tqdm_class)
        except KeyboardInterrupt:
            f.flush()
            raise Interrupted(f.tell(), size) from None
        except OSError as exc:
            f.flush()
            if "Consistency check failed" not in str(exc):
                raise PullError(f"the download of {pin.filename} broke: {' '.join(str(exc).split())[:160]}; "
                                f"{f.tell():,} bytes are kept: run the same command to resume") from None
            raise PullError(f"{pin.filename} arrived with {f.tell():,} bytes, not {size:,}: "
                            "run the same command to resume") from None
        except Exception as exc:  # noqa: BLE001 - httpx2 errors once huggingface_hub's retries are spent
            f.flush()
            raise PullError(f"the download of {pin.filename} broke: {type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:160]}; {f.tell():,} bytes are kept: run the same "
                            "command to resume") from None
        f.flush()
        os.fsync(f.fileno())


def pull(pin: Pin, *, endpoint: Optional[str] = None, tqdm_class: Any = None) -> Path:
    """Download ``pin`` into the cache (or find it there), checked; the file's path.

    Raises PullError (one line) and :class:`Interrupted` (Ctrl-C: the partial file is kept)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise PullError("HF_HUB_OFFLINE is set: unset it to pull (pull downloads from the hub)")
    from huggingface_hub import constants

    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    dest = destination(pin)
    if dest.is_file():
        if is_verified(dest, pin.sha256) or sha256_of(dest) == pin.sha256:
            mark_verified(dest, pin.sha256)
            return dest
        dest.unlink()  # damaged since: fetch it again
    meta = _metadata(pin, endpoint)
    size = _check_announced(pin, meta)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _partial(dest)
    _download(pin, meta, part, size, tqdm_class)
    got = sha256_of(part)
    if got != pin.sha256:
        part.unlink(missing_ok=True)
        part.with_name(part.name + ".json").unlink(missing_ok=True)
        raise PullError(
            f"sha256 mismatch for {pin.filename}: got {got}, pinned {pin.sha256}: the download was deleted; "
            "run the pull again, and if it repeats the file on the hub is not the pinned one (or a proxy changed it)"
        )
    read_gguf(part, model_keys_only=True)  # the right bytes are a GGUF file; this guards a wrong pin
    os.replace(part, dest)
    part.with_name(part.name + ".json").unlink(missing_ok=True)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    mark_verified(dest, pin.sha256)
    return dest
