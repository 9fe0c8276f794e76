"""What a model backend is told: the contract, the request's stated properties, the frame, the repairs.

The system prompt lists every property the request states (its :class:`~deepdive.codegen.spec.Spec`)
as what the checker verifies, in the words of the check that will judge it, so the model aims at
what is checked; the builtin's closest program goes along as the frame when there is one, with what
it does not do as asked. After a failed verification the model gets the failing check's or
property's own detail, not a summary of it.
"""

from __future__ import annotations

import json
import re
from typing import Optional, Sequence

from deepdive.codegen.generation import GenerateCheck, PropertyCheck
from deepdive.codegen.intent import Intent
from deepdive.codegen.spec import Spec, Stated

__all__ = ["system_prompt", "user_message", "repair_message", "property_lines", "framework_of_request"]

FRAMEWORK_NAMES = {"torch": "PyTorch", "tensorflow": "TensorFlow/Keras"}

# How the checker judges each task, as the model should read it.
_TASKS = {
    "image-classification": "image classification: inputs are images, the model outputs one score per class (N, classes)",
    "text-classification": "text classification: inputs are token ids (N, T), the model outputs (N, classes)",
    "tabular-classification": "tabular classification: inputs are feature vectors (N, F), the model outputs (N, classes)",
    "multi-label-classification": "multi-label classification: output (N, labels), targets one 0/1 flag per label "
                                  "(N, labels), a binary cross-entropy loss per label (BCEWithLogitsLoss)",
    "regression": "regression: real-valued targets with as many values as the output",
    "forecasting": "forecasting: inputs are a window of past values (N, T) or (N, T, C), the output holds the "
                   "future values, the targets have the output's size",
    "semantic-segmentation": "semantic segmentation: the output is class scores per pixel (N, classes, H, W) with the "
                             "input's H and W",
    "language-model": "language modelling: inputs are token ids (N, T), the output is (N, T, vocabulary)",
    "sequence-labeling": "sequence labelling: one tag score vector per input token, output (N, T, tags)",
    "autoencoder": "autoencoder: the output has the input's shape and passes through a narrower code",
    "vae": "VAE: the model returns (reconstruction, mu, logvar), the reconstruction of the input's shape",
    "diffusion": "a denoising diffusion step: the model takes (noisy input, timesteps of shape (N,)) and predicts "
                 "noise of the input's shape; example_batch() returns ((x, t), target)",
    "audio-classification": "audio classification: inputs are waveforms (N, T) or spectrograms (N, 1, F, T), "
                            "output (N, classes)",
    "signal-classification": "classification of 1-D signals: inputs (N, T) or (N, C, T), output (N, classes)",
    "object-detection": "object detection: inputs are images (N, C, H, W); the model returns box coordinates and class "
                        "scores per anchor/cell/query as separate tensors, e.g. (boxes (N, A, 4), class scores (N, A, "
                        "classes)) or conv maps (N, 4*A, H', W') and (N, classes*A, H', W'); example_batch()'s targets "
                        "carry boxes (..., 4)",
    "policy": "a policy network trained from rewards: inputs are observations (N, obs_dim) floats (or images), the model "
              "returns action logits (N, actions) or (logits, value (N, 1)); the training code's loss is "
              "-(log-probability of the taken actions (torch.distributions.Categorical(logits=...).log_prob(actions), "
              "or log_softmax(...).gather(1, actions)) * returns or advantages).mean(), or Q-learning (Q-values gathered "
              "on the actions regressed on rewards + gamma * next_q.max(1).values * (1 - dones)); a cross-entropy on "
              "labels is not a policy",
    "recommendation": "recommendation: example_batch()'s inputs are integer user ids and item ids, two tensors of shape "
                      "(N,) (or one (N, 2)); the model has embedding tables (nn.Embedding; Keras: Embedding) for users "
                      "and items and returns one score per (user, item) pair, (N,) or (N, 1), computed from both ids; "
                      "targets are one rating or click per pair (N,)",
    "graph": "a graph neural network in plain torch: example_batch() returns ((x, edge_index), targets) with node features "
             "x (num_nodes, F) floats and edge_index (2, E) int node ids (or an adjacency matrix (num_nodes, num_nodes)); "
             "the model passes messages along the edges and returns one row per node (num_nodes, classes) (or one per graph)",
}
_FAMILIES = {
    "mlp": "an MLP: only Linear layers, no convolution, recurrence or attention",
    "cnn": "a CNN (convolution layers)",
    "cnn1d": "a 1-D CNN (Conv1d layers)",
    "resnet": "a ResNet: convolutions with residual connections (out = f(x) + x)",
    "unet": "a U-Net: an encoder-decoder whose decoder concatenates (torch.cat) encoder feature maps with "
            "upsampled ones (ConvTranspose2d or Upsample), output of the input's height and width",
    "lstm": "an LSTM (an LSTM layer)",
    "gru": "a GRU (a GRU layer)",
    "rnn": "a recurrent network (RNN, LSTM or GRU layers)",
    "transformer": "a transformer (attention: nn.TransformerEncoderLayer, nn.MultiheadAttention or softmax(QK^T)V)",
    "vit": "a vision transformer: a patch-embedding convolution (kernel = stride) and attention",
    "mobilenet": "a MobileNet (depthwise convolutions)",
    "efficientnet": "an EfficientNet (MBConv blocks of depthwise convolutions)",
    "hf-finetune": "a Hugging Face transformers model fine-tuned",
}


