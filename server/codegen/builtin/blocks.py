"""Building blocks of the generated PyTorch programs: source text, composed by :mod:`.pytorch`.

Each block is a piece of a complete program, written as it appears in the output. ``$NAME``
placeholders are filled with :class:`string.Template`; the generated code itself never uses ``$``.
Every block is exercised by tests/codegen/test_builtin_torch.py, which generates programs from
prompts and runs them (``--smoke`` and the verifier's property checks).
"""

from __future__ import annotations

# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------

HELPERS = '''
class DataError(Exception):
    """Input data missing or malformed: main() prints it as one line and exits 2."""


def to_device(obj, device):
    """Move tensors (also inside tuples, lists and dicts) to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {key: to_device(value, device) for key, value in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(value, device) for value in obj)
    return obj


def _index(obj, i):
    if isinstance(obj, dict):
        return {key: _index(value, i) for key, value in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_index(value, i) for value in obj)
    return obj[i]


class SyntheticDataset(Dataset):
    """``n`` random examples with example_batch()'s shapes: for --smoke and --synthetic."""

    def __init__(self, n: int):
        self.inputs, self.targets = example_batch(n)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return _index(self.inputs, i), _index(self.targets, i)


def split(dataset, val_fraction: float = 0.1):
    """A seeded train/validation split."""
    n_val = max(1, int(len(dataset) * val_fraction))
    return random_split(dataset, [len(dataset) - n_val, n_val], generator=torch.Generator().manual_seed(SEED))
'''

SYNTHETIC_DEFAULT = '''
def synthetic_dataset(n: int) -> Dataset:
    return SyntheticDataset(n)
'''

# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

MLP = '''
def build_model() -> nn.Module:
    """An MLP with $LAYERS nn.Linear layers ($IN_FEATURES inputs -> $OUT_FEATURES outputs)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = $IN_FEATURES
    for _ in range($LAYERS - 1):
        layers += [nn.Linear(width, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT)]
        width = HIDDEN
    layers.append(nn.Linear(width, $OUT_FEATURES))
    return nn.Sequential(*layers)
'''

CNN = '''
def conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU, then 2x2 max pooling while the image is large enough."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class CNN(nn.Module):
    """$LAYERS convolutional layers, global average pooling, dropout and a linear classifier."""

    def __init__(self, conv_layers: int = $LAYERS, width: int = 32):
        super().__init__()
        blocks, c_in, size = [], INPUT_SHAPE[0], min(INPUT_SHAPE[1:])
        for i in range(conv_layers):
            c_out = min(width * 2 ** i, 256)
            pool = size >= 4
            blocks.append(conv_block(c_in, c_out, pool))
            c_in, size = c_out, size // 2 if pool else size
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(DROPOUT), nn.Linear(c_in, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model() -> nn.Module:
    return CNN()
'''

BASIC_BLOCK = '''
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al., 2016)."""

    expansion = 1  # output channels per unit of stage width

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))
'''

BOTTLENECK = '''
class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (4x) with a residual connection: ResNet-50/101/152's block (He et al., 2016)."""

    expansion = 4  # output channels per unit of stage width

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))
'''

# The network around the block class ($BLOCK: BasicBlock or Bottleneck, defined before it).
RESNET = '''
class ResNet(nn.Module):
    """A ResNet with $BLOCKS_TOTAL ${BLOCK}s in stages $STAGES; a 3x3 stem for small images."""

    def __init__(self, stages: tuple[int, ...] = $STAGES, width: int = 64):
        super().__init__()
        c_in = INPUT_SHAPE[0]
        if min(INPUT_SHAPE[1:]) >= 128:  # ImageNet-sized inputs: the 7x7 stride-2 stem and a max pool
            self.stem = nn.Sequential(nn.Conv2d(c_in, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(c_in, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        blocks, c = [], width
        for i, n in enumerate(stages):
            stage_width = width * 2 ** i
            for j in range(n):
                blocks.append($BLOCK(c, stage_width, stride=2 if (i > 0 and j == 0) else 1))
                c = stage_width * $BLOCK.expansion
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(DROPOUT), nn.Linear(c, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


def build_model() -> nn.Module:
    return ResNet()
'''

