"""The architecture family checks: what the model's modules and its forward pass's data flow show.

A family is met only by evidence a different architecture would not give: an LSTM layer for an LSTM,
a tensor added to a result computed from it for a ResNet, an encoder map concatenated with an
upsampled map computed from it for a U-Net, softmax weights multiplied into values for attention.
Families no structural check can tell apart (a YOLO head, a protonet) are not checked.
"""

from __future__ import annotations

from typing import Any, Callable

from deepdive.codegen.properties import task
from deepdive.codegen.properties.facts import FAILED, MET, NOT_CHECKED, Judgement, ProgramFacts, plural, same_spatial, where
from deepdive.codegen.spec import Spec


# -- family -----------------------------------------------------------------------------------------

_CONV = ("Conv1d", "Conv2d", "Conv3d", "Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D",
         "DepthwiseConv2D", "DepthwiseConv1D")
_RECURRENT = {"lstm": ("LSTM", "LSTMCell"), "gru": ("GRU", "GRUCell"),
              "rnn": ("RNN", "RNNCell", "SimpleRNN", "SimpleRNNCell", "LSTM", "LSTMCell", "GRU", "GRUCell")}
_ATTENTION = ("MultiheadAttention", "MultiHeadAttention", "TransformerEncoderLayer", "TransformerDecoderLayer")
_UPSAMPLE = ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Upsample", "UpsamplingNearest2d",
             "UpsamplingBilinear2d", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "UpSampling1D",
             "UpSampling2D", "UpSampling3D", "PixelShuffle")
_GNN = ("GCNConv", "GATConv", "SAGEConv", "GINConv", "GraphConv", "ChebConv", "GATv2Conv", "MessagePassing")


def _attention(f: ProgramFacts) -> str:
    """Evidence of attention in the model, or ``""``."""
    found = f.has(*_ATTENTION)
    if found:
        return f"{', '.join(found)} module{'s' if len(found) > 1 else ''}"
    if f.graph.get("attention"):
        return "attention in the forward pass (softmax weights multiplied into values)"
    return ""


def family(expected: Any, f: ProgramFacts, spec: Spec) -> Judgement:
    fam = str(expected)
    check = _FAMILIES.get(fam)
    if check is None:
        return NOT_CHECKED, f"no check can tell a {fam} from other models by its structure"
    return check(f)


def _fam_recurrent(kind: str) -> Callable[[ProgramFacts], Judgement]:
    def check(f: ProgramFacts) -> Judgement:
        found = f.has(*_RECURRENT[kind])
        if found:
            count, paths = f.layers(found[0])
            return MET, f"model has {plural(count, found[0] + ' layer')}{where(paths)}"
        other = f.has(*_RECURRENT["rnn"], *_ATTENTION)
        return FAILED, f"model has no {'/'.join(_RECURRENT[kind])} layer" + (f" (it has {', '.join(other)})" if other else "")
    return check


def _fam_transformer(f: ProgramFacts) -> Judgement:
    found = _attention(f)
    if found:
        return MET, f"model has {found}"
    if f.framework == "torch" and not f.graph:
        return NOT_CHECKED, "no attention module, and the forward pass could not be traced"
    return FAILED, "model has no attention (no attention module, and no softmax-weighted sum in its forward pass)"


def _fam_cnn(f: ProgramFacts, dims: tuple[str, ...] = _CONV) -> Judgement:
    found = f.has(*dims)
    if found:
        count, paths = f.layers(found[0])
        return MET, f"model has {plural(count, found[0] + ' layer')}{where(paths)}"
    return FAILED, "model has no " + "/".join(dims[:3]) + " convolution"


def _fam_mlp(f: ProgramFacts) -> Judgement:
    dense = f.has("Linear", "Dense")
    other = f.has(*_CONV, *_RECURRENT["rnn"], *_ATTENTION)
    if other:
        return FAILED, f"model has {', '.join(other)} layers, not only fully connected ones"
    if not dense:
        return FAILED, "model has no Linear/Dense layer"
    count, paths = f.layers(dense[0])
    return MET, f"model has {plural(count, dense[0] + ' layer')}{where(paths)} and no convolution, recurrence or attention"


