"""Reference examples for frame mode: a short definition of the right kind of model for the request.

A 0.5B model copies whatever example it is shown: shown the builtin's CNN classifier (the frame's own
model part) for a U-Net request, it writes a CNN classifier. So the frame prompt also shows one short
reference example of the request's kind: a U-Net with its skip concatenations for a segmentation, a
1-D CNN over ``(N, C, T)`` for a signal, a REINFORCE loss for a policy. Each example is a model part
in the frame's conventions (the frame already imports ``math``, ``torch``, ``torch.nn.functional as
F`` and ``from torch import nn``, or ``numpy as np``, ``tensorflow as tf`` and ``keras``): the
constants it uses, the model class(es), ``build_model()``, ``example_batch(batch_size=8)`` returning
random ``(inputs, targets)``, and in torch ``compute_loss(model, batch)`` returning ``(loss,
correct_or_None)``. Spliced into its frame, each one passes the verifier for a request of its kind
(tests/codegen/test_frame_examples.py). ``INPUT_SHAPE`` is always a literal and other constants are
derived from it (``SEQ_LEN = INPUT_SHAPE[0]``), never the other way: the splice puts a redefined
constant where the frame's was, near the top, so ``INPUT_SHAPE = (SEQ_LEN,)`` would name a constant
not yet defined. The GCN also replaces the frame's ``synthetic_dataset`` so a batch stacks whole
graphs (the frame's stacks examples, which would split one graph's nodes).

:func:`example_for` picks by the request's family first, then by its task. Families and tasks the
builtin's frame already shows well (ResNet, transformer, LSTM/GRU classifiers, image classification)
have no example here.
"""

from __future__ import annotations

from typing import Optional

import attrs

from deepdive.codegen.spec import Spec

__all__ = ["Example", "EXAMPLES", "example_for"]


@attrs.define(frozen=True)
class Example:
    """One reference definition shown to the model.

    Attributes:
        key (str): a short name (``"unet"``); with ``framework`` it names one example.
        framework (str): ``"torch"`` or ``"tensorflow"`` (Keras).
        title (str): one line for the prompt ("a small U-Net for semantic segmentation").
        source (str): the code: constants, model class(es), ``build_model``, ``example_batch`` and, in
            torch, ``compute_loss``.
        tasks (tuple[str, ...]): the tasks it is an example for, the one it is made for first.
        families (tuple[str, ...]): the families it is an example for (empty: picked by task only).
        ranks (Optional[tuple[int, ...]]): the ranks of one example's input (``len(input_shape)``) it
            shows; a request that states another is not shown it (None: any).
    """

    key: str
    framework: str
    title: str
    source: str
    tasks: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    ranks: Optional[tuple[int, ...]] = None


# -- PyTorch ----------------------------------------------------------------------------------------

_UNET = '''INPUT_SHAPE = (1, 64, 64)  # channels, height, width (height and width divisible by 4)
NUM_CLASSES = 3


def double_conv(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class UNet(nn.Module):
    def __init__(self, c_in=INPUT_SHAPE[0], classes=NUM_CLASSES, w=16):
        super().__init__()
        self.enc1, self.enc2, self.mid = double_conv(c_in, w), double_conv(w, 2 * w), double_conv(2 * w, 4 * w)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2), double_conv(4 * w, 2 * w)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2), double_conv(2 * w, w)
        self.out = nn.Conv2d(w, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))  # skip connection: decoder + encoder map
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.out(d1)  # (N, NUM_CLASSES, H, W): class scores per pixel


def build_model():
    return UNet()


def example_batch(batch_size: int = 8):
    x = torch.randn(batch_size, *INPUT_SHAPE)
    y = torch.randint(0, NUM_CLASSES, (batch_size, *INPUT_SHAPE[1:]))  # a class per pixel
    return x, y


def compute_loss(model, batch):
    x, y = batch
    logits = model(x).float()
    return F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean((1, 2)).sum()
'''

