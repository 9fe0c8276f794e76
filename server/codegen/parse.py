"""Prompt -> the builtin's :class:`~deepdive.codegen.intent.Intent` fields, by rules: keywords and numbers, English and Chinese.

Deterministic and fast (well under a millisecond for a typical prompt): the text is normalised
(NFKC turns full-width digits and punctuation into ASCII, Chinese numerals such as 两/二十四/两万
become digits, lower case), then each field is read by a few regular expressions. The
:class:`FieldReader` remembers which words each value came from, so that the reading
(:mod:`deepdive.codegen.understand`) can quote them back and name every number no field took.

How the less obvious fields are decided:

- ``task``: the most specific family named wins (few-shot, GAN, VAE, autoencoder, streaming,
  online learning, forecasting, regression, text, image); when only an architecture is named the
  task follows from it (CNN -> image classification, LSTM -> text classification). A tabular
  classifier ("classifier on a CSV with 8 features, 3 classes") is an ``image-classification`` intent
  with ``dataset="csv"`` and an MLP: the classification family, flat inputs.
- ``layers`` counts the module type of :meth:`Intent.layer_type`: "3-layer CNN" -> 3 Conv2d,
  "MLP with 2 hidden layers" -> 3 Linear, "ResNet-18" -> 8 BasicBlocks, "ResNet-50" -> 16 Bottlenecks.
- ``use_engine``: True when the prompt names deepdive or "the engine", or asks for something only
  deepdive.engine gives (gradient compression, PowerSGD, preemption-safe training, dynamic
  precision); the usual features (AMP, DDP, checkpoints, Optuna) stay plain PyTorch otherwise.

:func:`parse_intent` is the builtin's entry point: the reading's Intent, or a one-line ValueError
when the builtin cannot build the request as asked (see :func:`~deepdive.codegen.understand.read_request`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Optional

from deepdive.codegen.intent import Intent

__all__ = ["parse_intent", "FieldReader", "normalise", "framework_name"]

Span = tuple[int, int]

# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_CN_RUN = re.compile("[零〇一二两三四五六七八九十百千万]+")


def _cn_to_int(text: str) -> Optional[int]:
    """二十四 -> 24, 两万 -> 20000, 十 -> 10, 一二八 -> 128 (digit by digit); None when not a number."""
    if all(ch in _CN_DIGITS for ch in text):
        return int("".join(str(_CN_DIGITS[ch]) for ch in text))
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        elif ch == "万":
            section += digit or 0
            total += (section or 1) * 10000
            section, digit = 0, None
        else:
            section += (1 if digit is None else digit) * _CN_UNITS[ch]
            digit = None
    return total + section + (digit or 0)


def _cn_numbers(text: str) -> str:
    def repl(m: re.Match) -> str:
        run = m.group(0)
        # 一些/一起/统一 etc. are words, not numbers: only convert a single 一 before a counter or unit.
        if run == "一" and not re.match(r"[个层类轮维步次批]", text[m.end():m.end() + 1] or " "):
            return run
        if run == "零" and text[m.start() - 1:m.start()] == "从":
            return run  # 从零开始/从零实现: "from scratch"
        value = _cn_to_int(run)
        return run if value is None else str(value)

    return _CN_RUN.sub(repl, text)


def normalise(prompt: str) -> str:
    """NFKC, ASCII punctuation and quotes, Chinese numerals as digits, 20k as 20000 (case kept)."""
    text = unicodedata.normalize("NFKC", prompt)
    for a, b in (("×", "x"), ("、", ","), ("。", "."), ("“", '"'), ("”", '"'), ("’", "'"), ("‘", "'")):
        text = text.replace(a, b)
    text = _cn_numbers(text)
    # 20k -> 20000, 1.5k -> 1500
    text = re.sub(r"(\d+(?:\.\d+)?)k\b", lambda m: str(int(float(m.group(1)) * 1000)), text, flags=re.I)
    return text


def framework_name(name: str) -> str:
    """"torch" or "tensorflow" for a framework argument; ValueError (one line) for anything else."""
    key = name.strip().lower()
    if key in ("torch", "pytorch", "pt"):
        return "torch"
    if key in ("tensorflow", "tf", "keras", "tf.keras"):
        return "tensorflow"
    raise ValueError(f"unknown framework {name!r}: use torch or tensorflow")


# --------------------------------------------------------------------------------------------
# Keyword tables
# --------------------------------------------------------------------------------------------

TASK_RULES: list[tuple[str, str]] = [
    ("few-shot", r"few[- ]?shot|prototypical|protonet|proto-net|\d+[- ]?way|n[- ]way|小样本|少样本|原型网络"),
    ("gan", r"\bgan\b|\bdcgan\b|generative adversarial|生成对抗|对抗网络"),
    ("vae", r"\bvae\b|variational auto-?encoder|变分自编码"),
    ("autoencoder", r"auto-?encoder|自编码|自动编码"),
    ("online-learning", r"online[- ]learning|learns? online|incremental(ly)? (learning|training|update)|"
                        r"continual learning|one sample at a time|在线学习|增量学习"),
    ("streaming-inference", r"stream|sliding[- ]window|real[- ]time inference|流式|滑动窗口|实时推理"),
    ("forecasting", r"forecast|time[- ]?series|predicts? the next|next \d+ (values|steps|points|hours|days)|"
                    r"预测未来|未来\s*\d+\s*(?:步|个|天|小时|点)|时间序列|时序预测|序列预测"),
    ("regression", r"regress|回归|predict(?:s|ing)? (?:the |a )?(?:house |housing |sale |stock |car )?"
                   r"(?:prices?|costs?|value of|amounts?|sales|revenue|salary|salaries|income|demand|temperatures?|"
                   r"ratings?|quantity|yield|consumption)\b|预测(?:房价|价格|销量|温度|收入)"),
    ("text-classification", r"sentiment|text classif|classify (text|reviews|documents|sentences|tweets)|"
                            r"\btext\b|reviews?\b|documents?\b|sentences?\b|tweets?\b|\bspam\b|\bnlp\b|"
                            r"情感|文本|评论|句子|新闻分类|垃圾邮件"),
    ("image-classification", r"image|imagenet|mnist|cifar|photo|picture|digits?\b|图像|图片|照片|手写数字"),
]

ARCH_RULES: list[tuple[str, str]] = [
    ("efficientnet", r"efficient-?net|mbconv|mobilenet"),
    ("resnet", r"res-?net|residual|残差"),
    ("transformer", r"transformer|self-attention|attention|注意力"),
    ("lstm", r"\blstm|长短期记忆|长短时记忆"),
    ("gru", r"\bgru"),
    ("cnn", r"\bcnn|conv|卷积"),
    ("mlp", r"\bmlp|perceptron|feed-?forward|fully[- ]connected|\bdense\b|全连接|多层感知"),
]

# A model name followed by "-style", "-like", 风格 names an architecture to write, not weights to fine-tune.
_STYLE = r"(?!(?:-?\d+)?(?:[- ]?(?:style|like|ish)\b|\s*(?:风格|式|架构)))"
HF = (rf"fine-?tun|微调|hugging ?face|\bbert\b{_STYLE}|distilbert{_STYLE}|roberta{_STYLE}|gpt-?2{_STYLE}|\bgpt\b{_STYLE}|"
      rf"albert{_STYLE}|electra{_STYLE}|pretrained|pre-trained|预训练")

DEFAULT_ARCH = {
    "image-classification": "cnn", "text-classification": "lstm", "regression": "mlp", "autoencoder": "autoencoder",
    "vae": "vae", "gan": "gan", "forecasting": "lstm", "few-shot": "protonet", "streaming-inference": "lstm",
    "online-learning": "mlp",
}
# Other architectures a task can take when its default is excluded ("a sentiment classifier, not an LSTM").
FALLBACK_ARCH = {
    "image-classification": ("cnn", "resnet", "efficientnet", "mlp"), "text-classification": ("lstm", "gru", "transformer"),
    "forecasting": ("lstm", "gru", "transformer", "mlp"), "streaming-inference": ("lstm", "gru", "transformer", "mlp"),
}
ARCH_TASK = {
    "cnn": "image-classification", "resnet": "image-classification", "efficientnet": "image-classification",
    "mlp": "image-classification", "lstm": "text-classification", "gru": "text-classification",
    "transformer": "text-classification",
}

FEATURE_RULES: list[tuple[str, str]] = [
    ("amp", r"mixed[- ]precision|\bamp\b|\bfp16\b|\bbf16\b|bfloat16|half[- ]precision|autocast|混合精度|半精度"),
    # "on 2 nodes" is a cluster; "2708 nodes with 1433 features" a graph.
    ("ddp", r"\bddp\b|torchrun|\d+ gpus|(?:on|across|over|using) \d+ (?:compute |gpu |training )?nodes\b"
            r"(?!\s*(?:and \d+ edges|of (?:a|the|each) graph|in (?:a|the|each) graph))|"
            r"\d+ (?:compute|gpu|training) nodes|multi-?gpu|multiple gpus|multi-?node|distributed|data[- ]parallel|多卡|多gpu|多机|分布式"),
    ("checkpoint", r"checkpoint|resum|断点|检查点|续训"),
    ("early_stopping", r"early[- ]?stop|提前停止|早停"),
    ("lr_schedule", r"schedul|cosine|one-?cycle|warm-?up|lr decay|learning[- ]rate decay|step ?lr|"
                    r"学习率(调度|衰减|预热)|余弦|退火"),
    ("optuna", r"optuna|hyper-?parameter (search|tuning|optimi[sz]ation|sweep)|bayesian|"
               r"(?<!fine-)(?<!fine )(?<!fine)\btun(ed|e|ing)\b|超参|调参"),
    ("quantize", r"quanti[sz]|\bint8\b|量化"),
    ("prune", r"prun|剪枝"),
    ("torchscript", r"torch-?script|torch\.jit|\bjit\b"),
    ("onnx", r"onnx"),
]

ENGINE = (r"deepdive|deep dive|the engine|dd\.setup|引擎|gradient compression|powersgd|preempt|"
          r"dynamic (mixed )?precision|梯度压缩|抢占")

PATH = re.compile(r"""(?:(?<=[\s"'`(:=])|^)((?:~|\.{1,2})?/[^\s,;"'`()，。；]+|[A-Za-z]:\\[^\s,;"'`()]+)""")
CSV_FILE = re.compile(r"""([\w./\\~:-]+\.(?:csv|tsv))\b""")

# Image datasets by name: (dataset the builtin reads, input shape, classes). ImageNet comes as class
# folders (train/<wnid>/*.JPEG), which the builtin's image-folder reader reads.
_DATASETS: list[tuple[str, str, tuple[int, ...], Optional[int]]] = [
    (r"fashion-?mnist|mnist", "mnist", (1, 28, 28), 10),
    (r"cifar-?100", "cifar10", (3, 32, 32), 100),
    (r"cifar(?:-?10)?", "cifar10", (3, 32, 32), 10),
    (r"tiny[- ]?imagenet", "imagefolder", (3, 64, 64), 200),
    (r"imagenet(?:-?1k)?", "imagefolder", (3, 224, 224), 1000),
    (r"\bdigits\b|load_digits|8x8|手写数字", "digits", (1, 8, 8), 10),
]

RESNET_DEPTHS = {18: ("basic", 8), 34: ("basic", 16), 10: ("basic", 4), 14: ("basic", 6), 26: ("basic", 12),
                 50: ("bottleneck", 16), 101: ("bottleneck", 33), 152: ("bottleneck", 50)}


def search(pattern: str, text: str):
    """re.search with ASCII \\b and \\w, so that "2层gru" has a word boundary before "gru"."""
    return re.search(pattern, text, re.ASCII)


def first_rule(rules: list[tuple[str, str]], text: str) -> Optional[tuple[str, re.Match]]:
    """The first (name, match) of ``rules`` that matches ``text``."""
    for name, pattern in rules:
        m = search(pattern, text)
        if m:
            return name, m
    return None


# --------------------------------------------------------------------------------------------
# The field reader
# --------------------------------------------------------------------------------------------


class FieldReader:
    """Reads Intent fields from normalised lower-case text and remembers where each value came from.

    ``found[name]`` is ``(value, span)`` for every field a rule matched; ``used`` the names of those
    the reading kept. A number in the prompt is placed when a kept field's span covers it.
    """

    def __init__(self, low: str):
        self.low = low
        self.found: dict[str, tuple[Any, Span]] = {}
        self.used: set[str] = set()

    def search(self, pattern: str):
        return search(pattern, self.low)

    def num(self, name: str, pattern: str, cast=int) -> Optional[Any]:
        """The first number group of ``pattern`` cast by ``cast``; recorded as ``name``."""
        m = self.search(pattern)
        if not m:
            return None
        value = next(g for g in m.groups() if g is not None)
        try:
            result = cast(value)
        except ValueError:
            return None
        self.found[name] = (result, m.span())
        return result

    def note(self, name: str, value: Any, span: Span) -> Any:
        self.found[name] = (value, span)
        return value

    def use(self, *names: str) -> Optional[Any]:
        """The value of the first of ``names`` that was found; marks it kept."""
        for name in names:
            if name in self.found and self.found[name][0] is not None:
                self.used.add(name)
                return self.found[name][0]
        return None

    def span(self, name: str) -> Optional[Span]:
        return self.found[name][1] if name in self.found else None

    def used_spans(self) -> list[Span]:
        return [self.found[name][1] for name in self.used if name in self.found]

    def all_spans(self) -> list[Span]:
        return [span for _, span in self.found.values()]


def read_fields(r: FieldReader, task: str, arch: str, *, csv_path: Optional[str]) -> dict[str, Any]:
    """Every Intent field but task/architecture/framework/prompt, read from ``r.low``.

    ``task`` and ``arch`` are the builtin task and architecture already chosen; ``arch`` may change
    here (flat inputs classify with an MLP), so the result carries it.
    """
    low = r.low
    dataset = "synthetic"
    input_shape: tuple[int, ...] = ()
    # "20 labels", "20 possible labels", "3 sentiment classes", "5 land-cover classes", 二十个标签, 共10个关键词
    r.num("num_classes", r"(\d+)\s*(?:(?!per\b|each\b|of\b|in\b|the\b)[a-z][a-z-]*\s+)?(?:classes|categories|labels|kinds|types|"
                         r"tags|genres|topics|keywords|commands|species|activities|gestures|emotions|intents)\b|(\d+)\s*class\b|"
                         r"(\d+)\s*(?:个类|类别|个标签|标签|类|种|分类)|(\d+)\s*(?:个|种)[\u4e00-\u9fff]{1,3}?(?:类别|标签)|"
                         r"(\d+)\s*个?(?:关键词|命令词|唤醒词|意图|情绪|主题|物种|手势)|"
                         r"(\d+)[- ]class\b|(?:classes|类别数|类别|标签数)\s*[=:]?\s*(\d+)")
    if "num_classes" not in r.found:
        _classes_into(r)
    if "num_classes" not in r.found:
        _classes_listed(r)
    if "num_classes" not in r.found:
        m = r.search(r"binary|二分类|positive\s*(or|and|/)\s*negative|正负|好评.{0,3}差评")
        if m:
            r.note("num_classes", 2, m.span())
    channels = None
    # "3 bands", "4 input channels", 3通道; a larger "64 channels" is a layer's width, not the image's.
    m = r.search(r"(\d+)[- ]?(?:(?:colou?r|spectral|input|image) channels?|(?:spectral )?bands)\b|\b([1-4])[- ]?channels?\b|"
                 r"(\d+)\s*个?(?:输入)?通道")
    if m and not r.search(r"gr[ae]y|grayscale|greyscale|monochrome|single[- ]channel|灰度|单通道|黑白|\brgb\b|colou?r|彩色|三通道"):
        channels = r.note("channels", int(next(g for g in m.groups() if g)), m.span())
    elif (m := r.search(r"gr[ae]y|grayscale|greyscale|monochrome|single[- ]channel|灰度|单通道|黑白")):
        channels = r.note("channels", 1, m.span())
    else:
        m = r.search(r"\brgb\b|colou?r|彩色|三通道")
        if m:
            channels = r.note("channels", 3, m.span())

    r.num("latent", r"(\d+)[- ]?d(?:im(?:ension(?:al)?)?)?\s*(?:bottleneck|latent|code|noise)|"
                    r"(?:bottleneck|latent|code|noise)(?: space)?(?: dim(?:ension)?| size)?(?: of| =|=|:)?\s*(\d+)|"
                    r"(?:潜在|潜|隐|瓶颈|编码)(?:空间|变量|层)?(?:的)?(?:维度|大小|维数)?\s*(?:为|是)?\s*(\d+)|"
                    r"(?:compress\w*|down|reduc\w*)\b.{0,40}?\b(?:to|into)\s+(\d+)\s*(?:dims?|dimensions|values|features)\b")
    low_nolatent = re.sub(r"(\d+)[- ]?d(?:im(?:ension(?:al)?)?)?\s*(?:bottleneck|latent|code|noise)",
                          lambda m: " " * len(m.group(0)), low)

    # "3x32x32", "32x32"; or a tuple: "of shape (1, 64, 128)"
    m = r.search(r"(\d+)\s*x\s*(\d+)(?:\s*x\s*(\d+))?") or \
        r.search(r"(?:shape|size|dimensions?|dims)\s*(?:of\s*|=\s*|:\s*|is\s*)?[(\[](\d+)\s*,\s*(\d+)(?:\s*,\s*(\d+))?[)\]]")
    image_hw = None
    if m:
        a, b, c = int(m.group(1)), int(m.group(2)), m.group(3)
        if c is not None:
            c = int(c)
            if c <= 4:
                image_hw, channels = (a, b), c
            elif a <= 4:
                image_hw, channels = (b, c), a
            else:
                image_hw = (b, c)
            r.note("channels", channels, m.span())
        else:
            image_hw = (a, b)
        r.note("image_hw", image_hw, m.span())

    m = search(r"(\d+)[- ]?(?:dim(?:ension(?:al)?)?|d)\b(?!\s*(?:bottleneck|latent|code|noise|embedding|cnn|conv))|"
               r"(\d+)\s*维(?!\s*(?:卷积|cnn|conv|信号))", low_nolatent)
    flat = r.note("flat", int(m.group(1) or m.group(2)), m.span()) if m else None
    n_features = r.num("n_features", r"(\d+)\s*(?:(?:numeric(?:al)?|input|continuous|tabular|node|feature|categorical)\s+)*"
                                     r"(?:features|columns|inputs|variables|predictors)|"
                                     r"(\d+)\s*(?:个)?(?:特征|输入|变量|列)")

    num_classes = r.use("num_classes")
    for pattern, name, shape, classes in _DATASETS:
        m = r.search(pattern)
        if m:
            dataset, input_shape = name, shape
            r.note("dataset", name, m.span())
            r.use("dataset")
            if num_classes is None and task == "image-classification":
                num_classes = classes
            break
    else:
        m = r.search(r"(image|photo|picture)s? (folder|directory|dir)|folders? of (images|photos|pictures)|"
                     r"director(y|ies) of (images|photos)|imagefolder|图片文件夹|图像文件夹")
        if m:
            dataset = "imagefolder"
        elif csv_path or r.search(r"\bcsv\b|tabular|spreadsheet|表格"):
            dataset = "csv"

    if task in ("image-classification", "gan", "few-shot", "autoencoder", "vae") and image_hw and not input_shape:
        input_shape = (channels or 3,) + image_hw
        r.use("image_hw")
        if channels:
            r.use("channels")
    if not input_shape and flat and task not in ("text-classification", "forecasting", "streaming-inference"):
        input_shape = (r.use("flat"),)
    if not input_shape and n_features and task not in ("text-classification", "forecasting", "streaming-inference"):
        input_shape = (r.use("n_features"),)
    if dataset == "synthetic" and task == "text-classification":
        dataset = "text"
    if dataset == "synthetic" and task in ("forecasting", "streaming-inference"):
        dataset = "series"
    if task == "image-classification" and arch not in ("mlp",) and len(input_shape) == 1 and dataset != "csv":
        # flat inputs ("784-dim vectors") with a CNN: keep the numbers, classify with an MLP.
        arch = "mlp"
    if dataset == "csv" and task == "image-classification":
        arch = "mlp"

    # -- sizes --
    layers = _layers(r, arch)
    hidden = r.num("hidden", r"hidden(?: layer)?(?: size| dim(?:ension)?| units| width)?(?: of| =|=|:)?\s*(\d+)|"
                             r"(\d+)\s*hidden(?: units| neurons| size| dim)|layers? of (\d+)\s*(?:units|neurons)?|"
                             r"(\d+)\s*(?:units|neurons)\b|"
                             r"(?:隐藏层?|隐层)(?:大小|维度|单元|神经元)?(?:为|是)?\s*(\d+)|(\d+)\s*个?(?:神经元|隐藏单元)")
    embed = r.num("embed", r"embedding(?: dim(?:ension)?| size)?(?: of| =|=|:)?\s*(\d+)|"
                           r"(\d+)[- ]?d(?:im(?:ension(?:al)?)?)? (?:word )?embeddings?|"
                           r"(?:词向量|嵌入)(?:维度|大小)?(?:为|是)?\s*(\d+)")
    dropout = r.num("dropout", r"dropout(?: rate| of| p| prob(?:ability)?)?\s*(?:=|:|of)?\s*(0?\.\d+|[01](?:\.0)?\b)|"
                               r"(0?\.\d+)\s*dropout|(?:丢弃率|dropout率?)\s*(?:为|是)?\s*(0?\.\d+)", float)
    if dropout is None:
        pct = r.num("dropout", r"(\d+)\s*%\s*dropout|dropout(?: of| rate)?\s*(\d+)\s*%")
        if pct is not None:
            dropout = r.note("dropout", pct / 100, r.span("dropout"))
        else:
            m = r.search(r"dropout|丢弃|随机失活")
            if m:
                dropout = r.note("dropout", 0.3, m.span())
    vocab = r.num("vocab", r"vocab(?:ulary)?(?: size)?(?: of| =|=|:)?\s*(\d+)|(\d+)[- ](?:word|token|character|char)s? vocab|"
                           r"(?:词表|词汇表?|字典|字符表)(?:大小|规模|量)?(?:为|是)?\s*(\d+)")
    seq_len = r.num("seq_len", r"(?:sequence|seq|max(?:imum)?|input|context)[ _-]?(?:length|len|window)(?: of| =|=|:)?\s*(\d+)|"
                               r"\b(?:context|block[ _-]size)(?: of| =|=|:)?\s*(\d+)\b|"
                               r"(\d+)\s*tokens|(\d+)-(?:token|word|character|char)\b(?!s?\s*vocab)|"
                               r"(?:sequences?|sentences?|texts?|inputs?|windows?|contexts?) of (\d+) (?:tokens|words|characters|chars)\b|"
                               r"(?:序列长度|最大长度|句子长度|长度)(?:为|是)?\s*(\d+)")
    window = r.num("window", r"window(?: size| length| of)?(?: of| =|=|:)?\s*(\d+)|(\d+)[- ](?:step|sample|point|value)s?[- ]window|"
                             r"(?:窗口|滑窗)(?:大小|长度)?(?:为|是)?\s*(\d+)")
    r.num("lookback", r"(?:past|last|previous|lookback(?: of)?|look-back(?: of)?|history of)\s*(\d+)|"
                      r"(\d+)\s*(?:past|previous|last|historical)\s*(?:values|steps|points|observations|time ?steps|days|hours)|"
                      r"(?:reads?|takes?|uses?|sees?|given|over)\s+(?:the\s+)?(?:last\s+|past\s+)?(\d+)\s*"
                      r"(?:steps|values|points|observations|time ?steps|days|hours)|"
                      r"(?:过去|前)\s*(\d+)")
    horizon = r.num("horizon", r"next\s*(\d+)|(\d+)\s*(?:steps?|values|points|hours|days)\s*ahead|horizon(?: of| =|=|:)?\s*(\d+)|"
                               r"未来\s*(\d+)|(\d+)\s*步(?:预测)?")
    if horizon is None and task == "forecasting":
        m = r.search(r"next (value|step|point|hour|day)|下一个")
        if m:
            horizon = r.note("horizon", 1, m.span())
    n_way = r.num("n_way", r"(\d+)[- ]?way")
    k_shot = r.num("k_shot", r"(\d+)[- ]?shot")

    if task in ("forecasting", "streaming-inference"):
        seq_len = r.use("seq_len", "lookback", *(("window",) if task == "forecasting" else ()))
        series_channels = 1
        multi = r.num("series_channels", r"(\d+)\s*(?:variables|channels|series|sensors|features|个?变量|个?通道)")
        if multi and not r.search(r"univariate|单变量"):
            series_channels = r.use("series_channels")
        length = seq_len or (r.use("window") if task == "streaming-inference" else None)
        if length:
            input_shape = (length, series_channels)
        elif series_channels > 1:
            # No window length said: the templates' default length, with every channel asked for.
            input_shape = (48 if task == "forecasting" else 32, series_channels)
        if dataset == "series" and csv_path:
            dataset = "csv"
    if task == "text-classification" and seq_len:
        input_shape = (r.use("seq_len"),)
    if task == "image-classification" and dataset == "csv" and n_features:
        input_shape = (r.use("n_features"),)

    epochs = r.num("epochs", r"(\d+)\s*epochs?|epochs?\s*(?:=|:|of)?\s*(\d+)|(\d+)\s*(?:个)?(?:轮|回合|epoch)|训练\s*(\d+)\s*(?:轮|次)")
    batch = r.num("batch", r"batch(?:[ _-]?size)?(?: of| =|=|:)?\s*(\d+)|(\d+)\s*(?:per|a|每)\s*batch|"
                           r"批(?:次)?(?:大小|量)(?:为|是)?\s*(\d+)")
    lr = r.num("lr", r"(?:\blr|learning[ _-]rate)(?: of| =|=|:)?\s*(\d*\.?\d+(?:e-?\d+)?)|学习率(?:为|是)?\s*(\d*\.?\d+(?:e-?\d+)?)",
               float)

    seed = r.num("seed", r"(?:random )?seed(?: of| =|=|:)?\s*(\d+)|(?:随机)?种子\s*(?:为|是|=)?\s*(\d+)")

    features = set()
    for name, pattern in FEATURE_RULES:
        m = r.search(pattern)
        if m:
            features.add(name)
            r.note("feature:" + name, name, m.span())
            r.use("feature:" + name)
    if task == "text-classification" and arch == "hf-finetune":
        if not r.search(r"optuna|hyper|超参|调参"):
            features.discard("optuna")

    kept = dict(
        dataset=dataset, input_shape=tuple(input_shape), num_classes=num_classes, layers=layers, hidden_size=hidden,
        dropout=dropout, vocab_size=vocab, seq_len=seq_len, embed_dim=embed, latent_dim=r.found.get("latent", (None,))[0],
        horizon=horizon, n_way=n_way, k_shot=k_shot, window=window if task == "streaming-inference" else None,
        epochs=epochs, batch_size=batch, lr=lr, seed=seed, features=frozenset(features), architecture=arch,
    )
    for field, name in (("hidden_size", "hidden"), ("dropout", "dropout"), ("vocab_size", "vocab"), ("embed_dim", "embed"),
                        ("latent_dim", "latent"), ("horizon", "horizon"), ("n_way", "n_way"), ("k_shot", "k_shot"),
                        ("window", "window"), ("epochs", "epochs"), ("batch_size", "batch"), ("lr", "lr"), ("seq_len", "seq_len"),
                        ("seed", "seed")):
        if kept[field] is not None and name in r.found and r.found[name][0] == kept[field]:
            r.use(name)
    return kept


# "classify ... into 6 activities", "sorts articles into 5 categories": the count after "into" is the class count.
_INTO = re.compile(r"\b(?:into|as one of)\s+(\d+)\s+((?:[a-z][a-z-]*\s+){0,2}?[a-z][a-z-]*s)\b")
_CLASSIFY_VERB = re.compile(r"classif|categori[sz]|\bsort|\bassign|recogni[sz]|identif", re.ASCII)
_NOT_CLASSES = re.compile(r"\b(?:layers|steps|epochs|batches|folds|parts|chunks|pieces|patches|tokens|dimensions|dims|"
                          r"features|channels|heads|blocks|stages|splits|sets|windows|frames|samples|values|seconds)$")


def _classes_into(r: FieldReader) -> None:
    """The class count of "classify <things> into N <classes>", when the sentence classifies (recorded as num_classes)."""
    for m in _INTO.finditer(r.low):
        sentence = re.split(r"[.;!?]\s", r.low[:m.start()])[-1]
        if _CLASSIFY_VERB.search(sentence) and not _NOT_CLASSES.search(m.group(2)):
            r.note("num_classes", int(m.group(1)), m.span())
            return


# "labels tweets as positive, negative or neutral", "classify emails as spam or ham", 分为正面、负面和中性
_WORD = r"(?:(?:a|an|the)\s+)?[a-z][a-z-]*"
_LISTED = re.compile(rf"\bas\s+({_WORD}(?:\s*,\s*{_WORD})+\s*,?\s*(?:or|and)\s+{_WORD}|{_WORD}\s*(?:or|/)\s*{_WORD})\b|"
                     r"(?:分为|分成|分类为|标注为)\s*([\u4e00-\u9fff]{1,6}(?:\s*,\s*[\u4e00-\u9fff]{1,6})*\s*(?:和|或|与|,)\s*[\u4e00-\u9fff]{1,6})")
_LISTING_VERB = re.compile(r"classif|categori[sz]|\bsort|\bassign|recogni[sz]|identif|\blabel|\btag|\bflag|\bmark|分为|分成|分类|标注",
                           re.ASCII)


def _classes_listed(r: FieldReader) -> None:
    """The class count of classes named one by one ("as positive, negative or neutral"), when the sentence classifies."""
    for m in _LISTED.finditer(r.low):
        sentence = re.split(r"[.;!?]\s", r.low[:m.end()])[-1]
        if not _LISTING_VERB.search(sentence):
            continue
        names = re.split(r"\s*(?:,|\bor\b|\band\b|/|和|或|与)\s*", m.group(1) or m.group(2))
        names = [n for n in names if n.strip()]
        if len(names) >= 2 and not any(re.search(r"train|test|val|训练|测试|验证|数据", n) for n in names):  # a data split
            r.note("num_classes", len(names), m.span())
            return


def _layers(r: FieldReader, arch: str) -> Optional[int]:
    """The count of ``Intent.layer_type()`` modules the prompt asks for, or None (recorded as "layers")."""
    if arch == "resnet":
        blocks = r.num("layers", r"(\d+)\s*(?:residual |basic |bottleneck )?blocks|(\d+)\s*个?残差块")
        if blocks:
            return r.use("layers")
        depth = r.num("resnet_depth", r"res-?net[- ]?(\d+)")
        if depth and depth >= 4:
            r.use("resnet_depth")
            count = RESNET_DEPTHS[depth][1] if depth in RESNET_DEPTHS else \
                max(1, (depth - 2) // 3) if depth >= 50 else max(1, (depth - 2) // 2)
            r.note("layers", count, r.span("resnet_depth"))
            return r.use("layers")
        return None
    if arch == "efficientnet":
        r.num("layers", r"(\d+)\s*(?:mbconv |inverted residual )?blocks|(\d+)\s*个?(?:块|模块)")
        return r.use("layers")
    hidden_layers = r.num("hidden_layers", r"(\d+)\s*hidden layers?|(\d+)\s*个?隐藏层")
    if hidden_layers is not None and arch == "mlp":
        r.use("hidden_layers")
        r.note("layers", hidden_layers + 1, r.span("hidden_layers"))
        return r.use("layers")
    r.num("layers", r"(\d+)[- ]?(?:layers?|layer\b)|(\d+)\s*(?:conv(?:olutional)?|lstm|gru|transformer|encoder|dense|linear|"
                    r"recurrent|stacked)\s*(?:layers|layer)|(?:layers|num_layers|depth)\s*(?:=|:|of)\s*(\d+)|(\d+)\s*层")
    return r.use("layers")


def resnet_block(low: str) -> Optional[str]:
    """"bottleneck" for ResNet-50/101/152 (or "bottleneck blocks"), "basic" for -18/-34, else None."""
    if search(r"bottleneck (?:residual )?blocks?|bottlenecks", low):
        return "bottleneck"
    m = search(r"res-?net[- ]?(\d+)", low)
    if m:
        depth = int(m.group(1))
        return RESNET_DEPTHS.get(depth, ("bottleneck" if depth >= 50 else "basic", 0))[0]
    return None


# --------------------------------------------------------------------------------------------
# The builtin's entry point
# --------------------------------------------------------------------------------------------


def parse_intent(prompt: str, framework: Optional[str] = None) -> Intent:
    """Parse an English or Chinese prompt into the :class:`Intent` the builtin generator builds.

    Args:
        prompt: what to build, e.g. "a 3-layer CNN for MNIST with dropout, trained with mixed precision".
        framework: "torch" or "tensorflow" (also "keras", "tf", "pytorch"); overrides the prompt.

    Raises:
        ValueError: one line: the prompt names nothing buildable, the builtin cannot build it as asked
            (the message names what it would miss: an unknown word, a task it has no template for, an
            excluded layer its template keeps), or an unknown framework.
    """
    from deepdive.codegen.understand import read_request

    if not prompt or not prompt.strip():
        raise _not_understood(prompt or "")
    reading = read_request(prompt, framework)
    if reading.intent is None and not reading.spec.stated:
        raise _not_understood(prompt)
    if reading.intent is None or reading.gaps:
        raise ValueError("the builtin generator cannot build this as asked: " + "; ".join(reading.gaps))
    return reading.intent


def _not_understood(prompt: str) -> ValueError:
    short = " ".join(prompt.split())
    short = short if len(short) <= 60 else short[:57] + "..."
    return ValueError(f'could not tell what to build from "{short}"; name a task such as '
                      '"CNN classifier for MNIST" or "LSTM sentiment classifier"')
