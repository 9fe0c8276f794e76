"""Frames: the program around the part a model writes.

A small model writing a whole training script alone is weak (the 0.5B Qwen2.5-Coder wrote a "U-Net"
of 15 stacked conv+pool layers). Most of a training script is not the request's: imports, data
loading for known formats, the training loop with mixed precision or DDP, evaluation, the command
line and ``--smoke``. The builtin generator writes that part well and it already meets the
contract. A :class:`Frame` is the builtin's closest program used as that frame; the model writes
only what the templates cannot:

- always the model: its class(es) and ``build_model()``;
- when the request's task is not the frame's (a segmentation on a classifier's frame, a GNN, a
  policy), also ``example_batch()`` (the task's inputs and targets) and the loss
  (``compute_loss()`` in torch; the ``compile`` call inside ``build_model()`` in Keras), and
  ``load_data()`` for the task's real data. A task frame the model gives no reader keeps one that
  says so when run without ``--synthetic`` (:data:`NO_READER_NOTE`).

:func:`frame_for` picks the frame; :func:`~deepdive.codegen.frames.splice.splice` places the
model's definitions into it by name.
"""

from __future__ import annotations

import ast
import copy
import re
from typing import Optional, Sequence

import attrs

from deepdive.codegen.frames.splice import (SpliceError, assigned_name, definition_source, parse_answer, splice,
                                            top_level_names, undefined_reads, without_definitions)
from deepdive.codegen.intent import Intent
from deepdive.codegen.spec import Spec

__all__ = ["Frame", "frame_for", "SpliceError", "NO_READER_NOTE", "BUILTIN_TASKS", "installed", "absent_reads"]

#: Tasks whose example batch, loss and reader the builtin writes (its Intent tasks, and multi-label).
BUILTIN_TASKS = ("image-classification", "text-classification", "tabular-classification", "regression",
                 "autoencoder", "vae", "forecasting", "multi-label-classification")

NO_READER_NOTE = ("the model wrote no data reader for this task: the program trains with --synthetic, and "
                  "without it says that load_data() is still to be written")

_TORCH_NO_READER = '''def load_data(args):
    """This task's data reader is not written yet: --synthetic trains on example_batch()'s shapes."""
    raise DataError(f"no reader for {args.data} yet: run with --synthetic, or write load_data(args) "
                    "returning (train_set, val_set) as torch Datasets of (inputs, targets)")
'''

_KERAS_NO_READER = '''def load_data(path):
    """This task's data reader is not written yet: --smoke runs on example_batch()."""
    raise ValueError(f"no reader for {path} yet: write load_data(path) returning (train, val) the way fit() takes them")
'''

#: The frame's functions worth naming to the model (it may call them); the rest is the loop's business.
_USEFUL = ("DataError", "to_device", "split", "read_csv")


