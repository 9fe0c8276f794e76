"""Words of a prompt that name an architecture, a task or a layer the parser does not know.

Four principled signs, English and Chinese, each checked against what the tables do know:

- a known-unknown: architectures and tasks that exist but no rule reads (capsule networks, Mamba,
  SIREN, NeRF, KAN, spiking networks, pose estimation, machine translation, 胶囊网络, 机器翻译...);
- the morphology of model names: a word ending in -net, -former or -GAN (DenseNet, Informer,
  StyleGAN) that is not a known family and not an ordinary word (internet, planet, organ);
- the spelling of names: an unknown token with capitals inside or several capitals (ConvNeXt,
  NeRF, YOLOX, CartPole), which ordinary words do not have;
- a head noun of architectures whose modifier is unknown: "<word> network", "<word> net",
  "<word> architecture", and Chinese "<词>网络" / "<词>架构" (胶囊网络, 脉冲神经网络).

The words are quoted as written (case kept), each once.
"""

from __future__ import annotations

import re

__all__ = ["unknown_words", "KNOWN_TOKENS"]

Span = tuple[int, int]

_KNOWN_UNKNOWN = re.compile(
    r"capsule(?:s| neural networks?| networks?| nets?| routing)?|mamba|siren|\bnerf\b|\bkan\b|kolmogorov-arnold(?: networks?)?|"
    r"hyper-?networks?|spiking(?: neural networks?)?|hopfield(?: networks?)?|boltzmann machines?|perceiver|\brwkv\b|retnet|"
    r"xlstm|\btcn\b|temporal convolutional networks?|mixture[- ]of[- ]experts|\bmoe\b|state[- ]space models?|\bs4\b|"
    r"neural odes?|liquid neural networks?|echo state networks?|reservoir computing|normali[sz]ing flows?|"
    r"deep belief networks?|siamese(?: networks?)?|triplet networks?|self-supervised|contrastive learning|simclr|\bbyol\b|"
    r"knowledge distillation|pose estimation|depth estimation|super-?resolution|style transfer|image captioning|captioning|"
    r"machine translation|\btranslat(?:e|ion|or)\b|question answering|summari[sz](?:ation|e|er)|anomaly detection|"
    r"outlier detection|clustering|\bocr\b|optical character recognition|text-to-speech|speech synthesis|\btts\b|"
    r"inpainting|colori[sz]ation|object tracking|instance segmentation|panoptic segmentation|keypoint detection|"
    r"image retrieval|chatbot|seq2seq|sequence[- ]to[- ]sequence|\bvideos?\b|"
    r"胶囊(?:网络)?|脉冲神经网络|霍普菲尔德(?:网络)?|玻尔兹曼机|状态空间模型|混合专家(?:模型)?|孪生网络|超网络|神经常微分方程|知识蒸馏|"
    r"姿态估计|深度估计|超分辨率?|风格迁移|图像描述|机器翻译|翻译|问答系统|问答|文本摘要|摘要|异常检测|聚类|文字识别|语音合成|图像修复|"
    r"目标跟踪|实例分割|全景分割|视频", re.ASCII)

