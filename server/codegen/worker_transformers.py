"""The model worker's Hugging Face runner: a local model folder, loaded with transformers, its tokens streamed.

Runs only in the worker process (:mod:`deepdive.codegen.worker`): torch and transformers are imported
here, never in the daemon.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from deepdive.codegen.worker_base import DEFAULT_MAX_NEW_TOKENS, MAX_NEW_TOKENS, MIN_ROOM, WorkerError, one_line, plain_prompt

__all__ = ["TransformersModel"]


class TransformersModel:
    backend = "transformers"

    def __init__(self, model_path: str) -> None:
        if not os.path.isdir(model_path):
            raise WorkerError(f"model directory not found: {model_path}")
        if not os.path.isfile(os.path.join(model_path, "config.json")):
            raise WorkerError(f"{model_path} has no config.json: not a Hugging Face model directory")
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise WorkerError(f"transformers is not installed ({exc.name}): pip install 'deepdive[llm]'") from None
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        try:
            config = AutoConfig.from_pretrained(model_path, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - reported as one line
            raise WorkerError(f"cannot read the model config in {model_path}: {one_line(exc)}") from None
        mapping = transformers.models.auto.modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        if getattr(config, "model_type", None) not in mapping:
            raise WorkerError(
                f"{model_path} is not a causal language model (model type {config.model_type!r}); "
                "code generation needs a decoder model such as Qwen2.5-Coder, Llama or GPT-2"
            )
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.threads = torch.get_num_threads()
        dtype = torch.float32
        if self.device == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise WorkerError(f"cannot load the tokenizer in {model_path}: {one_line(exc)}") from None
        try:
            # `dtype` since transformers 4.56; `torch_dtype` before (pyproject allows >= 4.44).
            major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
            key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
            self.model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True, **{key: dtype})
        except Exception as exc:  # noqa: BLE001
            raise WorkerError(f"cannot load the model in {model_path}: {one_line(exc)}") from None
        self.model.eval()
        self.model.to(self.device)
        self.max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    def prompt_ids(self, system: str, messages: list[dict]):
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            chat = ([{"role": "system", "content": system}] if system else []) + list(messages)
            try:
                text = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
            except Exception:  # noqa: BLE001 - templates without a system role (Gemma) raise
                if not system or not messages:
                    raise
                first = dict(messages[0], content=f"{system}\n\n{messages[0].get('content', '')}")
                text = tok.apply_chat_template([first, *messages[1:]], add_generation_prompt=True, tokenize=False)
            # The template already wrote the special tokens (BOS): do not add them twice.
            return tok(text, return_tensors="pt", add_special_tokens=False).input_ids
        return tok(plain_prompt(system, messages), return_tensors="pt").input_ids

    def generate(self, req: dict, cancel: threading.Event, emit_text: Callable[[str], None]) -> dict:
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        torch = self.torch
        if self.device == "cuda" and next(self.model.parameters()).device.type != "cuda":
            self.model.to("cuda")  # back on the GPU after a release
        ids = self.prompt_ids(str(req.get("system", "")), list(req.get("messages", [])))
        max_new = max(1, min(int(req.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS), MAX_NEW_TOKENS))
        if self.max_positions:
            room = int(self.max_positions) - ids.shape[1]
            if room < min(max_new, MIN_ROOM):  # no room left for a whole program
                raise WorkerError(
                    f"the prompt has {ids.shape[1]} tokens and the model's context is {self.max_positions}: "
                    f"no room for {min(max_new, MIN_ROOM)} new tokens",
                    code="prompt_too_long",
                )
            max_new = min(max_new, room)
        count = {"tokens": 0}

        tok = self.tokenizer

        class Streamer(BaseStreamer):
            """Hands out each token's text as soon as it decodes to whole characters."""

            def __init__(self) -> None:
                self.prompt = True
                self.held = 0
                self.ids: list[int] = []
                self.printed = 0

            def put(self, value) -> None:  # noqa: ANN001
                if self.prompt:  # generate() puts the prompt first
                    self.prompt = False
                    return
                new_ids = value.reshape(-1).tolist()
                count["tokens"] += len(new_ids)
                self.ids.extend(new_ids)
                text = tok.decode(self.ids, skip_special_tokens=True)
                if text.endswith("\ufffd") and self.held < 3:
                    self.held += 1
                    return  # half of a multi-byte character: wait for the rest (a few tokens at most)
                self.held = 0
                if len(text) > self.printed:
                    emit_text(text[self.printed :])
                if text.endswith("\n"):
                    self.ids, self.printed = [], 0  # keeps decoding cheap on long outputs
                else:
                    self.printed = len(text)

            def end(self) -> None:
                text = tok.decode(self.ids, skip_special_tokens=True)
                if len(text) > self.printed:
                    emit_text(text[self.printed :])

        class Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        temperature = float(req.get("temperature") or 0.0)
        kwargs: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            kwargs = {"do_sample": True, "temperature": temperature, "top_p": 0.95}
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            pad = 0
        streamer = Streamer()
        with torch.inference_mode():
            self.model.generate(
                ids.to(self.device),
                attention_mask=torch.ones_like(ids).to(self.device),
                max_new_tokens=max_new,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([Cancel()]),
                pad_token_id=pad,
                **kwargs,
            )
        if cancel.is_set():
            reason = "cancelled"
        elif count["tokens"] >= max_new:
            reason = "length"
        else:
            reason = "stop"
        return {"tokens": count["tokens"], "reason": reason, "prompt_tokens": int(ids.shape[1])}

    def release(self) -> str:
        self.model.to("cpu")
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()
        return "cpu"