@attrs.define
class Frame:
    """A program the model's definitions go into.

    Attributes:
        source (str): the whole frame program; valid, meets the contract.
        framework (str): ``"torch"`` or ``"tensorflow"``.
        base (str): what the frame is, for the model and the result ("the builtin's CNN image
            classifier for MNIST").
        write (tuple[str, ...]): the definitions the model must write (``build_model`` always).
        optional (tuple[str, ...]): definitions the model may write to replace the frame's.
        example (str): the frame's current version of what the model writes (its model part), shown
            to the model as an example of the frame's conventions.
        keeps (list[str]): the frame's other top-level functions, as signature lines, that the
            model's code may call.
        constants (str): the frame's module-level constants, as written.
        task_changed (bool): the request's task is not the frame's: the model writes the task's
            inputs, targets and loss too.
    """

    source: str
    framework: str
    base: str
    write: tuple[str, ...]
    optional: tuple[str, ...] = ()
    example: str = ""
    keeps: list[str] = attrs.Factory(list)
    constants: str = ""
    task_changed: bool = False
    filename: str = ""
    """The builtin program's file name, which the frame's docstring names until the pipeline renames it."""
    example_title: str = ""
    """What :attr:`example` is: a reference example of the request's kind, or the frame's own model part."""
    reference: str = ""
    """The reference example's source, when there is one: a definition the model uses from it but does not
    write is taken from it (:meth:`borrowed`)."""
    reference_tasks: tuple[str, ...] = ()
    """The tasks the reference example is made for (the compact prompt describes them before the request)."""
    reference_families: tuple[str, ...] = ()
    """The families the reference example shows."""

    def splice(self, answer: str, earlier: Sequence[str] = ()) -> str:
        """The program: the frame with the answer's definitions in place.

        ``earlier`` are the model's previous answers of this request (oldest first): a repair that
        rewrites only ``build_model`` keeps the model class of the answer before it. Raises
        :class:`SpliceError` when the answer is not Python or, with the earlier ones, lacks a
        definition of :attr:`write`.
        """
        source = self.source
        borrowed = self.borrowed(answer, earlier)
        if self.no_reader(answer, earlier):
            reader = _TORCH_NO_READER if self.framework == "torch" else _KERAS_NO_READER
            source = _replace_definition(source, "load_data", reader)
        if self.framework != "torch":
            answer = widen_keras_build_model(answer)[0]
            earlier = [widen_keras_build_model(previous)[0] for previous in earlier]
        defined = set(_defined(answer))
        for previous in earlier:
            try:
                source = splice(source, previous, required=())
            except SpliceError:
                continue
            defined |= _defined(previous)
        if not _defined(answer):
            splice(source, answer, required=self.write)  # says what the answer lacks (or that it is not Python)
        if "build_model" not in defined:
            answer = answer.rstrip("\n") + "\n" + (_build_model_for(answer, self.framework, self.source) or "")
        # Only build_model is a must: the frame's example_batch and compute_loss stay where the model wrote
        # none, and a check says what does not fit. What is borrowed goes in with the answer that uses it
        # (alone it would be dropped as unused).
        return splice(source, borrowed + answer if borrowed else answer, required=("build_model",))

    @property
    def kept_names(self) -> list[str]:
        """The frame's functions the prompt names for the model to call and not rewrite (:attr:`keeps`)."""
        return [line.split()[1].split("(")[0].rstrip(":") for line in self.keeps if len(line.split()) > 1]

    def drop_broken(self, answer: str, earlier: Sequence[str] = ()) -> tuple[str, list[str]]:
        """The answer without what the frame should keep, and a line for each definition left out:

        - the frame's functions the prompt tells the model to call and not rewrite (:attr:`kept_names`:
          ``split``, ``to_device``, ``DataError``; a 0.5B model rewrites them anyway, worse);
        - a definition the model need not write (:attr:`optional`, or one of the frame's outside :attr:`write`
          and the frame's model part) that reads a name nothing in the program defines, or uses a package
          that is not installed. A small model copies
          ``example_batch(num_nodes=NUM_NODES)``'s body into ``synthetic_dataset(n)``, and the repair
          message "NameError: name 'num_nodes' is not defined" does not make it write another; the frame's
          (or the reference example's) is used instead.

        Required definitions (:attr:`write`) stay as written: the checks judge them.
        """
        written = _defined(answer)
        notes = []
        rewritten = [name for name in self.kept_names if name in written and name not in self.write]
        if rewritten:
            answer = without_definitions(answer, rewritten)
            names = ", ".join(f"{n}()" for n in rewritten)
            notes.append(f"the model rewrote {names}, which the frame keeps: the frame's {'is' if len(rewritten) == 1 else 'are'} used")
            written = _defined(answer)
        try:
            program = self.splice(answer, earlier)
        except SpliceError:
            return answer, notes
        # The frame's model part (its model class and blocks) is the model's to write, never taken back.
        loop = set(top_level_names(self.source)) - set(self.write) - set(_model_part(ast.parse(self.source)))
        replaceable = set(self.optional) | loop
        broken = {name: (names, "which nothing defines") for name, names in undefined_reads(program).items()
                  if name in written and name in replaceable}
        for name, names in absent_reads(program).items():
            if name in written and name in replaceable and name not in broken:
                broken[name] = (names, "which is not installed where the program runs")
        if not broken:
            return answer, notes
        kept = without_definitions(answer, broken)
        for name, (names, why) in sorted(broken.items()):
            if name in top_level_names(self.borrowed(kept, earlier) or "\n"):
                instead = "the reference example's is used"
            elif name == "load_data" and self.no_reader(kept, earlier):
                instead = "the program has no reader for this task's data"
            elif name in top_level_names(self.source):
                instead = "the frame's is used"
            else:
                instead = "nothing calls it"
            notes.append(f"the model's {name}() uses {', '.join(sorted(names))}, {why}: left out, {instead}")
        return kept, notes

    def borrowed(self, answer: str, earlier: Sequence[str] = ()) -> str:
        """The reference example's definitions the answers use but do not write (a helper such as
        ``double_conv``), and, for a new task, its ``example_batch``/``compute_loss``/``synthetic_dataset``
        where no answer wrote them (the frame's belong to another task); with what those use."""
        if not self.reference:
            return ""
        try:
            ex_tree = ast.parse(self.reference)
        except SyntaxError:
            return ""
        ex_defs = {n.name: n for n in ex_tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        written: set[str] = set()
        used: set[str] = set()
        for text in (answer, *earlier):
            try:
                tree, _ = parse_answer(text)  # as the splice reads it: a garbled import line left out
            except SpliceError:
                continue
            written |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        todo = [n for n in used if n in ex_defs and n not in written]
        if self.task_changed:
            todo += [n for n in ("example_batch", "compute_loss", "synthetic_dataset") if n in ex_defs and n not in written]
        take: list[str] = []
        while todo:
            name = todo.pop()
            if name in take or name in written or name not in ex_defs:
                continue
            take.append(name)
            todo.extend(n.id for n in ast.walk(ex_defs[name]) if isinstance(n, ast.Name))
        lines = self.reference.splitlines(keepends=True)
        return "".join("".join(lines[ex_defs[n].lineno - 1 - len(ex_defs[n].decorator_list) : ex_defs[n].end_lineno]) + "\n\n"
                       for n in ex_defs if n in take)

    def added_build_model(self, answer: str, earlier: Sequence[str] = ()) -> Optional[str]:
        """The class the frame's added ``build_model()`` returns, when no answer defined one."""
        if any("build_model" in _defined(a) for a in (answer, *earlier)):
            return None
        code = _build_model_for(answer, self.framework, self.source)
        return re.search(r"(?:return|model =) (\w+)\(", code).group(1) if code else None

    def widened_build_model(self, answer: str, earlier: Sequence[str] = ()) -> list[str]:
        """The Keras frame's parameters added to the model's ``build_model()`` (:func:`widen_keras_build_model`),
        of the latest answer that defines it; [] for torch or when none was missing."""
        if self.framework == "torch":
            return []
        for text in (answer, *reversed(earlier)):
            if "build_model" in _defined(text):
                return widen_keras_build_model(text)[1]
        return []

    def no_reader(self, answer: str, earlier: Sequence[str] = ()) -> bool:
        """True when the program has no reader for the task's data (the frame's reads another task's)."""
        return self.task_changed and not any("load_data" in _defined(a) for a in (answer, *earlier))


def installed(name: str) -> bool:
    """Whether the top-level package ``name`` is importable by the interpreter that runs the checks (this
    one), without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def absent_reads(program: str) -> dict[str, set[str]]:
    """For each top-level function and class of ``program``, the packages it uses through the program's
    module-level imports that are not installed (``torchvision`` for ``transforms.Resize`` in a reader)."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return {}
    package: dict[str, str] = {}  # bound name -> top-level package
    for node in tree.body:
        if isinstance(node, ast.Import):
            package.update({a.asname or a.name.split(".")[0]: a.name.split(".")[0] for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            package.update({a.asname or a.name: node.module.split(".")[0] for a in node.names})
    absent = {name: top for name, top in package.items() if top not in ("__future__",) and not installed(top)}
    out: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            used = {absent[n.id] for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in absent}
            if used:
                out[node.name] = used
    return out


def _build_model_for(answer: str, framework: str, frame: str = "") -> Optional[str]:
    """``def build_model(): return Net()`` when the answer defines exactly one module class (torch
    ``nn.Module``; Keras ``Model``, built on INPUT_SHAPE and compiled with the frame's
    ``compile_model``) whose constructor needs no argument, or only arguments named after constants
    of the answer or the frame: a small model often writes the class and forgets the function."""
    base = "Module" if framework == "torch" else "Model"
    if framework != "torch" and "def compile_model(" not in frame:
        return None
    try:
        tree, _ = parse_answer(answer)
    except SpliceError:
        return None
    constants = _assigned_constants(tree) | (_constant_names(frame) if frame else set())
    modules = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).split(".")[-1] == base for b in node.bases):
            init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
            required = [a.arg for a in init.args.args[1:len(init.args.args) - len(init.args.defaults)]] if init else []
            modules.append((node.name, required))
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    top = [(name, req) for name, req in modules if name not in used]  # not a block of another module
    if len(top) != 1:
        return None
    # A required constructor argument is passed the constant of its name (num_classes=NUM_CLASSES); one
    # that names no constant cannot be guessed, and the model is asked for build_model() instead.
    passed = {arg: _constant_for(arg, constants) for arg in top[0][1]}
    if any(v is None for v in passed.values()):
        return None
    call = f"{top[0][0]}({', '.join(f'{arg}={value}' for arg, value in passed.items())})"
    if framework == "torch":
        return f"\n\ndef build_model():\n    return {call}\n"
    return (f"\n\ndef build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):\n    model = {call}\n"
            "    model.build((None, *INPUT_SHAPE))\n    compile_model(model, lr, decay_steps)\n    return model\n")


#: Constructor argument names a small model uses for the frame's constants.
_ARG_CONSTANTS = {
    "num_classes": "NUM_CLASSES", "n_classes": "NUM_CLASSES", "classes": "NUM_CLASSES", "num_labels": "NUM_CLASSES",
    "num_tags": "NUM_CLASSES", "output_dim": "NUM_CLASSES", "num_outputs": "NUM_CLASSES", "vocab": "VOCAB_SIZE",
    "vocab_size": "VOCAB_SIZE", "seq_len": "SEQ_LEN", "seq_length": "SEQ_LEN", "max_len": "SEQ_LEN",
    "embedding_dim": "EMBED_DIM", "embed_dim": "EMBED_DIM", "hidden_dim": "HIDDEN", "hidden_size": "HIDDEN",
    "hidden": "HIDDEN", "input_shape": "INPUT_SHAPE", "num_users": "NUM_USERS", "num_items": "NUM_ITEMS",
    "num_actions": "NUM_ACTIONS", "n_actions": "NUM_ACTIONS", "obs_dim": "OBS_DIM", "horizon": "HORIZON",
}


def _constant_for(arg: str, constants: set[str]) -> Optional[str]:
    for name in (arg.upper(), _ARG_CONSTANTS.get(arg.lower())):
        if name and name in constants:
            return name
    return None


def _assigned_constants(tree: ast.Module) -> set[str]:
    """The upper-case names an answer assigns at module level."""
    return {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
            if isinstance(t, ast.Name) and t.id.isupper()}


def _defined(answer: str) -> set[str]:
    try:
        return set(top_level_names(answer))
    except SyntaxError:
        return set()


#: The parameters the Keras frame passes to ``build_model()`` (by keyword) and their defaults, with what the
#: program loses when the model's ``build_model()`` does not use one.
KERAS_BUILD_PARAMS = {"lr": ("LR", "--lr"), "dropout": ("DROPOUT", "--dropout"),
                      "decay_steps": ("1000", "the frame's cosine learning-rate decay")}


def widen_keras_build_model(answer: str) -> tuple[str, list[str]]:
    """The answer with the Keras frame's parameters that its ``build_model()`` lacks added, keyword-only, and
    their names. The frame calls ``build_model(lr=..., dropout=..., decay_steps=...)``; a model that leaves one
    out (``def build_model(lr=LR, dropout=DROPOUT):``, and again after a repair names the TypeError) would
    fail the smoke run on the call alone. An added parameter is not used by the model's code, so what it
    carries is lost: the caller says which (:func:`keras_params_note`). Unchanged when nothing is missing,
    when ``build_model`` takes ``**kwargs``, or when the answer is not Python."""
    try:
        tree, text = parse_answer(answer)
    except SpliceError:
        return answer, []
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_model"), None)
    if node is None or node.args.kwarg is not None or not node.body or node.body[0].lineno <= node.lineno:
        return answer, []
    have = {a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)}
    missing = [name for name in KERAS_BUILD_PARAMS if name not in have]
    if not missing:
        return answer, []
    node.args.kwonlyargs += [ast.arg(arg=name) for name in missing]
    node.args.kw_defaults += [ast.parse(KERAS_BUILD_PARAMS[name][0], mode="eval").body for name in missing]
    bare = copy.copy(node)
    bare.body, bare.decorator_list = [ast.Pass()], []
    header = ast.unparse(bare).splitlines()[0] + "\n"
    lines = text.splitlines(keepends=True)
    # the def line(s), up to the body's first statement (a docstring is one), give way to the new header
    return "".join(lines[: node.lineno - 1]) + header + "".join(lines[node.body[0].lineno - 1 :]), missing


