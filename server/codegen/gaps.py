"""What the builtin's program would not honour of a request: one line per stated thing it would miss.

The builtin's own account of its program (:func:`deepdive.codegen.builtin.traits.describe`) is
compared with every property the Spec states; the unknown words and unplaced numbers of the Spec
are gaps too (the program cannot honour what was not understood). A request with gaps is not
answered with the builtin's program: the lines say what is missing.
"""

from __future__ import annotations

from typing import Optional

from deepdive.codegen.intent import Intent
from deepdive.codegen.spec import Spec, Stated, same_layer

__all__ = ["gaps_of", "TASK_LABEL", "FAMILY_LABEL"]

TASK_LABEL = {
    "image-classification": "image classification", "text-classification": "text classification",
    "multi-label-classification": "multi-label classification", "tabular-classification": "tabular classification",
    "regression": "regression", "forecasting": "forecasting", "autoencoder": "an autoencoder",
    "vae": "a variational autoencoder", "gan": "a GAN", "few-shot": "few-shot classification",
    "streaming-inference": "streaming inference", "online-learning": "online learning",
    "semantic-segmentation": "semantic segmentation", "object-detection": "object detection",
    "language-model": "a language model", "sequence-labeling": "sequence labelling (tagging each token)",
    "policy": "a policy network (reinforcement learning)", "recommendation": "a recommendation model",
    "diffusion": "a diffusion model", "audio-classification": "audio classification", "graph": "a graph neural network",
    "signal-classification": "classification of 1-D signals",
}
FAMILY_LABEL = {
    "mlp": "an MLP", "cnn": "a convolutional network (CNN)", "cnn1d": "a 1-D convolutional network", "resnet": "a ResNet",
    "efficientnet": "an EfficientNet", "unet": "a U-Net", "lstm": "an LSTM", "gru": "a GRU", "rnn": "a recurrent network",
    "transformer": "a Transformer", "hf-finetune": "a fine-tuned Hugging Face model", "autoencoder": "an autoencoder",
    "vae": "a variational autoencoder", "gan": "a GAN", "protonet": "a prototypical network", "gnn": "a graph neural network",
    "vit": "a vision transformer (ViT)", "mobilenet": "a MobileNet", "vgg": "a VGG network", "yolo": "a YOLO detector",
    "diffusion": "a diffusion model",
}

# The name of a built model, most specific first (a ResNet rather than a CNN, an MLP rather than "an autoencoder").
_PREFERRED = ("hf-finetune", "resnet", "efficientnet", "mobilenet", "transformer", "lstm", "gru", "cnn", "mlp")


def gaps_of(spec: Spec, intent: Optional[Intent]) -> list[str]:
    """One line per stated thing the builtin's program would not honour, then the unread words and numbers."""
    from deepdive.codegen.builtin.traits import describe

    gaps: list[str] = []
    built = None
    if intent is not None:
        try:
            built = describe(intent)
        except ValueError as exc:
            gaps.append(str(exc))
    if intent is None:
        task = spec.get("task")
        family = spec.get("family")
        if task:
            gaps.append(f'{TASK_LABEL[task]} ("{_text(spec, "task")}"): the builtin has no template for it')
        elif family:
            gaps.append(f'{FAMILY_LABEL.get(family, family)} ("{_text(spec, "family")}"): the builtin has no template for it')
        elif not spec.unknown:
            gaps.append("nothing in the prompt names a task, an architecture or a layer the builtin knows")
    elif built is not None:
        for stated in spec.stated:
            line = _gap(stated, built, intent)
            if line:
                gaps.append(line)
    gaps += [f'"{word}": not understood; the builtin\'s program does not include it' for word in spec.unknown]
    gaps += [f'"{number}": a number nothing in the builtin\'s program takes' for number in spec.unplaced_numbers]
    return gaps


def _text(spec: Spec, name: str) -> str:
    return next((s.text for s in spec.stated if s.name == name), "")


def _gap(s: Stated, built, intent: Intent) -> Optional[str]:
    """The gap line for one stated property, or None when the builtin's program honours it."""
    quoted = f'("{s.text}")' if s.text else ""
    if s.name == "task" and s.value != built.task:
        if s.value == "multi-label-classification":
            return (f"multi-label classification {quoted}: the builtin classifies several labels per example only for text, "
                    "with PyTorch")
        return f"{TASK_LABEL[s.value]} {quoted}: the builtin has no template for it"
    if s.name == "input_shape" and tuple(s.value) != tuple(built.input_shape):
        return f"input shape {tuple(s.value)} {quoted}: the builtin's program takes {tuple(built.input_shape)}"
    if s.name == "outputs" and s.value != built.outputs:
        return f"{s.value} outputs per example {quoted}: the builtin's program has {built.outputs}"
    if s.name == "family" and s.value not in built.families:
        have = next((f for f in _PREFERRED if f in built.families), sorted(built.families)[0])
        return f"{FAMILY_LABEL.get(s.value, s.value)} {quoted}: the builtin's program is {FAMILY_LABEL.get(have, have)}"
    if s.name == "layer_count":
        kind, n = s.value
        if built.layer_count is None or not same_layer(kind, built.layer_count[0]) or n != built.layer_count[1]:
            have = f"{built.layer_count[1]} {built.layer_count[0]}" if built.layer_count else "no such count"
            return f"{n} {kind} layers {quoted}: the builtin's program has {have}"
    if s.name == "has_layer" and not any(same_layer(s.value, layer) for layer in built.layers):
        return f"{s.value} layers {quoted}: the builtin's program has none"
    if s.name == "no_layer" and any(same_layer(s.value, layer) for layer in built.layers):
        return f"no {s.value} {quoted}: the builtin's program keeps its {s.value} layers"
    if s.name == "precision" and s.value != built.precision:
        return f"{s.value} precision {quoted}: the builtin's program trains in {built.precision}"
    if s.name == "distributed" and s.value != built.distributed:
        kind = {"gan": "GAN", "online-learning": "online learning"}.get(intent.task, intent.task)
        return f"distributed training {quoted}: the builtin's {kind} program runs in one process"
    if s.name == "loss" and s.value != built.loss:
        return f"{s.value} {quoted}: the builtin's program uses {built.loss or 'its own loss'}"
    return None
