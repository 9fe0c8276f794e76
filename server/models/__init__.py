"""Local code models: finding them, fetching them, remembering them, measuring them.

- :mod:`.registry`: the user's models (``models.json`` in the config folder) and the default one
  that ``deepdive generate`` and the editor use when the backend is ``auto``;
- :mod:`.local`: a GGUF file or a Hugging Face model folder on disk, and the places models are found;
- :mod:`.ollama`: an Ollama already running on this machine (its OpenAI-compatible API);
- :mod:`.pull`: the pinned official Qwen2.5-Coder GGUF files from the Hugging Face hub;
- :mod:`.bench`: time to first token and tokens/s, measured here and cached in the registry;
- :mod:`.resolve`: a generate request's ``auto`` backend made concrete from the registry.

Nothing here imports torch, transformers or llama_cpp: models run in the model worker
(:mod:`deepdive.codegen.worker`), and the daemon reads the registry as plain JSON.
"""

from __future__ import annotations


class ModelError(ValueError):
    """Bad input or a model that cannot be used; the message is one line and says what to do.

    A ValueError, like the codegen backends' errors: the CLI prints it and exits 2, the daemon
    answers the request with it."""


__all__ = ["ModelError"]
