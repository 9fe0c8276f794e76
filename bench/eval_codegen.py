"""The measured pass rate of code generation: every prompt of an evaluation set, judged against what it states.

The set (``bench/data/codegen_eval.jsonl``) holds prompts with their *truth*: the properties each
prompt states, written by hand in the Spec's vocabulary (:mod:`deepdive.codegen.spec`), never by the
parser — so the set measures the parser too. For each prompt and arm the pipeline writes a program,
then a separate verification judges that program against the truth (not against what the parser
read): ``verify(code, spec=Spec(prompt, stated=truth))``.

Arms:

- ``builtin``: the offline template generator (no model).
- ``model``: a local GGUF model writes the whole program alone: no builtin frame, no repair rounds.
- ``frame``: the model with the builtin's closest program as its frame and the repair loop (the
  pipeline's default for a model backend).

What each prompt counts as:

- *pass*: the program's truth verification is verified: every check passed, every truth property
  was checked and met.
- *false-verified*: the pipeline said "verified" but the truth judgement did not pass.
- *silent misreading* (builtin arm): a program was returned, it does not pass the truth, and the
  result named nothing as not understood, as a gap, or as not checked.

The reading itself is measured too: ``parser_exact`` is the share of prompts whose reading (the
result's ``understood_as``) states every truth property as the prompt does, and
``parser_silent_misreads`` counts prompts where a truth property was not read, or read otherwise,
while the result named no word as not understood.

Output: one JSON line per measurement on stdout and in ``--out`` (written whole, atomically):
``{"bench": "eval_codegen", "metric", "value", "unit", "arm", "model", "subset"}``; one line per
prompt × arm × model appended to ``--detail`` as it finishes (``--resume`` skips those already
there, so a long run continues after a cut; without it a key is run again and its latest line wins).
Progress goes to stderr.

Usage::

    python bench/eval_codegen.py --arms builtin
    python bench/eval_codegen.py --arms model,frame --models 0.5b --limit 5 --threads 1
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import attrs

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.models.testdata: where the test models are cached

from deepdive.codegen.backends import Backend, BackendError, Cancelled  # noqa: E402
from deepdive.codegen.spec import Spec, Stated  # noqa: E402
from deepdive.codegen.generation import GenerateParams, GenerateResult  # noqa: E402

BENCH = "eval_codegen"
SET_PATH = ROOT / "bench" / "data" / "codegen_eval.jsonl"
OUT_PATH = ROOT / "bench" / "results" / "eval_codegen.jsonl"
DETAIL_PATH = ROOT / "bench" / "results" / "eval_codegen_detail.jsonl"
ARMS = ("builtin", "model", "frame")
#: The pipeline's keyword arguments per arm (the builtin arm takes none).
ARM_KWARGS: dict[str, dict[str, Any]] = {"builtin": {}, "model": {"frame": False, "repair_rounds": 0},
                                         "frame": {"frame": True, "repair_rounds": None}}
#: Short names of the test models (tests/models/testdata.py).
MODEL_KEYS = {"0.5b": "qwen2.5-coder-0.5b", "1.5b": "qwen2.5-coder-1.5b"}
NOT_CHECKED = "not_checked"
#: The detail record's format; a line of another format is not reused by --resume.
RECORD_VERSION = 2


class EvalError(Exception):
    """A problem with the set or the options: one line that says what to do."""


# ------------------------------------------------------------------------------------------------
# The set
# ------------------------------------------------------------------------------------------------


def load_set(path: Path = SET_PATH) -> list[dict[str, Any]]:
    """The evaluation set, one entry per line; EvalError names the line of a malformed one."""
    entries = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalError(f"cannot read the evaluation set {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            spec_of(entry)
        except (ValueError, KeyError, TypeError) as exc:
            raise EvalError(f"{path}:{number}: not an evaluation entry ({exc}); see the module docstring") from None
        entries.append(entry)
    return entries


def spec_of(entry: dict[str, Any]) -> Spec:
    """The truth of ``entry`` as a Spec: what the prompt states, and nothing left not understood."""
    stated = [Stated(t["name"], t["value"], t.get("text", "")) for t in entry["truth"]]
    return Spec(prompt=entry["prompt"], language=entry.get("lang", "en"), stated=stated)


def entry_hash(entry: dict[str, Any]) -> str:
    """A digest of the prompt, its truth and the record format: an older detail line is not reused."""
    data = json.dumps({"prompt": entry["prompt"], "truth": entry["truth"], "record": RECORD_VERSION}, sort_keys=True,
                      ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# Judging
# ------------------------------------------------------------------------------------------------


@attrs.define
class Judgement:
    """A program judged against a prompt's truth."""

    passed: bool
    properties: list[dict[str, Any]]
    message: Optional[str]
    seconds: float = 0.0


