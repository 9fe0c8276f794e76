"""Read a request honestly: what it states, what the parser could not read, what the builtin would miss.

:func:`read_request` turns a prompt into a :class:`Reading`:

- ``spec`` (:class:`~deepdive.codegen.spec.Spec`): every property the prompt states, quoted; the
  words it could not place (unknown architecture or task words, exclusions it did not understand);
  the numbers no property or field took; the exclusions as written. Tasks outside the builtin's
  templates (segmentation, detection, a policy network, a recommender, diffusion, audio, graphs,
  1-D signals, language models, multi-label classification) are read like any other.
- ``intent``: the closest program the builtin generator can build (its frame), None when no
  template shares the request's inputs and outputs.
- ``gaps``: one line per stated thing that program would not honour, from the builtin's own account
  of its program (:func:`deepdive.codegen.builtin.traits.describe`). A request with gaps must not be
  answered with the builtin's program; the lines say what is missing.
- ``assumptions``: what the reading chose where the prompt said nothing (the task of "use a GRU").

Nothing here refuses a request: only an empty prompt or an unknown framework name raise ValueError.

One file of a little over 500 lines, on purpose: it is one reading, whose steps (task, family, the
frame, the stated sizes, what was not read) share and extend the same state (the spans placed so far,
the properties stated so far); the vocabulary they read with is apart, in
:mod:`deepdive.codegen.request_words` and :mod:`deepdive.codegen.intent_rules`.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import attrs

from deepdive.codegen import task_sizes
from deepdive.codegen.exclusions import Exclusion, blank, find_exclusions
from deepdive.codegen.gaps import FAMILY_LABEL, gaps_of
from deepdive.codegen.intent import Intent
from deepdive.codegen.intent_rules import (ARCH_TASK, CSV_FILE, DEFAULT_ARCH, ENGINE, FALLBACK_ARCH, HF, PATH, TASK_RULES,
                                           first_rule, search)
from deepdive.codegen.normalise import framework_name, normalise
from deepdive.codegen.parse import FieldReader, read_fields, resnet_block
from deepdive.codegen.request_words import (BUILTIN_TASK_WORDS, BUILTIN_TASKS, CLASSIFY_CUE, COUNTED, FAMILY_ARCH, FAMILY_LAYER,
                                            FAMILY_TASK, FAMILY_WORDS, FRAMES, IMAGE_DATA, KNOWN_LOSS_WORDS, LOSS_WORDS,
                                            SIZE_FIELDS, TABULAR, TASK_WORDS, TEXT_DATA, UNKNOWN_LOSS)
from deepdive.codegen.spec import Spec, Stated, same_layer
from deepdive.codegen.unknown_words import unknown_words
from deepdive.codegen.unplaced import unplaced_numbers


#: "on 4 GPUs", "4张卡", "4块GPU": how many GPUs a distributed run uses (group 1 or 2 is the count).
GPU_COUNT = r"\b(\d+)\s*(?:x\s*)?(?:gpus|gpu devices)\b|(\d+)\s*(?:张|块|个)\s*(?:gpu|显卡|卡)"

#: Words that ask for batch normalization.
BATCH_NORM = r"batch[- ]?norm|批归一化|批量归一化"

__all__ = ["Reading", "read_request"]

Span = tuple[int, int]

@attrs.define
class Reading:
    """A request as read: what it states, the builtin frame, what the frame would miss, what was assumed.

    Attributes:
        spec (Spec): every property the prompt states; unknown words; unplaced numbers; exclusions.
        intent (Intent | None): the closest program the builtin can build; None when no template fits.
        gaps (list[str]): one line per stated thing the builtin's program would not honour (also each
            unknown word and unplaced number). Non-empty: the builtin's program is not an answer.
        assumptions (list[str]): choices made where the prompt said nothing ("task: text-classification
            (the prompt names no task; the builtin's task for a GRU)").
    """

    spec: Spec
    intent: Optional[Intent]
    gaps: list[str] = attrs.Factory(list)
    assumptions: list[str] = attrs.Factory(list)

    @property
    def buildable(self) -> bool:
        """True when the builtin's program answers the request as asked."""
        return self.intent is not None and not self.gaps

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec.to_json(), "intent": self.intent.to_json() if self.intent else None,
                "gaps": list(self.gaps), "assumptions": list(self.assumptions)}


def read_request(prompt: str, framework: Optional[str] = None) -> Reading:
    """Read an English or Chinese request (see the module docstring).

    Args:
        prompt: what to build, as the user wrote it.
        framework: "torch" or "tensorflow" (also "keras", "tf", "pytorch"); overrides the prompt.

    Raises:
        ValueError: one line, for an empty prompt or an unknown framework name; never for what the
            prompt asks.
    """
    if not prompt or not prompt.strip():
        raise ValueError('empty prompt: describe the program to build, e.g. "a CNN classifier for MNIST"')
    fw_arg = framework_name(framework) if framework else None
    return _Read(prompt.strip(), framework, fw_arg).reading()


class _Read:
    """One reading, step by step: paths, exclusions, task, family, fields, the Spec, the frame, the gaps."""

    def __init__(self, raw: str, framework_arg: Optional[str], fw_arg: Optional[str]):
        self.raw = raw
        self.language = "zh" if re.search(r"[\u4e00-\u9fff]", raw) else "en"
        text = normalise(raw)
        low = text.lower()
        self.text = text if len(low) == len(text) else low
        low, self.csv_path, self.model_path = self._paths(low)
        self.exclusions: list[Exclusion] = find_exclusions(low, self.text)
        self.pos = blank(low, [span for e in self.exclusions for span in e.spans])
        self.effects = [(kind, value, e.text) for e in self.exclusions for kind, value in e.effects]
        self.framework_arg, self.fw_arg = framework_arg, fw_arg
        self.placed: list[Span] = []  # spans whose numbers a property or field took
        self.stated: list[Stated] = []
        self.assumptions: list[str] = []

    # -- helpers ---------------------------------------------------------------------------------

    def quote(self, span: Span) -> str:
        return " ".join(self.text[span[0]:span[1]].split())

    def _words(self, span: Span) -> Span:
        """``span`` widened to whole words ("object detect" -> "object detection")."""
        start, end = span
        while start > 0 and self.text[start - 1].isascii() and self.text[start - 1].isalnum() and self.text[start].isalnum():
            start -= 1
        while end < len(self.text) and self.text[end].isascii() and self.text[end].isalnum() and self.text[end - 1].isalnum():
            end += 1
        return start, end

    def find(self, pattern: str) -> Optional[re.Match]:
        return search(pattern, self.pos)

    def state(self, name: str, value: Any, span_or_text: Any) -> None:
        text = self.quote(self._words(span_or_text)) if isinstance(span_or_text, tuple) else span_or_text
        if not any(s.name == name and s.value == value for s in self.stated):
            self.stated.append(Stated(name, value, text))

    def excluded(self, kind: str) -> list[tuple[Any, str]]:
        return [(value, text) for k, value, text in self.effects if k == kind]

    def _paths(self, low: str) -> tuple[str, Optional[str], Optional[str]]:
        """The CSV file and the model directory named (case kept), blanked out of ``low``."""
        csv_path = model_path = None
        spans: list[Span] = []
        m = CSV_FILE.search(self.text)
        if m:
            csv_path = m.group(1)
            spans.append(m.span(1))
        for m in PATH.finditer(self.text):
            candidate = m.group(1).rstrip(".")
            if candidate != csv_path and not candidate.lower().endswith((".csv", ".tsv")):
                model_path = candidate
                spans.append((m.start(1), m.start(1) + len(candidate)))
                break
        return blank(low, spans), csv_path, model_path

    # -- the steps -------------------------------------------------------------------------------

    def reading(self) -> Reading:
        self.framework = self._framework()
        self.family, family_match, self.other_families = self._family()
        self.task, task_match = self._task(family_match)
        self.task_match = task_match
        if self.task:
            self.state("task", self.task, task_match.span())
        if self.fw_stated:
            self.state("framework", self.framework, self.fw_stated)
        self.builtin_task = self._builtin_task()
        self.reader = FieldReader(self.pos)
        intent = self._intent()
        self._state_shape_and_outputs(intent)
        if self.family:
            self.state("family", self.family, family_match.span())
            self.placed.append(family_match.span())
        self._state_layers(intent)
        self._state_training()
        if self.builtin_task is None:
            # Understood numbers of a task without a frame (epochs, hidden sizes...); a shape or a class
            # count is placed only where a property took it.
            self.placed += [span for name, (_, span) in self.reader.found.items() if name not in SIZE_FIELDS]
        else:
            self.placed += self.reader.used_spans()
        if self.task in ("audio-classification", "signal-classification"):
            self.placed += task_sizes.recording_numbers(self.pos)
        if self.task == "recommendation":
            self.placed += task_sizes.recommendation_numbers(self.pos)
        if self.task == "diffusion":
            self.placed += task_sizes.diffusion_numbers(self.pos)
        if self.task == "graph":
            self.placed += task_sizes.graph_numbers(self.pos)
        unknown = self._unknown()
        spec = Spec(prompt=self.raw, language=self.language, stated=self.stated, unknown=unknown,
                    unplaced_numbers=unplaced_numbers(self.text, self.pos, self.placed, self.language),
                    exclusions=[e.text for e in self.exclusions])
        gaps = gaps_of(spec, intent)
        return Reading(spec=spec, intent=intent, gaps=gaps, assumptions=self.assumptions)

    def _framework(self) -> str:
        self.fw_stated: Any = None
        if self.fw_arg:
            self.fw_stated = f"framework {self.framework_arg}"
            return self.fw_arg
        m = self.find(r"keras|tensorflow|\btf\b|tf\.keras")
        if m:
            self.fw_stated = m.span()
            return "tensorflow"
        m = self.find(r"pytorch|\btorch\b")
        if m:
            self.fw_stated = m.span()
        return "torch"

    def _task(self, family_match: Optional[re.Match]) -> tuple[Optional[str], Optional[re.Match]]:
        """The task the prompt states, with the words that state it; (None, None) when it names none."""
        found = first_rule(TASK_WORDS, self.pos)
        if found:
            return found
        cue = self.find(CLASSIFY_CUE)
        text_rule = self.find(BUILTIN_TASK_WORDS["text-classification"])
        if text_rule and (cue or self.find(r"sentiment|spam|情感|垃圾邮件")):
            return "text-classification", text_rule
        tabular = self.find(TABULAR)
        image = self.find(BUILTIN_TASK_WORDS["image-classification"])
        text_data = self.find(TEXT_DATA)
        if cue and text_data and not image and not tabular:
            return "text-classification", text_data
        if cue and tabular and not image:
            return "tabular-classification", cue
        data = self.find(IMAGE_DATA)
        if image and (cue or data) and self.family in ("unet", "yolo"):
            return FAMILY_TASK[self.family], family_match  # a U-Net's classes are per pixel, a YOLO's per box
        if image and (cue or data):
            return "image-classification", data or image
        return None, None

    def _family(self) -> tuple[Optional[str], Optional[re.Match], list[tuple[str, re.Match]]]:
        """The architecture family named first by specificity, and the other families named beside it."""
        matches = [(name, m) for name, pattern in FAMILY_WORDS if (m := self.find(pattern))]
        # "attention" beside another family is a layer of it (an LSTM with attention), not the family.
        attention_only = [(n, m) for n, m in matches if n == "transformer" and "transformer" not in m.group(0)
                          and "self-attention" not in m.group(0)]
        if attention_only and len(matches) > 1:
            matches = [x for x in matches if x[0] != "transformer"] + attention_only
            first = matches[0]
        else:
            first = matches[0] if matches else None
        if first is None:
            return None, None, []
        others = [(n, m) for n, m in matches[1:] if n != first[0] and not _inside(m.span(), first[1].span())
                  and not (first[0] == "hf-finetune" and n == "transformer")]
        return first[0], first[1], others

    def _builtin_task(self) -> Optional[str]:
        """The builtin task of the frame: the stated task's own, its frame's, or one assumed from the family."""
        task = self.task
        if task in BUILTIN_TASKS:
            return task
        if task == "tabular-classification":
            return "image-classification"
        if task == "multi-label-classification":
            image = self.find(BUILTIN_TASK_WORDS["image-classification"]) and \
                not self.find(BUILTIN_TASK_WORDS["text-classification"])
            return "image-classification" if image else "text-classification"
        if task is not None:
            return FRAMES.get(task)
        old = first_rule(TASK_RULES, self.pos)
        if old:
            assumed = old[0]
        elif self.family in FAMILY_TASK and FAMILY_TASK[self.family] not in BUILTIN_TASKS:
            return None
        elif self.family in FAMILY_ARCH and FAMILY_ARCH[self.family] in ARCH_TASK:
            assumed = ARCH_TASK[FAMILY_ARCH[self.family]]
        elif self.family == "hf-finetune":
            assumed = "text-classification"
        elif self.find(r"classif|分类|识别"):
            assumed = "image-classification"
        else:
            return None
        why = f"the builtin's task for {FAMILY_LABEL[self.family]}" if self.family else "the closest the prompt names"
        self.assumptions.append(f"task: {assumed} (the prompt names no task; {why})")
        return assumed

    def _arch(self, task: str) -> str:
        """The builtin architecture for ``task``: the family named, adjusted to what the task's templates take."""
        hf = (self.family == "hf-finetune" or (self.model_path is not None and self.find(r"model|模型") is not None)) \
            and not self.excluded("pretrained")
        arch = FAMILY_ARCH.get(self.family) if self.family else None
        if task in ("few-shot", "gan", "vae", "autoencoder"):
            arch = DEFAULT_ARCH[task]
            if self.framework == "tensorflow" and task == "autoencoder" and self.family in ("cnn", "mlp"):
                arch = self.family  # the Keras generator builds dense and convolutional autoencoders
        elif task == "text-classification" and hf:
            arch = "hf-finetune"
        elif task == "image-classification" and arch in ("lstm", "gru", "transformer", "hf-finetune"):
            arch = "cnn"  # there is no builtin ViT; the gap says so
        elif task in ("text-classification", "forecasting", "streaming-inference") and \
                arch in ("resnet", "efficientnet", "mobilenet", "cnn", "hf-finetune"):
            arch = DEFAULT_ARCH[task]
        elif task in ("regression", "online-learning"):
            arch = "mlp"  # tabular rows: the builtin programs use an MLP
        if arch is None:
            arch = DEFAULT_ARCH[task]
            if self.family is None:
                self.assumptions.append(f"architecture: {arch} (the builtin's default for {task})")
        excluded = {FAMILY_ARCH.get(v, v) for v, _ in self.excluded("family")} | \
            ({"lstm", "gru"} if any(v == "rnn" for v, _ in self.excluded("family")) else set())
        if arch in excluded:
            choices = [a for a in FALLBACK_ARCH.get(task, ()) if a not in excluded]
            if choices:
                arch = choices[0]
        return arch

    def _intent(self) -> Optional[Intent]:
        task = self.builtin_task
        if task is None:
            self._read_fields_without_frame()
            return None
        arch = self._arch(task)
        fields = read_fields(self.reader, task, arch, csv_path=self.csv_path)
        features = set(fields.pop("features"))
        for value, _ in self.excluded("feature"):
            features.discard(value)
        if self.excluded("precision"):
            features.discard("amp")
        if self.excluded("distributed"):
            features.discard("ddp")
        no_layers = frozenset(v for v, _ in self.excluded("no_layer"))
        with_layers = frozenset({"BatchNorm2d"}) if (self.find(BATCH_NORM) and not any(
            same_layer(v, "BatchNorm2d") for v in no_layers)) else frozenset()
        if any(same_layer(v, "Dropout") for v in no_layers):
            fields["dropout"] = 0.0
        arch = fields.pop("architecture")
        use_engine = bool(self.find(ENGINE)) and not self.excluded("engine")
        engine = self.find(ENGINE)
        if use_engine and engine:
            self.placed.append(engine.span())
        if arch == "resnet" and self.find(r"res-?net[- ]?\d+"):
            self.placed.append(self.find(r"res-?net[- ]?\d+").span())
        self.placed += [m.span() for m in re.finditer(HF, self.pos, re.ASCII)]  # GPT-2, a local model's name
        self.arch = arch
        gpus = self.find(GPU_COUNT) if "ddp" in features else None
        if gpus:  # "on 4 GPUs": the processes torchrun starts on the machine
            fields["gpus"] = int(gpus.group(1) or gpus.group(2))
            self.placed.append(gpus.span())
        if fields["dataset"] == "imagefolder" and self.find(r"imagenet"):
            self.assumptions.append("ImageNet: read from class folders (root/<class>/*.JPEG) by the builtin's image-folder "
                                    "reader, which loads every image into memory: fine for a subset, not for all 1.28 M")
        return Intent(
            prompt=self.raw, task=task, architecture=arch, framework=self.framework, language=self.language,
            model_path=self.model_path, csv_path=self.csv_path, features=frozenset(features), use_engine=use_engine,
            multi_label=self.task == "multi-label-classification", block=resnet_block(self.pos) if arch == "resnet" else None,
            target=self._target(), exclude_layers=no_layers, include_layers=with_layers, **fields,
        )

    def _read_fields_without_frame(self) -> None:
        """Fields of a task without a builtin frame, read for the Spec: shapes, classes, actions."""
        pseudo = {"diffusion": "gan", "policy": "regression", "recommendation": "regression", "graph": "regression",
                  "signal-classification": "regression"}.get(self.task or "", "regression")
        read_fields(self.reader, pseudo, "mlp", csv_path=self.csv_path)

    def _target(self) -> Optional[str]:
        """The CSV column to predict: "predict price" (a regression), "predict the 'churn' column"."""
        if not (self.csv_path or self.find(r"\bcsv\b|tabular|表格")):
            return None
        m = self.find(r"predict(?:s|ing)? (?:the )?['\"`]?([a-z_][a-z0-9_]*)['\"`]? column|"
                      r"(?:target|label) column (?:is )?['\"`]?([a-z_][a-z0-9_]*)")
        if m:
            self.placed.append(m.span())
            group = 1 if m.group(1) else 2
            return self.text[m.start(group):m.end(group)]
        m = self.find(r"predict(?:s|ing)? (?:the |a )?(?:house |housing |sale |stock |car )?([a-z]+)\b")
        if m and self.task == "regression":
            return self.text[m.start(1):m.end(1)]
        return None

    # -- the Spec's properties -------------------------------------------------------------------

    def _state_shape_and_outputs(self, intent: Optional[Intent]) -> None:
        """The input shape and outputs per example; the words that state them are placed."""
        shape, shape_spans = self._shape(intent)
        if shape:
            self._state_sized("input_shape", shape, shape_spans)
        task = self.task or (self.builtin_task if intent else None)
        outputs, spans = self._outputs(intent, task)
        if outputs is not None:
            self._state_sized("outputs", outputs, spans)

    def _state_sized(self, name: str, value: Any, spans: list[Span]) -> None:
        spans = sorted({s for s in spans if s})
        self.placed += spans
        self.state(name, value, ", ".join(self.quote(self._words(s)) for s in spans))

    def _shape(self, intent: Optional[Intent]) -> tuple[Optional[list[int]], list[Span]]:
        """One example's input shape, read from the Intent's fields (a builtin task) or from the task's words."""
        r, pos = self.reader, self.pos
        if self.task == "audio-classification":
            return task_sizes.audio_shape(r, pos)
        if intent is None:
            return self._frameless_shape()
        used = r.used
        shape = list(intent.input_shape)
        image_tasks = ("image-classification", "gan", "few-shot", "autoencoder", "vae")
        if intent.task in image_tasks and "dataset" in used and len(shape) == 3:
            return shape, [r.span("dataset")]
        if intent.task in image_tasks and "image_hw" in used and "channels" in r.found and len(shape) == 3:
            return shape, [r.span("image_hw"), r.span("channels")]
        if intent.task not in ("text-classification", "forecasting", "streaming-inference") and len(shape) == 1 \
                and (used & {"flat", "n_features"}):
            return shape, [r.span("flat" if "flat" in used else "n_features")]
        if intent.task in ("forecasting", "streaming-inference") and (used & {"seq_len", "lookback", "window"}):
            name = next(n for n in ("seq_len", "lookback", "window") if n in used)
            return shape, [r.span(name)] + ([r.span("series_channels")] if "series_channels" in used else [])
        if intent.task == "text-classification" and "seq_len" in used:
            return shape, [r.span("seq_len")]  # token ids: a classifier's, a language model's or a tagger's
        return None, []

    def _frameless_shape(self) -> tuple[Optional[list[int]], list[Span]]:
        r, pos = self.reader, self.pos
        if self.task == "diffusion" and "image_hw" in r.found and "channels" in r.found:
            return [r.found["channels"][0], *r.found["image_hw"][0]], [r.span("image_hw"), r.span("channels")]
        if self.task == "policy":
            return task_sizes.policy_shape(pos)
        if self.task == "signal-classification":
            return task_sizes.signal_shape(r, pos)
        if self.task == "graph":
            return task_sizes.graph_shape(pos)
        return None, []

    def _outputs(self, intent: Optional[Intent], task: Optional[str]) -> tuple[Optional[int], list[Span]]:
        r = self.reader
        if task in ("image-classification", "text-classification", "tabular-classification", "multi-label-classification",
                    "online-learning", "signal-classification", "audio-classification", "semantic-segmentation",
                    "sequence-labeling", "graph"):
            if "num_classes" in r.found and r.found["num_classes"][1] and self._explicit_classes():
                return r.found["num_classes"][0], [r.span("num_classes")]
            if task == "image-classification" and intent is not None and "dataset" in r.used and intent.num_classes \
                    and "num_classes" not in r.found:  # the dataset's own classes, not "as even or odd" of its images
                return intent.num_classes, [r.span("dataset")]
            return None, []
        if task == "forecasting" and intent is not None and "horizon" in r.used:
            return self._forecast_outputs(intent)
        if task == "regression":
            if self._target():
                m = self.find(r"predict(?:s|ing)? (?:the |a )?\w+")
                return 1, [m.span()] if m else []
            return task_sizes.regression_outputs(self.pos, self.task_match)
        if task == "language-model" and "vocab" in r.found:
            r.used.add("vocab")
            return r.found["vocab"][0], [r.span("vocab")]
        if task == "policy":
            return task_sizes.policy_outputs(self.pos)
        if task == "recommendation":
            return task_sizes.recommendation_outputs(self.pos)
        return None, []

    def _forecast_outputs(self, intent: Intent) -> tuple[Optional[int], list[Span]]:
        """The horizon of one series; horizon x channels when every series is forecast; None when unsaid which."""
        r = self.reader
        channels = intent.input_shape[1] if len(intent.input_shape) == 2 else 1
        multivariate = "series_channels" in r.found and r.found["series_channels"][0] > 1 and not self.find(r"univariate|单变量")
        if channels == 1 and not multivariate:
            return intent.horizon, [r.span("horizon")]
        every = task_sizes.all_series_forecast(self.pos)
        if every and channels > 1:
            return intent.horizon * channels, [r.span("horizon"), every.span()]
        return None, []

    def _explicit_classes(self) -> bool:
        """True when the class count came from a number or 3+ classes named, not from "binary" / "positive or negative".

        Two classes may be one sigmoid output or two scores, so "binary" states no output count.
        """
        span = self.reader.span("num_classes")
        return bool(span and (re.search(r"\d", self.pos[span[0]:span[1]]) or self.reader.found["num_classes"][0] >= 3))

    def _state_layers(self, intent: Optional[Intent]) -> None:
        r = self.reader
        counted = None
        if "layers" in r.used and intent is not None:
            if intent.architecture == "resnet" and self.family == "resnet":
                counted = "Bottleneck" if intent.block == "bottleneck" else "BasicBlock"
            elif self.family in COUNTED:
                counted = COUNTED[self.family]
            elif self.find(r"\d+\s*(?:conv(?:olutional)?|dense|linear|lstm|gru|transformer|encoder)\s*layers?"):
                counted = intent.layer_type() if intent.framework == "torch" else None
        if counted and intent is not None:
            self.state("layer_count", [counted, intent.layers], r.span("layers"))
        dropout = r.found.get("dropout")
        if dropout and dropout[0] and not any(same_layer(v, "Dropout") for v, _ in self.excluded("no_layer")):
            self.state("has_layer", "Dropout", dropout[1])
        batch_norm = "BatchNorm1d" if intent is not None and intent.architecture == "mlp" else "BatchNorm2d"
        for pattern, layer in ((BATCH_NORM, batch_norm), (r"layer[- ]?norm|层归一化", "LayerNorm")):
            m = self.find(pattern)
            if m:
                self.state("has_layer", layer, m.span())
        for name, m in self.other_families:
            if name in FAMILY_LAYER:
                self.state("has_layer", FAMILY_LAYER[name], m.span())
        for value, text in self.excluded("no_layer"):
            self.state("no_layer", value, text)

    def _state_training(self) -> None:
        amp = self.reader.span("feature:amp") if "feature:amp" in self.reader.found else None
        fp32 = self.excluded("precision")
        if amp:
            self.state("precision", "mixed", amp)
        elif fp32:
            self.state("precision", "fp32", fp32[0][1])
        else:
            m = self.find(r"\bfp32\b|full[- ]precision|float32 training|单精度|全精度")
            if m:
                self.state("precision", "fp32", m.span())
        ddp = self.reader.span("feature:ddp") if "feature:ddp" in self.reader.found else None
        single = self.excluded("distributed")
        if ddp:
            self.state("distributed", True, ddp)
        elif single:
            self.state("distributed", False, single[0][1])
        else:
            m = self.find(r"single[- ](?:gpu|device|process|machine)|\bone gpu\b|单卡|单机单卡|单进程")
            if m:
                self.state("distributed", False, m.span())
        if self.task == "multi-label-classification":
            self.state("loss", "BCEWithLogitsLoss", self.find(TASK_WORDS[[n for n, _ in TASK_WORDS].index(
                "multi-label-classification")][1]).span())
        else:
            for name, pattern in LOSS_WORDS:
                m = self.find(pattern)
                if m:
                    self.state("loss", name, m.span())
                    break

    # -- what was not read -----------------------------------------------------------------------

    def _unknown(self) -> list[str]:
        words = []
        for (start, end), quote in unknown_words(self.text, self.pos):
            words.append(quote)
            tail = re.match(r"[- ]?v?\d+(?:\.\d+)*", self.pos[end:])
            self.placed.append((start, end + (tail.end() if tail else 0)))  # LeNet-5: the 5 is part of the name
        known = [k.span() for _, p in LOSS_WORDS for k in re.finditer(p, self.pos, re.ASCII)]
        for m in UNKNOWN_LOSS.finditer(self.pos):
            named = any(a < m.end() and m.start() < b for a, b in known)  # "mean squared error loss"
            if m.group(1) not in KNOWN_LOSS_WORDS and not named:
                words.append(self.quote(m.span()))
        words += [e.text for e in self.exclusions if not e.understood]
        pretrained = self.find(r"pre-?trained|fine-?tun\w*|微调|预训练")
        if pretrained and getattr(self, "arch", "hf-finetune") != "hf-finetune":
            words.append(self.quote(self._words(pretrained.span())))  # the builtin trains this model from scratch
        if not words and not self.stated and self.builtin_task is None and self.family is None:
            short = " ".join(self.raw.split())
            words.append(short if len(short) <= 60 else short[:57] + "...")
        return words


def _inside(inner: Span, outer: Span) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]
