"""The PyTorch reference examples' code, one string per example (see :mod:`deepdive.codegen.frames.examples`).

Each is a model part in the torch frame's conventions: constants, the model class(es),
``build_model()``, ``example_batch(batch_size=8)`` and ``compute_loss(model, batch)``. One table of
sources: each example is written out whole, because the model copies what it is shown.
"""

from __future__ import annotations

UNET = '''INPUT_SHAPE = (1, 64, 64)  # channels, height, width (height and width divisible by 4)
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

CNN1D = '''INPUT_SHAPE = (3, 128)  # channels, time steps
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

CHAR_LM = '''INPUT_SHAPE = (100,)  # characters read
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

GPT_LM = '''INPUT_SHAPE = (64,)  # tokens of context
SEQ_LEN = INPUT_SHAPE[0]
VOCAB_SIZE = 5000
EMBED_DIM = 128
NUM_HEADS = 4
NUM_LAYERS = 2


class GPT(nn.Module):
    """Decoder-only: token and position embeddings, causal self-attention blocks, next-token scores."""

    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB_SIZE, EMBED_DIM), nn.Embedding(SEQ_LEN, EMBED_DIM)
        block = nn.TransformerEncoderLayer(EMBED_DIM, NUM_HEADS, 4 * EMBED_DIM, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, NUM_LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(EMBED_DIM, VOCAB_SIZE)

    def forward(self, ids):  # (N, T) token ids
        t = ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device)  # each position sees the past only
        h = self.blocks(self.tok(ids) + self.pos(torch.arange(t, device=ids.device)), mask=mask, is_causal=True)
        return self.head(h)  # (N, T, VOCAB_SIZE): scores of the next token at each position


def build_model():
    return GPT()


def example_batch(batch_size: int = 8):
    text = torch.randint(0, VOCAB_SIZE, (batch_size, SEQ_LEN + 1))
    return text[:, :-1], text[:, 1:]  # targets: the inputs shifted by one token


def compute_loss(model, batch):
    x, y = batch
    logits = model(x).float()
    loss = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), y.reshape(-1))
    return loss, (logits.argmax(-1) == y).float().mean(1).sum()
'''

MULTI_LABEL = '''INPUT_SHAPE = (3, 64, 64)
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

FORECAST = '''INPUT_SHAPE = (48, 1)  # past values read, 1 channel
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

DIFFUSION = '''INPUT_SHAPE = (3, 32, 32)
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

SPECTROGRAM = '''INPUT_SHAPE = (1, 64, 128)  # channels, mel bins, frames
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

TAGGER = '''INPUT_SHAPE = (40,)  # tokens per sentence
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

GCN = '''INPUT_SHAPE = (32,)  # features per node
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

DETECTION = '''INPUT_SHAPE = (3, 128, 128)  # height and width divisible by 16
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

POLICY = '''INPUT_SHAPE = (4,)  # one observation
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

RECOMMENDER = '''NUM_USERS = 1000
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

RECOMMENDER_ALL = '''NUM_USERS = 1000
NUM_ITEMS = 2000  # every item gets a score for the user
EMBED_DIM = 32


class ItemScores(nn.Module):
    """A user's embedding against every item's: one score per item for each user."""

    def __init__(self):
        super().__init__()
        self.users = nn.Embedding(NUM_USERS, EMBED_DIM)
        self.items = nn.Linear(EMBED_DIM, NUM_ITEMS)  # row i: item i's embedding, and its bias

    def forward(self, user_ids):  # (N,)
        return self.items(self.users(user_ids))  # (N, NUM_ITEMS) click logits


def build_model():
    return ItemScores()


def example_batch(batch_size: int = 8):
    users = torch.randint(0, NUM_USERS, (batch_size,))
    return users, (torch.rand(batch_size, NUM_ITEMS) < 0.01).float()  # the items each user clicked


def compute_loss(model, batch):
    users, clicks = batch
    return F.binary_cross_entropy_with_logits(model(users).float(), clicks), None
'''

TABULAR = '''INPUT_SHAPE = (16,)  # numeric feature columns, standardised
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