def keras_params_note(missing: Sequence[str]) -> str:
    """What the program loses when ``build_model()`` was given parameters it does not use."""
    lost = ", ".join(KERAS_BUILD_PARAMS[name][1] for name in missing)
    if len(missing) == 1:
        return (f"build_model() took no {missing[0]}: it was added as a parameter the model's code does not use "
                f"({lost} not applied)")
    return (f"build_model() took no {', '.join(missing)}: they were added as parameters the model's code does not "
            f"use ({lost} not applied)")


def _replace_definition(source: str, name: str, text: str) -> str:
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return "".join(lines[: first - 1]) + text + "".join(lines[node.end_lineno :])
    return source


def _task_of(intent: Intent) -> str:
    if intent.multi_label and intent.task == "text-classification" and intent.framework == "torch":
        return "multi-label-classification"  # the builtin's one multi-label program (text, torch)
    if intent.task == "image-classification" or intent.task == "text-classification":
        return intent.task
    if intent.task == "regression" and intent.dataset == "csv" and intent.num_classes:
        return "tabular-classification"
    return intent.task


def _neutral_intent(spec: Spec, framework: str) -> Intent:
    """The frame for a request the builtin has no reading of: a regression MLP on the request's shape,
    with its precision and distribution."""
    features = set()
    if spec.get("precision") == "mixed":
        features.add("amp")
    if spec.get("distributed") is True:
        features.add("ddp")
    shape = spec.get("input_shape")
    return Intent(prompt=spec.prompt, task="regression", architecture="mlp", framework=framework,
                  dataset="csv", input_shape=tuple(int(n) for n in shape) if shape else (16,),
                  features=frozenset(features), language=spec.language)


