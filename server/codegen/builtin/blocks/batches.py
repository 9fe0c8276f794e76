"""Program text of ``example_batch()`` and ``compute_loss()``, one pair per family of model.

``example_batch()`` returns synthetic ``(inputs, targets)`` of the right shapes (the contract of every
generated program); ``compute_loss()`` returns ``(loss, correct_or_None)`` for the training loop.
"""

from __future__ import annotations

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