def _fam_resnet(f: ProgramFacts) -> Judgement:
    if not f.has(*_CONV):
        return FAILED, "model has no convolution"
    if f.framework == "tensorflow":
        if f.has("Add"):
            return MET, "convolutions and an Add layer (a residual connection, by layer type)"
        return FAILED, "model has no Add layer: no residual connection"
    if not f.graph or f.graph.get("overflow"):
        return NOT_CHECKED, "the forward pass could not be traced to look for residual connections"
    if f.graph.get("residual"):
        return MET, f"convolutions and {plural(f.graph['residual'], 'residual addition')} (a tensor added to a result computed from it)"
    return FAILED, "no residual connection in the forward pass (no tensor is added to a result computed from it)"


def _fam_unet(f: ProgramFacts) -> Judgement:
    if not f.has(*_CONV):
        return FAILED, "model has no convolution"
    spatial = same_spatial(f)
    if f.framework == "tensorflow":
        up = f.has(*_UPSAMPLE)
        if f.has("Concatenate") and up:
            return MET, f"Concatenate and {up[0]} layers (skip connections, by layer type); {spatial[1]}"
        return FAILED, "model has no Concatenate with upsampling layers: no U-Net skip connections"
    if not f.graph or f.graph.get("overflow"):
        return NOT_CHECKED, "the forward pass could not be traced to look for skip connections"
    if not f.graph.get("skip_concat"):
        return FAILED, "no skip connection in the forward pass (no feature map concatenated with an upsampled map computed from it)"
    if not spatial[0]:
        return FAILED, f"skip connections, but {spatial[1]}"
    return MET, f"{plural(f.graph['skip_concat'], 'skip concatenation')} of an encoder map with an upsampled decoder map; {spatial[1]}"


def _fam_mobilenet(f: ProgramFacts) -> Judgement:
    depthwise = len([c for c in f.run.get("convs", []) if (c[4] > 1 and c[4] == c[5])]) or \
        sum(f.counts.get(name, 0) for name in ("DepthwiseConv2D", "SeparableConv2D"))  # Keras's own layers
    if depthwise:
        return MET, f"model has {plural(depthwise, 'depthwise convolution')}"
    return FAILED, "model has no depthwise convolution (MobileNets are built of them)"


def _fam_efficientnet(f: ProgramFacts) -> Judgement:
    status, detail = _fam_mobilenet(f)
    if status == FAILED:
        return FAILED, "model has no depthwise convolution (EfficientNets' MBConv blocks are built of them)"
    named = [c for c in f.counts if "MBConv" in c or "EfficientNet" in c]
    if named:
        return MET, f"{detail}, in {', '.join(named)} blocks"
    return NOT_CHECKED, f"{detail}; no check tells an EfficientNet's MBConv blocks apart from other depthwise models"


def _fam_vit(f: ProgramFacts) -> Judgement:
    attention = _attention(f)
    if not attention:
        return (NOT_CHECKED, "the forward pass could not be traced") if f.framework == "torch" and not f.graph else (
            FAILED, "model has no attention: not a vision transformer")
    patches = [c for c in f.run.get("convs", []) if c[2] == c[3] and max(c[2]) > 1]
    if patches:
        return MET, f"{attention}, and a patch embedding ({patches[0][1]} with kernel = stride = {patches[0][2]})"
    return NOT_CHECKED, f"{attention}, but no patch embedding convolution (kernel = stride) was found"


def _fam_hf(f: ProgramFacts) -> Judgement:
    if f.run.get("pretrained"):
        return MET, f"model is a Hugging Face PreTrainedModel ({f.run.get('classes', ['?'])[0]})"
    return FAILED, "model is not a Hugging Face PreTrainedModel"


def _fam_gnn(f: ProgramFacts) -> Judgement:
    found = f.has(*_GNN)
    if found:
        return MET, f"model has {', '.join(found)} layers"
    return NOT_CHECKED, "no graph layer class found; message passing in plain torch cannot be told apart by structure"


_FAMILIES: dict[str, Callable[[ProgramFacts], Judgement]] = {
    "mlp": _fam_mlp, "cnn": _fam_cnn, "cnn1d": lambda f: _fam_cnn(f, ("Conv1d", "Conv1D", "SeparableConv1D")),
    "resnet": _fam_resnet, "unet": _fam_unet, "lstm": _fam_recurrent("lstm"), "gru": _fam_recurrent("gru"),
    "rnn": _fam_recurrent("rnn"), "transformer": _fam_transformer, "vit": _fam_vit, "mobilenet": _fam_mobilenet,
    "efficientnet": _fam_efficientnet, "hf-finetune": _fam_hf, "gnn": _fam_gnn,
    "autoencoder": lambda f: task.autoencoder(f, None), "vae": lambda f: task.vae(f, None),
}