def _describe(intent: Intent) -> str:
    task = _task_of(intent).replace("-", " ")
    arch = intent.architecture.upper() if len(intent.architecture) <= 4 else intent.architecture
    data = f" for {intent.dataset}" if intent.dataset not in ("synthetic", "csv") else ""
    fw = "Keras" if intent.framework == "tensorflow" else "PyTorch"
    return f"the builtin's {fw} {arch} {task} program{data}"


def frame_for(spec: Spec, intent: Optional[Intent], framework: str) -> Optional[Frame]:
    """The frame for this request, or None when no builtin program can serve as one.

    The builtin's reading (``intent``) gives the frame when it writes this framework; otherwise a
    neutral regression frame carries the training loop, precision and distribution, and the model
    writes the task's parts too.
    """
    from deepdive.codegen import builtin

    base = intent if intent is not None and intent.framework == framework else None
    if base is not None and base.task not in ("image-classification", "text-classification", "regression",
                                                "forecasting", "autoencoder", "vae"):
        base = None  # GAN, few-shot, streaming, online: their loops are not a frame for another model
    if base is None:
        base = _neutral_intent(spec, framework)
    try:
        program = builtin.generate(base)
    except (ValueError, NotImplementedError, RuntimeError):
        return None
    source = program.code
    asked = spec.get("task")
    task_changed = intent is None or base is not intent or bool(asked and asked != _task_of(base))
    source = _retitle(source, spec.prompt)
    tree = ast.parse(source)
    model_names = _model_part(tree)
    example = "".join(definition_source(source, n) + "\n\n" for n in top_level_names(source) if n in model_names)
    write = ["build_model"]
    optional = ["load_data"]
    if task_changed:
        write += ["example_batch"] + (["compute_loss"] if framework == "torch" and "compute_loss" in top_level_names(source) else [])
        if framework == "torch":
            optional.append("synthetic_dataset")
    title = "the frame's current version of these definitions, written for a different request"
    from deepdive.codegen.frames.examples import example_for

    reference = example_for(spec, framework)
    if reference is not None:
        example, title = reference.source, f"a reference example: {reference.title}"
        source = _with_constants(source, reference.source)
    if reference is not None or task_changed:
        source = _request_constants(source, spec, framework)
    keeps = [_signature(source, n) for n in top_level_names(source) if n in _USEFUL and n not in write]
    return Frame(source=source, framework=framework, base=_describe(base), write=tuple(write), optional=tuple(optional),
                 example=example.rstrip() + "\n", keeps=[k for k in keeps if k], constants=_constants(source),
                 task_changed=task_changed, example_title=title, reference=reference.source if reference else "",
                 reference_tasks=reference.tasks if reference else (), reference_families=reference.families if reference
                 else (), filename=program.filename)