def framework_of_request(spec: Optional[Spec], intent: Optional[Intent], override: Optional[str] = None) -> str:
    """The framework to write for: the caller's override, the request's, the builtin's reading, else torch."""
    stated = spec.get("framework") if spec is not None else None
    return override or stated or (intent.framework if intent is not None else None) or "torch"


def _line(s: Stated, framework: str) -> str:
    value = s.value
    if s.name == "task":
        text = f"the task is {_TASKS.get(str(value), f'{value} (the checker cannot check this one: do it as asked)')}"
    elif s.name == "framework":
        text = f"the program uses {FRAMEWORK_NAMES.get(str(value), value)} only"
    elif s.name == "input_shape":
        text = f"one example of example_batch()'s inputs has shape {tuple(value)} (the batch dimension comes first)"
    elif s.name == "outputs":
        text = f"the model's output has {value} units per example"
    elif s.name == "family":
        text = f"the model is {_FAMILIES.get(str(value), str(value))}"
    elif s.name == "layer_count":
        text = f"the model has exactly {value[1]} {value[0]} layer(s)"
    elif s.name == "has_layer":
        text = f"the model contains a {value} layer"
    elif s.name == "no_layer":
        text = f"the model contains NO {value} layer (no module and no functional call of it)"
    elif s.name == "precision":
        mixed = "mixed precision (torch.autocast)" if framework == "torch" else "a mixed precision policy"
        text = f"training uses {mixed}" if value == "mixed" else "training uses no mixed precision (no autocast, no mixed policy)"
    elif s.name == "distributed":
        text = ("training is distributed: DistributedDataParallel with torch.distributed.init_process_group (run under "
                "torchrun)" if value else "training runs in one process: no DDP, no process group")
    elif s.name == "loss":
        text = f"the loss is {value}"
    else:
        text = f"{s.name}: {json.dumps(value)}"
    return text + (f' (asked as "{s.text}")' if s.text else "")


def property_lines(spec: Optional[Spec], framework: str) -> list[str]:
    """Each stated property as a line of the system prompt."""
    return [_line(s, framework) for s in (spec.stated if spec is not None else [])]


