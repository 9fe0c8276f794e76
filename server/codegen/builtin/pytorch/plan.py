"""Every decision about one PyTorch program, made once from the :class:`Intent`, with defaults filled in."""

from __future__ import annotations

import re

from deepdive.codegen.intent import Intent
from deepdive.codegen.spec import same_layer

CLASSIFY = ("image-classification", "text-classification")


class Plan:
    """Every decision about the program, made once from the intent, with defaults filled in."""

    def __init__(self, intent: Intent):
        self.intent = intent
        self.task, self.arch = intent.task, intent.architecture
        self.prompt_low = intent.prompt.lower()
        self.hf = self.arch == "hf-finetune"
        self.engine = intent.use_engine
        self.kind = {
            "image-classification": "classify", "text-classification": "hf" if self.hf else "classify",
            "regression": "regress", "autoencoder": "recon", "vae": "vae", "gan": "gan", "forecasting": "series",
            "few-shot": "fewshot", "streaming-inference": "series", "online-learning": "online",
        }[self.task]
        # Features the special loops (GAN, online learning) do not apply get a comment instead.
        self.features = set(intent.features)
        self.ignored: set[str] = set()
        if self.kind in ("gan", "online"):
            self.ignored = self.features & {"ddp", "early_stopping", "lr_schedule", "optuna"}
            self.features -= self.ignored
        if self.kind in ("gan", "online") and self.engine:
            self.engine = False
            self.engine_note = True
        else:
            self.engine_note = False
        self.dataset = intent.dataset
        shape = tuple(intent.input_shape)
        if self.task in ("image-classification", "few-shot", "gan", "autoencoder", "vae"):
            if not shape:
                shape = {"few-shot": (3, 84, 84), "gan": (1, 28, 28)}.get(self.task, (1, 28, 28) if self.task in ("autoencoder", "vae") else (3, 32, 32))
            if self.task == "image-classification" and self.arch not in ("mlp",) and len(shape) != 3:
                self.arch = "mlp"
        if self.task in ("regression", "online-learning") and not shape:
            shape = (16,)
        self.input_shape = shape
        self.num_classes = intent.num_classes or (5 if self.task == "few-shot" else 2 if self.task in ("text-classification", "online-learning") else 10)
        # The dataset "cifar10" is CIFAR-100 when the request has its 100 classes: its own files and labels.
        self.cifar100 = self.dataset == "cifar10" and self.num_classes == 100
        layer_default = {"cnn": 3, "mlp": 3, "lstm": 2, "gru": 2, "transformer": 2, "resnet": 8, "efficientnet": 7, "mobilenet": 7}
        self.layers = intent.layers or layer_default.get(self.arch, 2)
        self.hidden = intent.hidden_size or (128 if self.kind in ("series", "classify") and self.arch in ("lstm", "gru") else
                                             256 if self.kind != "series" else 64)
        # Layer types the prompt excluded: Dropout everywhere, batch norm in the CNN, ResNet, EfficientNet and MobileNet
        # (see _without); and asked for: batch norm after each hidden layer of an MLP. traits.describe() says
        # what the program has, and the reading reports the rest as gaps.
        self.no_dropout = any(same_layer(name, "Dropout") for name in intent.exclude_layers)
        self.no_batchnorm = any(same_layer(name, "BatchNorm2d") for name in intent.exclude_layers)
        self.batchnorm = any(same_layer(name, "BatchNorm2d") for name in intent.include_layers) and not self.no_batchnorm
        self.dropout = 0.0 if self.no_dropout else intent.dropout if intent.dropout is not None else 0.1
        self.block = intent.block or "basic"
        # Multi-label: the token classifiers (not a Hugging Face fine-tune) with one sigmoid per label.
        self.multi_label = intent.multi_label and self.task == "text-classification" and not self.hf
        self.vocab = intent.vocab_size or 20000
        self.seq_len = intent.seq_len or (64 if self.task == "text-classification" else None)
        self.embed = intent.embed_dim or 128
        self.latent = intent.latent_dim or (64 if self.task == "gan" else 16)
        self.horizon = intent.horizon or 1
        self.window = intent.window or 32
        if self.kind == "series":
            if shape:
                self.seq_len, self.channels = shape[0], shape[1] if len(shape) > 1 else 1
            else:
                self.seq_len = intent.seq_len or (self.window if self.task == "streaming-inference" else 48)
                self.channels = 1
            if self.task == "streaming-inference":
                self.window = self.seq_len
            self.input_shape = (self.seq_len, self.channels)
        if self.task == "text-classification":
            self.input_shape = (self.seq_len,)
        self.n_way = intent.n_way or 5
        self.k_shot = intent.k_shot or 1
        self.model_path = intent.model_path or "path/to/local-model"
        self.epochs = intent.epochs or 10
        self.batch = intent.batch_size or (16 if self.hf else 64)
        self.lr = intent.lr or (2e-5 if self.hf else 1e-3)
        self.schedule = "onecycle" if re.search(r"one-?cycle", self.prompt_low) else "cosine"

    def has(self, feature: str) -> bool:
        return feature in self.features
