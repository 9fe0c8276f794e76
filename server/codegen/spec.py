"""What the request states, as checkable properties, apart from what any template can build.

The reading (:func:`deepdive.codegen.understand.read_request`) turns a prompt into a :class:`Spec`:
every property the prompt states (its task, input shape, outputs per example, architecture family,
layers it asks for or excludes, precision, distribution, framework, loss), the words it could not
place, and the numbers no property took. The :class:`~deepdive.codegen.intent.Intent` is a different thing: the
closest program the builtin generator can compose. The verifier checks a generated program against
the Spec — what was asked — never against the Intent; a property it cannot check is reported as
not checked, and "verified" means every stated property was checked and met.

Property names (``Stated.name``) and their values:

====================  ===================================================================
``task``              a task name (``str``): one of :data:`TASK_NAMES`
``framework``         ``"torch"`` or ``"tensorflow"``
``input_shape``       one example's shape without the batch dimension (``list[int]``); images as
                      ``[C, H, W]`` (a channels-last program meets it with ``[H, W, C]``)
``outputs``           output units per example (``int``): classes, labels, forecast horizon
                      times channels, vocabulary size of a language model
``family``            the architecture family (``str``): one of :data:`FAMILY_NAMES`
``layer_count``       ``[layer type name, count]``: exactly this many layers of this type
``has_layer``         a layer type name the model must contain (``"Dropout"``, ``"BatchNorm2d"``)
``no_layer``          a layer type name the model must not contain (an exclusion)
``precision``         ``"mixed"`` (autocast / a mixed precision policy) or ``"fp32"`` (explicitly
                      no mixed precision)
``distributed``       ``True`` (DDP / torchrun) or ``False`` (explicitly single process)
``loss``              the loss class name (``"BCEWithLogitsLoss"``, ``"CrossEntropyLoss"``, ...)
====================  ===================================================================

Layer type names are the framework's class names; for the checks both spellings are accepted where
torch and Keras differ (``Conv2d``/``Conv2D``, ``Linear``/``Dense``), see :data:`LAYER_ALIASES`.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import attrs

PropertyName = Literal["task", "framework", "input_shape", "outputs", "family", "layer_count", "has_layer",
                       "no_layer", "precision", "distributed", "loss"]
PROPERTY_NAMES: tuple[str, ...] = ("task", "framework", "input_shape", "outputs", "family", "layer_count",
                                   "has_layer", "no_layer", "precision", "distributed", "loss")

#: Tasks a request can state. The builtin generator builds some of them (see ``intent.TASKS``); a
#: model backend may build any.
TASK_NAMES: tuple[str, ...] = (
    "image-classification", "text-classification", "multi-label-classification", "tabular-classification",
    "regression", "forecasting", "autoencoder", "vae", "gan", "few-shot", "streaming-inference",
    "online-learning", "semantic-segmentation", "object-detection", "language-model", "sequence-labeling",
    "policy", "recommendation", "diffusion", "audio-classification", "graph", "signal-classification",
)

#: Architecture families a request can name.
FAMILY_NAMES: tuple[str, ...] = (
    "mlp", "cnn", "cnn1d", "resnet", "efficientnet", "unet", "lstm", "gru", "rnn", "transformer", "hf-finetune",
    "autoencoder", "vae", "gan", "protonet", "gnn", "vit", "mobilenet", "vgg", "yolo", "diffusion",
)

#: Layer types that mean the same across frameworks (the checks accept any name of a group).
LAYER_ALIASES: tuple[frozenset[str], ...] = (
    frozenset({"Conv2d", "Conv2D"}), frozenset({"Conv1d", "Conv1D"}), frozenset({"Linear", "Dense"}),
    frozenset({"BatchNorm2d", "BatchNormalization", "BatchNorm1d"}), frozenset({"LSTM"}), frozenset({"GRU"}),
    frozenset({"Dropout", "Dropout1d", "Dropout2d", "AlphaDropout", "SpatialDropout1D", "SpatialDropout2D"}),
    frozenset({"LayerNorm", "LayerNormalization"}),
    frozenset({"TransformerEncoderLayer", "TransformerDecoderLayer", "MultiheadAttention", "MultiHeadAttention"}),
)


@attrs.define(frozen=True)
class Stated:
    """One property the prompt states.

    Attributes:
        name (str): one of :data:`PROPERTY_NAMES`.
        value (Any): its value, JSON-able (see the module docstring).
        text (str): the words of the prompt that state it ("without dropout", "predicts the next 12"),
            so a result can quote the request back.
    """

    name: str
    value: Any
    text: str = ""

    def __attrs_post_init__(self) -> None:
        if self.name not in PROPERTY_NAMES:
            raise ValueError(f"unknown property {self.name!r}; one of {', '.join(PROPERTY_NAMES)}")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "text": self.text}


@attrs.define
class Spec:
    """Everything a prompt states, and what of it the parser could not read.

    Attributes:
        prompt (str): the request, as written.
        language (str): ``"en"`` or ``"zh"``.
        stated (list[Stated]): the properties the prompt states, in the order found.
        unknown (list[str]): words or phrases that name a task, architecture or layer the parser does
            not know ("U-Net" before it knew U-Nets, "capsule network"), quoted from the prompt.
        unplaced_numbers (list[str]): numbers of the prompt that no property took, quoted with a few
            words of context ("48 past values" when no input length was read from it).
        exclusions (list[str]): what the prompt excludes, as written ("without dropout",
            "don't use a transformer", "不要混合精度"); each also yields a ``no_layer``,
            ``precision`` or ``distributed`` property where the parser knows what it means.
    """

    prompt: str
    language: str = "en"
    stated: list[Stated] = attrs.Factory(list)
    unknown: list[str] = attrs.Factory(list)
    unplaced_numbers: list[str] = attrs.Factory(list)
    exclusions: list[str] = attrs.Factory(list)

    def get(self, name: str) -> Optional[Any]:
        """The value of the first stated property ``name``, or None."""
        return next((s.value for s in self.stated if s.name == name), None)

    def all(self, name: str) -> list[Any]:
        """The values of every stated property ``name`` (``has_layer`` and ``no_layer`` repeat)."""
        return [s.value for s in self.stated if s.name == name]

    @property
    def understood(self) -> bool:
        """True when nothing of the prompt was left unread (no unknown words, no unplaced numbers)."""
        return not self.unknown and not self.unplaced_numbers

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "language": self.language, "stated": [s.to_json() for s in self.stated],
                "unknown": list(self.unknown), "unplaced_numbers": list(self.unplaced_numbers),
                "exclusions": list(self.exclusions)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Spec":
        return cls(prompt=data["prompt"], language=data.get("language", "en"),
                   stated=[Stated(s["name"], s["value"], s.get("text", "")) for s in data.get("stated", ())],
                   unknown=list(data.get("unknown", ())), unplaced_numbers=list(data.get("unplaced_numbers", ())),
                   exclusions=list(data.get("exclusions", ())))


def same_layer(a: str, b: str) -> bool:
    """True when layer type names ``a`` and ``b`` name the same kind of layer (see :data:`LAYER_ALIASES`)."""
    if a == b:
        return True
    return any(a in group and b in group for group in LAYER_ALIASES)
