"""The task checks of object detection, policies, recommenders and graph networks.

Each is judged from one batch and one forward pass, like the other tasks (:mod:`.task`): what the
inputs are (images; observations; user and item ids; node features and edges), what the output holds
(boxes and class scores per anchor; action logits; one score per pair; one row per node or graph),
and, where the probe recorded the forward pass's data flow (torch), that the output was computed from
the inputs that make the task (a GNN's edges, a recommender's item ids). A policy is also judged by
its training, read from the source (:mod:`.reward_loss`): a loss driven by rewards.
"""

from __future__ import annotations

import math
import re
from typing import Optional

from deepdive.codegen.properties.facts import FAILED, MET, NOT_CHECKED, Judgement, ProgramFacts, plural, shape_text, where
from deepdive.codegen.properties.reward_loss import read_reward_losses
from deepdive.codegen.spec import Spec

Tensor = dict
"""One tensor the probe saw: ``{"key", "shape", "dtype"}``, and ``"range"`` or ``"sparse"`` where known."""


def _all(f: ProgramFacts, which: str) -> list[Tensor]:
    return [t for t in f.run.get(which) or [] if t.get("shape") is not None and None not in t["shape"]]


def _shapes(found: list[Tensor], limit: int = 3) -> str:
    """``(4, 3, 16, 16), (4,)``: the shapes of the first few tensors."""
    if not found:
        return "(none)"
    return ", ".join(shape_text(t["shape"]) for t in found[:limit]) + (", ..." if len(found) > limit else "")


def _reach(f: ProgramFacts) -> Optional[list[str]]:
    """The keys of the inputs the output was computed from; None where the data flow was not recorded."""
    g = f.graph
    if "reach" not in g or g.get("overflow"):
        return None
    return list(g["reach"])


def _unrecorded(f: ProgramFacts, what: str) -> str:
    """What is not checked where the data flow is not recorded (Keras has no op-by-op recorder)."""
    if f.framework == "tensorflow":
        return f" (Keras: that {what} is not checked)"
    return f" (the data flow was not recorded, so that {what} is not checked)"


# -- object detection -------------------------------------------------------------------------------


