"""The sizes a request states for tasks the builtin has no template for: input shapes and outputs per example.

:mod:`deepdive.codegen.understand` reads a builtin task's shapes from its Intent; the tasks read here
have no Intent of their own (or only a frame of another task), so their sizes are read from the
words that state them:

- a 1-D signal is ``[channels, length]`` ("12-lead ECG, 5000 samples", "3 axes x 128 samples", 12导联);
  one channel when the prompt names no channel count;
- a graph's input is one node's feature vector ``[F]`` (the checks drop the node dimension);
- a policy reads an observation vector ``[D]`` and scores its actions;
- audio is a spectrogram ``[channels, mel bins, frames]`` or a waveform ``[channels, samples]``,
  one channel when the prompt names none (a mono recording);
- a recommender scores one (user, item) pair (1 output) or all N items for a user (N outputs);
- a regression predicts one named quantity (1 output) or the count of targets it names.

Each reader returns the value and the spans of the words that state it (so every number in them
is placed), or ``(None, [])`` when the prompt does not state it. Nothing here guesses: a size the
words do not give is left unstated, and its numbers stay unplaced.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from deepdive.codegen.intent_rules import search
from deepdive.codegen.parse import FieldReader

__all__ = ["signal_shape", "graph_shape", "policy_shape", "audio_shape", "recording_numbers", "regression_outputs",
           "recommendation_outputs", "recommendation_numbers", "policy_outputs", "diffusion_numbers", "graph_numbers",
           "all_series_forecast"]

Span = tuple[int, int]
Sized = tuple[Optional[Any], list[Span]]

_SIGNAL_CHANNELS = r"(\d+)[- ]?(?:[a-z][a-z-]*\s+)?(?:channels?|leads?|axes|axis|sensors?)\b|(\d+)\s*个?(?:通道|导联|轴|传感器)"
_SIGNAL_LENGTH = (r"(?:length|of length|long)\s*(?:of\s*)?(\d+)|(\d+)[- ]?(?:samples?|points?|time ?steps?|readings)(?: long)?\b|"
                  r"长度\s*(?:为|是)?\s*(\d+)|(\d+)\s*个?(?:采样点|点|时间步)")
_GRAPH_FEATURES = (r"(\d+)[- ]?(?:dim(?:ension(?:al)?)?|d)?\s*(?:(?:node|input|atom|vertex)\s+)?"
                   r"(?:features?|feature vectors?|attributes)\b|"
                   r"(?:node |input )?features?(?: vectors?)?\s*(?:of\s+)?(?:dim(?:ension)?|size|length)(?: of| =|=|:| is)?\s*(\d+)|"
                   r"(?:节点|原子)?特征\s*(?:维度|维数)?(?:为|是)?\s*(\d+)\s*维?|(\d+)\s*维(?:的)?(?:节点|原子)?特征|"
                   r"(\d+)\s*个?(?:节点|原子)?特征")
_OBSERVATIONS = (r"(\d+)[- ]?(?:dim(?:ension(?:al)?)?\s+)?(?:observations?|states?|obs)\b|"
                 r"(?:observation|state)(?: space)?(?: dim(?:ension)?| size)?(?: of| =|=|:)?\s*(\d+)|(\d+)\s*维(?:状态|观测)|"
                 r"(?:状态|观测)(?:空间)?(?:维度|维数|大小)(?:为|是)?\s*(\d+)|(?:状态|观测)(?:空间)?(?:为|是)?\s*(\d+)\s*维")
_ACTIONS = r"(\d+)\s*(?:(?:discrete|continuous)\s+)?actions|(?:action space|actions?)(?: size| dim)?(?: of| =|=|:)?\s*(\d+)|(\d+)\s*个动作"
_MEL_BY_FRAMES = (r"(\d+)\s*(?:mel(?:s| bins| filters| bands)?|frequency bins|mfccs?)\s*(?:x|by)\s*(\d+)\s*(?:frames|time ?steps|steps)|"
                  r"(\d+)\s*个?梅尔(?:滤波器|频带)?\s*x\s*(\d+)\s*帧")
_WAVEFORM = r"(\d+)\s*samples\b|(\d+)\s*个?采样点"
_AUDIO_NUMBERS = (r"\d+(?:\.\d+)?\s*k?hz\b|\d+(?:\.\d+)?[- ]?(?:s|sec|secs|seconds?)\b|"
                  r"\d+\s*(?:mel(?:s| bins| filters)?|mfccs?|frames)\b|\d+\s*(?:个)?(?:梅尔|帧)|\d+\s*秒")
_TARGETS = (r"(\d+)\s*(?:(?:target|output|regression)\s+)?(?:targets|outputs|output values|target values|target variables|"
            r"output units)\b|(\d+)\s*个?(?:输出|目标值|目标变量)")
_ONE_TARGET = (r"\b(?:one|a single|single|1)\s+(?:(?:target|output|continuous|numeric|real|scalar)\s+)?"
               r"(?:value|target|output|number|scalar|variable)\b(?!\s*layers?)|\bscalar (?:output|target|value)\b|"
               r"单(?:个)?输出|1个(?:输出|目标|值)")
# "prices and rents", "price, size": more than one quantity after the one the task rule read.
_AND_ANOTHER = r"^\s*(?:and|,|&|/|和|与|及)\s*(?:the |its |their )?(?:[a-z-]+ )?(?:prices?|costs?|values?|amounts?|sales|revenue|" \
               r"salar(?:y|ies)|income|demand|temperatures?|ratings?|quantit(?:y|ies)|yield|consumption|rents?|sizes?|" \
               r"counts?|scores?|areas?|volumes?|durations?|ages?|weights?|heights?)\b|^\s*(?:和|与|及)\s*[\u4e00-\u9fff]{1,4}"
_ITEMS = r"items|movies|products|songs|books|articles|videos|candidates|restaurants"
_ALL_ITEMS = (rf"\ball(?: of)?(?: the)?\s+(\d+)\s+(?:[a-z-]+\s+)?(?:{_ITEMS})\b|"
              r"(?:全部|所有)(?:的)?\s*(\d+)\s*个?(?:物品|商品|电影|歌曲|书|项目|候选)")
_ONE_SCORE = (r"\b(?:one|a|a single|1)\s+(?:[a-z-]+\s+)?(?:rating|score|probability|value|logit)s?\s+"
              r"(?:per|for (?:each|every|a|the|one))\b|\bpredicts? (?:a|the|one) (?:[a-z-]+ )?(?:rating|score|probability)\b|"
              r"预测(?:[\u4e00-\u9fff]{0,8}的)?(?:评分|分数)")
_USERS_ITEMS = (rf"(\d+)\s*(?:[a-z-]+\s+)?(?:users|customers|{_ITEMS})\b|"
                r"(\d+)\s*个?(?:用户|物品|商品|电影|歌曲|顾客)")
_NOISE_STEPS = (r"\d+\s*(?:diffusion |noise |denoising )?(?:timesteps|time ?steps|steps|noise levels)\b|\bt\s*=\s*\d+\b|"
                r"\d+\s*个?(?:时间步|扩散步|步)")
_GRAPH_SIZES = r"\d+\s*(?:nodes|edges|graphs|molecules|vertices)\b|\d+\s*(?:个|条)?(?:节点|边|图|分子)"
# "for all 6 channels", "every one of 3 variables", 所有通道: a forecast of each channel, not of one target.
_ALL_SERIES = (r"\b(?:all|each|every)(?: one)?(?: of)?(?: the)?\s+(?:\d+\s+)?(?:[a-z-]+\s+)?(?:channels|sensors|variables|series)\b|"
               r"\bmultivariate (?:outputs?|forecasts?)\b|(?:所有|全部|每个)(?:的)?\s*(?:\d+\s*个)?(?:通道|变量|传感器|序列)")


def _number(m: re.Match) -> int:
    return int(next(g for g in m.groups() if g))


def signal_shape(r: FieldReader, pos: str) -> Sized:
    """``[channels, length]`` of a 1-D signal; ``[a, b]`` of "shape 3x1024" (channels the smaller)."""
    c = search(_SIGNAL_CHANNELS, pos)
    n = search(_SIGNAL_LENGTH, pos)
    if n:
        channels = _number(c) if c else 1
        return [channels, _number(n)], [n.span()] + ([c.span()] if c else [])
    if "image_hw" in r.found and not c:
        hw, span = r.found["image_hw"]
        return sorted(hw), [span]
    return None, []


def graph_shape(pos: str) -> Sized:
    """``[F]``: the feature vector of one node ("1433-dim node features", "9 features per atom", 节点特征32维)."""
    m = search(_GRAPH_FEATURES, pos)
    return ([_number(m)], [m.span()]) if m else (None, [])


def policy_shape(pos: str) -> Sized:
    """``[D]``: the observation vector ("4-dimensional observations", "8-dim state", 状态维度8)."""
    m = search(_OBSERVATIONS, pos)
    return ([_number(m)], [m.span()]) if m else (None, [])


def policy_outputs(pos: str) -> Sized:
    """The number of actions ("2 discrete actions", 4个动作)."""
    m = search(_ACTIONS, pos)
    return (_number(m), [m.span()]) if m else (None, [])


def audio_shape(r: FieldReader, pos: str) -> Sized:
    """A spectrogram ``[C, mel bins, frames]`` or a waveform ``[C, samples]``; C is 1 unless stated."""
    channels = r.found.get("channels", (None,))[0]
    channel_spans = [r.found["channels"][1]] if "channels" in r.found else []
    if "image_hw" in r.found:
        hw, span = r.found["image_hw"]
        return [channels or 1, *hw], [span] + channel_spans
    m = search(_MEL_BY_FRAMES, pos)
    if m:
        a, b = (int(g) for g in m.groups() if g)
        return [channels or 1, a, b], [m.span()] + channel_spans
    m = search(_WAVEFORM, pos)
    if m:
        return [channels or 1, _number(m)], [m.span()] + channel_spans
    return None, []


def recording_numbers(pos: str) -> list[Span]:
    """Sample rate, clip or window length, spectrogram sizes of audio or a signal: read, though no property takes them."""
    return [m.span() for m in re.finditer(_AUDIO_NUMBERS, pos, re.ASCII)]


def regression_outputs(pos: str, task: Optional[re.Match]) -> Sized:
    """The targets a regression predicts: the count it names, else 1 for "one value" or one named quantity.

    ``task`` is the match of the words that named the regression ("predicts house prices"); each
    quantity named after it ("prices and rents") is one more output.
    """
    m = search(_TARGETS, pos)
    if m:
        return _number(m), [m.span()]
    m = search(_ONE_TARGET, pos)
    if m:
        return 1, [m.span()]
    if task is None or not re.match(r"predict|预测", task.group(0)):
        return None, []
    count, end = 1, task.end()  # "predicts house prices": one price per example
    while (more := search(_AND_ANOTHER, pos[end:])) is not None:
        count, end = count + 1, end + more.end()
    return count, [(task.start(), end)]


def recommendation_outputs(pos: str) -> Sized:
    """N for a score of each of all N items, 1 for one rating or score per (user, item) pair."""
    m = search(_ALL_ITEMS, pos)
    if m:
        return _number(m), [m.span()]
    m = search(_ONE_SCORE, pos)
    if m:
        return 1, [m.span()]
    return None, []


def recommendation_numbers(pos: str) -> list[Span]:
    """The counts of users and items (the sizes of the embedding tables): read, though no property takes them."""
    return [m.span() for m in re.finditer(_USERS_ITEMS, pos, re.ASCII)]


def diffusion_numbers(pos: str) -> list[Span]:
    """The number of noise steps ("1000 timesteps", 1000步): read, though no property takes it."""
    return [m.span() for m in re.finditer(_NOISE_STEPS, pos, re.ASCII)]


def graph_numbers(pos: str) -> list[Span]:
    """The counts of nodes, edges and graphs (the data's size): read, though no property takes them."""
    return [m.span() for m in re.finditer(_GRAPH_SIZES, pos, re.ASCII)]


def all_series_forecast(pos: str) -> Optional[re.Match]:
    """The words that ask a multivariate forecast of every series ("for all 6 sensor channels"), or None."""
    return search(_ALL_SERIES, pos)