def judge(entry: dict[str, Any], code: str, intent: Optional[dict] = None, *, timeout_s: float = 120.0) -> Judgement:
    """``code`` verified against ``entry``'s truth (a fresh sandboxed verification, not the pipeline's).

    ``intent`` (the result's, when it has one) only lets the program read the same input files the
    pipeline's verification let it read; what is checked is the truth alone.
    """
    from deepdive.codegen.intent import Intent
    from deepdive.codegen.verify import verify

    spec = spec_of(entry)
    if not code.strip():
        return Judgement(False, [_unchecked(s, "no program") for s in spec.stated], "no program")
    frame = Intent.from_json(intent) if intent else None
    outcome = verify(code, frame, spec=spec, timeout_s=timeout_s)
    return Judgement(outcome.verified, [attrs.asdict(p) for p in outcome.properties], outcome.message, outcome.seconds)


def _unchecked(stated: Stated, why: str) -> dict[str, Any]:
    return {"name": stated.name, "expected": stated.value, "status": NOT_CHECKED, "detail": why, "text": stated.text,
            "label": f"{stated.name} {stated.value}"}


def misread(entry: dict[str, Any], understood: list[dict[str, Any]]) -> list[str]:
    """The truth properties the reading (the result's ``understood_as``) does not state as the prompt does.

    Layer names match across their aliases (``BatchNorm1d``/``BatchNorm2d``, ``Conv2d``/``Conv2D``),
    as the checks match them.
    """
    from deepdive.codegen.spec import same_layer

    def same(name: str, want: Any, got: Any) -> bool:
        if name in ("has_layer", "no_layer"):
            return isinstance(got, str) and same_layer(str(want), got)
        if name == "layer_count":
            return (isinstance(got, list) and len(got) == 2 and same_layer(str(want[0]), str(got[0]))
                    and got[1] == want[1])
        return bool(got == want)

    missed = []
    for t in entry["truth"]:
        if not any(s.get("name") == t["name"] and same(t["name"], t["value"], s.get("value")) for s in understood):
            missed.append(f"{t['name']} {json.dumps(t['value'], ensure_ascii=False)}")
    return missed


def counts(arm: str, result: Optional[GenerateResult], passed: bool) -> dict[str, bool]:
    """How one answer counts: ``false_verified`` and, for the builtin arm, ``silent_misreading``.

    false-verified: the pipeline said verified, the truth judgement did not pass. A silent
    misreading: the builtin returned a program that does not pass the truth while its result named
    nothing as not understood, as a gap or as not checked.
    """
    if result is None:
        return {"false_verified": False, "silent_misreading": False}
    said = bool(result.not_understood or result.gaps or any(p.status == NOT_CHECKED for p in result.properties))
    silent = arm == "builtin" and bool(result.code.strip()) and not passed and not said
    return {"false_verified": bool(result.verified and not passed), "silent_misreading": silent}


# ------------------------------------------------------------------------------------------------
# The model, timed
# ------------------------------------------------------------------------------------------------


