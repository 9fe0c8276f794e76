"""`deepdive ckpt ls | verify | gc | export DIR ...`: the checkpoint store from the command line.

``ls``, ``verify`` and ``gc`` read manifests and chunks only (numpy, zstandard, xxhash: no torch);
``export`` loads the tensors with torch. Bad input exits 2 with one line saying what to do; a
corrupt checkpoint makes ``verify`` exit 1 after naming every corrupt tensor and every manifest that
fails its checksum (manifests written before checksums are named as unchecked, and pass).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional


def add_parser(sub: Any) -> None:
    """Register ``ckpt`` and its four subcommands on the top-level subparsers ``sub``."""
    p = sub.add_parser("ckpt", help="list, verify, garbage-collect and export checkpoints of a store",
                       description="Work on a checkpoint store (deepdive.engine.ckpt.Store; the checkpoint_dir of a "
                                   "run): deduplicated, compressed, atomic checkpoints.")
    ck = p.add_subparsers(dest="ckpt_command", metavar="ACTION", parser_class=type(p))
    ck.required = True

    q = ck.add_parser("ls", help="list the checkpoints: step, time, size, new bytes, tensors, metrics, kept/best")
    q.add_argument("dir", help="the store's directory")
    q.add_argument("--keep-last", type=int, default=None, metavar="K", help="mark what gc --keep-last K would keep "
                                                                             "(default: the policy the last gc applied)")
    q.add_argument("--keep-best", default=None, metavar="METRIC[:max|min]", help="mark the best by METRIC")
    q.add_argument("--json", action="store_true", help="machine-readable output")

    q = ck.add_parser("verify", help="check each manifest's checksum, decode every chunk and check its hash; name "
                                     "every bad manifest and corrupt tensor (exit 1)")
    q.add_argument("dir", help="the store's directory")
    q.add_argument("name", nargs="?", default=None, help="one checkpoint (a step, a name or 'latest'; default: all)")
    q.add_argument("--json", action="store_true", help="machine-readable output")

    q = ck.add_parser("gc", help="keep the last K checkpoints plus the best by a metric; delete the rest and "
                                 "unreferenced chunks")
    q.add_argument("dir", help="the store's directory")
    q.add_argument("--keep-last", type=int, required=True, metavar="K", help="keep the K most recently saved checkpoints "
                                                                            "(K >= 1)")
    q.add_argument("--keep-best", default=None, metavar="METRIC[:max|min]",
                   help="also keep the best checkpoint by METRIC (default direction: min for loss/error-like names, "
                        "else max)")
    q.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    q.add_argument("--json", action="store_true", help="machine-readable output")

    q = ck.add_parser("export", help="write a checkpoint's tensors as a plain state_dict (.pt or .safetensors)")
    q.add_argument("dir", help="the store's directory")
    q.add_argument("name", help="the checkpoint: a step, a name (step-0000001200) or 'latest' (the most "
                                "recently saved)")
    q.add_argument("--out", required=True, metavar="FILE", help="FILE.pt (torch.load(weights_only=True)) or "
                                                                "FILE.safetensors")
    q.add_argument("--key", default=None, help="export only this part of the state, e.g. 'model' "
                                               "(names then fit model.load_state_dict)")
    q.add_argument("--force", action="store_true", help="overwrite FILE")
    q.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_ckpt(args: argparse.Namespace) -> int:
    """Run one ``deepdive ckpt`` action; the exit status."""
    from deepdive.cli import UsageError
    from deepdive.engine.ckpt import CheckpointError, Store

    try:
        store = Store(args.dir, create=False)
        return _ACTIONS[args.ckpt_command](store, args)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:     # a bad --keep-best / --keep-last
        raise UsageError(str(exc).replace("keep_best", "--keep-best")) from None


# ------------------------------------------------------------------------------------------------


def _ls(store: Any, args: argparse.Namespace) -> int:
    from deepdive.engine.ckpt.store import parse_best, select

    checkpoints = store.list()
    newest = [name for name, _ in store.newest_first()]
    latest = newest[0] if newest else None
    hidden = sorted(set(newest) - {c.name for c in checkpoints})     # damaged manifests: verify names why
    policy = store.retention() or {}
    keep_last = args.keep_last if args.keep_last is not None else policy.get("keep_last")
    keep_best = parse_best(args.keep_best) if args.keep_best else parse_best(policy.get("keep_best"))
    if keep_last is not None and keep_last < 0:
        raise ValueError(f"--keep-last must be >= 0, not {keep_last}")
    rows = [{"name": c.name, "step": c.step, "step_time": c.time, "time": _when(c.time), "stored_bytes": c.stored_bytes,
             "new_bytes": c.new_bytes, "raw_bytes": c.raw_bytes, "tensors": c.tensors, "metrics": c.metrics,
             "lossy": c.lossy, "save_seconds": round(c.seconds, 3)} for c in checkpoints]
    manifests = [{"name": c.name, "step": c.step, "time": c.time, "metrics": c.metrics} for c in checkpoints]
    kept, best = (select(manifests, keep_last, keep_best) if keep_last is not None or keep_best
                  else (set(newest[:1]), []))
    for row in rows:
        row["kept"] = row["name"] in kept
        row["best"] = row["name"] in best
        row["latest"] = row["name"] == latest
    total = _disk_usage(store)
    if args.json:
        print(json.dumps({"store": str(store.root), "checkpoints": rows, "disk_bytes": total, "damaged": hidden,
                          "policy": {"keep_last": keep_last, "keep_best": list(keep_best) if keep_best else None}}))
        return 0
    if hidden:
        print(f"not listed: {', '.join(hidden)}: unreadable or damaged manifest(s); `deepdive ckpt verify {store.root}` "
              "says why", file=sys.stderr)
    if not rows:
        print(f"{store.root}: no {'intact ' if hidden else ''}checkpoints{'' if hidden else ' yet'}")
        return 0
    table = [("step", "time", "size", "new", "tensors", "metrics", "")]
    for row in rows:
        marks = ",".join(m for m, on in (("kept", row["kept"] and keep_last is not None), ("best", row["best"]),
                                         ("latest", row["latest"]), (f"lossy:{row['lossy']}", bool(row["lossy"])))
                         if on)
        metrics = " ".join(f"{k}={v:.4g}" for k, v in row["metrics"].items()) or "-"
        table.append((str(row["step"]), row["time"], _mb(row["stored_bytes"]), _mb(row["new_bytes"]),
                      str(row["tensors"]), metrics, marks))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    right = {0, 2, 3, 4}
    for r in table:
        print("  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip())
    raw = sum(r["raw_bytes"] for r in rows)
    ratio = f" ({raw / total:.2f}x smaller than the {_mb(raw)} of tensors)" if total else ""
    policy_text = ""
    if keep_last is not None:
        policy_text = f"; kept = last {keep_last}" + (f" + best {keep_best[2]} by {keep_best[0]} ({keep_best[1]})"
                                                     if keep_best else "")
    print(f"{len(rows)} checkpoints, {_mb(total)} on disk{ratio}{policy_text}")
    return 0


def _verify(store: Any, args: argparse.Namespace) -> int:
    """Check manifests (checksum, name) and every chunk (decoded, hash compared); exit 1 on any problem.

    Manifests written before checksums existed pass, and are named as unchecked."""
    names = [store.resolve(args.name)] if args.name else [n for n, _ in reversed(store.newest_first())]
    with _progress("verify", disable=args.json) as update:
        problems = store.verify(args.name, progress=update)
    unchecked = store.unchecked_manifests(args.name)
    if args.json:
        print(json.dumps({"store": str(store.root), "checkpoints": sorted(names), "ok": not problems,
                          "unchecked_manifests": unchecked,
                          "problems": [{"checkpoint": p.checkpoint, "tensor": p.tensor, "chunk": p.chunk,
                                        "reason": p.reason} for p in problems]}))
        return 1 if problems else 0
    for name in unchecked:
        print(f"unchecked: {name}: manifest written before manifests carried a checksum (its chunks are checked)")
    if problems:
        for problem in problems:
            print(f"corrupt: {problem}")
        bad = sorted({p.checkpoint for p in problems})
        manifests = sum(1 for p in problems if not p.tensor)
        what = f"{len(problems) - manifests} corrupt tensor(s)" + (f" and {manifests} bad manifest(s)" if manifests else "")
        print(f"{what} in {len(bad)} of {len(names)} checkpoint(s); the others verify. "
              f"Load an intact checkpoint, or delete the damaged ones and run `deepdive ckpt gc`", file=sys.stderr)
    else:
        checked = "every manifest matches its checksum, " if not unchecked else "the checksummed manifests match, "
        print(f"ok: {len(names)} checkpoint(s) in {store.root}: {checked}every chunk decodes and matches its hash")
    return 1 if problems else 0


def _gc(store: Any, args: argparse.Namespace) -> int:
    if args.keep_last < 1:
        raise ValueError(f"--keep-last must be at least 1 (got {args.keep_last}): gc always keeps the latest checkpoint")
    result = store.gc(keep_last=args.keep_last, keep_best=args.keep_best, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"store": str(store.root), "kept": result.kept, "best": result.best, "deleted": result.deleted,
                          "deleted_chunks": result.deleted_chunks, "freed_bytes": result.freed_bytes,
                          "temp_files": result.temp_files, "unreadable": result.unreadable, "dry_run": result.dry_run}))
        return 0
    verb = "would delete" if result.dry_run else "deleted"
    print(f"kept {len(result.kept)}: {', '.join(result.kept) or '-'}" + (f" (best: {', '.join(result.best)})"
                                                                          if result.best else ""))
    print(f"{verb} {len(result.deleted)} checkpoint(s), {result.deleted_chunks} chunk(s)"
          f"{f' and {result.temp_files} temp file(s) of interrupted saves' if result.temp_files else ''}: "
          f"{_mb(result.freed_bytes)} {'would be ' if result.dry_run else ''}freed")
    if result.unreadable:
        print(f"unreadable or damaged manifests kept, so no chunk was deleted: {', '.join(result.unreadable)} "
              f"(`deepdive ckpt verify {store.root}` says why; delete them and run gc again)", file=sys.stderr)
    return 0


def _export(store: Any, args: argparse.Namespace) -> int:
    from pathlib import Path

    from deepdive.engine.ckpt import CheckpointError

    out = Path(args.out)
    if out.suffix.lower() not in (".pt", ".pth", ".bin", ".safetensors"):
        raise CheckpointError(f"cannot tell the export format from {out.name!r}: name it *.pt or *.safetensors")
    if out.exists() and not args.force:
        raise CheckpointError(f"{out} exists: pass --force to overwrite it")
    if out.suffix.lower() == ".safetensors":
        try:
            import safetensors  # noqa: F401
        except ImportError:
            raise CheckpointError("exporting .safetensors needs the safetensors package: pip install safetensors") from None
    name = store.resolve(args.name)
    with _progress(f"export {name}", disable=args.json) as update:
        result = store.export(name, out, key=args.key, progress=update)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"wrote {result['path']}: {result['tensors']} tensors, {_mb(result['bytes'])} ({result['format']}) "
              f"from {result['checkpoint']}")
    return 0


_ACTIONS = {"ls": _ls, "verify": _verify, "gc": _gc, "export": _export}


@contextmanager
def _progress(label: str, disable: bool) -> Iterator[Any]:
    """A rich progress bar over bytes on stderr; yields ``update(done, total)``."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

    console = Console(stderr=True)
    progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeElapsedColumn(), console=console, disable=disable or not console.is_terminal,
                        transient=True)
    task = progress.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        yield update


def _disk_usage(store: Any) -> int:
    from deepdive.engine.ckpt.store import _size

    return sum(_size(path) for path in itertools.chain((store.root / "chunks").glob("*/*"),
                                                       (store.root / "manifests").glob("*.json")))


def _mb(n: Optional[int]) -> str:
    if n is None:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n} B"


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))
