"""Program text of the data loaders: real files from ``--data`` (MNIST, CIFAR-10, image folders, CSV, text,
series, episodes), never downloaded, and the wrappers that turn them into each task's datasets.
"""

from __future__ import annotations

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

CIFAR100 = '''
def load_images(args):
    """CIFAR-100 from the python-pickle files train and test in --data (or --data/cifar-100-python), x in [0, 1],
    y the 100 fine labels."""
    import pickle

    base = args.data
    if not os.path.exists(os.path.join(base, "train")):
        base = os.path.join(args.data, "cifar-100-python")

    def read(name):
        path = os.path.join(base, name)
        if not os.path.exists(path):
            raise DataError(f"CIFAR-100 file {name} not found in {args.data}: extract cifar-100-python.tar.gz there "
                            "(this script never downloads), or run with --synthetic")
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        x = torch.as_tensor(batch[b"data"], dtype=torch.uint8).view(-1, 3, 32, 32).float().div(255)
        return x.reshape(len(x), *INPUT_SHAPE), torch.as_tensor(batch[b"fine_labels"], dtype=torch.long)

    return read("train") + read("test")
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