_CNN1D = '''INPUT_SHAPE = (3, 128)  # channels, time steps
NUM_CLASSES = 6


class SignalCNN(nn.Module):
    def __init__(self, c_in=INPUT_SHAPE[0], classes=NUM_CLASSES, w=32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(c_in, w, 7, padding=3), nn.BatchNorm1d(w), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(w, 2 * w, 5, padding=2), nn.BatchNorm1d(2 * w), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm1d(4 * w), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.head = nn.Linear(4 * w, classes)

    def forward(self, x):  # (N, channels, time)
        return self.head(self.features(x))


def build_model():
    return SignalCNN()


def example_batch(batch_size: int = 8):
    return torch.randn(batch_size, *INPUT_SHAPE), torch.randint(0, NUM_CLASSES, (batch_size,))


def compute_loss(model, batch):
    x, y = batch
    logits = model(x).float()
    return F.cross_entropy(logits, y), (logits.argmax(-1) == y).sum()
'''

_CHAR_LM = '''INPUT_SHAPE = (100,)  # characters read
SEQ_LEN = INPUT_SHAPE[0]
VOCAB_SIZE = 65  # distinct characters
EMBED_DIM = 64
HIDDEN = 256


class CharLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, EMBED_DIM)
        self.rnn = nn.GRU(EMBED_DIM, HIDDEN, num_layers=2, batch_first=True)
        self.head = nn.Linear(HIDDEN, VOCAB_SIZE)

    def forward(self, ids):  # (N, T) character ids
        h, _ = self.rnn(self.embed(ids))
        return self.head(h)  # (N, T, VOCAB_SIZE): scores of the next character at each step


def build_model():
    return CharLM()


def example_batch(batch_size: int = 8):
    text = torch.randint(0, VOCAB_SIZE, (batch_size, SEQ_LEN + 1))
    return text[:, :-1], text[:, 1:]  # targets: the inputs shifted by one character


def compute_loss(model, batch):
    x, y = batch
    logits = model(x).float()
    loss = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), y.reshape(-1))
    return loss, (logits.argmax(-1) == y).float().mean(1).sum()
'''

_MULTI_LABEL = '''INPUT_SHAPE = (3, 64, 64)
NUM_CLASSES = 20  # labels; any number of them per example


class MultiLabelCNN(nn.Module):
    def __init__(self, c_in=INPUT_SHAPE[0], labels=NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(c_in, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(128, labels)  # one logit per label, no softmax

    def forward(self, x):
        return self.head(self.features(x))


def build_model():
    return MultiLabelCNN()


def example_batch(batch_size: int = 8):
    y = (torch.rand(batch_size, NUM_CLASSES) < 0.2).float()  # 0/1 per label
    return torch.randn(batch_size, *INPUT_SHAPE), y


def compute_loss(model, batch):
    x, y = batch
    logits = model(x).float()
    loss = F.binary_cross_entropy_with_logits(logits, y)  # an independent yes/no per label
    return loss, ((logits > 0) == y.bool()).all(1).sum()
'''

_FORECAST = '''INPUT_SHAPE = (48, 1)  # past values read, 1 channel
SEQ_LEN = INPUT_SHAPE[0]
HORIZON = 12  # future values predicted
HIDDEN = 64


class Forecaster(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(1, HIDDEN, num_layers=2, batch_first=True)
        self.head = nn.Linear(HIDDEN, HORIZON)  # all HORIZON steps at once

    def forward(self, x):  # (N, SEQ_LEN, 1)
        out, _ = self.lstm(x)
        return self.head(out[:, -1])  # (N, HORIZON)


def build_model():
    return Forecaster()


def example_batch(batch_size: int = 8):
    t = torch.rand(batch_size, 1) * 6.28 + torch.arange(SEQ_LEN + HORIZON) * 0.2
    series = torch.sin(t) + 0.05 * torch.randn_like(t)
    return series[:, :SEQ_LEN, None], series[:, SEQ_LEN:]


def compute_loss(model, batch):
    x, y = batch
    return F.mse_loss(model(x).float(), y.float().reshape(len(y), -1)), None
'''