class TimedBackend(Backend):
    """A model backend that records each generation's time to first chunk, chunks and tokens.

    Tokens are the worker's count of the finished generation (its ``done`` reply), else the chunks;
    ``reason`` is the worker's too ("stop", or "length" when the answer hit ``max_new_tokens``).
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "backend")
        self.generations: list[dict[str, Any]] = []

    @property
    def temperature(self) -> Optional[float]:
        """The inner backend's sampling temperature (a frame-mode repair raises it for one answer)."""
        return getattr(self.inner, "temperature", None)

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.inner.temperature = value

    def stream(self, system: str, messages: list[dict], cancel: Optional[threading.Event] = None) -> Iterator[str]:
        worker = getattr(self.inner, "worker", None)
        before = getattr(worker, "last_done", None)
        start = time.perf_counter()
        first = last = None
        chunks = 0
        pieces: list[str] = []
        inner = self.inner.stream(system, messages, cancel)
        try:
            for text in inner:
                last = time.perf_counter()
                first = first if first is not None else last
                chunks += 1
                pieces.append(text)
                yield text
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()
            done = getattr(worker, "last_done", None)
            done = done if done and done is not before else {}
            tokens = int(done.get("tokens") or chunks)
            timed = first is not None and last is not None and last > first and tokens > 1
            rate = (tokens - 1) / (last - first) if timed else None
            self.generations.append({"ttft_s": round(first - start, 3) if first is not None else None,
                                     "seconds": round(time.perf_counter() - start, 3), "chunks": chunks,
                                     "tokens": tokens, "tokens_per_s": round(rate, 2) if rate else None,
                                     "reason": done.get("reason"), "prompt_tokens": done.get("prompt_tokens"),
                                     "reused_tokens": done.get("reused_tokens"),
                                     "answer": "".join(pieces)})  # to read a failure later

    def close(self) -> None:
        self.inner.close()


@attrs.define
class Model:
    """A GGUF model under test: its file, the worker that holds it, and the timed backend."""

    path: Path
    worker: Any
    backend: TimedBackend
    load_s: float
    prompt_warm_s: Optional[float] = None
    """Seconds the worker spent evaluating the frame prompts' shared beginnings after the load (None: not done)."""
    prompt_warm_count: Optional[int] = None

    @property
    def label(self) -> str:
        return self.path.name


def model_paths(names: Optional[list[str]]) -> list[Path]:
    """The GGUF files for ``--models`` (``0.5b``, ``1.5b`` or a path); default: the cached test models."""
    from tests.models import testdata

    if not names:
        found = [testdata.cached(testdata.SETS[key]) for key in MODEL_KEYS.values()]
        return [p for p in found if p is not None]
    paths = []
    for name in names:
        if name in MODEL_KEYS:
            pieces = testdata.SETS[MODEL_KEYS[name]]
            path = testdata.cached(pieces)
            if path is None:
                raise EvalError(f"the {name} test model is not cached: run `python -m tests.models.testdata "
                                f"{pieces.name}` (or make eval-codegen)")
        else:
            path = Path(name).expanduser()
            if not path.is_file() or path.suffix.lower() != ".gguf":
                raise EvalError(f"--models {name}: neither 0.5b, 1.5b nor a .gguf file")
        paths.append(path)
    return paths


def start_model(path: Path, threads: Optional[int]) -> Model:
    """Load ``path`` in its own model worker and warm it with a one-token answer (load time is not TTFT)."""
    from deepdive.codegen.backends import make_backend
    from deepdive.codegen.backends.worker_client import LlamaCppBackend, ModelWorker

    worker = ModelWorker(env={"DEEPDIVE_LLM_THREADS": str(threads)} if threads else None)
    inner = make_backend("llamacpp", model_path=str(path), worker=worker)
    start = time.perf_counter()
    try:
        inner.load()  # type: ignore[attr-defined]
        for _ in LlamaCppBackend(str(path), worker=worker, max_new_tokens=1).stream(
                "Reply with one word.", [{"role": "user", "content": "Hello."}]):
            pass
        load_s = round(time.perf_counter() - start, 3)
        # The worker evaluates the frame prompts' shared beginnings after a load (the editor's model is
        # loaded long before its first request): wait for that before the first prompt is timed.
        deadline = time.monotonic() + 900
        while not worker.last_warm and time.monotonic() < deadline:
            time.sleep(0.2)
    except BaseException:
        worker.shutdown()
        raise
    warm = worker.last_warm or {}
    return Model(path=path, worker=worker, backend=TimedBackend(inner), load_s=load_s,
                 prompt_warm_s=warm.get("seconds"), prompt_warm_count=warm.get("count"))


