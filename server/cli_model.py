"""`deepdive model list | pull | add | remove | default | bench`: the local code models from the command line.

Thin over :mod:`deepdive.models`. Every error is one line that says what to do (exit 2); ``pull``
shows huggingface_hub's progress bar and, when interrupted, keeps what arrived for the next run.
``add`` and ``pull`` measure the model's speed on this machine (``--no-bench`` skips it) so that
``list`` and the editor's model picker can show it without loading anything.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Optional

from deepdive.models import ModelError


def add_parser(sub: Any) -> None:
    """Register ``model`` and its subcommands on the top-level subparsers ``sub``."""
    p = sub.add_parser("model", help="local code models: list, pull, add, remove, default, bench",
                       description="The code models `deepdive generate` and the editor use: GGUF files (llama.cpp), "
                                   "Hugging Face model folders (transformers) and Ollama's models. The default one "
                                   "answers when the backend is auto (or not given).")
    m = p.add_subparsers(dest="model_command", metavar="ACTION", parser_class=type(p))
    m.required = True

    q = m.add_parser("list", help="registered models (the default marked), their size, place and measured speed; "
                                  "then models found and not added")
    q.add_argument("--json", action="store_true", help="machine-readable output (as deepdive/models/list)")
    q.add_argument("--no-discover", action="store_true", help="only the registry: do not probe Ollama or look in "
                                                              "LM Studio's folders and the Hugging Face cache")

    q = m.add_parser("pull", help="download a pinned GGUF file from the Hugging Face hub (resumable) and add it",
                     description="NAME is qwen2.5-coder-0.5b or qwen2.5-coder-1.5b (the official Qwen GGUF files, "
                                 "Q4_K_M, Apache-2.0), or REPO/FILE.gguf with --revision and --sha256. The file is "
                                 "checked against its pinned sha256 and kept in ~/.cache/deepdive/models.")
    q.add_argument("target", metavar="NAME|REPO/FILE.gguf")
    q.add_argument("--revision", default=None, help="REPO/FILE only: the commit (40 hex digits)")
    q.add_argument("--sha256", default=None, help="REPO/FILE only: the file's sha256")
    q.add_argument("--name", default=None, help="the name in the registry (default: from the file)")
    q.add_argument("--default", action="store_true", help="make it the default even if there is one")
    q.add_argument("--no-bench", action="store_true", help="do not measure its speed now")

    q = m.add_parser("add", help="register a GGUF file, a Hugging Face model folder, or an Ollama model",
                     description="PATH is a .gguf file or a model folder (config.json, weights, tokenizer); "
                                 "ollama:NAME is a model of the Ollama running on this machine.")
    q.add_argument("target", metavar="PATH|ollama:NAME")
    q.add_argument("--name", default=None, help="the name in the registry (default: from the file or folder)")
    q.add_argument("--sha256", default=None, help="check the file's sha256 before adding it")
    q.add_argument("--endpoint", default=None, help="ollama:NAME on another port of this machine (default: "
                                                    "OLLAMA_HOST, else http://127.0.0.1:11434)")
    q.add_argument("--default", action="store_true", help="make it the default even if there is one")
    q.add_argument("--no-bench", action="store_true", help="do not measure its speed now")

    q = m.add_parser("remove", help="forget a model (its file stays unless --delete-file)")
    q.add_argument("name")
    q.add_argument("--delete-file", action="store_true", help="also delete its file, if pull put it in the cache")

    q = m.add_parser("default", help="print the default model, or set it (builtin: no model)")
    q.add_argument("name", nargs="?", default=None, help="a registered model, or 'builtin'")

    q = m.add_parser("bench", help="measure time to first token and tokens/s on this machine; cached for list")
    q.add_argument("name")
    q.add_argument("--tokens", type=int, default=64, help="tokens to generate (8 to 1024, default 64)")
    q.add_argument("--json", action="store_true", help="print the measurement as JSON")


def cmd_model(args: argparse.Namespace) -> int:
    from deepdive.cli import UsageError

    try:
        return _ACTIONS[args.model_command](args)
    except ModelError as exc:
        raise UsageError(str(exc)) from None


def _console():  # noqa: ANN202
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)  # one line stays one line


# -- list ----------------------------------------------------------------------------------------


def _speed_text(row: Any) -> str:
    speed = row.speed
    if speed is None:
        return f"not measured: deepdive model bench {row.name}" if row.registered else ""
    from deepdive.models.bench import where

    return f"{speed.ttft_s:.2f} s to first token, {speed.tokens_per_s:.0f} tokens/s ({where(speed)})"


def _where(row: Any) -> str:
    from deepdive.models.paths import shorten

    return f"{row.endpoint} ({row.model})" if row.kind == "ollama" else shorten(row.path or "")


def _table(rows: list[Any]) -> list[str]:
    from deepdive.models.service import human_size

    cells = [(("* " if r.is_default else "  ") + r.name, r.kind, human_size(r.size_bytes), _speed_text(r), _where(r))
             for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for row, c in zip(rows, cells):
        line = "  ".join(v.ljust(w) for v, w in zip(c[:4], widths)) + "  " + c[4]
        lines.append(line.rstrip() + (f"\n      ! {row.problem}" if row.problem else ""))
    return lines


def _list(args: argparse.Namespace) -> int:
    from deepdive.models.paths import shorten
    from deepdive.models.service import list_models
    from deepdive.protocol import to_wire

    result = list_models(discover=not args.no_discover)
    if args.json:
        print(json.dumps(to_wire(result)))
        return 0
    registered = [m for m in result.models if m.registered]
    found = [m for m in result.models if not m.registered]
    if registered:
        print("\n".join(_table(registered)))
    else:
        print("no code model yet: the builtin generator answers. Get one with\n"
              "  deepdive model pull qwen2.5-coder-0.5b   (491 MB; or qwen2.5-coder-1.5b, 1.1 GB)\n"
              "  deepdive model add PATH                  (a .gguf file or a Hugging Face model folder)")
    if found:
        print("\nfound, not added (deepdive model add PATH|ollama:NAME):")
        print("\n".join(_table(found)))
    default = result.default or "none (the builtin generator)"
    print(f"\ndefault: {default}; registry: {shorten(result.registry)}")
    if result.ollama and not args.no_discover:
        print(f"ollama: {result.ollama}")
    return 0


# -- add / pull ----------------------------------------------------------------------------------


def _ollama_entry(target: str, endpoint: Optional[str]) -> Any:
    from deepdive.models.ollama import detect

    wanted = target[len("ollama:"):]
    found = detect(endpoint)
    if not found.running:
        raise ModelError(found.reason or f"no Ollama at {found.endpoint}")
    for entry in found.models:
        if entry.model == wanted:
            return entry
    names = ", ".join(e.model or "" for e in found.models) or "none"
    raise ModelError(f"Ollama at {found.endpoint} has no model {wanted!r} (it has: {names}); "
                     f"`ollama pull {wanted}` first")


def _register(entry: Any, args: argparse.Namespace) -> None:
    """Add ``entry`` (replacing an entry of the same file), measure it unless --no-bench, report."""
    from deepdive.models.registry import Registry, editing
    from deepdive.models.service import human_size

    console = _console()
    before = Registry.load()
    taken = before.models.get(entry.name)
    if taken is not None and taken.location != entry.location:  # said before minutes of measuring, not after
        raise ModelError(f"a model named {entry.name!r} exists: choose another --name, or remove it first")
    if not args.no_bench:
        entry.speed = _measure(entry, 64, console)
    with editing() as reg:
        same = reg.find(path=entry.path) if entry.path else reg.find(endpoint=entry.endpoint, model=entry.model)
        if same is not None and same.name == entry.name:
            entry.speed = entry.speed or same.speed
        reg.add(entry, replace=same is not None and same.name == entry.name)
        make_default = args.default or reg.default is None
        if make_default:
            reg.set_default(entry.name)
    console.print(f"added {entry.name} ({entry.kind}, {human_size(entry.size_bytes)})"
                  + (": now the default (deepdive generate and the editor use it)" if make_default else
                     f"; make it the default with `deepdive model default {entry.name}`"), markup=False)


def _measure(entry: Any, tokens: int, console: Any, strict: bool = False) -> Any:
    """The entry's speed; None (and a note) when it cannot run here yet, e.g. its runtime is missing
    (``strict``: ModelError instead)."""
    from deepdive.codegen.backends.worker_client import ModelWorker
    from deepdive.models.bench import describe, measure

    worker = ModelWorker()
    try:
        with console.status(f"measuring {entry.name} on this machine ({tokens} tokens; --no-bench skips this)"):
            speed = measure(entry, worker=worker, max_new_tokens=tokens)
    except ModelError as exc:
        if strict:
            raise
        console.print(f"speed not measured: {exc}", markup=False)
        return None
    finally:
        worker.shutdown()
    console.print(f"{entry.name}: {describe(speed)}", markup=False)
    return speed


def _add(args: argparse.Namespace) -> int:
    from deepdive.models.local import entry_for_path

    if args.target.startswith("ollama:"):
        entry = _ollama_entry(args.target, args.endpoint)
        if args.name:
            entry.name = args.name
    else:
        entry = entry_for_path(args.target, name=args.name, sha256=args.sha256)
    _register(entry, args)
    return 0


def _pull(args: argparse.Namespace) -> int:
    from deepdive.models.catalog import parse_target
    from deepdive.models.local import entry_for_path
    from deepdive.models.pull import Interrupted, pull

    pin = parse_target(args.target, revision=args.revision, sha256=args.sha256, name=args.name)
    console = _console()
    try:
        path = pull(pin)
    except Interrupted as exc:
        console.print(str(exc), markup=False)
        return 130
    entry = entry_for_path(str(path), name=pin.name, sha256=None)
    entry.sha256 = pin.sha256
    entry.source = f"hf:{pin.repo}/{pin.filename}@{pin.revision}"
    _register(entry, args)
    return 0


# -- remove / default / bench --------------------------------------------------------------------


def _remove(args: argparse.Namespace) -> int:
    from deepdive.models.paths import models_dir
    from deepdive.models.registry import editing

    with editing() as reg:
        entry = reg.get(args.name)
        if args.delete_file:
            inside = entry.path and os.path.realpath(entry.path).startswith(os.path.realpath(models_dir()) + os.sep)
            if not inside:
                raise ModelError(f"{entry.name}'s file {entry.path or entry.location} is not in Deepdive's cache: "
                                 "delete it yourself, or remove without --delete-file")
        was_default = reg.default == entry.name
        reg.remove(args.name)
    if args.delete_file and entry.path:
        for path in (entry.path, entry.path + ".sha256"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    _console().print(f"removed {entry.name}" + (" (its file was deleted)" if args.delete_file else "")
                     + ("; there is no default model now: the builtin generator answers" if was_default else ""),
                     markup=False)
    return 0


def _default(args: argparse.Namespace) -> int:
    from deepdive.models.registry import Registry, editing

    if args.name is None:
        print(Registry.load().default or "builtin")
        return 0
    with editing() as reg:
        reg.set_default(None if args.name == "builtin" else args.name)
    _console().print(f"default: {args.name}" + (" (no model)" if args.name == "builtin" else ""), markup=False)
    return 0


def _bench(args: argparse.Namespace) -> int:
    import dataclasses

    from deepdive.models.registry import Registry, editing

    if not 8 <= args.tokens <= 1024:
        raise ModelError("--tokens must be from 8 to 1024")
    entry = Registry.load().get(args.name)
    problem = entry.problem()
    if problem:
        raise ModelError(f"{entry.name}: {problem}")
    console = _console()
    speed = _measure(entry, args.tokens, console, strict=True)
    with editing() as reg:
        reg.get(args.name).speed = speed
    if args.json:
        print(json.dumps(dataclasses.asdict(speed)))
    return 0


_ACTIONS = {"list": _list, "pull": _pull, "add": _add, "remove": _remove, "default": _default, "bench": _bench}