_DIFFUSION = '''INPUT_SHAPE = (3, 32, 32)
TIMESTEPS = 1000
ALPHA_BAR = torch.cumprod(1 - torch.linspace(1e-4, 0.02, TIMESTEPS), 0)  # linear beta schedule


def timestep_embedding(t, dim):
    freqs = torch.exp(-math.log(10000) * torch.arange(dim // 2, device=t.device) / (dim // 2))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=1)


class Denoiser(nn.Module):
    """A small U-Net that predicts the noise in x_t at timestep t."""

    def __init__(self, c=INPUT_SHAPE[0], w=32):
        super().__init__()
        self.w = w
        self.time = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.inc, self.down = nn.Conv2d(c, w, 3, padding=1), nn.Conv2d(w, 2 * w, 4, stride=2, padding=1)
        self.mid, self.up = nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.out = nn.Conv2d(2 * w, c, 3, padding=1)

    def forward(self, x, t):
        h1 = F.silu(self.inc(x) + self.time(timestep_embedding(t, self.w))[:, :, None, None])
        h2 = F.silu(self.mid(F.silu(self.down(h1))))
        return self.out(torch.cat([F.silu(self.up(h2)), h1], dim=1))  # x's shape


def build_model():
    return Denoiser()


def example_batch(batch_size: int = 8):
    x0, t = torch.randn(batch_size, *INPUT_SHAPE), torch.randint(0, TIMESTEPS, (batch_size,))
    noise, a = torch.randn(batch_size, *INPUT_SHAPE), ALPHA_BAR[t].view(-1, 1, 1, 1)
    return (a.sqrt() * x0 + (1 - a).sqrt() * noise, t), noise  # ((x_t, t), the noise added)


def compute_loss(model, batch):
    (x_t, t), noise = batch
    return F.mse_loss(model(x_t, t).float(), noise), None
'''

_SPECTROGRAM = '''INPUT_SHAPE = (1, 64, 128)  # channels, mel bins, frames
NUM_CLASSES = 10


def conv_block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))


class SpectrogramCNN(nn.Module):
    def __init__(self, classes=NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(conv_block(INPUT_SHAPE[0], 16), conv_block(16, 32), conv_block(32, 64),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, classes)

    def forward(self, spec):  # (N, 1, mel bins, frames): log-mel spectrograms
        return self.head(self.features(spec))


def build_model():
    return SpectrogramCNN()


def example_batch(batch_size: int = 8):
    return torch.randn(batch_size, *INPUT_SHAPE), torch.randint(0, NUM_CLASSES, (batch_size,))


def compute_loss(model, batch):
    x, y = batch
    logits = model(x).float()
    return F.cross_entropy(logits, y), (logits.argmax(-1) == y).sum()
'''

_TAGGER = '''INPUT_SHAPE = (40,)  # tokens per sentence
SEQ_LEN = INPUT_SHAPE[0]
VOCAB_SIZE = 20000  # token id 0 is padding
NUM_CLASSES = 9  # tags
EMBED_DIM = 100
HIDDEN = 128


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, EMBED_DIM, padding_idx=0)
        self.rnn = nn.LSTM(EMBED_DIM, HIDDEN, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * HIDDEN, NUM_CLASSES)

    def forward(self, ids):  # (N, T) token ids
        h, _ = self.rnn(self.embed(ids))
        return self.head(h)  # (N, T, NUM_CLASSES): tag scores per token


def build_model():
    return Tagger()


def example_batch(batch_size: int = 8):
    ids = torch.randint(1, VOCAB_SIZE, (batch_size, SEQ_LEN))
    return ids, torch.randint(0, NUM_CLASSES, (batch_size, SEQ_LEN))  # a tag per token (-100: padding)


def compute_loss(model, batch):
    ids, tags = batch
    logits = model(ids).float()
    loss = F.cross_entropy(logits.reshape(-1, NUM_CLASSES), tags.reshape(-1), ignore_index=-100)
    return loss, (logits.argmax(-1) == tags).float().mean(1).sum()
'''