# ------------------------------------------------------------------------------------------------
# One prompt
# ------------------------------------------------------------------------------------------------


def pipeline_kwargs(arm: str) -> dict[str, Any]:
    """The pipeline arguments of ``arm``; EvalError when this pipeline cannot run it as defined."""
    from deepdive.codegen.pipeline import generate

    wanted = ARM_KWARGS[arm]
    accepted = inspect.signature(generate).parameters
    missing = [k for k in wanted if k not in accepted]
    if not missing:
        return dict(wanted)
    if arm == "frame":
        return {}  # frame and repair are what a pipeline without these arguments always does
    raise EvalError(f"the pipeline's generate() has no {', '.join(missing)} argument: the {arm} arm (a model alone, "
                    "no frame, no repair) cannot run; run the builtin and frame arms")


def run_one(entry: dict[str, Any], arm: str, model: Optional[Model] = None, *,
            verify_timeout_s: float = 120.0) -> dict[str, Any]:
    """Generate for ``entry`` with ``arm``, judge the program against the truth: one detail record."""
    from deepdive.codegen.pipeline import generate

    kwargs = pipeline_kwargs(arm)
    if arm == "builtin":
        params, backend = GenerateParams(prompt=entry["prompt"], backend="builtin", verify=True), None
    else:
        assert model is not None, "a model arm needs a model"
        params = GenerateParams(prompt=entry["prompt"], backend="llamacpp", model_path=str(model.path), verify=True)
        backend = model.backend
        backend.generations = []
    start = time.perf_counter()
    result: Optional[GenerateResult] = None
    error = None
    try:
        result = generate(params, backend=backend, verify_timeout_s=verify_timeout_s, **kwargs)
    except (BackendError, Cancelled, ValueError) as exc:
        error = " ".join(str(exc).split()) or type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - a pipeline bug fails this prompt, not the hours-long run
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        print(f"{entry['id']} ({arm}): the pipeline raised {error}", file=sys.stderr, flush=True)
    seconds = round(time.perf_counter() - start, 3)
    code = result.code if result is not None else ""
    understood = [{k: s[k] for k in ("name", "value")} for s in (result.understood_as or {}).get("stated", [])] \
        if result is not None else []
    missed = misread(entry, understood)
    truth = judge(entry, code, result.intent if result is not None else None, timeout_s=verify_timeout_s)
    return {
        "id": entry["id"], "arm": arm, "model": model.label if model is not None else None, "hash": entry_hash(entry),
        "group": entry["group"], "lang": entry["lang"], "framework": entry["framework"],
        "pass": truth.passed, "verified": bool(result and result.verified), **counts(arm, result, truth.passed),
        "program": bool(code.strip()),
        "failing": [{k: p[k] for k in ("label", "status", "detail")} for p in truth.properties if p["status"] != "met"],
        "truth_message": truth.message, "seconds": seconds, "judge_s": truth.seconds,
        "rounds": result.rounds if result is not None else 0,
        "answered_by": result.backend if result is not None else None,
        "message": error or (result.message if result is not None else None),
        "not_understood": list(result.not_understood) if result is not None else [],
        "gaps": list(result.gaps) if result is not None else [],
        "understood_as": understood, "misread": missed,
        "silent_misread": bool(result is not None and missed and not result.not_understood),
        "generations": list(backend.generations) if backend is not None else [],
        "checks": [{"name": c.name, "ok": c.ok, "detail": (c.detail or "")[:400]} for c in result.checks] if result else [],
        "code": code,  # the program as answered, to read a failure later
    }