def object_detection(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    """Box coordinates (last dimension 4, or 4 per anchor in a map's channels) and class scores per box,
    for each image of a batch; targets that carry boxes, or are encoded like the output."""
    ins, outs = _all(f, "inputs"), _all(f, "outputs")
    images = _images(ins)
    if images is None:
        return FAILED, f"inputs {_shapes(ins)} are not images (N, C, H, W) or (N, H, W, C), nor a list of (C, H, W) images"
    seen, n, first = images
    if not outs:
        return NOT_CHECKED, f"{seen}; the forward pass returned no tensor"
    classes = spec.get("outputs") if spec is not None else None
    status, heads = _detection_heads(outs, n, f.framework, int(classes) if isinstance(classes, int) else None, first)
    if status != MET:
        return status, heads
    ok, targets = _detection_targets(_all(f, "targets"), outs)
    if not ok:
        return FAILED, targets
    return MET, f"{seen}; {heads}; {targets}"


def _images(ins: list[Tensor]) -> Optional[tuple[str, int, Tensor]]:
    """``(what, batch size, first image tensor)`` for a batch of images or a list of images."""
    for t in ins:
        if len(t["shape"]) == 4 and t["dtype"] in ("float", "int"):  # int: uint8 pixels
            return f"images {shape_text(t['shape'])}", t["shape"][0], t
    # A list of images (torchvision's convention): each (C, H, W) with 1, 3 or 4 channels, keyed by its place.
    singles = [t for t in ins if len(t["shape"]) == 3 and t["dtype"] == "float" and t["shape"][0] in (1, 3, 4)
               and re.search(r"\[\d+\]$", t["key"])]
    if singles and len(singles) == len(ins):
        return f"{len(singles)} images {shape_text(singles[0]['shape'])}", len(singles), singles[0]
    return None


def _boxy(key: str) -> bool:
    return bool(re.search(r"box|bbox|loc|reg", key.split(".")[-1].lower()))


def _detection_heads(outs: list[Tensor], n: int, framework: str, classes: Optional[int], image: Tensor) -> Judgement:
    """Where the boxes and the class scores are; ``(MET, description)`` or why not."""
    pair = _box_score_pair(outs, n, framework)
    if pair is not None:
        return MET, _describe_pair(*pair)
    per_image = _per_image(outs, n)
    if per_image is not None:
        return MET, per_image
    packed = [t for t in outs if len(t["shape"]) >= 3 and t["shape"][0] == n]
    if packed:
        return _packed(packed[0], framework, classes, image)
    flat = [t for t in outs if len(t["shape"]) == 2 and t["shape"][0] == n]
    box = next((t for t in flat if t["shape"][1] == 4), None)
    scores = next((t for t in flat if t is not box and t["dtype"] == "float"), None)
    if box is not None and scores is not None:
        return FAILED, (f"boxes {shape_text(box['shape'])} and class scores {shape_text(scores['shape'])} give one box "
                        "per image (object localisation), not several boxes per image with class scores each")
    return FAILED, (f"output {_shapes(outs)} is one vector per image, not box coordinates (..., 4) with class scores "
                    "per anchor, cell or query")


def _box_score_pair(outs: list[Tensor], n: int, framework: str) -> Optional[tuple[Tensor, Tensor, int, int, int]]:
    """``(boxes, scores, anchors, classes, axis)``: a box tensor with 4 values per anchor along ``axis``
    (the last, or a torch map's channels) and a score tensor alike in every other dimension."""
    for b in sorted(outs, key=lambda t: not _boxy(t["key"])):
        bs = b["shape"]
        if len(bs) < 3 or bs[0] != n:
            continue
        axes = ([1] if framework != "tensorflow" and len(bs) == 4 else []) + [len(bs) - 1]
        for axis in axes:
            if bs[axis] % 4 or not bs[axis]:
                continue
            anchors = bs[axis] // 4
            for s in outs:
                ss = s["shape"]
                if s is b or s["dtype"] != "float":
                    continue
                if (len(ss) == len(bs) and ss[axis] and ss[axis] % anchors == 0
                        and all(x == y for i, (x, y) in enumerate(zip(ss, bs)) if i != axis)):
                    return b, s, anchors, ss[axis] // anchors, axis
                if axis == len(bs) - 1 and anchors == 1 and ss == bs[:-1]:
                    return b, s, 1, 0, axis  # one score per box
    return None


def _describe_pair(b: Tensor, s: Tensor, anchors: int, classes: int, axis: int) -> str:
    bs, shown_b, shown_s = b["shape"], shape_text(b["shape"]), shape_text(s["shape"])
    per = f"{classes} class scores" if classes else "one score"
    if axis == len(bs) - 1 and anchors == 1:
        return f"boxes {shown_b} and class scores {shown_s}: {math.prod(bs[1:-1])} boxes per image, {per} each"
    times = f"{anchors} anchors x " if anchors > 1 else ""
    return f"box map {shown_b} ({times}4 coordinates per cell) and class map {shown_s} ({times}{per})"


def _per_image(outs: list[Tensor], n: int) -> Optional[str]:
    """Post-processed detections, one dict per image (torchvision's eval output): boxes (M, 4) and scores."""
    groups: dict[str, list[Tensor]] = {}
    for t in outs:
        m = re.match(r"^\[(\d+)\][.\[]", t["key"])
        if m:
            groups.setdefault(m.group(1), []).append(t)
    if len(groups) != n:
        return None
    for group in groups.values():
        box = next((t for t in group if len(t["shape"]) == 2 and t["shape"][1] == 4), None)
        if box is None or not any(t is not box and t["shape"][:1] == box["shape"][:1] for t in group):
            return None
    return f"per-image detections: boxes (M, 4) with a score or label per box for each of the {n} images"


def _packed(p: Tensor, framework: str, classes: Optional[int], image: Tensor) -> Judgement:
    """One tensor holding boxes and class scores per cell (YOLO): judged by the stated class count."""
    ps = p["shape"]
    axis = 1 if framework != "tensorflow" and len(ps) == 4 else len(ps) - 1
    spatial = (lambda s: s[2:4]) if framework != "tensorflow" else (lambda s: s[1:3])
    if len(ps) == 4 and len(image["shape"]) == 4 and spatial(ps) == spatial(image["shape"]):
        return FAILED, (f"output {shape_text(ps)} is a map at the input's size (as a segmentation gives), not boxes "
                        "with class scores")
    v, unit = ps[axis], "per cell" if len(ps) >= 4 else "per row"
    if classes:
        for extra, what in ((5, "4 coordinates, 1 objectness"), (4, "4 coordinates")):
            if v % (extra + classes) == 0:
                anchors = v // (extra + classes)
                return MET, (f"one packed tensor {shape_text(ps)}: {unit} {anchors} anchors x ({what}, {classes} class "
                             f"scores) ({classes} classes as stated)")
        if v > classes and (v - classes) % 5 == 0:
            return MET, (f"one packed tensor {shape_text(ps)}: {unit} {(v - classes) // 5} boxes x 5 values and "
                         f"{classes} class scores ({classes} classes as stated)")
        return FAILED, (f"output {shape_text(ps)}: {v} values {unit} do not hold 4 box coordinates (and a confidence) "
                        f"with {classes} class scores per box")
    if v == 4:
        return FAILED, f"output {shape_text(ps)} has box coordinates but no class scores per box"
    return NOT_CHECKED, (f"output {shape_text(ps)} packs {v} values {unit}: with no class count stated, its boxes and "
                         "class scores cannot be told apart; return boxes (..., 4) and class scores as separate tensors")


def _detection_targets(targets: list[Tensor], outs: list[Tensor]) -> tuple[bool, str]:
    if not targets:
        return True, "example_batch() gives no targets"
    encoded = [t for t in targets if any(t["shape"] == o["shape"] for o in outs)]
    boxes = [t for t in targets if len(t["shape"]) >= 2 and t["shape"][-1] == 4 and t not in encoded]
    if boxes:
        return True, f"targets carry boxes {shape_text(boxes[0]['shape'])}"
    if encoded:
        return True, f"targets {shape_text(encoded[0]['shape'])} are encoded like the output"
    return False, (f"targets {_shapes(targets)} carry no boxes (no tensor with last dimension 4, none shaped like an "
                   "output)")


# -- policy -----------------------------------------------------------------------------------------

_NO_REWARDS = ("but no loss uses rewards (read from the source): no log-probability of the taken actions multiplied "
               "by returns or advantages, and no Q-learning (Q-values of the taken actions and a TD target "
               "r + gamma * max Q')")


def policy(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    """Observations in, action logits (and a value) out, trained by a loss driven by rewards."""
    x = f.tensor("inputs")
    if not x:
        return NOT_CHECKED, "example_batch() returned no tensor inputs"
    shape = x["shape"]
    if x["dtype"] != "float" and not (x["dtype"] == "int" and len(shape) == 4):
        return FAILED, f"inputs {shape_text(shape)} are {x['dtype']} values, not observations: (N, obs_dim) floats or images"
    if len(shape) not in (2, 3, 4):
        return FAILED, f"inputs {shape_text(shape)} are not observations: (N, obs_dim) floats or images"
    outs = _all(f, "outputs")
    action, value = _policy_heads(outs, shape[0])
    if action is None:
        return FAILED, f"output {_shapes(outs)} is not action logits or Q-values (N, actions), nor (logits, value)"
    name = {"loc": "action means", "probs": "action probabilities"}.get(action["key"].split(".")[-1], "action logits")
    seen = f"observations {shape_text(shape)}, {name} {shape_text(action['shape'])}" + (
        f" and a value {shape_text(value['shape'])}" if value else "")
    if f.source.tree is None:
        return NOT_CHECKED, f"{seen}; the program's source was not available to read its loss from"
    losses = read_reward_losses(f.source.tree)
    if losses.policy_gradient:
        return MET, f"{seen}; policy-gradient loss {losses.policy_gradient[0]} (read from the source)"
    if losses.q_learning:
        return MET, (f"observations {shape_text(shape)}, Q-values {shape_text(action['shape'])}; Q-learning: "
                     f"{losses.q_learning[0]} (read from the source)")
    alone = f"; a value loss ({losses.value[0]}) alone trains no actions" if losses.value else ""
    return FAILED, f"{seen}, {_NO_REWARDS}{alone}"


def _policy_heads(outs: list[Tensor], n: int) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """``(action logits, value)``: per observation, logits over actions (a distribution's parameters, or
    means and their spread), and a value (N,) or (N, 1) if the model gives one."""
    heads = [t for t in outs if len(t["shape"]) == 2 and t["shape"][0] == n and t["dtype"] == "float"]
    dist = [t for t in heads if t["key"].split(".")[-1] in ("logits", "probs", "loc")]
    action = dist[0] if dist else next((t for t in heads if t["shape"][1] >= 2), None)
    if action is None and len(heads) >= 2:
        action = heads[0]  # a one-dimensional action: (mean, log_std) or (mean, value)
    if action is None:
        return None, None
    value = next((t for t in outs if t is not action and t["shape"] in ([n], [n, 1])
                  and t["key"].split(".")[-1] not in _DISTRIBUTION_PARAMS), None)
    return action, value


_DISTRIBUTION_PARAMS = frozenset({"loc", "scale", "logits", "probs", "scale_tril", "covariance_matrix", "concentration"})


# -- recommendation ---------------------------------------------------------------------------------


def recommendation(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    """User and item ids in, embedding tables, one score per (user, item) pair out (or, for user ids
    alone, scores over all items), computed from every id input."""
    ins = _all(f, "inputs")
    read = _id_inputs(ins)
    if read is None:
        return FAILED, f"inputs {_shapes(ins)} are not user and item ids: two int tensors (N,) or one (N, 2)"
    ids_text, needed, mode = read
    tables = [p for p, cls in f.run.get("modules", []) if cls in ("Embedding", "EmbeddingBag")]
    count = sum(f.counts.get(c, 0) for c in ("Embedding", "EmbeddingBag"))
    if not count:
        return FAILED, (f"no embedding table (nn.Embedding, keras Embedding) among the model's "
                        f"{f.run.get('module_count', 0)} modules")
    n, outs = needed[0][1]["shape"][0], _all(f, "outputs")
    if mode == "user":
        score = next((o for o in outs if len(o["shape"]) == 2 and o["shape"][0] == n and o["shape"][1] >= 2), None)
        if score is None:
            return FAILED, f"output {_shapes(outs)} is not scores over all items for each user (N, items)"
        what = f"scores over all {score['shape'][1]} items for each user"
    else:
        score = next((o for o in outs if o["shape"] in ([n], [n, 1])), None)
        if score is None:
            return FAILED, f"output {_shapes(outs)} is not one score per (user, item) pair: (N,) or (N, 1)"
        what = "one score per (user, item) pair"
        t = f.tensor("targets")
        if t and math.prod(t["shape"]) != n:
            return FAILED, f"targets {shape_text(t['shape'])} are not one rating or click per (user, item) pair"
    reach = _reach(f)
    uses = {"pair": "both ids", "pair-tensor": "the ids", "user": "the user ids"}[mode]
    if reach is None:
        note = _unrecorded(f, f"the score depends on {uses}")
    else:
        for role, t in needed:
            if t["key"] not in reach:
                ignored = f"the {role}s" if role in ("user", "item") else "them"
                return FAILED, (f"the output does not depend on the {role} ids {shape_text(t['shape'])} ({t['key']}): "
                                f"the score ignores {ignored}")
        note = f", computed from {uses}"
    return MET, (f"{ids_text}, {plural(count, 'embedding table')}{where(tables)}, output "
                 f"{shape_text(score['shape'])}: {what}{note}")


def _id_inputs(ins: list[Tensor]) -> Optional[tuple[str, list[tuple[str, Tensor]], str]]:
    """``(what, [(role, tensor)], mode)``: two id tensors (N,) or (N, 1), one (N, 2), or user ids alone."""
    ints = [t for t in ins if t["dtype"] == "int"]
    ids = [t for t in ints if len(t["shape"]) == 1 or len(t["shape"]) == 2 and t["shape"][1] == 1]
    if len(ids) >= 2 and ids[0]["shape"][0] == ids[1]["shape"][0]:
        users = next((t for t in ids if "user" in t["key"].lower()), ids[0])
        rest = [t for t in ids if t is not users]
        items = next((t for t in rest if "item" in t["key"].lower()), rest[0])
        return (f"user ids {shape_text(users['shape'])} and item ids {shape_text(items['shape'])}",
                [("user", users), ("item", items)], "pair")
    pair = next((t for t in ints if len(t["shape"]) == 2 and t["shape"][1] == 2), None)
    if pair is not None:
        return f"user and item ids {shape_text(pair['shape'])}", [("user and item", pair)], "pair-tensor"
    if len(ids) == 1:
        return f"user ids {shape_text(ids[0]['shape'])}", [("user", ids[0])], "user"
    return None


# -- graph ------------------------------------------------------------------------------------------


def graph(f: ProgramFacts, spec: Optional[Spec]) -> Judgement:
    """Node features with an edge_index or an adjacency in, one row per node or per graph out,
    computed from the features and the edges."""
    ins = _all(f, "inputs")
    found = _graph_inputs(ins)
    if found is None:
        return FAILED, (f"inputs {_shapes(ins)} are not node features (num_nodes, F) with an edge_index (2, E) or an "
                        "adjacency (num_nodes, num_nodes)")
    x, s, kind, graphs = found
    nodes = x["shape"][-2]
    outs = _all(f, "outputs")
    y = outs[0] if outs else None
    level = _graph_level(y["shape"] if y else None, x, graphs)
    if level is None:
        return FAILED, (f"output {shape_text(y and y['shape'])} has neither one row per node ({nodes}) nor one per "
                        f"graph ({graphs or 1})")
    t = f.tensor("targets")
    if t and t["shape"] and len(y["shape"]) >= 1 and t["shape"][0] != y["shape"][0]:
        return FAILED, f"targets {shape_text(t['shape'])} are not one per {level} like the output {shape_text(y['shape'])}"
    reach = _reach(f)
    if reach is None:
        note = _unrecorded(f, "the output depends on the edges")
    else:
        for what, tensor in ((kind, s), ("node features", x)):
            if tensor["key"] not in reach:
                return FAILED, (f"the output does not depend on the {what} {shape_text(tensor['shape'])} "
                                f"({tensor['key']}): no message passing over the graph")
        note = ", computed from the features and the edges"
    return MET, (f"node features {shape_text(x['shape'])} and {_structure(s, kind, graphs, x)}, output "
                 f"{shape_text(y['shape'])}: one row per {level}{note}")


def _graph_inputs(ins: list[Tensor]) -> Optional[tuple[Tensor, Tensor, str, Optional[int]]]:
    """``(node features, structure, "edge_index" | "edge list" | "adjacency", number of graphs)``."""
    for x in ins:
        if x["dtype"] != "float" or len(x["shape"]) not in (2, 3):
            continue
        batched, nodes = len(x["shape"]) == 3, x["shape"][-2]
        for s in ins:
            ss = s["shape"]
            if s is x:
                continue
            if not batched and s["dtype"] == "int" and len(ss) == 2 and _indexes(s, nodes):
                kind = "edge_index" if ss[0] == 2 else "edge list"
                return x, s, kind, _batch_vector(ins, nodes)
            if ss == ([x["shape"][0], nodes, nodes] if batched else [nodes, nodes]):
                return x, s, "adjacency", x["shape"][0] if batched else _batch_vector(ins, nodes)
    return None


def _indexes(s: Tensor, nodes: int) -> bool:
    """An edge_index (2, E) or edge list (E, 2) whose ids (where read) are nodes."""
    ss = s["shape"]
    if not (ss[0] == 2 and ss[1] >= 1 or ss[1] == 2 and ss[0] >= 1):
        return False
    low, high = s.get("range", (0, 0))
    return 0 <= low and high < nodes


def _batch_vector(ins: list[Tensor], nodes: int) -> Optional[int]:
    """The number of graphs a batch vector (num_nodes,) of graph ids gives, if there is one."""
    vec = next((t for t in ins if t["dtype"] == "int" and t["shape"] == [nodes] and "range" in t), None)
    return vec["range"][1] + 1 if vec else None


def _graph_level(ys: Optional[list], x: Tensor, graphs: Optional[int]) -> Optional[str]:
    """``node`` or ``graph``: what one row of the output is."""
    if not ys:
        return None
    batched, nodes = len(x["shape"]) == 3, x["shape"][-2]
    if batched:
        if ys[:2] == x["shape"][:2]:
            return "node"
        return "graph" if ys[0] == x["shape"][0] and len(ys) <= 2 else None
    if ys[0] == nodes:
        return "node"
    if graphs and ys[0] == graphs or len(ys) == 1 or ys[0] == 1:
        return "graph"
    return None


def _structure(s: Tensor, kind: str, graphs: Optional[int], x: Tensor) -> str:
    text = f"{kind} {shape_text(s['shape'])}"
    if "range" in s and kind != "adjacency":
        text += f" (node ids {s['range'][0]}..{s['range'][1]})"
    if s.get("sparse"):
        text += " (sparse)"
    if graphs and (len(x["shape"]) == 3 or graphs > 1):
        text += f" for {graphs} graphs"
    return text