_GCN = '''INPUT_SHAPE = (32,)  # features per node
NUM_CLASSES = 6
NUM_NODES = 100
HIDDEN = 64


class GraphConv(nn.Module):
    """Message passing: each node sums its neighbours' transformed features, A @ X @ W."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.linear = nn.Linear(c_in, c_out)

    def forward(self, x, adj):  # x: (nodes, F); adj: (nodes, nodes) normalised; batched graphs work too
        return adj @ self.linear(x)


class GCN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = GraphConv(INPUT_SHAPE[0], HIDDEN), GraphConv(HIDDEN, NUM_CLASSES)

    def forward(self, x, adj):
        return self.conv2(F.relu(self.conv1(x, adj)), adj)  # (nodes, NUM_CLASSES)


def build_model():
    return GCN()


def example_batch(num_nodes: int = NUM_NODES):
    """One graph: node features, D^-1/2 (A + I) D^-1/2 of a random undirected graph, a class per node."""
    a = (torch.rand(num_nodes, num_nodes) < 0.05).float()
    a = ((a + a.T) > 0).float() + torch.eye(num_nodes)
    d = a.sum(1).rsqrt()
    x, y = torch.randn(num_nodes, *INPUT_SHAPE), torch.randint(0, NUM_CLASSES, (num_nodes,))
    return (x, d[:, None] * a * d[None, :]), y


def synthetic_dataset(n):
    return [example_batch() for _ in range(n)]  # n whole graphs: a batch stacks graphs, not nodes


def compute_loss(model, batch):
    (x, adj), y = batch
    logits = model(x, adj).float()
    loss = F.cross_entropy(logits.reshape(-1, NUM_CLASSES), y.reshape(-1))
    return loss, (logits.argmax(-1) == y).float().mean(-1).sum()
'''

_DETECTION = '''INPUT_SHAPE = (3, 128, 128)  # height and width divisible by 16
NUM_CLASSES = 5  # object classes; class 0 of the scores is "no object"
ANCHORS = 3  # boxes predicted per cell of the 1/16 feature map


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        chans = [INPUT_SHAPE[0], 16, 32, 64, 128]
        self.backbone = nn.Sequential(*[  # 4 stride-2 convolutions: a 1/16 grid
            nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU())
            for a, b in zip(chans, chans[1:])])
        self.box = nn.Conv2d(128, ANCHORS * 4, 1)
        self.cls = nn.Conv2d(128, ANCHORS * (NUM_CLASSES + 1), 1)

    def forward(self, x):
        h, n = self.backbone(x), x.shape[0]
        boxes = self.box(h).permute(0, 2, 3, 1).reshape(n, -1, 4).sigmoid()  # (N, A, 4): cx, cy, w, h in [0, 1]
        scores = self.cls(h).permute(0, 2, 3, 1).reshape(n, -1, NUM_CLASSES + 1)  # (N, A, classes + 1)
        return boxes, scores


def build_model():
    return Detector()


def example_batch(batch_size: int = 8):
    """Targets already matched to the A anchors: a box and a class (0: none) per anchor."""
    anchors = (INPUT_SHAPE[1] // 16) * (INPUT_SHAPE[2] // 16) * ANCHORS
    boxes, labels = torch.rand(batch_size, anchors, 4), torch.randint(0, NUM_CLASSES + 1, (batch_size, anchors))
    return torch.randn(batch_size, *INPUT_SHAPE), (boxes, labels)


def compute_loss(model, batch):
    images, (boxes, labels) = batch
    pred_boxes, scores = model(images)
    cls_loss = F.cross_entropy(scores.float().reshape(-1, NUM_CLASSES + 1), labels.reshape(-1))
    obj = labels > 0
    box_loss = F.smooth_l1_loss(pred_boxes.float()[obj], boxes[obj]) if obj.any() else pred_boxes.sum() * 0
    return cls_loss + box_loss, None
'''

