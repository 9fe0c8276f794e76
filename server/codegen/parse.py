"""Prompt -> :class:`~deepdive.codegen.intent.Intent`, by rules: keywords and numbers, English and Chinese.

Deterministic and fast (well under a millisecond for a typical prompt): the text is normalised
(NFKC turns full-width digits and punctuation into ASCII, Chinese numerals such as 两/二十四/两万
become digits, lower case), then each field is read by a few regular expressions.

How the less obvious fields are decided:

- ``task``: the most specific family named wins (few-shot, GAN, VAE, autoencoder, streaming,
  online learning, forecasting, regression, text, image); when only an architecture is named the
  task follows from it (CNN -> image classification, LSTM -> text classification). A tabular
  classifier ("classifier on a CSV with 8 features, 3 classes") is an ``image-classification`` intent
  with ``dataset="csv"`` and an MLP: the classification family, flat inputs.
- ``layers`` counts the module type of :meth:`Intent.layer_type`: "3-layer CNN" -> 3 Conv2d,
  "MLP with 2 hidden layers" -> 3 Linear, "ResNet-18" -> 8 BasicBlocks ((depth - 2) / 2).
- ``use_engine``: True when the prompt names deepdive or "the engine", or asks for something only
  deepdive.engine gives (gradient compression, PowerSGD, preemption-safe training, dynamic
  precision); the usual features (AMP, DDP, checkpoints, Optuna) stay plain PyTorch otherwise.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Optional

from deepdive.codegen.intent import Intent

__all__ = ["parse_intent"]

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
        value = _cn_to_int(run)
        return run if value is None else str(value)

    return _CN_RUN.sub(repl, text)


def _normalise(prompt: str) -> str:
    text = unicodedata.normalize("NFKC", prompt)
    text = text.replace("×", "x").replace("、", ",").replace("。", ".").replace("“", '"').replace("”", '"')
    text = _cn_numbers(text)
    # 20k -> 20000, 1.5k -> 1500
    text = re.sub(r"(\d+(?:\.\d+)?)k\b", lambda m: str(int(float(m.group(1)) * 1000)), text, flags=re.I)
    return text


# --------------------------------------------------------------------------------------------
# Keyword tables
# --------------------------------------------------------------------------------------------

_TASK_RULES: list[tuple[str, str]] = [
    ("few-shot", r"few[- ]?shot|prototypical|protonet|proto-net|\d+[- ]?way|n[- ]way|小样本|少样本|原型网络"),
    ("gan", r"\bgan\b|\bdcgan\b|generative adversarial|生成对抗|对抗网络"),
    ("vae", r"\bvae\b|variational auto-?encoder|变分自编码"),
    ("autoencoder", r"auto-?encoder|自编码|自动编码"),
    ("online-learning", r"online[- ]learning|learns? online|incremental(ly)? (learning|training|update)|"
                        r"continual learning|one sample at a time|在线学习|增量学习"),
    ("streaming-inference", r"stream|sliding[- ]window|real[- ]time inference|流式|滑动窗口|实时推理"),
    ("forecasting", r"forecast|time[- ]?series|predict the next|next \d+ (values|steps|points|hours|days)|"
                    r"预测未来|时间序列|时序预测|序列预测"),
    ("regression", r"regress|回归"),
    ("text-classification", r"sentiment|text classif|classify (text|reviews|documents|sentences|tweets)|"
                            r"\btext\b|reviews?\b|documents?\b|sentences?\b|tweets?\b|\bspam\b|\bnlp\b|"
                            r"情感|文本|评论|句子|新闻分类|垃圾邮件"),
    ("image-classification", r"image|imagenet|mnist|cifar|photo|picture|digits?\b|图像|图片|照片|手写数字"),
]

_ARCH_RULES: list[tuple[str, str]] = [
    ("efficientnet", r"efficient-?net|mbconv|mobilenet"),
    ("resnet", r"res-?net|residual|残差"),
    ("transformer", r"transformer|self-attention|attention|注意力"),
    ("lstm", r"\blstm|长短期记忆|长短时记忆"),
    ("gru", r"\bgru"),
    ("cnn", r"\bcnn|conv|卷积"),
    ("mlp", r"\bmlp|perceptron|feed-?forward|fully[- ]connected|\bdense\b|全连接|多层感知"),
]

_HF = r"fine-?tun|微调|hugging ?face|\bbert\b|distilbert|roberta|gpt-?2|\bgpt\b|albert|electra|pretrained|pre-trained|预训练"

_DEFAULT_ARCH = {
    "image-classification": "cnn", "text-classification": "lstm", "regression": "mlp", "autoencoder": "autoencoder",
    "vae": "vae", "gan": "gan", "forecasting": "lstm", "few-shot": "protonet", "streaming-inference": "lstm",
    "online-learning": "mlp",
}
_ARCH_TASK = {
    "cnn": "image-classification", "resnet": "image-classification", "efficientnet": "image-classification",
    "mlp": "image-classification", "lstm": "text-classification", "gru": "text-classification",
    "transformer": "text-classification",
}

_FEATURE_RULES: list[tuple[str, str]] = [
    ("amp", r"mixed[- ]precision|\bamp\b|\bfp16\b|\bbf16\b|bfloat16|half[- ]precision|autocast|混合精度|半精度"),
    ("ddp", r"\bddp\b|torchrun|\d+ (nodes|gpus)|multi-?gpu|multiple gpus|multi-?node|distributed|data[- ]parallel|多卡|多gpu|多机|分布式"),
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

_ENGINE = (r"deepdive|deep dive|the engine|dd\.setup|引擎|gradient compression|powersgd|preempt|"
           r"dynamic (mixed )?precision|梯度压缩|抢占")

_PATH = re.compile(r"""(?:(?<=[\s"'`(:=])|^)((?:~|\.{1,2})?/[^\s,;"'`()，。；]+|[A-Za-z]:\\[^\s,;"'`()]+)""")
_CSV_FILE = re.compile(r"""([\w./\\~:-]+\.(?:csv|tsv))\b""")


def _search(pattern: str, text: str):
    """re.search with ASCII \\b and \\w, so that "2层gru" has a word boundary before "gru"."""
    return re.search(pattern, text, re.ASCII)


def _num(pattern: str, text: str, cast=int, group: Optional[int] = None):
    m = _search(pattern, text)
    if not m:
        return None
    value = m.group(group) if group is not None else next(g for g in m.groups() if g is not None)
    try:
        return cast(value)
    except ValueError:
        return None


def _first(rules: list[tuple[str, str]], text: str) -> Optional[str]:
    for name, pattern in rules:
        if _search(pattern, text):
            return name
    return None


def _unknown(prompt: str) -> ValueError:
    short = " ".join(prompt.split())
    short = short if len(short) <= 60 else short[:57] + "..."
    return ValueError(f'could not tell what to build from "{short}"; name a task such as '
                      '"CNN classifier for MNIST" or "LSTM sentiment classifier"')


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


def parse_intent(prompt: str, framework: Optional[str] = None) -> Intent:
    """Parse an English or Chinese prompt into an :class:`Intent`.

    Args:
        prompt: what to build, e.g. "a 3-layer CNN for MNIST with dropout, trained with mixed precision".
        framework: "torch" or "tensorflow" (also "keras", "tf", "pytorch"); overrides the prompt.

    Raises:
        ValueError: the prompt names nothing buildable, or an unknown framework; one line saying what to write.
    """
    if not prompt or not prompt.strip():
        raise _unknown(prompt or "")
    raw = prompt.strip()
    language = "zh" if re.search(r"[\u4e00-\u9fff]", raw) else "en"
    text = _normalise(raw)
    low = text.lower()

    # Paths first (case preserved), then blank them out so their digits are not read as numbers.
    csv_path = None
    m = _CSV_FILE.search(text)
    if m:
        csv_path = m.group(1)
    model_path = None
    for m in _PATH.finditer(text):
        candidate = m.group(1).rstrip(".")
        if candidate != csv_path and not candidate.lower().endswith((".csv", ".tsv")):
            model_path = candidate
            break
    for path in (csv_path, model_path):
        if path:
            low = low.replace(path.lower(), " ")

    # -- framework --
    fw = _framework(framework) if framework else None
    if fw is None:
        fw = "tensorflow" if _search(r"keras|tensorflow|\btf\b|tf\.keras", low) else "torch"

    # -- task and architecture --
    task = _first(_TASK_RULES, low)
    arch = _first(_ARCH_RULES, low)
    hf = bool(_search(_HF, low)) or model_path is not None and _search(r"model|模型", low) is not None
    if task is None:
        if arch is not None:
            task = _ARCH_TASK[arch]
        elif hf:
            task = "text-classification"
        elif _search(r"classif|分类|识别", low):
            task = "image-classification"
        else:
            raise _unknown(raw)
    if task in ("few-shot", "gan", "vae", "autoencoder"):
        arch = _DEFAULT_ARCH[task]
    elif task == "text-classification" and hf:
        arch = "hf-finetune"
    elif task == "image-classification" and arch in ("lstm", "gru", "transformer"):
        # "classify images with a transformer" has no builtin ViT: a CNN is the honest default.
        arch = "cnn"
    elif task in ("text-classification", "forecasting", "streaming-inference") and arch in ("resnet", "efficientnet", "cnn"):
        arch = _DEFAULT_ARCH[task]
    elif task in ("regression", "online-learning"):
        arch = "mlp"  # tabular rows: the builtin programs use an MLP
    if arch is None:
        arch = _DEFAULT_ARCH[task]

    # -- dataset and shapes --
    dataset = "synthetic"
    input_shape: tuple[int, ...] = ()
    num_classes = _num(r"(\d+)\s*(?:classes|class\b|categories|labels|kinds|types|个类|类别|类|种)|(\d+)[- ]class\b|"
                       r"(?:classes|类别数|类别)\s*[=:]?\s*(\d+)", low)
    if num_classes is None and _search(r"binary|二分类|positive\s*(or|and|/)\s*negative|正负|好评.{0,3}差评", low):
        num_classes = 2
    channels = None
    if _search(r"gr[ae]y|grayscale|greyscale|monochrome|single[- ]channel|灰度|单通道|黑白", low):
        channels = 1
    elif _search(r"\brgb\b|colou?r|彩色|三通道", low):
        channels = 3

    latent = _num(r"(\d+)[- ]?d(?:im(?:ension(?:al)?)?)?\s*(?:bottleneck|latent|code|noise)|"
                  r"(?:bottleneck|latent|code|noise)(?: space)?(?: dim(?:ension)?| size)?(?: of| =|=|:)?\s*(\d+)|"
                  r"(?:潜在|潜|隐|瓶颈|编码)(?:空间|变量|层)?(?:的)?(?:维度|大小|维数)?\s*(?:为|是)?\s*(\d+)", low)
    low_nolatent = re.sub(r"(\d+)[- ]?d(?:im(?:ension(?:al)?)?)?\s*(?:bottleneck|latent|code|noise)", " ", low)

    m = _search(r"(\d+)\s*x\s*(\d+)(?:\s*x\s*(\d+))?", low)
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
        else:
            image_hw = (a, b)

    flat = _num(r"(\d+)[- ]?(?:dim(?:ension(?:al)?)?|d)\b(?!\s*(?:bottleneck|latent|code|noise|embedding))|"
                r"(\d+)\s*维", low_nolatent)
    n_features = _num(r"(\d+)\s*(?:numeric(?:al)? |input |continuous |tabular )?(?:features|columns|inputs|variables|predictors)|"
                      r"(\d+)\s*(?:个)?(?:特征|输入|变量|列)", low)

    if "mnist" in low:
        dataset, input_shape = "mnist", (1, 28, 28)
        num_classes = num_classes or (10 if task == "image-classification" else None)
    elif _search(r"cifar-?100", low):
        dataset, input_shape = "cifar10", (3, 32, 32)
        num_classes = num_classes or (100 if task == "image-classification" else None)
    elif _search(r"cifar", low):
        dataset, input_shape = "cifar10", (3, 32, 32)
        num_classes = num_classes or (10 if task == "image-classification" else None)
    elif _search(r"\bdigits\b|load_digits|8x8|手写数字", low):
        dataset, input_shape = "digits", (1, 8, 8)  # scikit-learn's bundled 8x8 digits (offline)
        num_classes = num_classes or (10 if task == "image-classification" else None)
    elif _search(r"(image|photo|picture)s? (folder|directory|dir)|folders? of (images|photos|pictures)|"
                   r"director(y|ies) of (images|photos)|imagefolder|图片文件夹|图像文件夹", low):
        dataset = "imagefolder"
    elif csv_path or _search(r"\bcsv\b|tabular|spreadsheet|表格", low):
        dataset = "csv"

    if task in ("image-classification", "gan", "few-shot", "autoencoder", "vae") and image_hw and not input_shape:
        input_shape = (channels or 3,) + image_hw
    if not input_shape and flat and task not in ("text-classification", "forecasting", "streaming-inference"):
        input_shape = (flat,)
    if not input_shape and n_features and task not in ("text-classification",):
        if task in ("forecasting", "streaming-inference"):
            pass  # handled below as channels
        else:
            input_shape = (n_features,)
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
    layers = _layers(low, arch)
    hidden = _num(r"hidden(?: layer)?(?: size| dim(?:ension)?| units| width)?(?: of| =|=|:)?\s*(\d+)|"
                  r"(\d+)\s*hidden(?: units| neurons| size| dim)|layers? of (\d+)\s*(?:units|neurons)?|(\d+)\s*(?:units|neurons)\b|"
                  r"(?:隐藏层?|隐层)(?:大小|维度|单元|神经元)?(?:为|是)?\s*(\d+)|(\d+)\s*个?(?:神经元|隐藏单元)", low)
    embed = _num(r"embedding(?: dim(?:ension)?| size)?(?: of| =|=|:)?\s*(\d+)|(\d+)[- ]?d(?:im(?:ension(?:al)?)?)? (?:word )?embeddings?|"
                 r"(?:词向量|嵌入)(?:维度|大小)?(?:为|是)?\s*(\d+)", low)
    dropout = _num(r"dropout(?: rate| of| p| prob(?:ability)?)?\s*(?:=|:|of)?\s*(0?\.\d+|[01](?:\.0)?\b)|"
                   r"(0?\.\d+)\s*dropout|(?:丢弃率|dropout率?)\s*(?:为|是)?\s*(0?\.\d+)", low, float)
    if dropout is None:
        pct = _num(r"(\d+)\s*%\s*dropout|dropout(?: of| rate)?\s*(\d+)\s*%", low)
        if pct is not None:
            dropout = pct / 100
        elif _search(r"dropout|丢弃|随机失活", low):
            dropout = 0.3
    vocab = _num(r"vocab(?:ulary)?(?: size)?(?: of| =|=|:)?\s*(\d+)|(\d+)[- ](?:word|token)s? vocab|"
                 r"(?:词表|词汇表?|字典)(?:大小|规模|量)?(?:为|是)?\s*(\d+)", low)
    seq_len = _num(r"(?:sequence|seq|max(?:imum)?|input)[ _-]?(?:length|len)(?: of| =|=|:)?\s*(\d+)|"
                   r"(\d+)\s*tokens|(?:序列长度|最大长度|句子长度|长度)(?:为|是)?\s*(\d+)", low)
    window = _num(r"window(?: size| length| of)?(?: of| =|=|:)?\s*(\d+)|(\d+)[- ](?:step|sample|point|value)s?[- ]window|"
                  r"(?:窗口|滑窗)(?:大小|长度)?(?:为|是)?\s*(\d+)", low)
    lookback = _num(r"(?:past|last|previous|lookback(?: of)?|look-back(?: of)?|history of)\s*(\d+)|(?:过去|前)\s*(\d+)", low)
    horizon = _num(r"next\s*(\d+)|(\d+)\s*(?:steps?|values|points|hours|days)\s*ahead|horizon(?: of| =|=|:)?\s*(\d+)|"
                   r"未来\s*(\d+)|(\d+)\s*步(?:预测)?", low)
    if horizon is None and task == "forecasting" and _search(r"next (value|step|point|hour|day)|下一个", low):
        horizon = 1
    n_way = _num(r"(\d+)[- ]?way", low)
    k_shot = _num(r"(\d+)[- ]?shot", low)

    if task in ("forecasting", "streaming-inference"):
        seq_len = seq_len or lookback or (window if task == "forecasting" else None)
        series_channels = 1
        multi = _num(r"(\d+)\s*(?:variables|channels|series|sensors|features|个?变量|个?通道)", low)
        if multi and not _search(r"univariate|单变量", low):
            series_channels = multi
        length = seq_len or (window if task == "streaming-inference" else None)
        if length:
            input_shape = (length, series_channels)
        elif series_channels > 1:
            input_shape = ()
        if dataset == "series" and csv_path:
            dataset = "csv"
    if task == "text-classification" and seq_len:
        input_shape = (seq_len,)
    if task == "few-shot" and not input_shape and image_hw:
        input_shape = (channels or 3,) + image_hw
    if task == "gan" and not input_shape and image_hw:
        input_shape = (channels or 1,) + image_hw
    if task == "image-classification" and dataset == "csv" and n_features:
        input_shape = (n_features,)
    if task in ("regression", "online-learning") and n_features and not input_shape:
        input_shape = (n_features,)

    epochs = _num(r"(\d+)\s*epochs?|epochs?\s*(?:=|:|of)?\s*(\d+)|(\d+)\s*(?:个)?(?:轮|回合|epoch)|训练\s*(\d+)\s*(?:轮|次)", low)
    batch = _num(r"batch(?:[ _-]?size)?(?: of| =|=|:)?\s*(\d+)|(\d+)\s*(?:per|a|每)\s*batch|批(?:次)?(?:大小|量)(?:为|是)?\s*(\d+)", low)
    lr = _num(r"(?:\blr|learning[ _-]rate)(?: of| =|=|:)?\s*(\d*\.?\d+(?:e-?\d+)?)|学习率(?:为|是)?\s*(\d*\.?\d+(?:e-?\d+)?)",
              low, float)

    features = {name for name, pattern in _FEATURE_RULES if _search(pattern, low)}
    if task == "text-classification" and arch == "hf-finetune":
        features.discard("optuna") if not _search(r"optuna|hyper|超参|调参", low) else None
    use_engine = bool(_search(_ENGINE, low))

    return Intent(
        prompt=raw, task=task, architecture=arch, framework=fw, language=language, dataset=dataset,
        input_shape=tuple(input_shape), num_classes=num_classes, layers=layers, hidden_size=hidden, dropout=dropout,
        vocab_size=vocab, seq_len=seq_len, embed_dim=embed, latent_dim=latent, horizon=horizon, n_way=n_way,
        k_shot=k_shot, window=window if task == "streaming-inference" else None, model_path=model_path,
        csv_path=csv_path, epochs=epochs, batch_size=batch, lr=lr, features=frozenset(features), use_engine=use_engine,
    )


def _framework(name: str) -> str:
    key = name.strip().lower()
    if key in ("torch", "pytorch", "pt"):
        return "torch"
    if key in ("tensorflow", "tf", "keras", "tf.keras"):
        return "tensorflow"
    raise ValueError(f"unknown framework {name!r}: use torch or tensorflow")


def _layers(low: str, arch: str) -> Optional[int]:
    """The count of ``Intent.layer_type()`` modules the prompt asks for, or None."""
    if arch == "resnet":
        blocks = _num(r"(\d+)\s*(?:residual |basic )?blocks|(\d+)\s*个?残差块", low)
        if blocks:
            return blocks
        depth = _num(r"res-?net[- ]?(\d+)", low)
        if depth and depth >= 4:
            return {18: 8, 34: 16, 10: 4, 14: 6, 26: 12}.get(depth, max(1, (depth - 2) // 2))
        return None
    if arch == "efficientnet":
        return _num(r"(\d+)\s*(?:mbconv |inverted residual )?blocks|(\d+)\s*个?(?:块|模块)", low)
    hidden_layers = _num(r"(\d+)\s*hidden layers?|(\d+)\s*个?隐藏层", low)
    if hidden_layers is not None and arch == "mlp":
        return hidden_layers + 1
    return _num(r"(\d+)[- ]?(?:layers?|layer\b)|(\d+)\s*(?:conv(?:olutional)?|lstm|gru|transformer|encoder|dense|linear|"
                r"recurrent|stacked)\s*(?:layers|layer)|(?:layers|num_layers|depth)\s*(?:=|:|of)\s*(\d+)|(\d+)\s*层", low)