EFFICIENTNET = '''
class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, reduced, 1), nn.SiLU(),
                                  nn.Conv2d(reduced, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand, depthwise kxk, squeeze-excite, 1x1 project (Tan & Le, 2019)."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.SiLU()]
        layers += [nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.SiLU(), SqueezeExcite(hidden, max(1, c_in // 4)),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


# EfficientNet-B0's stages: (expand ratio, channels, repeats, stride, kernel).
B0_STAGES = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3), (6, 112, 3, 1, 5),
             (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)]


class EfficientNet(nn.Module):
    """An EfficientNet-style network of $BLOCKS_TOTAL MBConv blocks (B0's stages, one block per stage first)."""

    def __init__(self, num_blocks: int = $BLOCKS_TOTAL):
        super().__init__()
        stem_stride = 2 if min(INPUT_SHAPE[1:]) >= 128 else 1
        self.stem = nn.Sequential(nn.Conv2d(INPUT_SHAPE[0], 32, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(32), nn.SiLU())
        # Spread num_blocks over the stages: one per stage, then more in B0's proportions.
        repeats = [0] * len(B0_STAGES)
        for k in range(num_blocks):
            if k < len(B0_STAGES):
                repeats[k] += 1
            else:
                candidates = [i for i, stage in enumerate(B0_STAGES) if repeats[i] < stage[2]] or list(range(len(B0_STAGES)))
                repeats[min(candidates, key=lambda i: repeats[i] / B0_STAGES[i][2])] += 1
        blocks, c_in, size = [], 32, min(INPUT_SHAPE[1:]) // stem_stride
        for (expand, c_out, _, stride, kernel), n in zip(B0_STAGES, repeats):
            for j in range(n):
                s = stride if (j == 0 and size >= 4) else 1
                blocks.append(MBConv(c_in, c_out, expand, kernel, s))
                c_in, size = c_out, size // s
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(c_in, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.SiLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(DROPOUT), nn.Linear(1280, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build_model() -> nn.Module:
    return EfficientNet()
'''

TEXT_RNN = '''
class TextRNN(nn.Module):
    """Embedding, a $LAYERS-layer bidirectional $RNN, masked mean pooling and a linear classifier."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB_SIZE, EMBED_DIM, padding_idx=PAD)
        self.rnn = nn.$RNN(EMBED_DIM, HIDDEN, num_layers=$LAYERS, batch_first=True, bidirectional=True,
                          dropout=DROPOUT if $LAYERS > 1 else 0.0)
        self.dropout = nn.Dropout(DROPOUT)
        self.head = nn.Linear(2 * HIDDEN, NUM_CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embedding(tokens))
        mask = (tokens != PAD).unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(self.dropout(pooled))


def build_model() -> nn.Module:
    return TextRNN()
'''

TEXT_TRANSFORMER = '''
class TextTransformer(nn.Module):
    """Token and position embeddings, $LAYERS nn.TransformerEncoderLayer blocks, mean pooling, a linear classifier."""

    def __init__(self, heads: int = $HEADS):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB_SIZE, EMBED_DIM, padding_idx=PAD)
        self.position = nn.Parameter(torch.zeros(1, SEQ_LEN, EMBED_DIM))
        layer = nn.TransformerEncoderLayer(EMBED_DIM, heads, HIDDEN, DROPOUT, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, $LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(EMBED_DIM, NUM_CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == PAD
        x = self.embedding(tokens) + self.position[:, : tokens.shape[1]]
        x = self.encoder(x, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(x.dtype)
        return self.head((x * keep).sum(1) / keep.sum(1).clamp_min(1.0))


def build_model() -> nn.Module:
    return TextTransformer()
'''

HF_MODEL = '''
def build_model() -> nn.Module:
    """The local Hugging Face model in MODEL_PATH with a fresh $NUM_CLASSES-way classification head."""
    from transformers import AutoModelForSequenceClassification

    if not os.path.isdir(MODEL_PATH):
        raise DataError(f"model directory {MODEL_PATH} not found: pass --model DIR with a local Hugging Face "
                        "model (config.json and weights); this script never downloads")
    # ignore_mismatched_sizes: a checkpoint with another number of labels gets a fresh head too.
    model = AutoModelForSequenceClassification.from_pretrained(MODEL_PATH, num_labels=NUM_CLASSES, local_files_only=True,
                                                               ignore_mismatched_sizes=True)
    if model.config.pad_token_id is None:  # GPT-2 style models: pad with the end-of-text token
        model.config.pad_token_id = model.config.eos_token_id if model.config.eos_token_id is not None else 0
    return model
'''

SERIES_RNN = '''
class Forecaster(nn.Module):
    """A $LAYERS-layer $RNN over the last SEQ_LEN steps; a linear head predicts the next HORIZON steps."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.$RNN(CHANNELS, HIDDEN, num_layers=$LAYERS, batch_first=True, dropout=DROPOUT if $LAYERS > 1 else 0.0)
        self.head = nn.Linear(HIDDEN, HORIZON * CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1]).view(-1, HORIZON, CHANNELS)


def build_model() -> nn.Module:
    return Forecaster()
'''