def system_prompt(spec: Optional[Spec], reference: Optional[str], *, intent: Optional[Intent] = None,
                  gaps: Sequence[str] = (), framework: Optional[str] = None) -> str:
    """The instructions a model backend gets: the contract, the stated properties, the frame."""
    fw = framework_of_request(spec, intent, framework)
    model_kind = "a torch.nn.Module" if fw == "torch" else "a compiled keras.Model"
    parts = [
        f"You write complete, runnable {FRAMEWORK_NAMES.get(fw, fw)} training programs in Python for a developer's editor.",
        "",
        "Every program follows this contract; an automatic checker verifies it by running the program:",
        f"- `build_model()` returns the model ({model_kind}).",
        "- `example_batch()` returns `(inputs, targets)`: synthetic data of the right shapes and dtypes "
        "(a small batch, e.g. 4 examples), made from random numbers, no files and no downloads.",
        "- `main()` parses the command line with argparse and trains; with `--smoke` it runs one tiny "
        "training step on `example_batch()` data, writes nothing outside the working directory and exits 0.",
        "- the file ends with `if __name__ == \"__main__\":` calling `main()`.",
        "- import only the standard library, the framework, and the packages the reference program imports.",
    ]
    lines = property_lines(spec, fw)
    if lines:
        parts += ["", "The request states these properties; the checker verifies each one, and the program is "
                      "accepted only when all hold:"]
        parts.extend(f"- {line}" for line in lines)
    if intent is not None and intent.use_engine:
        parts += [
            "",
            "The user asked for deepdive's engine: train through `import deepdive.engine as dd` the way the "
            "reference does (`run = dd.setup(...)`, `run.prepare(...)`, `run.batches(...)`, `run.autocast()`, "
            "`run.backward(loss)`, `run.step(opt)`, `run.log(...)`); do not invent other engine functions.",
        ]
    parts += ["", "Answer with the whole program in one ```python block. No explanation after the block."]
    if reference:
        parts += [
            "",
            "Reference: the program deepdive's offline generator writes for the closest request it can build. "
            "It passes the checker's contract. Follow its structure (data reading, training loop, --smoke) and "
            "write the parts the request asks differently.",
        ]
        if gaps:
            parts.append("The reference does NOT do what the request asks here: " + "; ".join(gaps) + ".")
        parts += ["```python", reference.rstrip(), "```"]
    return "\n".join(parts)


def user_message(spec: Optional[Spec], prompt: str) -> str:
    """The request, and what the parser read from it (its stated properties and what it could not place)."""
    lines = [f"Request: {prompt}"]
    if spec is not None and spec.stated:
        lines.append("Understood as: " + ", ".join(f"{s.name}={json.dumps(s.value, ensure_ascii=False)}"
                                                   for s in spec.stated))
    if spec is not None and (spec.unknown or spec.unplaced_numbers):
        lines.append("Not understood by the parser (read the request for them): "
                     + ", ".join(spec.unknown + spec.unplaced_numbers))
    return "\n".join(lines)


def repair_message(checks: list[GenerateCheck], stderr_tail: str, message: Optional[str],
                   properties: Sequence[PropertyCheck] = ()) -> str:
    """What goes back to the model after a failed verification: each failure's own detail."""
    failed_props = [p for p in properties if p.status == "failed"]
    failed = [c for c in checks if not c.ok and not (c.name == "properties" and failed_props)]
    lines = ["The program failed verification."]
    if failed:
        lines.append("Failed checks:")
        lines.extend(f"- {c.name}: {c.detail}".rstrip(": ") for c in failed)
    if failed_props:
        lines.append("Stated properties the program does not meet:")
        lines.extend(f"- {p.label}: {p.detail}" + (f' (asked as "{p.text}")' if p.text else "") for p in failed_props)
    if not failed and not failed_props and message:
        lines.append(message)
    if stderr_tail and stderr_tail.strip():
        lines += ["Last lines the program wrote to stderr:", "```", stderr_tail.strip()[-3000:], "```"]
    absent = missing_modules(failed)
    if absent:
        # The user installs packages, not the model: say what to do without them.
        lines.append(f"{' and '.join(absent)} cannot be installed where the program runs: do not import "
                     f"{'them' if len(absent) > 1 else 'it'}; write what you used from {'them' if len(absent) > 1 else 'it'} "
                     "yourself with the frame's imports (torch.nn layers, or keras.layers).")
    lines.append("Fix it. Answer with the complete corrected program in one ```python block.")
    return "\n".join(lines)


_MISSING = re.compile(r"module '([\w.]+)' is not installed for")
_ALSO = re.compile(r"\(also missing: ([^)]*)\)")


def missing_modules(checks: Sequence[GenerateCheck]) -> list[str]:
    """The top-level modules a failed ``imports`` check names as not installed, in order."""
    found: list[str] = []
    for c in checks:
        if c.name != "imports" or c.ok or not c.detail:
            continue
        names = _MISSING.findall(c.detail) + [n.strip() for m in _ALSO.findall(c.detail) for n in m.split(",")]
        for name in names:
            top = name.split(".")[0]
            if top and top != "deepdive" and top not in found:
                found.append(top)
    return found