def _model_part(tree: ast.Module) -> list[str]:
    """``build_model`` and the definitions only it reaches (the model class and its blocks)."""
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}

    def closure(start: list[str], barrier: str) -> set[str]:
        seen: set[str] = set()
        todo = list(start)
        while todo:
            name = todo.pop()
            if name in seen or name not in defs or name == barrier:
                continue
            seen.add(name)
            todo.extend(n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name))
        return seen

    # A model class is reached only through build_model; what another definition reaches without
    # passing through build_model is the frame's.
    mine = closure(["build_model"], "")
    used_elsewhere = set()
    for name in defs:
        if name == "build_model" or name in mine:
            continue
        used_elsewhere |= closure([name], "build_model")
    return [n for n in defs if n in mine and (n == "build_model" or n not in used_elsewhere)]


def _with_constants(source: str, example: str) -> str:
    """The frame with the reference example's constants that it lacks (the frame's own, read from the
    request, stay): a model that follows the example uses them and often does not write them out again."""
    try:
        ex_tree = ast.parse(example)
    except SyntaxError:
        return source
    ex_lines = example.splitlines(keepends=True)
    first_def = next((n.lineno for n in ex_tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))), None)
    have = _constant_names(source)
    constants = "".join("".join(ex_lines[n.lineno - 1 : n.end_lineno]) for n in ex_tree.body
                        if isinstance(n, (ast.Assign, ast.AnnAssign)) and (first_def is None or n.lineno < first_def)
                        and assigned_name(n) not in have)
    return splice(source, constants, required=()) if constants else source


