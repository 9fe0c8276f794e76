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

The text is normalised by :mod:`deepdive.codegen.normalise`; the keyword tables are in
:mod:`deepdive.codegen.intent_rules`.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from deepdive.codegen.intent import Intent
from deepdive.codegen.intent_rules import FEATURE_RULES, IMAGE_DATASETS, RESNET_DEPTHS, search

__all__ = ["parse_intent", "FieldReader", "read_fields", "resnet_block"]

Span = tuple[int, int]

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
    for pattern, name, shape, classes in IMAGE_DATASETS:
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
    if arch in ("efficientnet", "mobilenet"):
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
