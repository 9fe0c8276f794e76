"""The words of a request that name its task, its architecture family, its layers and its loss (English and Chinese).

The tables :mod:`deepdive.codegen.understand` reads a prompt with: each is a list of (name, pattern)
in the order that decides between cues (the most specific first), or a map from what was read to
what it means for the builtin's frame. They sit apart from the reading's steps so that the
vocabulary can grow without the steps growing with it.
"""

from __future__ import annotations

import re

from deepdive.codegen.intent_rules import HF, TASK_RULES

__all__ = ["TASK_WORDS", "BUILTIN_TASK_WORDS", "CLASSIFY_CUE", "TEXT_DATA", "IMAGE_DATA", "TABULAR", "FRAMES", "BUILTIN_TASKS",
           "FAMILY_WORDS", "FAMILY_ARCH", "FAMILY_TASK", "FAMILY_LAYER", "COUNTED", "LOSS_WORDS", "UNKNOWN_LOSS",
           "KNOWN_LOSS_WORDS", "SIZE_FIELDS"]

# -- tasks --------------------------------------------------------------------------------------

BUILTIN_TASK_WORDS = {name: pattern for name, pattern in TASK_RULES}
# The order decides between cues: the most specific first.
TASK_WORDS: list[tuple[str, str]] = [
    ("few-shot", BUILTIN_TASK_WORDS["few-shot"]), ("gan", BUILTIN_TASK_WORDS["gan"]), ("vae", BUILTIN_TASK_WORDS["vae"]),
    ("diffusion", r"diffusion|\bddpm\b|\bddim\b|score-based|扩散"),
    # "segments" of customers or markets are classes of a table: segmenting is of images (or named as such).
    ("semantic-segmentation", r"(?<!customer )(?<!market )(?<!user )(?<!audience )segmentation|"
                              r"\bsegment(?:s|ing)?\b(?=[^.;]{0,60}?(?:image|photo|picture|scan|tile|pixel|frame|\d+\s*x\s*\d+|"
                              r"\bmri\b|\bct\b|x-?ray|satellite|aerial|medical|\bcells?\b|lesion|tumou?r|organ|road|scene|lung|mask))|"
                              r"deeplab|mask r-?cnn|pixel-?wise|per-?pixel|分割"),
    ("object-detection", r"object detect|detect(?:ing|s)? (?:the )?(?:objects|cars|people|pedestrians|faces)|detector|"
                         r"detection head|bounding[- ]box|\byolo|faster r-?cnn|\bssd\b|retinanet|\bdetr\b|目标检测|物体检测|检测框|检测头"),
    ("autoencoder", BUILTIN_TASK_WORDS["autoencoder"]),
    ("policy", r"reinforcement learning|\brl\b|policy (?:network|net|gradient|model)|actor[- ]critic|\bppo\b|\bdqn\b|"
               r"\breinforce\b|\ba[23]c\b|\bddpg\b|\btd3\b|\btrpo\b|"
               r"q-?learning|q-?network|强化学习|策略网络"),
    ("recommendation", r"recommend|collaborative filtering|matrix factori[sz]ation|user[- ]item|推荐"),
    ("graph", r"\bgnn|graph neural(?: networks?)?|graph conv|\bgcn\b|\bgat\b|graphsage|message[- ]passing|\bmpnn\b|"
              r"node classification|graph classification|link prediction|图神经网络|图神经|图卷积|节点分类|消息传递|图分类"),
    ("language-model", r"language model|\blm\b|language modell?ing|char(?:acter)?[- ]level|"
                       r"next[- ](?:token|character|char|word)|text generation|"
                       r"generates? text|语言模型|文本生成|字符级"),
    ("sequence-labeling", r"named[- ]entit|\bner\b|part[- ]of[- ]speech|pos[- ]tagg|sequence label|token classif|"
                          r"命名实体|序列标注|词性标注"),
    ("online-learning", BUILTIN_TASK_WORDS["online-learning"]), ("streaming-inference", BUILTIN_TASK_WORDS["streaming-inference"]),
    ("forecasting", BUILTIN_TASK_WORDS["forecasting"]),
    ("multi-label-classification", r"multi-?label|multiple labels|多标签"),
    ("audio-classification", r"speech|audio|spectrogram|\bmel\b|keyword spotting|\bsounds?\b|\bwav\b|语音|音频|声音|频谱|梅尔"),
    ("signal-classification", r"\bsignals?\b|\becg\b|\beeg\b|accelerometer|gyroscope|\bimu\b|\bhar\b|activity recognition|vibration|1-?d[- ]?(?:cnn|conv)|conv1d|"
                              r"[1一]维(?:卷积|cnn|conv)|信号|心电|脑电|加速度计|陀螺仪"),
    ("regression", BUILTIN_TASK_WORDS["regression"]),
]
# Text named by what it is: a classifier of headlines or emails classifies text.
TEXT_DATA = (r"headlines?|\bnews\b|\barticles?\b|e-?mails?|\bmessages?\b|\bcomments?\b|\bposts?\b|\btitles?\b|\bqueries\b|"
              r"\btokens?\b|\bvocab|\bcorpus\b|新闻|标题|邮件|短信|文章|帖子|词表|词汇")
CLASSIFY_CUE = (r"\blabels? (?:\w+ )?as\b|classif|\bclass(?:es)?\b|\d+[- ]class|categor|recogni[sz]|identif|sentiment|spam|"
                r"topic|tags?\b|分类|识别|类别|情感|垃圾邮件|分为|分成")