SERIES_TRANSFORMER = '''
class Forecaster(nn.Module):
    """Input projection, learned positions, $LAYERS nn.TransformerEncoderLayer blocks; the last step predicts HORIZON steps."""

    def __init__(self, d_model: int = $D_MODEL, heads: int = $HEADS):
        super().__init__()
        self.project = nn.Linear(CHANNELS, d_model)
        self.position = nn.Parameter(torch.zeros(1, SEQ_LEN, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, HIDDEN, DROPOUT, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, $LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, HORIZON * CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.project(x) + self.position[:, : x.shape[1]])
        return self.head(h[:, -1]).view(-1, HORIZON, CHANNELS)


def build_model() -> nn.Module:
    return Forecaster()
'''

SERIES_MLP = '''
class Forecaster(nn.Module):
    """An MLP with $LAYERS nn.Linear layers over the flattened window of SEQ_LEN steps."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = SEQ_LEN * CHANNELS
        for _ in range($LAYERS - 1):
            layers += [nn.Linear(width, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT)]
            width = HIDDEN
        layers.append(nn.Linear(width, HORIZON * CHANNELS))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1, HORIZON, CHANNELS)


def build_model() -> nn.Module:
    return Forecaster()
'''

AUTOENCODER = '''
class AutoEncoder(nn.Module):
    """MLP encoder to a LATENT_DIM-dim bottleneck and a mirrored decoder; outputs in [0, 1]."""

    def __init__(self):
        super().__init__()
        n = math.prod(INPUT_SHAPE)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(n, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT), nn.Linear(HIDDEN, LATENT_DIM))
        self.decoder = nn.Sequential(nn.Linear(LATENT_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, n), nn.Sigmoid(),
                                     nn.Unflatten(1, INPUT_SHAPE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def build_model() -> nn.Module:
    return AutoEncoder()
'''

VAE = '''
class VAE(nn.Module):
    """Variational autoencoder (Kingma & Welling, 2014): forward returns (reconstruction, mu, logvar)."""

    def __init__(self):
        super().__init__()
        n = math.prod(INPUT_SHAPE)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(n, HIDDEN), nn.ReLU())
        self.mu = nn.Linear(HIDDEN, LATENT_DIM)
        self.logvar = nn.Linear(HIDDEN, LATENT_DIM)
        self.decoder = nn.Sequential(nn.Linear(LATENT_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, n), nn.Sigmoid(),
                                     nn.Unflatten(1, INPUT_SHAPE))

    def forward(self, x: torch.Tensor):
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h).clamp(-10, 10)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        z = torch.randn(n, LATENT_DIM, device=self.mu.weight.device)
        return self.decoder(z)


def build_model() -> nn.Module:
    return VAE()
'''

GAN = '''
class Generator(nn.Module):
    """LATENT_DIM-dim noise -> an image of INPUT_SHAPE in [-1, 1]."""

    def __init__(self):
        super().__init__()
        n = math.prod(INPUT_SHAPE)
        self.net = nn.Sequential(nn.Linear(LATENT_DIM, HIDDEN), nn.LeakyReLU(0.2), nn.Linear(HIDDEN, 2 * HIDDEN),
                                 nn.BatchNorm1d(2 * HIDDEN), nn.LeakyReLU(0.2), nn.Linear(2 * HIDDEN, n), nn.Tanh(),
                                 nn.Unflatten(1, INPUT_SHAPE))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    """An image -> one logit: real (high) or generated (low)."""

    def __init__(self):
        super().__init__()
        n = math.prod(INPUT_SHAPE)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n, 2 * HIDDEN), nn.LeakyReLU(0.2), nn.Dropout(DROPOUT),
                                 nn.Linear(2 * HIDDEN, HIDDEN), nn.LeakyReLU(0.2), nn.Linear(HIDDEN, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class GAN(nn.Module):
    """Both networks in one module; calling it generates images from noise."""

    def __init__(self):
        super().__init__()
        self.generator = Generator()
        self.discriminator = Discriminator()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)


def build_model() -> nn.Module:
    return GAN()
'''

PROTONET = '''
class ProtoNet(nn.Module):
    """Prototypical network (Snell et al., 2017): a Conv-4 embedding; classes are the mean embeddings
    of their support examples and queries are scored by negative squared distance to them."""

    def __init__(self, width: int = 64):
        super().__init__()
        blocks, c_in, size = [], INPUT_SHAPE[0], min(INPUT_SHAPE[1:])
        for _ in range(4):
            pool = size >= 2
            blocks += [nn.Conv2d(c_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            if pool:
                blocks.append(nn.MaxPool2d(2))
            c_in, size = width, size // 2 if pool else size
        self.encoder = nn.Sequential(*blocks, nn.Flatten())

    def forward(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """support: (n_way * k_shot, C, H, W) ordered class by class; query: (q, C, H, W) -> (q, n_way) logits."""
        n_way = support.shape[0] // K_SHOT
        prototypes = self.encoder(support).view(n_way, K_SHOT, -1).mean(1)
        return -torch.cdist(self.encoder(query), prototypes) ** 2


def build_model() -> nn.Module:
    return ProtoNet()
'''

