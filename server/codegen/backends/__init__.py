"""Model backends for code generation: a local transformers model, llama.cpp, an OpenAI-compatible server.

Every backend has one verb, :meth:`Backend.stream`: a system prompt and a chat (``[{"role": "user",
"content": ...}, ...]``) in, text chunks out as the model writes them. Setting ``cancel`` stops the
stream within a token or two and raises :class:`Cancelled`. Failures raise :class:`BackendError`
with a one-line message that says what to change.

- ``transformers`` and ``llamacpp`` run in one long-lived model worker subprocess
  (:mod:`deepdive.codegen.worker`) managed by :class:`~.worker_client.ModelWorker`, so the daemon
  never imports torch, transformers or llama_cpp, and the model is loaded once.
- ``openai-compatible`` talks to a local server (Ollama, vLLM, LM Studio, llama.cpp server) over
  streaming ``/v1/chat/completions`` with the standard library only.
"""

from __future__ import annotations

import abc

import threading
from typing import Iterator, Optional


class BackendError(ValueError):
    """A backend could not produce text; the message is one line and says what to change.

    A ValueError, like a prompt that cannot be understood: the daemon answers the request with the
    message instead of an internal error."""


class PromptTooLong(BackendError):
    """The prompt leaves the model no room for an answer; a shorter prompt may work."""


class Cancelled(Exception):
    """The request was cancelled (its cancel event was set) before it finished."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class Backend(abc.ABC):
    """The common interface of model backends."""

    name = "backend"

    @abc.abstractmethod
    def stream(
        self, system: str, messages: list[dict], cancel: Optional[threading.Event] = None
    ) -> Iterator[str]:
        """The model's answer to ``messages`` (after ``system``), chunk by chunk; stops when ``cancel`` is set."""

    def close(self) -> None:
        """Free what this backend holds for itself (shared workers stay up)."""


def make_backend(
    backend: Optional[str],
    *,
    model_path: Optional[str] = None,
    endpoint: Optional[str] = None,
    model: Optional[str] = None,
    allow_remote: bool = False,
    worker=None,  # noqa: ANN001 - a ModelWorker; the shared one when None
) -> Backend:
    """The backend named ``backend`` (as in GenerateParams.backend), its arguments validated.

    ``auto`` (or None): the registry's default model (``deepdive model default``), with its own
    path or server; ``model`` then names another registered model."""
    if backend in (None, "auto"):
        return _registry_backend(model, allow_remote=allow_remote, worker=worker)
    if backend == "transformers":
        from .worker_client import TransformersBackend

        return TransformersBackend(model_path, worker=worker)
    if backend == "llamacpp":
        from .worker_client import LlamaCppBackend

        return LlamaCppBackend(model_path, worker=worker)
    if backend == "openai-compatible":
        from .openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend(endpoint, model=model, allow_remote=allow_remote)
    raise BackendError(f"unknown backend {backend!r}: auto, builtin, transformers, llamacpp or openai-compatible")


def _registry_backend(name: Optional[str], *, allow_remote: bool, worker) -> Backend:  # noqa: ANN001
    """The backend of the registered model ``name``, else of the default one (plain JSON: no heavy imports)."""
    from deepdive.models import ModelError
    from deepdive.models.resolve import backend_args, chosen_entry

    try:
        entry = chosen_entry(name)
    except ModelError as exc:
        raise BackendError(str(exc)) from None
    if entry is None:
        raise BackendError("no default code model: pull or add one and choose it with `deepdive model default NAME` "
                           "(or the editor's Deepdive: Choose Code Model…)")
    args = backend_args(entry)
    return make_backend(str(args["backend"]), model_path=args["model_path"], endpoint=args["endpoint"],
                        model=args["model"], allow_remote=allow_remote, worker=worker)


__all__ = ["Backend", "BackendError", "Cancelled", "PromptTooLong", "make_backend"]
