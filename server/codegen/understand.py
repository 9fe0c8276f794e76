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
"""

from __future__ import annotations

import re
from typing import Any, Optional

import attrs

from deepdive.codegen.exclusions import Exclusion, blank, find_exclusions
from deepdive.codegen.gaps import FAMILY_LABEL, gaps_of
from deepdive.codegen.intent import Intent
from deepdive.codegen.parse import (ARCH_TASK, CSV_FILE, DEFAULT_ARCH, ENGINE, FALLBACK_ARCH, HF, PATH, TASK_RULES,
                                    FieldReader, first_rule, framework_name, normalise, read_fields, resnet_block, search)
from deepdive.codegen.spec import Spec, Stated, same_layer
from deepdive.codegen.unknown_words import KNOWN_TOKENS, unknown_words

__all__ = ["Reading", "read_request"]

Span = tuple[int, int]

# -- tasks --------------------------------------------------------------------------------------

_BUILTIN = {name: pattern for name, pattern in TASK_RULES}
# The order decides between cues: the most specific first.
_TASK_RULES: list[tuple[str, str]] = [
    ("few-shot", _BUILTIN["few-shot"]), ("gan", _BUILTIN["gan"]), ("vae", _BUILTIN["vae"]),
    ("diffusion", r"diffusion|\bddpm\b|\bddim\b|score-based|扩散"),
    ("semantic-segmentation", r"segment|deeplab|mask r-?cnn|分割"),
    ("object-detection", r"object detect|detect(?:ing|s)? (?:the )?(?:objects|cars|people|pedestrians|faces)|detector|"
                         r"detection head|bounding[- ]box|\byolo|faster r-?cnn|\bssd\b|retinanet|\bdetr\b|目标检测|物体检测|检测框|检测头"),
    ("autoencoder", _BUILTIN["autoencoder"]),
    ("policy", r"reinforcement learning|\brl\b|policy (?:network|net|gradient|model)|actor[- ]critic|\bppo\b|\bdqn\b|"
               r"q-?learning|q-?network|强化学习|策略网络"),
    ("recommendation", r"recommend|collaborative filtering|matrix factori[sz]ation|user[- ]item|推荐"),
    ("graph", r"\bgnn|graph neural(?: networks?)?|graph conv|\bgcn\b|\bgat\b|graphsage|message passing|node classification|"
              r"link prediction|图神经网络|图神经|图卷积|节点分类"),
    ("language-model", r"language model|char(?:acter)?[- ]level|next[- ](?:token|character|char|word)|text generation|"
                       r"generates? text|语言模型|文本生成|字符级"),
    ("sequence-labeling", r"named[- ]entit|\bner\b|part[- ]of[- ]speech|pos[- ]tagg|sequence label|token classif|"
                          r"命名实体|序列标注|词性标注"),
    ("online-learning", _BUILTIN["online-learning"]), ("streaming-inference", _BUILTIN["streaming-inference"]),
    ("forecasting", _BUILTIN["forecasting"]),
    ("multi-label-classification", r"multi-?label|multiple labels|多标签"),
    ("audio-classification", r"speech|audio|spectrogram|\bmel\b|keyword spotting|\bsounds?\b|\bwav\b|语音|音频|声音|频谱|梅尔"),
    ("signal-classification", r"\bsignals?\b|\becg\b|\beeg\b|accelerometer|vibration|1-?d[- ]?(?:cnn|conv)|conv1d|一维卷积|信号|心电|脑电"),
    ("regression", _BUILTIN["regression"]),
]
_CLASSIFY_CUE = r"classif|\bclass(?:es)?\b|\d+[- ]class|categor|recogni[sz]|identif|sentiment|spam|topic|tags?\b|分类|识别|类别|情感|垃圾邮件"
_IMAGE_DATA = r"mnist|cifar|imagenet|\bdigits\b|手写数字"
_TABULAR = r"\bcsv\b|tabular|spreadsheet|features|feature vectors|\bvectors\b|\brows\b|columns|表格|特征"
# Builtin task of the frame offered for a task the builtin has no template for (None: no frame).
_FRAMES = {"semantic-segmentation": "image-classification", "object-detection": "image-classification",
           "audio-classification": "image-classification", "language-model": "text-classification",
           "sequence-labeling": "text-classification"}
_BUILTIN_TASKS = {"image-classification", "text-classification", "regression", "autoencoder", "vae", "gan", "forecasting",
                  "few-shot", "streaming-inference", "online-learning"}


# -- families -----------------------------------------------------------------------------------

# Most specific first: "a ResNet-based U-Net" is a U-Net, "1-D CNN" a cnn1d.
_FAMILY_RULES: list[tuple[str, str]] = [
    ("unet", r"\bu-?net\b|\bunet"),
    ("yolo", r"\byolo(?:v\d+)?"),
    ("vit", r"\bvit\b|vision transformer|视觉transformer"),
    ("gnn", r"\bgnn|graph neural|graph conv\w*|\bgcn\b|\bgat\b|graphsage|图神经网络|图神经|图卷积"),
    ("mobilenet", r"mobile-?net(?:-?v\d)?"),
    ("efficientnet", r"efficient-?net(?:-?b\d)?|mbconv"),
    ("vgg", r"\bvgg(?:-?\d+)?"),
    ("resnet", r"res-?net(?:[- ]?\d+)?|residual|残差"),
    ("hf-finetune", HF),
    ("transformer", r"transformer|self-attention|注意力|\battention"),
    ("lstm", r"\blstm|长短期记忆|长短时记忆"),
    ("gru", r"\bgru"),
    ("rnn", r"\brnn|recurrent|循环神经"),
    ("cnn1d", r"\b1-?d[- ]?(?:cnn|conv\w*)|conv1d|one-dimensional conv\w*|一维卷积"),
    ("cnn", r"\bcnn|conv|卷积"),
    ("mlp", r"\bmlp|perceptron|feed-?forward|fully[- ]connected|\bdense\b|全连接|多层感知"),
]
_FAMILY_ARCH = {"unet": "cnn", "yolo": "cnn", "vit": "cnn", "mobilenet": "efficientnet", "efficientnet": "efficientnet",
                "vgg": "cnn", "resnet": "resnet", "hf-finetune": "hf-finetune", "transformer": "transformer", "lstm": "lstm",
                "gru": "gru", "rnn": "lstm", "cnn": "cnn", "mlp": "mlp"}
_FAMILY_TASK = {"unet": "semantic-segmentation", "yolo": "object-detection", "vit": "image-classification",
                "gnn": "graph", "cnn1d": "signal-classification"}
# A second family named beside the first is a layer the model must contain ("an LSTM with attention").
_FAMILY_LAYER = {"cnn": "Conv2d", "cnn1d": "Conv1d", "lstm": "LSTM", "gru": "GRU", "transformer": "MultiheadAttention",
                 "mlp": "Linear"}
# The layer type a count of this family counts (Spec's layer_count), PyTorch names.
_COUNTED = {"cnn": "Conv2d", "mlp": "Linear", "lstm": "LSTM", "gru": "GRU", "transformer": "TransformerEncoderLayer",
            "efficientnet": "MBConv", "cnn1d": "Conv1d"}

_LOSSES: list[tuple[str, str]] = [
    ("BCEWithLogitsLoss", r"binary cross[- ]?entropy|\bbce\b|二元交叉熵"),
    ("CrossEntropyLoss", r"cross[- ]?entropy|交叉熵"),
    ("MSELoss", r"\bmse\b|mean squared error|均方误差"),
    ("SmoothL1Loss", r"smooth[- ]?l1"),
    ("L1Loss", r"\bmae\b|\bl1 loss|mean absolute error|平均绝对误差"),
    ("HuberLoss", r"huber"),
    ("NLLLoss", r"\bnll\b|negative log[- ]likelihood"),
    ("CTCLoss", r"\bctc\b"),
    ("TripletMarginLoss", r"triplet (?:margin )?loss"),
    ("KLDivLoss", r"kl[- ]div"),
]
_UNKNOWN_LOSS = re.compile(r"\b([a-z][a-z-]+) loss\b", re.ASCII)
_KNOWN_LOSS_WORDS = {"cross-entropy", "entropy", "mse", "l1", "huber", "nll", "ctc", "margin", "triplet", "bce", "the", "a",
                     "validation", "training", "train", "val", "reconstruction", "kl", "elbo", "lower", "low", "minimum", "best"}

_NUMBER = re.compile(r"(?<![a-z0-9_.])\d+(?:\.\d+)?(?:e-?\d+)?(?![0-9])", re.ASCII)


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
        self.task, task_match = self._task()
        self.family, family_match, self.other_families = self._family()
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
            self.placed += self.reader.all_spans()  # understood numbers of a task without a frame
        if self.task == "audio-classification":
            self._audio_numbers()
        self.placed += self.reader.used_spans()
        unknown = self._unknown()
        spec = Spec(prompt=self.raw, language=self.language, stated=self.stated, unknown=unknown,
                    unplaced_numbers=self._unplaced(), exclusions=[e.text for e in self.exclusions])
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

    def _task(self) -> tuple[Optional[str], Optional[re.Match]]:
        """The task the prompt states, with the words that state it; (None, None) when it names none."""
        found = first_rule(_TASK_RULES, self.pos)
        if found:
            return found
        cue = self.find(_CLASSIFY_CUE)
        text_rule = self.find(_BUILTIN["text-classification"])
        if text_rule and (cue or self.find(r"sentiment|spam|情感|垃圾邮件")):
            return "text-classification", text_rule
        tabular = self.find(_TABULAR)
        image = self.find(_BUILTIN["image-classification"])
        if cue and tabular and not image:
            return "tabular-classification", cue
        data = self.find(_IMAGE_DATA)
        if image and (cue or data):
            return "image-classification", data or image
        return None, None

    def _family(self) -> tuple[Optional[str], Optional[re.Match], list[tuple[str, re.Match]]]:
        """The architecture family named first by specificity, and the other families named beside it."""
        matches = [(name, m) for name, pattern in _FAMILY_RULES if (m := self.find(pattern))]
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
        if task in _BUILTIN_TASKS:
            return task
        if task == "tabular-classification":
            return "image-classification"
        if task == "multi-label-classification":
            image = self.find(_BUILTIN["image-classification"]) and not self.find(_BUILTIN["text-classification"])
            return "image-classification" if image else "text-classification"
        if task is not None:
            return _FRAMES.get(task)
        old = first_rule(TASK_RULES, self.pos)
        if old:
            assumed = old[0]
        elif self.family in _FAMILY_TASK and _FAMILY_TASK[self.family] not in _BUILTIN_TASKS:
            return None
        elif self.family in _FAMILY_ARCH and _FAMILY_ARCH[self.family] in ARCH_TASK:
            assumed = ARCH_TASK[_FAMILY_ARCH[self.family]]
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
        arch = _FAMILY_ARCH.get(self.family) if self.family else None
        if task in ("few-shot", "gan", "vae", "autoencoder"):
            arch = DEFAULT_ARCH[task]
            if self.framework == "tensorflow" and task == "autoencoder" and self.family in ("cnn", "mlp"):
                arch = self.family  # the Keras generator builds dense and convolutional autoencoders
        elif task == "text-classification" and hf:
            arch = "hf-finetune"
        elif task == "image-classification" and arch in ("lstm", "gru", "transformer", "hf-finetune"):
            arch = "cnn"  # there is no builtin ViT; the gap says so
        elif task in ("text-classification", "forecasting", "streaming-inference") and \
                arch in ("resnet", "efficientnet", "cnn", "hf-finetune"):
            arch = DEFAULT_ARCH[task]
        elif task in ("regression", "online-learning"):
            arch = "mlp"  # tabular rows: the builtin programs use an MLP
        if arch is None:
            arch = DEFAULT_ARCH[task]
            if self.family is None:
                self.assumptions.append(f"architecture: {arch} (the builtin's default for {task})")
        excluded = {_FAMILY_ARCH.get(v, v) for v, _ in self.excluded("family")} | \
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
        if fields["dataset"] == "imagefolder" and self.find(r"imagenet"):
            self.assumptions.append("ImageNet: read from class folders (root/<class>/*.JPEG) by the builtin's image-folder "
                                    "reader, which loads every image into memory: fine for a subset, not for all 1.28 M")
        return Intent(
            prompt=self.raw, task=task, architecture=arch, framework=self.framework, language=self.language,
            model_path=self.model_path, csv_path=self.csv_path, features=frozenset(features), use_engine=use_engine,
            multi_label=self.task == "multi-label-classification", block=resnet_block(self.pos) if arch == "resnet" else None,
            target=self._target(), exclude_layers=no_layers, **fields,
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
        r = self.reader
        used = r.used
        shape: Optional[list[int]] = None
        shape_span: Any = None
        task = self.task or (self.builtin_task if intent else None)
        if intent is not None:
            image_tasks = ("image-classification", "gan", "few-shot", "autoencoder", "vae")
            if intent.task in image_tasks and "dataset" in used and len(intent.input_shape) == 3:
                shape, shape_span = list(intent.input_shape), r.span("dataset")
            elif intent.task in image_tasks and "image_hw" in used and "channels" in r.found and len(intent.input_shape) == 3:
                shape, shape_span = list(intent.input_shape), r.span("image_hw")
            elif intent.task not in ("text-classification", "forecasting", "streaming-inference") and len(intent.input_shape) == 1 \
                    and (used & {"flat", "n_features"}):
                shape, shape_span = list(intent.input_shape), r.span("flat" if "flat" in used else "n_features")
            elif intent.task in ("forecasting", "streaming-inference") and (used & {"seq_len", "lookback", "window"}):
                name = next(n for n in ("seq_len", "lookback", "window") if n in used)
                shape, shape_span = list(intent.input_shape), r.span(name)
            elif intent.task == "text-classification" and "seq_len" in used and self.task != "language-model":
                shape, shape_span = list(intent.input_shape), r.span("seq_len")
        else:
            shape, shape_span = self._frameless_shape()
        if shape and self.task not in ("language-model", "sequence-labeling", "audio-classification"):
            self.state("input_shape", shape, shape_span)
        outputs, span = self._outputs(intent, task)
        if outputs is not None:
            self.state("outputs", outputs, span)

    def _audio_numbers(self) -> None:
        """Sample rate, clip length, spectrogram size of an audio request: read, though no property takes them."""
        for m in re.finditer(r"\d+(?:\.\d+)?\s*k?hz\b|\d+(?:\.\d+)?[- ]?(?:s|sec|secs|seconds?)\b|"
                             r"\d+\s*(?:mel(?:s| bins| filters)?|mfccs?|frames)\b|\d+\s*(?:个)?(?:梅尔|帧)|\d+\s*秒", self.pos):
            self.placed.append(m.span())

    def _frameless_shape(self) -> tuple[Optional[list[int]], Any]:
        r, pos = self.reader, self.pos
        if self.task == "diffusion" and "image_hw" in r.found and "channels" in r.found:
            hw = r.found["image_hw"][0]
            return [r.found["channels"][0], *hw], r.span("image_hw")
        if self.task == "policy":
            m = search(r"(\d+)[- ]?(?:dim(?:ensional)?\s+)?(?:observations?|states?|obs)\b|"
                       r"(?:observation|state)(?: space)?(?: dim(?:ension)?| size)?(?: of| =|=|:)?\s*(\d+)|(\d+)\s*维(?:状态|观测)", pos)
            if m:
                self.placed.append(m.span())
                return [int(next(g for g in m.groups() if g))], m.span()
        if self.task == "signal-classification":
            c = search(r"(\d+)[- ]?(?:channels?|leads?)|(\d+)\s*(?:个)?通道", pos)
            n = search(r"(?:length|of length|long)\s*(?:of\s*)?(\d+)|(\d+)[- ]?(?:samples?|points?|time ?steps?)(?: long)?|长度\s*(\d+)", pos)
            if n:
                self.placed += [n.span()] + ([c.span()] if c else [])
                channels = int(next(g for g in c.groups() if g)) if c else 1
                return [channels, int(next(g for g in n.groups() if g))], (c or n).span()
        return None, None

    def _outputs(self, intent: Optional[Intent], task: Optional[str]) -> tuple[Optional[int], Any]:
        r = self.reader
        if task in ("image-classification", "text-classification", "tabular-classification", "multi-label-classification",
                    "online-learning", "signal-classification", "audio-classification", "semantic-segmentation",
                    "sequence-labeling", "graph"):
            if "num_classes" in r.found and r.found["num_classes"][1] and self._explicit_classes():
                return r.found["num_classes"][0], r.span("num_classes")
            if task == "image-classification" and intent is not None and "dataset" in r.used and intent.num_classes:
                return intent.num_classes, r.span("dataset")
            return None, None
        if task in ("forecasting",) and intent is not None and "horizon" in r.used:
            channels = intent.input_shape[1] if len(intent.input_shape) == 2 else 1
            multivariate = "series_channels" in r.found and r.found["series_channels"][0] > 1 and not self.find(r"univariate|单变量")
            if channels == 1 and not multivariate:
                return intent.horizon, r.span("horizon")
            return None, None
        if task == "regression":
            m = self.find(r"predict(?:s|ing)? (?:the |a )?\w+")
            if m and self._target():
                return 1, m.span()
            return None, None
        if task == "language-model" and "vocab" in r.found:
            r.used.add("vocab")
            return r.found["vocab"][0], r.span("vocab")
        if task == "policy":
            m = self.find(r"(\d+)\s*(?:discrete\s+)?actions|(?:action space|actions?)(?: size| dim)?(?: of| =|=|:)?\s*(\d+)|(\d+)\s*个动作")
            if m:
                self.placed.append(m.span())
                return int(next(g for g in m.groups() if g)), m.span()
        return None, None

    def _explicit_classes(self) -> bool:
        """True when the class count came from a number, not from "binary" / "positive or negative"."""
        span = self.reader.span("num_classes")
        return bool(span and re.search(r"\d", self.pos[span[0]:span[1]]))

    def _state_layers(self, intent: Optional[Intent]) -> None:
        r = self.reader
        counted = None
        if "layers" in r.used and intent is not None:
            if intent.architecture == "resnet" and self.family == "resnet":
                counted = "Bottleneck" if intent.block == "bottleneck" else "BasicBlock"
            elif self.family in _COUNTED:
                counted = _COUNTED[self.family]
            elif self.find(r"\d+\s*(?:conv(?:olutional)?|dense|linear|lstm|gru|transformer|encoder)\s*layers?"):
                counted = intent.layer_type() if intent.framework == "torch" else None
        if counted and intent is not None:
            self.state("layer_count", [counted, intent.layers], r.span("layers"))
        dropout = r.found.get("dropout")
        if dropout and dropout[0] and not any(same_layer(v, "Dropout") for v, _ in self.excluded("no_layer")):
            self.state("has_layer", "Dropout", dropout[1])
        for pattern, layer in ((r"batch[- ]?norm|批归一化|批量归一化", "BatchNorm2d"), (r"layer[- ]?norm|层归一化", "LayerNorm")):
            m = self.find(pattern)
            if m:
                self.state("has_layer", layer, m.span())
        for name, m in self.other_families:
            if name in _FAMILY_LAYER:
                self.state("has_layer", _FAMILY_LAYER[name], m.span())
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
            self.state("loss", "BCEWithLogitsLoss", self.find(_TASK_RULES[[n for n, _ in _TASK_RULES].index(
                "multi-label-classification")][1]).span())
        else:
            for name, pattern in _LOSSES:
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
        for m in _UNKNOWN_LOSS.finditer(self.pos):
            if m.group(1) not in _KNOWN_LOSS_WORDS and not any(search(p, m.group(0)) for _, p in _LOSSES):
                words.append(self.quote(m.span()))
        words += [e.text for e in self.exclusions if not e.understood]
        pretrained = self.find(r"pre-?trained|fine-?tun\w*|微调|预训练")
        if pretrained and getattr(self, "arch", "hf-finetune") != "hf-finetune":
            words.append(self.quote(self._words(pretrained.span())))  # the builtin trains this model from scratch
        if not words and not self.stated and self.builtin_task is None and self.family is None:
            short = " ".join(self.raw.split())
            words.append(short if len(short) <= 60 else short[:57] + "...")
        return words

    def _unplaced(self) -> list[str]:
        out = []
        for m in _NUMBER.finditer(self.pos):
            start, end = m.span()
            if any(a <= start and end <= b for a, b in self.placed):
                continue
            after = self.pos[end:end + 3]
            if re.match(r"-?d\b", after) and m.group(0) in ("1", "2", "3"):
                continue  # 1-D, 2d, 3D: a dimensionality in a name
            if m.group(0) == "1" and after.startswith("个"):
                continue  # 一个: "a"
            name = re.search(r"([a-z][a-z0-9]*)-$", self.pos[max(0, start - 20):start])
            if name and name.group(1) in KNOWN_TOKENS:
                continue  # GPT-2, CIFAR-10, VGG-16: a number in the name of a known thing
            out.append(self._context(start, end))
        return out

    def _context(self, start: int, end: int) -> str:
        """The number with a word before and two after (a few characters in Chinese), within its clause."""
        before = re.split(r"[,;:()\n，。；：]", self.text[:start])[-1]
        after = re.split(r"[,;:()\n，。；：]", self.text[end:])[0]
        if self.language == "zh" and re.search(r"[\u4e00-\u9fff]", before[-4:] + after[:4]):
            left, right = before[-4:].lstrip(), after[:4].rstrip()
        else:
            left = " ".join(before.split()[-1:])
            right = " ".join(after.split()[:2])
            left = left + " " if left and before.endswith((" ", "\t")) else left
            right = " " + right if right and after.startswith((" ", "\t")) else right
        return (left + self.text[start:end] + right).strip()


def _inside(inner: Span, outer: Span) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]