# ----------------------------------------------------------------------------------------------
# example_batch() and compute_loss(), per family
# ----------------------------------------------------------------------------------------------

EXAMPLE_IMAGE_CLS = '''
def example_batch(batch_size: int = 8):
    """Synthetic inputs of INPUT_SHAPE and class targets."""
    g = torch.Generator().manual_seed(SEED)
    return torch.randn(batch_size, *INPUT_SHAPE, generator=g), torch.randint(0, NUM_CLASSES, (batch_size,), generator=g)
'''

EXAMPLE_TEXT = '''
def example_batch(batch_size: int = 8):
    """Synthetic token ids (no padding) and class targets."""
    g = torch.Generator().manual_seed(SEED)
    tokens = torch.randint(2, VOCAB_SIZE, (batch_size, SEQ_LEN), generator=g)
    return tokens, torch.randint(0, NUM_CLASSES, (batch_size,), generator=g)
'''

EXAMPLE_TEXT_MULTILABEL = '''
def example_batch(batch_size: int = 8):
    """Synthetic token ids (no padding) and multi-hot targets: each label on with probability 0.2."""
    g = torch.Generator().manual_seed(SEED)
    tokens = torch.randint(2, VOCAB_SIZE, (batch_size, SEQ_LEN), generator=g)
    return tokens, (torch.rand(batch_size, NUM_CLASSES, generator=g) < 0.2).float()
'''

EXAMPLE_HF = '''
def example_batch(batch_size: int = 8):
    """Synthetic token ids within the local model's vocabulary, an attention mask and class targets."""
    from transformers import AutoConfig

    if not os.path.isdir(MODEL_PATH):
        raise DataError(f"model directory {MODEL_PATH} not found: pass --model DIR with a local Hugging Face "
                        "model (config.json and weights); this script never downloads")
    vocab = AutoConfig.from_pretrained(MODEL_PATH, local_files_only=True).vocab_size
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(5, vocab, (batch_size, SEQ_LEN), generator=g)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return inputs, torch.randint(0, NUM_CLASSES, (batch_size,), generator=g)
'''

EXAMPLE_REGRESSION = '''
def example_batch(batch_size: int = 8):
    """Synthetic feature rows and a noisy linear target."""
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(batch_size, *INPUT_SHAPE, generator=g)
    w = torch.linspace(-1.0, 1.0, math.prod(INPUT_SHAPE))
    return x, x.flatten(1) @ w + 0.1 * torch.randn(batch_size, generator=g)
'''

EXAMPLE_SERIES = '''
def example_batch(batch_size: int = 8):
    """Synthetic windows of noisy sine waves: SEQ_LEN steps in, the next HORIZON steps as targets."""
    g = torch.Generator().manual_seed(SEED)
    start = torch.rand(batch_size, 1, 1, generator=g) * 6.28
    t = torch.arange(SEQ_LEN + HORIZON).view(1, -1, 1) * 0.2 + start
    series = torch.sin(t + torch.arange(CHANNELS).view(1, 1, -1)) + 0.05 * torch.randn(batch_size, SEQ_LEN + HORIZON, CHANNELS, generator=g)
    return series[:, :SEQ_LEN], series[:, SEQ_LEN:]
'''

EXAMPLE_RECON = '''
def example_batch(batch_size: int = 8):
    """Synthetic inputs in [0, 1]; the target of a reconstruction is the input itself."""
    g = torch.Generator().manual_seed(SEED)
    x = torch.rand(batch_size, *INPUT_SHAPE, generator=g)
    return x, x
'''

EXAMPLE_GAN = '''
def example_batch(batch_size: int = 8):
    """Noise for the generator and synthetic 'real' images in [-1, 1] of the same shape as its output."""
    g = torch.Generator().manual_seed(SEED)
    z = torch.randn(batch_size, LATENT_DIM, generator=g)
    return z, torch.rand(batch_size, *INPUT_SHAPE, generator=g) * 2 - 1


def synthetic_dataset(n: int) -> Dataset:
    return TensorDataset(example_batch(n)[1])
'''