# ------------------------------------------------------------------------------------------------
# Summaries
# ------------------------------------------------------------------------------------------------


def _median(values: list[float]) -> Optional[float]:
    return round(statistics.median(values), 3) if values else None


def summarise(records: list[dict[str, Any]], arm: str, model: Optional[str]) -> list[dict[str, Any]]:
    """The bench lines of one arm and model from its detail records."""
    mine = [r for r in records if r["arm"] == arm and r["model"] == model]
    if not mine:
        return []
    out: list[dict[str, Any]] = []

    def line(metric: str, value: Any, unit: str, subset: str = "all") -> None:
        out.append({"bench": BENCH, "metric": metric, "value": value, "unit": unit, "arm": arm, "model": model,
                    "subset": subset})

    def rate(rs: list[dict[str, Any]]) -> float:
        return round(100.0 * sum(r["pass"] for r in rs) / len(rs), 1)

    line("n", len(mine), "prompts")
    line("pass_rate", rate(mine), "%")
    for key in ("group", "lang"):
        for value in sorted({r[key] for r in mine}):
            subset = [r for r in mine if r[key] == value]
            line("pass_rate", rate(subset), "%", f"{key}:{value}")
            line("n", len(subset), "prompts", f"{key}:{value}")
    line("false_verified", sum(r["false_verified"] for r in mine), "count")
    if arm == "builtin":
        line("silent_misreadings", sum(r["silent_misreading"] for r in mine), "count")
        line("programs", sum(r["program"] for r in mine), "count")
    line("parser_exact", round(100.0 * sum(not r["misread"] for r in mine) / len(mine), 1),
         "% (the reading states every truth property as the prompt does)")
    line("parser_silent_misreads", sum(r["silent_misread"] for r in mine),
         "count (a truth property not read, or read otherwise, and nothing said not understood)")
    seconds = [r["seconds"] for r in mine]
    line("s_per_prompt", _median(seconds), "s (median)")
    line("s_per_prompt_mean", round(statistics.fmean(seconds), 3), "s (mean)")
    line("s_per_program", _median([r["seconds"] for r in mine if r["program"]]), "s (median, answers with a program)")
    line("verified_s", _median([r["seconds"] for r in mine if r["pass"]]), "s (median, prompts that pass)")
    generations = [g for r in mine for g in r.get("generations", [])]
    if arm != "builtin":
        by_builtin = [r for r in mine if answered_by_builtin(r)]
        wrote = [r for r in mine if not answered_by_builtin(r)]
        line("builtin_answers", len(by_builtin),
             "prompts the builtin's own program answered, verified (frame mode: the model was not asked)")
        if by_builtin and wrote:
            line("pass_rate", rate(wrote), "%", "model asked")
            line("n", len(wrote), "prompts", "model asked")
        line("ttft_s", _median([g["ttft_s"] for g in generations if g["ttft_s"] is not None]), "s (median)")
        firsts = [r["generations"][0]["ttft_s"] for r in mine if r.get("generations")]
        line("ttft_first_s", _median([t for t in firsts if t is not None]),
             "s (median, each prompt's first generation: no repair round's cached conversation)")
        rates = [g["tokens_per_s"] for g in generations if g["tokens_per_s"]]
        line("tokens_per_s", _median(rates), "tokens/s (median)")
        line("rounds_mean", round(statistics.fmean(r["rounds"] for r in mine), 2), "repair rounds (mean)")
        line("length_stops", sum(g.get("reason") == "length" for g in generations),
             f"of {len(generations)} generations stopped at max_new_tokens")
    return out


