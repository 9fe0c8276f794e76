"""The keyword tables the builtin's Intent fields are read with (English and Chinese), and how they are searched.

Task, architecture and feature rules are lists of (name, pattern) in the order that decides between
cues (the most specific first); the maps say what a task or architecture implies for the other. The
reading's steps (:mod:`deepdive.codegen.parse`, :mod:`deepdive.codegen.understand`) use them; the
request's own words (families, layers, losses) are in :mod:`deepdive.codegen.request_words`.
"""

from __future__ import annotations

import re
from typing import Optional

__all__ = ["TASK_RULES", "ARCH_RULES", "HF", "DEFAULT_ARCH", "FALLBACK_ARCH", "ARCH_TASK", "FEATURE_RULES", "ENGINE", "PATH",
           "CSV_FILE", "IMAGE_DATASETS", "RESNET_DEPTHS", "search", "first_rule"]

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
    ("mobilenet", r"mobile-?net|inverted residual"),
    ("efficientnet", r"efficient-?net|mbconv"),
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
    "image-classification": ("cnn", "resnet", "efficientnet", "mobilenet", "mlp"), "text-classification": ("lstm", "gru", "transformer"),
    "forecasting": ("lstm", "gru", "transformer", "mlp"), "streaming-inference": ("lstm", "gru", "transformer", "mlp"),
}
ARCH_TASK = {
    "cnn": "image-classification", "resnet": "image-classification", "efficientnet": "image-classification",
    "mobilenet": "image-classification",
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
IMAGE_DATASETS: list[tuple[str, str, tuple[int, ...], Optional[int]]] = [
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