EXAMPLE_FEWSHOT = '''
def example_batch(batch_size: int = N_QUERY):
    """One synthetic episode: ((support, query), query labels); support is N_WAY x K_SHOT images, class by class."""
    g = torch.Generator().manual_seed(SEED)
    centers = torch.randn(N_WAY, *INPUT_SHAPE, generator=g)
    support = centers.repeat_interleave(K_SHOT, 0) + 0.5 * torch.randn(N_WAY * K_SHOT, *INPUT_SHAPE, generator=g)
    labels = torch.arange(batch_size) % N_WAY
    query = centers[labels] + 0.5 * torch.randn(batch_size, *INPUT_SHAPE, generator=g)
    return (support, query), labels


class SyntheticEpisodes(Dataset):
    """Random episodes: each item is a whole episode, so loaders use batch_size=None."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(SEED + i)
        centers = torch.randn(N_WAY, *INPUT_SHAPE, generator=g)
        support = centers.repeat_interleave(K_SHOT, 0) + 0.5 * torch.randn(N_WAY * K_SHOT, *INPUT_SHAPE, generator=g)
        labels = torch.arange(N_QUERY) % N_WAY
        query = centers[labels] + 0.5 * torch.randn(N_QUERY, *INPUT_SHAPE, generator=g)
        return (support, query), labels


def synthetic_dataset(n: int) -> Dataset:
    return SyntheticEpisodes(max(2, n // 4))
'''

LOSS_CLASSIFY = '''
def compute_loss(model: nn.Module, batch):
    """Cross-entropy; also the number of correct predictions."""
    x, y = batch
    logits = model(x).float()
    return F.cross_entropy(logits, y), (logits.argmax(-1) == y).sum()
'''

LOSS_MULTILABEL = '''
LOSS_FN = nn.BCEWithLogitsLoss()  # multi-label: one independent sigmoid per label


def compute_loss(model: nn.Module, batch):
    """Binary cross-entropy per label; also the number of examples whose every label is right."""
    x, y = batch
    logits = model(x).float()
    return LOSS_FN(logits, y.float()), ((logits > 0) == (y > 0.5)).all(-1).sum()
'''

LOSS_HF = '''
def compute_loss(model: nn.Module, batch):
    """Cross-entropy on the classification head's logits; also the number of correct predictions."""
    inputs, y = batch
    logits = model(**inputs).logits.float()
    return F.cross_entropy(logits, y), (logits.argmax(-1) == y).sum()
'''

LOSS_FEWSHOT = '''
def compute_loss(model: nn.Module, batch):
    """Cross-entropy of the queries over the episode's classes; also the number of correct queries."""
    (support, query), y = batch
    logits = model(support, query).float()
    return F.cross_entropy(logits, y), (logits.argmax(-1) == y).sum()
'''

LOSS_REGRESSION = '''
def compute_loss(model: nn.Module, batch):
    """Mean squared error (no accuracy for regression)."""
    x, y = batch
    return F.mse_loss(model(x).float().squeeze(-1), y.float()), None
'''

LOSS_SERIES = '''
def compute_loss(model: nn.Module, batch):
    """Mean squared error over the forecast horizon."""
    x, y = batch
    return F.mse_loss(model(x).float(), y.float()), None
'''

LOSS_AUTOENCODER = '''
def compute_loss(model: nn.Module, batch):
    """Reconstruction error (mean squared)."""
    x = batch[0]
    return F.mse_loss(model(x).float(), x.float()), None
'''

LOSS_VAE = '''
def compute_loss(model: nn.Module, batch):
    """The negative ELBO per example: reconstruction error plus the KL divergence to N(0, I)."""
    x = batch[0]
    recon, mu, logvar = model(x)
    recon_loss = F.mse_loss(recon.float(), x.float(), reduction="sum") / x.shape[0]
    kl = -0.5 * torch.sum(1 + logvar.float() - mu.float() ** 2 - logvar.float().exp()) / x.shape[0]
    return recon_loss + kl, None
'''

# ----------------------------------------------------------------------------------------------
# Data: real files from --data, never downloaded
# ----------------------------------------------------------------------------------------------

MNIST = '''
def _read_idx(path: str) -> torch.Tensor:
    """An IDX file (MNIST's format), gzipped or not."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).view(*dims)


def load_images(args):
    """MNIST from the standard IDX files in --data: (train x, train y, test x, test y), x in [0, 1]."""
    def find(stem: str) -> str:
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
            path = os.path.join(args.data, name)
            if os.path.exists(path):
                return path
        raise DataError(f"MNIST file {stem}[.gz] not found in {args.data}: put train-images-idx3-ubyte, "
                        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte there "
                        "(this script never downloads), or run with --synthetic")
    out = []
    for split_name in ("train", "t10k"):
        x = _read_idx(find(f"{split_name}-images-idx3-ubyte")).float().div(255)
        y = _read_idx(find(f"{split_name}-labels-idx1-ubyte")).long()
        out += [x.reshape(len(x), *INPUT_SHAPE), y]
    return tuple(out)
'''