def answered_by_builtin(record: dict[str, Any]) -> bool:
    """A model arm's prompt that the builtin's own program answered (the model wrote nothing)."""
    if "answered_by" in record:
        return record["answered_by"] == "builtin"
    from deepdive.codegen.pipeline import BUILTIN_COMPLETE

    checks = record.get("checks") or []
    return bool(checks) and checks[0].get("detail") == BUILTIN_COMPLETE[:400]


def read_details(path: Path) -> dict[tuple[str, str, Optional[str]], dict[str, Any]]:
    """The latest detail record per (id, arm, model); a line cut off by an interruption is skipped."""
    found: dict[tuple[str, str, Optional[str]], dict[str, Any]] = {}
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
            found[(r["id"], r["arm"], r["model"])] = r
        except (ValueError, KeyError, TypeError):
            continue
    return found


def write_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` whole: a temporary file beside it, fsynced, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def select(entries: list[dict[str, Any]], ids: Optional[list[str]], limit: Optional[int]) -> list[dict[str, Any]]:
    if ids:
        known = {e["id"] for e in entries}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise EvalError(f"--ids: no entry {unknown[0]!r} in the set")
        entries = [e for e in entries if e["id"] in ids]
    return entries[:limit] if limit else entries


def progress(done: int, total: int, record: dict[str, Any]) -> None:
    mark = "pass" if record["pass"] else "FAIL"
    extra = " FALSE-VERIFIED" if record["false_verified"] else ""
    extra += " SILENT-MISREADING" if record["silent_misreading"] else ""
    if not record["program"]:
        extra += " (no program)"
    print(f"[{done}/{total}] {record['arm']:<7} {record['model'] or '-'} {record['id']}: {mark}{extra} "
          f"{record['seconds']:.1f} s", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    entries = select(load_set(Path(args.set)), args.ids, args.limit)
    for arm in args.arms:
        pipeline_kwargs(arm)  # say now, not after an hour, that an arm cannot run
    model_arms = [a for a in args.arms if a != "builtin"]
    paths = list(dict.fromkeys(model_paths(args.models))) if model_arms else []
    if model_arms and not paths:
        raise EvalError("no test model is cached: run `python -m tests.models.testdata` (or make eval-codegen)")
    plan = [("builtin", None)] if "builtin" in args.arms else []
    plan += [(arm, path) for path in paths for arm in model_arms]
    detail_path = Path(args.detail)
    if args.report:
        report(entries, plan, detail_path, Path(args.out), {}, args.selection)
        return 0
    previous = read_details(detail_path) if args.resume else {}
    counter = [0, len(plan) * len(entries)]
    loads: dict[str, Any] = {}
    interrupted = False
    detail_path.parent.mkdir(parents=True, exist_ok=True)
    with open(detail_path, "a", encoding="utf-8") as detail:
        for path in [None, *paths]:
            steps = [arm for arm, p in plan if p == path]
            if steps and not run_steps(entries, steps, path, args, previous=previous, detail=detail,
                                       counter=counter, loads=loads):
                interrupted = True
                break
    report(entries, plan, detail_path, Path(args.out), loads, args.selection)
    return 130 if interrupted else 0


def run_steps(entries: list[dict[str, Any]], arms: list[str], path: Optional[Path], args: argparse.Namespace, *,
              previous: dict, detail: Any, counter: list[int], loads: dict[str, Any]) -> bool:
    """Every entry with each of ``arms`` on the model ``path`` (None: the builtin); False when interrupted.

    The model is loaded on its first prompt that is not done yet, and its worker shut down at the end.
    """
    model: Optional[Model] = None
    label = path.name if path is not None else None
    try:
        for arm in arms:
            for entry in entries:
                counter[0] += 1
                old = previous.get((entry["id"], arm, label))
                if old is not None and old.get("hash") == entry_hash(entry):
                    print(f"[{counter[0]}/{counter[1]}] {arm:<7} {label or '-'} {entry['id']}: done before (--resume)",
                          file=sys.stderr, flush=True)
                    continue
                if path is not None and model is None:
                    model = _load(path, args.threads)
                    loads[model.label] = {"load_s": model.load_s, "prompt_warm_s": model.prompt_warm_s,
                                          "prompt_warm_count": model.prompt_warm_count}
                record = run_one(entry, arm, model, verify_timeout_s=args.verify_timeout)
                detail.write(json.dumps(record, ensure_ascii=False) + "\n")
                detail.flush()
                os.fsync(detail.fileno())
                progress(counter[0], counter[1], record)
    except KeyboardInterrupt:
        print("interrupted: what finished is in the detail file; continue with --resume", file=sys.stderr)
        return False
    finally:
        if model is not None:
            model.worker.shutdown()
    return True


def _load(path: Path, threads: Optional[int]) -> Model:
    print(f"loading {path.name} ...", file=sys.stderr, flush=True)
    try:
        return start_model(path, threads)
    except BackendError as exc:
        raise EvalError(f"cannot run {path.name}: {' '.join(str(exc).split())}") from None


def report(entries: list[dict[str, Any]], plan: list[tuple[str, Optional[Path]]], detail_path: Path, out: Path,
           loads: dict[str, Any], selection: str = "") -> None:
    """The bench lines of the selection (this run's records and, after --resume, the earlier ones)."""
    found = read_details(detail_path)
    hashes = {e["id"]: entry_hash(e) for e in entries}
    keys = [(e["id"], arm, p.name if p is not None else None) for arm, p in plan for e in entries]
    records = [found[k] for k in keys if k in found and found[k].get("hash") == hashes[k[0]]]
    lines = []
    for arm, path in plan:
        lines += summarise(records, arm, path.name if path is not None else None)
    for label, load in loads.items():
        lines.append({"bench": BENCH, "metric": "load_s", "value": load["load_s"], "unit": "s (load and warm-up)",
                      "arm": None, "model": label, "subset": "all"})
        lines.append({"bench": BENCH, "metric": "prompt_warm_s", "value": load["prompt_warm_s"],
                      "unit": f"s (the worker evaluating {load['prompt_warm_count']} frame prompt beginnings after the "
                              "load, before the first prompt)", "arm": None, "model": label, "subset": "all"})
    if selection:
        for x in lines:
            x["selection"] = selection
    text = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)
    sys.stdout.write(text)
    sys.stdout.flush()
    write_atomic(out, text)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python bench/eval_codegen.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated: builtin, model, frame (default: all)")
    parser.add_argument("--models", default="", help="0.5b, 1.5b or GGUF paths, comma-separated (default: the cached "
                                                      "test models)")
    parser.add_argument("--ids", default="", help="only these entry ids, comma-separated")
    parser.add_argument("--limit", type=int, default=None, help="only the first N entries (after --ids)")
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp threads (DEEPDIVE_LLM_THREADS for the worker; default: the worker's choice)")
    parser.add_argument("--resume", action="store_true", help="skip prompt x arm x model already in the detail file")
    parser.add_argument("--selection", default="", help="a name for the prompts selected (--ids/--limit), written "
                                                         "into every bench line, e.g. 'every 3rd prompt'")
    parser.add_argument("--report", action="store_true", help="run nothing: the bench lines of what the detail file "
                                                             "holds for the selection")
    parser.add_argument("--set", default=str(SET_PATH), help="the evaluation set (JSON lines)")
    parser.add_argument("--out", default=str(OUT_PATH), help="the bench lines (written whole)")
    parser.add_argument("--detail", default=str(DETAIL_PATH), help="per-prompt records (appended)")
    parser.add_argument("--verify-timeout", type=float, default=120.0, help="seconds per sandboxed run")
    args = parser.parse_args(argv)
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in args.arms if a not in ARMS]
    if bad or not args.arms:
        parser.error(f"--arms: {bad[0] if bad else 'none given'!r} is not one of {', '.join(ARMS)}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.ids = [i.strip() for i in args.ids.split(",") if i.strip()]
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except EvalError as exc:
        print(f"eval_codegen: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