IMAGE_DATA = r"mnist|cifar|imagenet|\bdigits\b|手写数字"
TABULAR = r"\bcsv\b|tabular|spreadsheet|features|feature vectors|\bvectors\b|\brows\b|columns|表格|特征"
# Builtin task of the frame offered for a task the builtin has no template for (None: no frame).
FRAMES = {"semantic-segmentation": "image-classification", "object-detection": "image-classification",
           "audio-classification": "image-classification", "language-model": "text-classification",
           "sequence-labeling": "text-classification"}
BUILTIN_TASKS = {"image-classification", "text-classification", "regression", "autoencoder", "vae", "gan", "forecasting",
                  "few-shot", "streaming-inference", "online-learning"}


# -- families -----------------------------------------------------------------------------------

# Most specific first: "a ResNet-based U-Net" is a U-Net, "1-D CNN" a cnn1d.
FAMILY_WORDS: list[tuple[str, str]] = [
    ("unet", r"\bu-?net\b|\bunet"),
    ("yolo", r"\byolo(?:v\d+)?"),
    ("vit", r"\bvit\b|vision transformer|视觉transformer"),
    ("gnn", r"\bgnn|graph neural|graph conv\w*|\bgcn\b|\bgat\b|graphsage|message[- ]passing|\bmpnn\b|图神经网络|图神经|图卷积|"
            r"消息传递"),
    ("mobilenet", r"mobile-?net(?:-?v\d)?"),
    ("efficientnet", r"efficient-?net(?:-?b\d)?|mbconv"),
    ("vgg", r"\bvgg(?:-?\d+)?"),
    ("resnet", r"res-?net(?:[- ]?\d+)?|residual|残差"),
    ("hf-finetune", HF),
    # GPT-style, BERT-like, decoder-only: a transformer written here (parse.HF leaves these to this rule).
    ("transformer", r"transformer|self-attention|注意力|\battention|decoder-only|\b(?:gpt|bert)(?:-?\d+)?[- ]?(?:style|like|ish)\b|"
                    r"(?:gpt|bert)(?:-?\d+)?\s*(?:风格|式|架构)|[类仿]gpt"),
    ("lstm", r"\b(?:bi-?)?lstm|长短期记忆|长短时记忆"),
    ("gru", r"\b(?:bi-?)?gru"),
    ("rnn", r"\brnn|recurrent|循环神经"),
    ("cnn1d", r"\b1-?d[- ]?(?:cnn|conv\w*)|conv1d|one-dimensional conv\w*|[1一]维(?:卷积|cnn|conv)"),
    ("cnn", r"\bcnn|conv|卷积"),
    ("mlp", r"\bmlp|perceptron|feed-?forward|fully[- ]connected|\bdense\b|全连接|多层感知"),
]
FAMILY_ARCH = {"unet": "cnn", "yolo": "cnn", "vit": "cnn", "mobilenet": "mobilenet", "efficientnet": "efficientnet",
                "vgg": "cnn", "resnet": "resnet", "hf-finetune": "hf-finetune", "transformer": "transformer", "lstm": "lstm",
                "gru": "gru", "rnn": "lstm", "cnn": "cnn", "mlp": "mlp"}
FAMILY_TASK = {"unet": "semantic-segmentation", "yolo": "object-detection", "vit": "image-classification",
                "gnn": "graph", "cnn1d": "signal-classification"}
# A second family named beside the first is a layer the model must contain ("an LSTM with attention").
FAMILY_LAYER = {"cnn": "Conv2d", "cnn1d": "Conv1d", "lstm": "LSTM", "gru": "GRU", "transformer": "MultiheadAttention",
                 "mlp": "Linear"}
# The layer type a count of this family counts (Spec's layer_count), PyTorch names.
COUNTED = {"cnn": "Conv2d", "mlp": "Linear", "lstm": "LSTM", "gru": "GRU", "transformer": "TransformerEncoderLayer",
            "efficientnet": "MBConv", "mobilenet": "InvertedResidual", "cnn1d": "Conv1d"}

LOSS_WORDS: list[tuple[str, str]] = [
    ("BCEWithLogitsLoss", r"binary cross[- ]?entropy|\bbce\b|二元交叉熵"),
    ("CrossEntropyLoss", r"cross[- ]?entropy|交叉熵"),
    ("MSELoss", r"\bmse\b|mean squared error|均方误差"),
    ("SmoothL1Loss", r"smooth[- ]?l1"),
    ("L1Loss", r"\bmae\b|\bl1 loss|mean absolute error|平均绝对误差"),
    ("HuberLoss", r"huber"),
    ("NLLLoss", r"\bnll\b|negative log[- ]likelihood"),
    ("CTCLoss", r"\bctc\b"),
    ("TripletMarginLoss", r"triplet (?:margin )?loss"),
    ("KLDivLoss", r"kl[- ]div"),
]
UNKNOWN_LOSS = re.compile(r"\b([a-z][a-z-]+) loss\b", re.ASCII)
KNOWN_LOSS_WORDS = {"cross-entropy", "entropy", "mse", "l1", "huber", "nll", "ctc", "margin", "triplet", "bce", "the", "a",
                     "validation", "training", "train", "val", "reconstruction", "kl", "elbo", "lower", "low", "minimum", "best"}

# Reader fields that are sizes a property states (input shape, outputs): placed only when one took them.
SIZE_FIELDS = {"flat", "n_features", "image_hw", "channels", "num_classes", "seq_len", "window", "lookback", "horizon",
                "series_channels"}