CIFAR10 = '''
def load_images(args):
    """CIFAR-10 from the python-pickle batches in --data (or --data/cifar-10-batches-py), x in [0, 1]."""
    import pickle

    base = args.data
    if not os.path.exists(os.path.join(base, "data_batch_1")):
        base = os.path.join(args.data, "cifar-10-batches-py")

    def read(names):
        xs, ys = [], []
        for name in names:
            path = os.path.join(base, name)
            if not os.path.exists(path):
                raise DataError(f"CIFAR-10 batch {name} not found in {args.data}: extract cifar-10-python.tar.gz there "
                                "(this script never downloads), or run with --synthetic")
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            xs.append(torch.as_tensor(batch[b"data"], dtype=torch.uint8).view(-1, 3, 32, 32))
            ys.append(torch.as_tensor(batch[b"labels"], dtype=torch.long))
        x = torch.cat(xs).float().div(255)
        return x.reshape(len(x), *INPUT_SHAPE), torch.cat(ys)

    return read([f"data_batch_{i}" for i in range(1, 6)]) + read(["test_batch"])
'''

DIGITS = '''
def load_images(args):
    """scikit-learn's bundled 8x8 digits (1,797 images, offline): a seeded 80/20 split, x in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits dataset comes with scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).div(16).reshape(-1, *INPUT_SHAPE)
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]
'''

IMAGE_FOLDER = '''
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def read_image_folder(root: str):
    """Images in root/<class>/*.png|jpg, resized to INPUT_SHAPE: (x in [0, 1], labels, class names)."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError("reading an image folder needs Pillow: pip install pillow") from None
    if not os.path.isdir(root):
        raise DataError(f"image folder {root} not found: pass --data DIR with one sub-folder per class, or run with --synthetic")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DataError(f"no class folders in {root}: expected {root}/<class>/<image>.png")
    channels, height, width = INPUT_SHAPE
    xs, ys = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        for file in sorted(os.listdir(folder)):
            if file.lower().endswith(IMAGE_EXTENSIONS):
                with Image.open(os.path.join(folder, file)) as image:
                    image = image.convert("L" if channels == 1 else "RGB").resize((width, height))
                    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
                xs.append(pixels.view(height, width, channels).permute(2, 0, 1).float().div(255))
                ys.append(label)
    if not xs:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    return torch.stack(xs), torch.tensor(ys), classes


def load_images(args):
    """An image folder split 90/10 (seeded): (train x, train y, val x, val y)."""
    x, y, _ = read_image_folder(args.data)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))
    cut = max(1, int(0.9 * len(x)))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]
'''

CSV_READER = '''
def read_csv(path: str, target: str | None = None):
    """A numeric CSV file: (features as a float tensor, target column values as strings, header or None).

    The target is the column named (or numbered) by ``target``, else the last column.
    """
    if not os.path.exists(path):
        raise DataError(f"CSV file {path} not found: pass --data FILE.csv, or run with --synthetic")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows:
        raise DataError(f"{path} is empty")
    header = None
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        header, rows = rows[0], rows[1:]
    width = len(rows[0]) if rows else 0
    if target is None:
        col = width - 1
    elif header and target in header:
        col = header.index(target)
    elif target.lstrip("-").isdigit():
        col = int(target) % width
    else:
        raise DataError(f"no column {target!r} in {path}; columns: {', '.join(header or [])}")
    features, targets = [], []
    for line, row in enumerate(rows, start=2 if header else 1):
        if len(row) != width:
            raise DataError(f"{path}:{line}: {len(row)} values, expected {width}")
        try:
            features.append([float(v) for i, v in enumerate(row) if i != col])
        except ValueError:
            raise DataError(f"{path}:{line}: a non-numeric feature value; this script reads numeric columns only") from None
        targets.append(row[col].strip())
    return torch.tensor(features, dtype=torch.float32), targets, header
'''

CSV_CLASSIFY = '''
def load_data(args):
    """Rows of a CSV file: numeric features, a class label column; standardised with the training split's statistics."""
    x, labels, _ = read_csv(args.data, args.target)
    if x.shape[1] != math.prod(INPUT_SHAPE):
        raise DataError(f"{args.data} has {x.shape[1]} feature columns; the model expects {math.prod(INPUT_SHAPE)}")
    classes = sorted(set(labels), key=lambda v: (not v.lstrip("-").isdigit(), int(v) if v.lstrip("-").isdigit() else 0, v))
    if len(classes) > NUM_CLASSES:
        raise DataError(f"{args.data} has {len(classes)} classes; the model has {NUM_CLASSES} outputs")
    y = torch.tensor([classes.index(v) for v in labels])
    train, val = split(TensorDataset(x, y))
    mean, std = x[train.indices].mean(0), x[train.indices].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    return split(TensorDataset(x.view(len(x), *INPUT_SHAPE), y))
'''