# Model-name morphology: -net, -former, -gan.
_MORPH = re.compile(r"\b[a-z][a-z0-9]*?-?(?:net|former|gan)s?\b", re.ASCII)
_MORPH_KNOWN = {
    "resnet", "res-net", "resnets", "efficientnet", "efficient-net", "mobilenet", "mobile-net", "unet", "u-net", "transformer",
    "transformers", "gan", "gans", "dcgan", "protonet", "proto-net", "imagenet", "internet", "planet", "magnet", "cabinet",
    "subnet", "bayonet", "hornet", "ethernet", "sonnet", "garnet", "bonnet", "cornet", "clarinet", "dragnet", "hairnet",
    "fishnet", "dotnet", "former", "organ", "slogan", "began", "vegan", "logan", "pagan", "cardigan",
    "hooligan", "michigan", "afghan", "wan", "net", "nets", "gannet", "tenet", "tenets", "bassinet",
}
# Tokens whose spelling (capitals, digits) would look like a model name but which the tables know.
KNOWN_TOKENS = {
    "cnn", "rnn", "lstm", "gru", "mlp", "gan", "dcgan", "vae", "ae", "bert", "gpt", "distilbert", "roberta", "albert",
    "electra", "resnet", "efficientnet", "mobilenet", "vgg", "unet", "u-net", "vit", "yolo", "mnist", "cifar", "imagenet",
    "csv", "tsv", "gpu", "gpus", "cpu", "tpu", "cuda", "ddp", "fsdp", "amp", "fp16", "fp32", "bf16", "int8", "onnx", "nlp",
    "rgb", "tf", "pytorch", "torch", "tensorflow", "keras", "optuna", "torchrun", "torchscript", "jit", "sgd", "adam",
    "adamw", "relu", "gelu", "ner", "pos", "rl", "ppo", "dqn", "gnn", "gcn", "gat", "graphsage", "ddpm", "ddim", "mse",
    "mae", "bce", "ecg", "eeg", "mfcc", "mel", "stft", "fft", "lr", "hf", "huggingface", "deepdive", "ai", "ml", "dl",
    "nn", "id", "io", "api", "json", "png", "jpg", "jpeg", "wav", "mp3", "url", "os", "ui", "kb", "mb", "gb", "ram",
    "mbconv", "powersgd", "nccl", "gloo", "sklearn", "numpy", "pandas", "imdb", "sst", "svhn", "coco", "voc", "celeba",
    "movielens", "librispeech", "cora", "iris", "titanic", "emnist", "kmnist", "stl", "ag", "ssd", "bn", "lm", "rgb",
    "nan", "cpus", "xla", "hdf5", "npz", "npy", "tflite", "ok", "vs", "iot", "sql", "transformer", "attention",
    "conv1d", "conv2d", "conv", "batchnorm", "layernorm", "dropout", "linear", "dense", "rest", "faster", "r-cnn",
    "retinanet", "detr", "deeplab", "bilstm", "bigru", "nvidia", "hz", "khz", "mhz", "ghz", "cartpole", "atari",
    "mujoco", "lunarlander", "gym", "gymnasium", "pytorch-lightning", "lightning", "fashion-mnist",
    "tiny-imagenet", "imagenet-1k", "bpe", "qkv", "sigmoid", "softmax", "tanh", "auc", "roc", "f1", "iou",
    "bio", "iob", "bioes", "iobes", "reinforce", "a2c", "a3c", "mpnn", "dgl", "pyg", "har", "imu",
}
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-+.][A-Za-z0-9]+)*\+*")
_HEAD = re.compile(r"\b([a-z][a-z-]*)\s+((?:neural\s+)?(?:networks?|nets?|architectures?))\b", re.ASCII)
_MODIFIERS = {
    "neural", "deep", "small", "smaller", "simple", "tiny", "large", "big", "bigger", "shallow", "convolutional", "conv",
    "recurrent", "residual", "connected", "fully-connected", "dense", "feed-forward", "feedforward", "policy", "value", "q",
    "generator", "discriminator", "encoder", "decoder", "prototypical", "graph", "attention", "transformer", "lstm", "gru",
    "cnn", "rnn", "mlp", "classification", "classifier", "regression", "pretrained", "pre-trained", "base", "backbone",
    "teacher", "student", "critic", "actor", "actor-critic", "detection", "segmentation", "embedding", "a", "an", "the",
    "my", "our", "your", "this", "that", "new", "custom", "basic", "standard", "lightweight", "efficient", "good",
    "sequential", "multi-layer", "multilayer", "same", "whole", "entire", "full", "complete", "sentiment", "text", "image",
    "language", "vision", "speech", "audio", "recommendation", "forecasting", "adversarial", "generative", "denoising",
    "u", "res", "mobile", "resnet", "unet", "vgg", "yolo", "hidden", "layer", "two-layer", "shared", "siamese-free",
    "perceptron", "linear", "neuron", "artificial", "of", "and", "or", "with", "for", "to", "in", "on", "fine-tuned",
    "trained", "existing", "local", "own", "one", "two", "three", "second", "first", "final", "output", "input",
    "critic-", "dueling", "target", "online", "wide", "narrow", "inception", "gnn", "gcn", "gat", "message", "passing",
    "is", "as", "be", "model", "models", "message-passing", "graph-convolutional",
}
_ZH_HEAD = re.compile(r"([\u4e00-\u9fff]{0,10}?)(网络|架构)")
_ZH_FUNCTION = re.compile(r".*[用使的个一建写做练种是把让和与及或在对基于层搭训设计实现个型]")
_ZH_KNOWN = {
    "卷积", "卷积神经", "循环神经", "循环", "神经", "深度神经", "深度", "全连接", "原型", "生成对抗", "对抗", "残差", "图神经",
    "图卷积", "消息传递", "策略", "价值", "注意力", "长短期记忆", "前馈", "编码器", "解码器", "生成器", "判别器", "分类", "检测", "分割",
    "预训练", "骨干", "主干", "轻量", "小", "简单", "双", "多", "浅", "深", "感知机", "多层感知", "全卷积", "双向", "神经", "图",
}


