"""Program text of the models the PyTorch programs build: one block per architecture, each with ``build_model()``.

``$NAME`` placeholders (layer counts, block kinds) are filled with :class:`string.Template` by
:mod:`deepdive.codegen.builtin.pytorch.parts`; the generated code never uses ``$``.
"""

from __future__ import annotations

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

MOBILENET = '''
class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, linear 1x1 projection, a residual when the shape stays
    (Sandler et al., 2018)."""

    def __init__(self, c_in: int, c_out: int, expand: int, stride: int):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


# MobileNetV2's stages: (expand ratio, channels, repeats, stride).
V2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    """A MobileNetV2-style network of $BLOCKS_TOTAL inverted residual blocks (V2's stages, one block per stage first;
    V2 itself has 17)."""

    def __init__(self, num_blocks: int = $BLOCKS_TOTAL):
        super().__init__()
        stem_stride = 2 if min(INPUT_SHAPE[1:]) >= 128 else 1
        self.stem = nn.Sequential(nn.Conv2d(INPUT_SHAPE[0], 32, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU6(inplace=True))
        # Spread num_blocks over the stages: one per stage, then more in V2's proportions.
        repeats = [0] * len(V2_STAGES)
        for k in range(num_blocks):
            if k < len(V2_STAGES):
                repeats[k] += 1
            else:
                candidates = [i for i, stage in enumerate(V2_STAGES) if repeats[i] < stage[2]] or list(range(len(V2_STAGES)))
                repeats[min(candidates, key=lambda i: repeats[i] / V2_STAGES[i][2])] += 1
        blocks, c_in, size = [], 32, min(INPUT_SHAPE[1:]) // stem_stride
        for (expand, c_out, _, stride), n in zip(V2_STAGES, repeats):
            for j in range(n):
                s = stride if (j == 0 and size >= 4) else 1
                blocks.append(InvertedResidual(c_in, c_out, expand, s))
                c_in, size = c_out, size // s
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(c_in, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(inplace=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(DROPOUT), nn.Linear(1280, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build_model() -> nn.Module:
    return MobileNetV2()
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