CSV_REGRESSION = '''
def load_data(args):
    """Rows of a CSV file: numeric features and a numeric target; features standardised with training statistics."""
    x, values, _ = read_csv(args.data, args.target)
    if x.shape[1] != math.prod(INPUT_SHAPE):
        raise DataError(f"{args.data} has {x.shape[1]} feature columns; the model expects {math.prod(INPUT_SHAPE)}")
    try:
        y = torch.tensor([float(v) for v in values])
    except ValueError:
        raise DataError(f"the target column of {args.data} is not numeric") from None
    train, _ = split(TensorDataset(x, y))
    mean, std = x[train.indices].mean(0), x[train.indices].std(0).clamp_min(1e-6)
    return split(TensorDataset(((x - mean) / std).view(len(x), *INPUT_SHAPE), y))
'''

TEXT_DATA = '''
TOKEN = re.compile(r"[\\u4e00-\\u9fff]|[^\\W_]+")  # one token per Chinese character, else per word


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def read_labelled_text(path: str):
    """Lines of "label<TAB>text": (labels, texts)."""
    if not os.path.exists(path):
        raise DataError(f"text file {path} not found: pass --data FILE with one 'label<TAB>text' line per example, "
                        "or run with --synthetic")
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            if "\\t" not in line:
                raise DataError(f"{path}:{number}: expected 'label<TAB>text'")
            label, text = line.rstrip("\\n").split("\\t", 1)
            labels.append(label.strip())
            texts.append(text)
    if not texts:
        raise DataError(f"{path} has no examples")
    return labels, texts


def label_ids(labels: list[str]) -> torch.Tensor:
    classes = sorted(set(labels))
    if len(classes) > NUM_CLASSES:
        raise DataError(f"{len(classes)} labels in the data ({', '.join(classes[:5])}...); the model has {NUM_CLASSES} classes")
    if all(c.isdigit() and int(c) < NUM_CLASSES for c in classes):
        return torch.tensor([int(c) for c in labels])
    return torch.tensor([classes.index(c) for c in labels])
'''

LABEL_SETS = '''
def label_sets(labels: list[str]) -> torch.Tensor:
    """Multi-hot targets from label fields such as "sports,politics" (any number of labels per line)."""
    rows = [[name.strip() for name in field.split(",") if name.strip()] for field in labels]
    names = sorted({name for row in rows for name in row})
    if len(names) > NUM_CLASSES:
        raise DataError(f"{len(names)} distinct labels in the data ({', '.join(names[:5])}...); the model has {NUM_CLASSES} outputs")
    y = torch.zeros(len(rows), NUM_CLASSES)
    for i, row in enumerate(rows):
        for name in row:
            y[i, names.index(name)] = 1.0
    return y
'''

TEXT_VOCAB = '''
def load_data(args):
    """Labelled lines, a vocabulary of the VOCAB_SIZE - 2 most frequent training tokens (0 = pad, 1 = unknown)."""
    labels, texts = read_labelled_text(args.data)
    y = label_ids(labels)
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(SEED)).tolist()
    cut = max(1, int(0.9 * len(texts)))
    counts = collections.Counter(tok for i in order[:cut] for tok in tokenize(texts[i]))
    vocab = {tok: i + 2 for i, (tok, _) in enumerate(counts.most_common(VOCAB_SIZE - 2))}
    ids = torch.zeros(len(texts), SEQ_LEN, dtype=torch.long)
    for row, text in enumerate(texts):
        tokens = [vocab.get(tok, UNK) for tok in tokenize(text)][:SEQ_LEN] or [UNK]
        ids[row, : len(tokens)] = torch.tensor(tokens)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    data = TensorDataset(ids, y)
    return Subset(data, order[:cut]), Subset(data, order[cut:] or order[:1])
'''

TEXT_HF = '''
def load_data(args):
    """Labelled lines tokenised with the local model's tokenizer (padded or cut to SEQ_LEN tokens)."""
    from transformers import AutoTokenizer

    labels, texts = read_labelled_text(args.data)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_PATH, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=SEQ_LEN, return_tensors="pt")
    data = HFTextDataset(enc["input_ids"], enc["attention_mask"], label_ids(labels))
    return split(data)


class HFTextDataset(Dataset):
    def __init__(self, ids, mask, labels):
        self.ids, self.mask, self.labels = ids, mask, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i]}, self.labels[i]
'''