_POLICY = '''INPUT_SHAPE = (4,)  # one observation
OBS_DIM = INPUT_SHAPE[0]
NUM_ACTIONS = 2
HIDDEN = 64


class Policy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(OBS_DIM, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HIDDEN), nn.Tanh(),
                                 nn.Linear(HIDDEN, NUM_ACTIONS))

    def forward(self, obs):  # (N, OBS_DIM)
        return self.net(obs)  # (N, NUM_ACTIONS) action logits


def build_model():
    return Policy()


def example_batch(batch_size: int = 8):
    """Steps of played episodes: observations, the actions taken, and the discounted returns that followed."""
    obs = torch.randn(batch_size, OBS_DIM)
    return obs, (torch.randint(0, NUM_ACTIONS, (batch_size,)), torch.randn(batch_size))


def compute_loss(model, batch):
    """REINFORCE: raise the log-probability of each action taken in proportion to its return."""
    obs, (actions, returns) = batch
    dist = torch.distributions.Categorical(logits=model(obs).float())
    return -(dist.log_prob(actions) * returns).mean(), None
'''

_RECOMMENDER = '''NUM_USERS = 1000
NUM_ITEMS = 2000
EMBED_DIM = 32


class MatrixFactorization(nn.Module):
    def __init__(self):
        super().__init__()
        self.users, self.items = nn.Embedding(NUM_USERS, EMBED_DIM), nn.Embedding(NUM_ITEMS, EMBED_DIM)
        self.user_bias, self.item_bias = nn.Embedding(NUM_USERS, 1), nn.Embedding(NUM_ITEMS, 1)

    def forward(self, user_ids, item_ids):  # (N,), (N,)
        dot = (self.users(user_ids) * self.items(item_ids)).sum(-1)
        return dot + self.user_bias(user_ids).squeeze(-1) + self.item_bias(item_ids).squeeze(-1)  # (N,) click logits


def build_model():
    return MatrixFactorization()


def example_batch(batch_size: int = 8):
    users, items = torch.randint(0, NUM_USERS, (batch_size,)), torch.randint(0, NUM_ITEMS, (batch_size,))
    return (users, items), torch.randint(0, 2, (batch_size,)).float()  # clicked or not


def compute_loss(model, batch):
    (users, items), clicks = batch
    logits = model(users, items).float()
    return F.binary_cross_entropy_with_logits(logits, clicks), ((logits > 0) == clicks.bool()).sum()
'''

_TABULAR = '''INPUT_SHAPE = (16,)  # numeric feature columns, standardised
HIDDEN = 128


class TabularMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(INPUT_SHAPE[0], HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                                 nn.Linear(HIDDEN, 1))

    def forward(self, x):  # (N, features)
        return self.net(x).squeeze(-1)  # (N,): one predicted value per row


def build_model():
    return TabularMLP()


def example_batch(batch_size: int = 8):
    x = torch.randn(batch_size, *INPUT_SHAPE)
    return x, x @ torch.linspace(-1, 1, INPUT_SHAPE[0]) + 0.1 * torch.randn(batch_size)


def compute_loss(model, batch):
    x, y = batch
    return F.mse_loss(model(x).float(), y.float()), None
'''

# -- Keras ------------------------------------------------------------------------------------------
# The Keras frame calls build_model(lr=LR, dropout=DROPOUT, decay_steps=1000) and expects it compiled.

_KERAS_UNET = '''INPUT_SHAPE = (64, 64, 1)  # height, width, channels (channels-last; height and width divisible by 4)
NUM_CLASSES = 3


def conv_block(x, filters):
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    return keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    inputs = keras.Input(shape=INPUT_SHAPE)
    e1 = conv_block(inputs, 16)
    e2 = conv_block(keras.layers.MaxPooling2D()(e1), 32)
    m = conv_block(keras.layers.MaxPooling2D()(e2), 64)
    d2 = conv_block(keras.layers.Concatenate()([keras.layers.Conv2DTranspose(32, 2, strides=2)(m), e2]), 32)
    d1 = conv_block(keras.layers.Concatenate()([keras.layers.Conv2DTranspose(16, 2, strides=2)(d2), e1]), 16)
    outputs = keras.layers.Conv2D(NUM_CLASSES, 1, activation="softmax", dtype="float32")(d1)  # (N, H, W, classes)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *INPUT_SHAPE)).astype("float32")
    return x, rng.integers(0, NUM_CLASSES, size=(batch_size, *INPUT_SHAPE[:2])).astype("int32")  # a class per pixel
'''