#: Constants that hold a program's outputs per example, by the examples' and the builtin's names.
_OUTPUT_CONSTANTS = ("NUM_CLASSES", "NUM_LABELS", "NUM_ACTIONS", "VOCAB_SIZE", "HORIZON", "NUM_TAGS")


def _request_constants(source: str, spec: Spec, framework: str) -> str:
    """The frame's INPUT_SHAPE and outputs constant set to what the request states, so a model that keeps
    the frame's (or the example's) constants keeps the request's sizes."""
    have = _constant_names(source)
    lines = []
    shape = spec.get("input_shape")
    if shape and "INPUT_SHAPE" in have:
        shape = [int(n) for n in shape]
        if framework == "tensorflow" and len(shape) >= 2:
            shape = shape[1:] + shape[:1]  # Keras is channels-last
        lines.append(f"INPUT_SHAPE = {tuple(shape)!r}  # as the request states")
    outputs = spec.get("outputs")
    # A recommender's scores over all items: NUM_ITEMS is its outputs (not where one score per pair is asked).
    names = _OUTPUT_CONSTANTS + (("NUM_ITEMS",) if isinstance(outputs, int) and outputs > 1 else ())
    name = next((n for n in names if n in have), None)
    if outputs and name:
        lines.append(f"{name} = {int(outputs)}  # as the request states")
    return splice(source, "\n".join(lines) + "\n", required=()) if lines else source


def _constant_names(source: str) -> set[str]:
    """The names the frame's module-level constants bind."""
    return {name for n in ast.parse(_constants(source)).body if (name := assigned_name(n))}


def _retitle(source: str, prompt: str) -> str:
    """The frame's docstring names the request, not the template it came from."""
    short = " ".join(prompt.split())
    short = short if len(short) <= 200 else short[:197] + "..."
    tree = ast.parse(source)
    doc = ast.get_docstring(tree, clean=False)
    if doc is None:
        return source
    first = doc.split("\n", 1)[0]
    new_doc = doc.replace(first, "Written by a local model into Deepdive's frame: the model part is the model's, "
                                 "the training loop and command line are the builtin's.", 1)
    new_doc = re.sub(r"^Prompt: .*$", lambda _m: f"Prompt: {short}", new_doc, count=1, flags=re.M)
    return source.replace(doc, new_doc, 1)


def _signature(source: str, name: str) -> str:
    text = definition_source(source, name) or ""
    head = text.split(":\n", 1)[0].strip()
    return head + ":" if head.startswith(("def ", "class ", "async def ")) else ""


def _constants(source: str) -> str:
    """The module-level assignments before the first definition, as written."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            break
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            out.append("".join(lines[node.lineno - 1 : node.end_lineno]))
    return "".join(out)