SERIES_DATA = '''
def load_data(args):
    """A numeric CSV (one row per time step; the last CHANNELS columns are the series), cut into windows.

    Standardised with the first 90 %'s statistics; the last 10 % of windows are the validation set
    (chronological, no shuffling across the split).
    """
    if not os.path.exists(args.data):
        raise DataError(f"series file {args.data} not found: pass --data FILE.csv (one value per line or column), "
                        "or run with --synthetic")
    with open(args.data, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    values = []
    for line, row in enumerate(rows, 1):
        try:
            values.append([float(v) for v in row[-CHANNELS:]])
        except ValueError:
            if line == 1:
                continue  # a header
            raise DataError(f"{args.data}:{line}: non-numeric value") from None
    series = torch.tensor(values, dtype=torch.float32)
    if series.ndim != 2 or series.shape[1] != CHANNELS or len(series) < SEQ_LEN + HORIZON + 2:
        raise DataError(f"{args.data}: need at least {SEQ_LEN + HORIZON + 2} rows of {CHANNELS} value(s)")
    cut = int(0.9 * len(series))
    mean, std = series[:cut].mean(0), series[:cut].std(0).clamp_min(1e-6)
    series = (series - mean) / std
    windows = series.unfold(0, SEQ_LEN + HORIZON, 1).permute(0, 2, 1)  # (n, SEQ_LEN + HORIZON, CHANNELS)
    x, y = windows[:, :SEQ_LEN].contiguous(), windows[:, SEQ_LEN:].contiguous()
    n_val = max(1, len(x) // 10)
    return TensorDataset(x[:-n_val], y[:-n_val]), TensorDataset(x[-n_val:], y[-n_val:])
'''

FEWSHOT_DATA = '''
class Episodes(Dataset):
    """Episodes sampled from an image folder: N_WAY classes, K_SHOT support and N_QUERY // N_WAY queries each."""

    def __init__(self, by_class: list[torch.Tensor], n: int, seed: int):
        self.by_class, self.n, self.seed = by_class, n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed + i)
        classes = torch.randperm(len(self.by_class), generator=g)[:N_WAY].tolist()
        per_class = max(1, N_QUERY // N_WAY)
        support, query, labels = [], [], []
        for label, c in enumerate(classes):
            images = self.by_class[c]
            pick = torch.randperm(len(images), generator=g)[: K_SHOT + per_class]
            support.append(images[pick[:K_SHOT]])
            query.append(images[pick[K_SHOT:]])
            labels += [label] * len(pick[K_SHOT:])
        return (torch.cat(support), torch.cat(query)), torch.tensor(labels)


def load_data(args):
    """Episodes from an image folder (one sub-folder per class); classes split 80/20 into train and validation."""
    x, y, classes = read_image_folder(args.data)
    by_class = [x[y == c] for c in range(len(classes))]
    by_class = [images for images in by_class if len(images) > K_SHOT]
    if len(by_class) < 2 * N_WAY:
        raise DataError(f"{args.data}: need at least {2 * N_WAY} classes with more than {K_SHOT} images each")
    cut = max(N_WAY, int(0.8 * len(by_class)))
    return Episodes(by_class[:cut], 200, SEED), Episodes(by_class[cut:], 20, SEED + 10_000)
'''

IMAGES_CLASSIFY = '''
def load_data(args):
    """Images scaled to [-1, 1] with their class labels."""
    x, y, x_val, y_val = load_images(args)
    if int(y.max()) >= NUM_CLASSES:
        raise DataError(f"labels go up to {int(y.max())}; the model has {NUM_CLASSES} classes")
    return TensorDataset(x * 2 - 1, y), TensorDataset(x_val * 2 - 1, y_val)
'''

IMAGES_RECON = '''
def load_data(args):
    """Images in [0, 1]; the reconstruction target is the image itself."""
    x, _, x_val, _ = load_images(args)
    return TensorDataset(x, x), TensorDataset(x_val, x_val)
'''

IMAGES_GAN = '''
def load_data(args):
    """Real images scaled to [-1, 1] (the generator's Tanh range); labels are not needed."""
    x, _, x_val, _ = load_images(args)
    return TensorDataset(x * 2 - 1), TensorDataset(x_val * 2 - 1)
'''

CSV_RECON = '''
def load_data(args):
    """CSV rows min-max scaled to [0, 1] (all columns are features); the target is the row itself."""
    x, last, header = read_csv(args.data, None)
    x = torch.cat([x, torch.tensor([[float(v)] for v in last])], 1) if x.shape[1] < math.prod(INPUT_SHAPE) else x
    if x.shape[1] != math.prod(INPUT_SHAPE):
        raise DataError(f"{args.data} has {x.shape[1]} columns; the model expects {math.prod(INPUT_SHAPE)}")
    low, high = x.min(0).values, x.max(0).values
    x = ((x - low) / (high - low).clamp_min(1e-6)).view(len(x), *INPUT_SHAPE)
    return split(TensorDataset(x, x))
'''

NO_DATA = '''
def load_data(args):
    raise DataError("this program has no reader for real data yet: run with --synthetic, or write load_data() "
                    "to return (train, validation) datasets of example_batch()'s shapes")
'''