_KERAS_CNN1D = '''INPUT_SHAPE = (128, 3)  # time steps, channels (channels-last)
NUM_CLASSES = 6


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = inputs
    for filters, kernel in ((32, 7), (64, 5), (128, 3)):
        x = keras.layers.Conv1D(filters, kernel, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, *INPUT_SHAPE)).astype("float32")
    return x, rng.integers(0, NUM_CLASSES, size=(batch_size,)).astype("int32")
'''

_KERAS_SPECTROGRAM = '''INPUT_SHAPE = (64, 128, 1)  # mel bins, frames, channels (channels-last)
NUM_CLASSES = 10


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    inputs = keras.Input(shape=INPUT_SHAPE)  # log-mel spectrograms
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, *INPUT_SHAPE)).astype("float32")
    return x, rng.integers(0, NUM_CLASSES, size=(batch_size,)).astype("int32")
'''

_KERAS_TAGGER = '''INPUT_SHAPE = (40,)  # tokens per sentence
SEQ_LEN = INPUT_SHAPE[0]
VOCAB_SIZE = 20000  # token id 0 is padding
NUM_CLASSES = 9  # tags


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    inputs = keras.Input(shape=INPUT_SHAPE, dtype="int32")
    x = keras.layers.Embedding(VOCAB_SIZE, 64, mask_zero=True)(inputs)
    x = keras.layers.Bidirectional(keras.layers.GRU(64, return_sequences=True))(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)  # (N, T, tags)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.integers(1, VOCAB_SIZE, size=(batch_size, SEQ_LEN)).astype("int32")
    return x, rng.integers(0, NUM_CLASSES, size=(batch_size, SEQ_LEN)).astype("int32")  # a tag per token
'''

_KERAS_MULTI_LABEL = '''INPUT_SHAPE = (64, 64, 3)  # channels-last
NUM_CLASSES = 20  # labels; any number of them per example


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = inputs
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="sigmoid", dtype="float32")(x)  # a probability per label
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy", metrics=["binary_accuracy"])
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *INPUT_SHAPE)).astype("float32")
    return x, (rng.random((batch_size, NUM_CLASSES)) < 0.2).astype("float32")  # 0/1 per label
'''

_KERAS_RECOMMENDER = '''NUM_USERS = 1000
NUM_ITEMS = 2000
EMBED_DIM = 32


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    users = keras.Input(shape=(), dtype="int32", name="user_ids")
    items = keras.Input(shape=(), dtype="int32", name="item_ids")
    u = keras.layers.Embedding(NUM_USERS, EMBED_DIM)(users)
    v = keras.layers.Embedding(NUM_ITEMS, EMBED_DIM)(items)
    score = keras.layers.Dot(axes=1)([u, v])  # (N, 1) click logit
    model = keras.Model([users, items], score)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    users = rng.integers(0, NUM_USERS, size=(batch_size,)).astype("int32")
    items = rng.integers(0, NUM_ITEMS, size=(batch_size,)).astype("int32")
    return (users, items), rng.integers(0, 2, size=(batch_size, 1)).astype("float32")  # clicked or not
'''


def _torch(key: str, title: str, source: str, tasks: tuple[str, ...], families: tuple[str, ...] = (),
           ranks: Optional[tuple[int, ...]] = None) -> Example:
    return Example(key, "torch", title, source, tasks, families, ranks)


def _keras(key: str, title: str, source: str, tasks: tuple[str, ...], families: tuple[str, ...] = (),
           ranks: Optional[tuple[int, ...]] = None) -> Example:
    return Example(key, "tensorflow", title, source, tasks, families, ranks)