def unknown_words(text: str, pos: str) -> list[tuple[Span, str]]:
    """Unknown architecture/task/layer words of a prompt, as written, with their spans, in order.

    Args:
        text: the normalised prompt (case kept).
        pos: the same text in lower case with paths and exclusions blanked out (same length).
    """
    found: list[tuple[Span, str]] = []

    def add(span: Span, quote: str) -> None:
        if any(not (span[1] <= s[0] or span[0] >= s[1]) for s, _ in found):
            return
        found.append((span, quote))

    for m in _KNOWN_UNKNOWN.finditer(pos):
        add(m.span(), text[m.start():m.end()])
    for m in _MORPH.finditer(pos):
        word = m.group(0)
        if word not in _MORPH_KNOWN and word.rstrip("s") not in _MORPH_KNOWN and len(word) > 4:
            add(m.span(), text[m.start():m.end()])
    for m in _TOKEN.finditer(text):
        if pos[m.start():m.end()].strip() != pos[m.start():m.end()] or not pos[m.start():m.end()].strip():
            continue  # blanked: a path or an exclusion
        if _looks_like_a_name(m.group(0)):
            add(m.span(), m.group(0))
    for m in _HEAD.finditer(pos):
        if m.group(1) not in _MODIFIERS and not m.group(1).endswith("-layer"):
            add(m.span(), text[m.start():m.end()])
    for m in _ZH_HEAD.finditer(pos):
        run = m.group(1)
        core = run[:-2] if run.endswith("神经") else run  # 神经网络: the generic word
        if not core or _ZH_FUNCTION.fullmatch(core) or any(core.endswith(k) for k in _ZH_KNOWN):
            continue
        prefix = _ZH_FUNCTION.sub("", run)
        start = m.start(1) + len(run) - len(prefix)
        add((start, m.end()), text[start:m.end()])
    return sorted(found)


def _looks_like_a_name(token: str) -> bool:
    """An unknown token spelled like a model name: capitals inside (ConvNeXt) or several capitals (NeRF, SIREN)."""
    low = token.lower()
    stem = re.sub(r"(?:[-.]?v?\d+(?:\.\d+)*[a-z]?)+$", "", low).rstrip("+")  # YOLOv8 -> yolo, ResNet-50 -> resnet
    if low in KNOWN_TOKENS or stem in KNOWN_TOKENS or not stem:
        return False
    if any(part in KNOWN_TOKENS for part in re.split(r"[-+.]", low)) and "-" in low:
        return False  # CIFAR-10, GPT-2, ResNet-18 style names of known things
    capitals = sum(ch.isupper() for ch in token)
    inner = any(ch.isupper() for ch in token[1:])
    return capitals >= 2 or (inner and capitals >= 1)
