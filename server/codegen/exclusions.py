"""What a prompt excludes: "without dropout", "don't use a transformer", "instead of an LSTM", 不用混合精度.

A negation cue opens a scope that runs to the end of its clause. The excluded things are the known
terms that follow the cue one after another (articles, "use", "and"/"or" between them): "without
dropout and batch norm" excludes both, "without dropout for MNIST" only dropout, and "no more than 3
layers" nothing ("no" and "not" are weak cues: without a known term they exclude nothing). A strong
cue ("without", "don't", 不要, 去掉...) followed by nothing known is kept as an exclusion the parser did
not understand, so the reading can say so instead of ignoring it.

Each term has its effects on the reading: a layer type the model must not contain (``no_layer``),
an architecture family not to use, fp32 instead of mixed precision, one process instead of
distributed training, a training feature left out, a library not to import ("no torch_geometric":
understood, no property changes). The cue and the terms are blanked out of the text the positive
rules read, so "do not use mixed precision" no longer turns mixed precision on.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

__all__ = ["Exclusion", "find_exclusions", "blank"]

Span = tuple[int, int]

# Cues, longest first so that "do not use" wins over "not". English ones need word boundaries.
_STRONG_EN = (r"(?:do|does|did)\s*(?:not|n't|nt)\s+(?:want\s+(?:to\s+use\s+)?|need\s+|use\s+|include\s+|add\s+|apply\s+|have\s+)|"
              r"don't|dont|do not|doesn't|does not|without|w/o|no need for|never use|never|avoid(?:ing)?|"
              r"exclud(?:e|ing)|disabl(?:e|ing)|turn(?:ing)? off|skip(?:ping)?(?!\s*-?connections?)|instead of|rather than|"
              r"replace|remove|removing")
_WEAK_EN = r"no|not|minus"
_STRONG_ZH = ("不要使用|不要用|不使用|不需要|不要|不用|无需|不需|别用|不采用|不加|去掉|去除|移除|删除|删掉|禁用|关闭|不含|不带|"
              "没有|而不是|不是|代替|替代|取代|替换掉|替换")
_CUE = re.compile(rf"(?P<strong>\b(?:{_STRONG_EN})(?![a-z])|{_STRONG_ZH}|把(?=[^,;.!?:，。；！？]{{1,20}}?(?:换成|替换成|改成|改为|换为)))"
                  rf"|(?P<weak>\b(?:{_WEAK_EN})\b)", re.ASCII)
_CLAUSE_END = re.compile(r"[,;.!?:()\n，。；！？：]|\b(?:but|with|for|on|in|into|to|that|which|so|because|while|when|then|"
                         r"as|from|at|via|by)\b|换成|替换成|改成|改为|换为", re.ASCII)
# Before the first term: articles and verbs ("don't use a", 不要使用任何); between terms: and/or.
_LEAD = re.compile(r"(?:\s+|\b(?:a|an|the|any|use|using|to use|to)\b|用|使用|任何|采用|加|带)*", re.ASCII)
_JOIN = re.compile(r"\s*(?:and|or|nor|&|/|和|与|及|以及|或者|或|,)\s*(?:(?:a|an|the|any)\s+)?", re.ASCII)

# Libraries not to import ("in plain PyTorch, no torch_geometric"): no layer or family is excluded. The builtin's
# programs import none of them; the exclusion is passed on as written to a model backend.
_LIBRARIES: list[tuple[str, str]] = [
    ("torch_geometric", r"torch[_ -]?geometric|pytorch[_ -]geometric|pyg"), ("dgl", r"dgl|deep graph library"),
    ("torch_scatter", r"torch[_ -]?scatter"), ("torch_sparse", r"torch[_ -]?sparse"), ("networkx", r"networkx"),
    ("spektral", r"spektral"), ("stellargraph", r"stellargraph"),
    ("transformers", r"(?:the )?(?:hugging ?face )?transformers (?:library|package)|hugging ?face(?: transformers)?"),
    ("timm", r"timm"), ("lightning", r"pytorch[- ]lightning|lightning"), ("sklearn", r"scikit-learn|sklearn"),
]

# (pattern, effects): the terms an exclusion can name, and what excluding each means.
_TERMS: list[tuple[str, list[tuple[str, Any]]]] = [
    (r"drop-?out(?: layers?)?|丢弃层?|随机失活|dropout", [("no_layer", "Dropout")]),
    (r"batch[- ]?norm(?:ali[sz]ation)?(?: layers?)?|bn(?: layers?)?|批归一化|批量归一化|批标准化|批规范化|bn层",
     [("no_layer", "BatchNorm2d")]),
    (r"layer[- ]?norm(?:ali[sz]ation)?(?: layers?)?|层归一化", [("no_layer", "LayerNorm")]),
    (r"mixed[- ]precision(?: training)?|amp|autocast|fp16|bf16|bfloat16|half[- ]precision|混合精度|半精度",
     [("precision", "fp32")]),
    (r"distributed(?: data[- ]parallel| training)?|ddp|torchrun|multi-?gpu(?: training)?|multiple gpus|multi-?node|"
     r"data[- ]parallel(?:ism)?|分布式(?:训练)?|多卡|多机|多gpu", [("distributed", False)]),
    *[(pattern, [("library", name)]) for name, pattern in _LIBRARIES],
    (r"vision transformers?|vit", [("family", "vit"), ("no_layer", "TransformerEncoderLayer")]),
    (r"transformers?(?: encoders?| layers?| blocks?)?|self-attention|attention(?: layers?| mechanisms?)?|注意力(?:机制)?",
     [("family", "transformer"), ("no_layer", "TransformerEncoderLayer")]),
    (r"lstms?(?: layers?)?|长短期记忆(?:网络)?", [("family", "lstm"), ("no_layer", "LSTM")]),
    (r"grus?(?: layers?)?", [("family", "gru"), ("no_layer", "GRU")]),
    (r"rnns?|recurrent (?:layers?|networks?|neural networks?)|循环神经网络|循环网络",
     [("family", "rnn"), ("no_layer", "LSTM"), ("no_layer", "GRU")]),
    (r"cnns?|conv(?:olution(?:al)?)?s?(?: layers?| networks?| neural networks?)?|卷积(?:层|神经网络|网络)?",
     [("family", "cnn"), ("no_layer", "Conv2d")]),
    (r"res-?nets?|residual (?:connections?|blocks?)|skip connections?|残差(?:连接|块|网络)?", [("family", "resnet")]),
    (r"mlps?|fully[- ]connected(?: layers?)?|全连接(?:层|网络)?", [("family", "mlp")]),
    (r"check-?points?(?:ing)?|断点(?:续训)?|检查点", [("feature", "checkpoint")]),
    (r"early[- ]stopping|早停|提前停止", [("feature", "early_stopping")]),
    (r"(?:lr|learning[- ]rate) (?:schedul(?:e|er|ing)|decay)|warm-?up|学习率(?:调度|衰减|预热)", [("feature", "lr_schedule")]),
    (r"optuna|hyper-?parameter (?:search|tuning|optimi[sz]ation)|tuning|超参数?(?:搜索|调优)?|调参", [("feature", "optuna")]),
    (r"quanti[sz](?:e|ation|ing)|量化", [("feature", "quantize")]),
    (r"prun(?:e|ing)|剪枝", [("feature", "prune")]),
    (r"onnx(?: export)?", [("feature", "onnx")]),
    (r"torch-?script", [("feature", "torchscript")]),
    (r"deepdive(?:'s)?(?: engine)?|engine|引擎", [("engine", False)]),
    (r"pre-?trained(?: weights| models?)?|预训练(?:权重|模型)?", [("pretrained", False)]),
    # Understood, nothing to change: the programs use a GPU only when there is one, and never download.
    (r"(?:a )?gpus?|cuda|显卡", []),
    (r"download(?:ing)?(?: anything| data(?:sets?)?| weights| the data(?:set)?| models?)?|下载(?:数据|权重|模型)?", []),
]
_TERM = re.compile("|".join(f"(?P<t{i}>(?:{p})(?![a-z0-9]))" for i, (p, _) in enumerate(_TERMS)), re.ASCII)


@attrs.define
class Exclusion:
    """One exclusion of the prompt.

    Attributes:
        text (str): as written (the cue and what it excludes): "without dropout", "不用混合精度".
        effects (list[tuple[str, Any]]): what it means, e.g. ``[("no_layer", "Dropout")]``; empty for a
            term understood to change nothing ("without a GPU") and for one not understood.
        spans (list[Span]): the cue and the terms, blanked out of the positive reading.
        understood (bool): False for a strong cue followed by nothing the parser knows.
    """

    text: str
    effects: list[tuple[str, Any]]
    spans: list[Span]
    understood: bool = True


def find_exclusions(low: str, text: str) -> list[Exclusion]:
    """The exclusions of normalised lower-case ``low``, quoted from ``text`` (same length, case kept)."""
    found: list[Exclusion] = []
    pos = 0
    while True:
        cue = _CUE.search(low, pos)
        if cue is None:
            return found
        end = _clause_end(low, cue.end())
        terms = _terms(low, cue.end(), end)
        pos = max(cue.end(), terms[-1].end() if terms else cue.end())
        if terms:
            effects = [effect for m in terms for effect in _TERMS[_term_index(m)][1]]
            found.append(Exclusion(text=text[cue.start():terms[-1].end()].strip(), effects=effects,
                                   spans=[cue.span()] + [m.span() for m in terms]))
        elif cue.group("strong") and not cue.group("strong").startswith("把"):
            words = re.match(r"\s*(\S+(?:\s+\S+){0,2})?", text[cue.end():end])
            quote = (text[cue.start():cue.end()] + " " + (words.group(1) or "")).strip() if words else cue.group(0)
            found.append(Exclusion(text=quote, effects=[], spans=[cue.span()], understood=False))


def blank(text: str, spans: list[Span]) -> str:
    """``text`` with every span replaced by spaces (lengths kept, so other spans stay valid)."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _clause_end(low: str, start: int) -> int:
    m = _CLAUSE_END.search(low, start)
    return m.start() if m else len(low)


def _terms(low: str, start: int, end: int) -> list[re.Match]:
    """The known terms that follow ``start`` one after another, before ``end``."""
    terms: list[re.Match] = []
    pos = _LEAD.match(low, start).end()
    while pos < end:
        m = _TERM.match(low, pos)
        if m is None or m.end() > end:
            break
        terms.append(m)
        joined = _JOIN.match(low, m.end())
        if joined is None or joined.end() == m.end():
            break
        pos = joined.end()
    return terms


def _term_index(m: re.Match) -> int:
    return next(int(name[1:]) for name, value in m.groupdict().items() if value is not None)