#: Every example, in the order :func:`example_for` prefers them among equals.
EXAMPLES: tuple[Example, ...] = (
    _torch("unet", "a small U-Net for semantic segmentation", _UNET, ("semantic-segmentation",), ("unet",), (3,)),
    _torch("cnn1d", "a 1-D CNN classifier over signals (N, channels, time)", _CNN1D,
           ("signal-classification", "audio-classification"), ("cnn1d",), (1, 2)),
    _torch("char-lm", "a character-level GRU language model", _CHAR_LM, ("language-model",), (), (1,)),
    _torch("multi-label", "a CNN multi-label image classifier (one sigmoid per label)", _MULTI_LABEL,
           ("multi-label-classification",), (), (3,)),
    _torch("forecasting", "an LSTM that forecasts the next HORIZON values of a series", _FORECAST,
           ("forecasting",), (), (1, 2)),
    _torch("diffusion", "a small U-Net noise predictor for a denoising diffusion model", _DIFFUSION,
           ("diffusion",), ("diffusion", "unet"), (3,)),
    _torch("spectrogram", "a CNN classifier of spectrograms (N, 1, mel bins, frames)", _SPECTROGRAM,
           ("audio-classification",), (), (3,)),
    _torch("tagger", "a BiLSTM sequence tagger (a tag per token)", _TAGGER, ("sequence-labeling",), (), (1,)),
    _torch("gcn", "a graph convolutional network in plain torch for node classification", _GCN, ("graph",),
           ("gnn",), (1,)),
    _torch("detection", "a small detector: conv backbone, boxes and class scores per anchor", _DETECTION,
           ("object-detection",), ("yolo",), (3,)),
    _torch("policy", "a policy network trained with REINFORCE", _POLICY, ("policy",), (), (1,)),
    _torch("recommender", "a matrix-factorisation recommender of clicks (user and item embeddings)", _RECOMMENDER,
           ("recommendation",)),
    _torch("tabular-regression", "an MLP regressor on the numeric columns of a CSV", _TABULAR, ("regression",),
           (), (1,)),
    _keras("unet", "a small Keras U-Net for semantic segmentation", _KERAS_UNET, ("semantic-segmentation",),
           ("unet",), (3,)),
    _keras("cnn1d", "a Keras 1-D CNN classifier over signals (N, time, channels)", _KERAS_CNN1D,
           ("signal-classification", "audio-classification"), ("cnn1d",), (1, 2)),
    _keras("spectrogram", "a Keras CNN classifier of spectrograms (N, mel bins, frames, 1)", _KERAS_SPECTROGRAM,
           ("audio-classification",), (), (3,)),
    _keras("tagger", "a Keras bidirectional GRU sequence tagger (a tag per token)", _KERAS_TAGGER,
           ("sequence-labeling",), (), (1,)),
    _keras("multi-label", "a Keras CNN multi-label image classifier (one sigmoid per label)", _KERAS_MULTI_LABEL,
           ("multi-label-classification",), (), (3,)),
    _keras("recommender", "a Keras recommender of clicks (user and item embeddings, dot product)", _KERAS_RECOMMENDER,
           ("recommendation",)),
)


def example_for(spec: Spec, framework: str) -> Optional[Example]:
    """The reference example for this request, or None when no example here fits it.

    The request's family picks first (a U-Net for any U-Net request; among a family's examples the one
    made for the request's task: a diffusion U-Net for a diffusion request); else its task. Only
    examples of ``framework`` are shown (torch code would mislead a Keras frame), and none whose input
    rank differs from the rank the request states (an image CNN for 300-token documents would too).
    """
    family, task = spec.get("family"), spec.get("task")
    shape = spec.get("input_shape")
    rank = len(shape) if isinstance(shape, (list, tuple)) else None
    pool = [e for e in EXAMPLES if e.framework == framework and (rank is None or e.ranks is None or rank in e.ranks)]
    by_family = [e for e in pool if family is not None and family in e.families]
    by_task = [e for e in pool if task is not None and task in e.tasks]
    matches = by_family or by_task
    if not matches:
        return None
    # The first example made for this task, else the first of the family (min keeps the table's order).
    return min(matches, key=lambda e: e.tasks.index(task) if task in e.tasks else len(e.tasks))
