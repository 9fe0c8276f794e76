"""Program text of the Keras programs' data loaders: real files from ``--data``, never downloaded.

One loader per data kind (:data:`DATA_BLOCKS`, by :meth:`~.choices.Choices.data_kind`), a synthetic
one, and the wrappers that turn a labelled loader into an autoencoder's (x, x). Plain strings: no
formatting, so braces are literal.
"""

from __future__ import annotations

_SPLIT = '''

def split(x, y, val_fraction=0.1):
    """Shuffle (seeded) and hold out a validation fraction."""
    order = np.random.default_rng(SEED).permutation(len(x))
    n_val = max(1, int(len(x) * val_fraction))
    val, tr = order[:n_val], order[n_val:]
    return (x[tr], y[tr]), (x[val], y[val])
'''

DATA_MNIST = '''
def _read_idx(path):
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {stem}[.gz]")


def load_data(path):
    """MNIST from local files: mnist.npz (x_train, y_train, x_test, y_test) or the four idx files."""
    if not path:
        raise FileNotFoundError("MNIST needs --data DIR (mnist.npz or the idx files); nothing is downloaded")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    npz = p if p.is_file() else p / "mnist.npz"
    if npz.is_file():
        with np.load(npz) as d:
            x_tr, y_tr, x_te, y_te = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    else:
        x_tr, y_tr = _read_idx(_find(p, "train-images-idx3-ubyte")), _read_idx(_find(p, "train-labels-idx1-ubyte"))
        x_te, y_te = _read_idx(_find(p, "t10k-images-idx3-ubyte")), _read_idx(_find(p, "t10k-labels-idx1-ubyte"))
    prep = lambda x: (x.astype("float32") / 255.0).reshape((-1, *INPUT_SHAPE))
    return (prep(x_tr), y_tr.astype("int32")), (prep(x_te), y_te.astype("int32"))
'''

DATA_CIFAR = '''
def _unpickle(path):
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def load_data(path):
    """CIFAR-10 from the python batches (data_batch_1..5, test_batch), in DIR or DIR/cifar-10-batches-py."""
    if not path:
        raise FileNotFoundError("CIFAR-10 needs --data DIR (cifar-10-batches-py); nothing is downloaded")
    p = Path(path)
    if (p / "cifar-10-batches-py").is_dir():
        p = p / "cifar-10-batches-py"
    if not (p / "data_batch_1").is_file():
        raise FileNotFoundError(f"{p}: no CIFAR-10 python batches (data_batch_1 ... test_batch)")

    def read(names):
        batches = [_unpickle(p / n) for n in names]
        x = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.concatenate([b[b"labels"] for b in batches]).astype("int32")
        x = x.astype("float32") / 255.0
        if len(INPUT_SHAPE) == 1:
            x = x.reshape((len(x), -1))  # a dense model takes the flattened image
        elif tuple(x.shape[1:]) != tuple(INPUT_SHAPE):
            x = tf.image.resize(x, INPUT_SHAPE[:2]).numpy()
        return x, y

    train_names = sorted(n.name for n in p.glob("data_batch_*"))
    return read(train_names), read(["test_batch"])
'''

DATA_IMAGEFOLDER = '''
def load_data(path):
    """Images from DIR/<class name>/*.png|jpg, resized to INPUT_SHAPE, 10% held out for validation."""
    if not path or not Path(path).is_dir():
        raise FileNotFoundError(f"--data must be a folder with one sub-folder of images per class (got {path!r})")
    common = dict(
        validation_split=0.1, seed=SEED, image_size=INPUT_SHAPE[:2], batch_size=None,
        color_mode="grayscale" if INPUT_SHAPE[-1] == 1 else "rgb",
    )
    train = keras.utils.image_dataset_from_directory(path, subset="training", **common)
    val = keras.utils.image_dataset_from_directory(path, subset="validation", **common)
    if "NUM_CLASSES" in globals() and len(train.class_names) != NUM_CLASSES:
        raise ValueError(f"{path}: {len(train.class_names)} class folders, the model has NUM_CLASSES={NUM_CLASSES}")
    scale = lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)
    return train.map(scale), val.map(scale)
'''

DATA_CSV = '''
def read_csv(path):
    """A numeric CSV with a header row -> (column names, float32 array)."""
    import csv

    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"--data must be a CSV file (got {path!r}); nothing is downloaded")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) < 3:
        raise ValueError(f"{path}: needs a header row and at least two data rows")
    header, body = rows[0], [r for r in rows[1:] if r]
    try:
        values = np.asarray(body, dtype="float32")
    except ValueError:
        raise ValueError(f"{path}: every column must be numeric") from None
    return header, values
''' + _SPLIT + '''

def load_data(path, target=None):
    """Features and one numeric target column (default: the last), standardized with training statistics."""
    header, values = read_csv(path)
    col = header.index(target) if target else len(header) - 1
    if target and target not in header:
        raise ValueError(f"{path}: no column {target!r}; columns: {', '.join(header)}")
    x = np.delete(values, col, axis=1)
    y = values[:, col : col + 1]
    if x.shape[1] != INPUT_SHAPE[0]:
        raise ValueError(f"{path}: {x.shape[1]} feature columns, the model expects {INPUT_SHAPE[0]}")
    (x_tr, y_tr), (x_val, y_val) = split(x, y)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-6
    return ((x_tr - mean) / std, y_tr), ((x_val - mean) / std, y_val)
'''

DATA_SERIES = DATA_CSV.split("\n\ndef load_data")[0] + '''

def load_data(path, target=None):
    """Sliding windows over a numeric CSV: SEQ_LEN rows of every column in, the next HORIZON values of
    the target column (default: the first) out. Standardized with statistics of the training part."""
    header, values = read_csv(path)
    if target and target not in header:
        raise ValueError(f"{path}: no column {target!r}; columns: {', '.join(header)}")
    col = header.index(target) if target else 0
    if values.shape[1] != INPUT_SHAPE[-1]:
        raise ValueError(f"{path}: {values.shape[1]} columns, the model expects {INPUT_SHAPE[-1]} channels")
    n_windows = len(values) - SEQ_LEN - HORIZON + 1
    if n_windows < 2:
        raise ValueError(f"{path}: {len(values)} rows, need at least {SEQ_LEN + HORIZON + 1}")
    cut = int(len(values) * 0.9)
    mean, std = values[:cut].mean(axis=0), values[:cut].std(axis=0) + 1e-6
    values = (values - mean) / std
    starts = np.arange(n_windows)
    x = np.stack([values[s : s + SEQ_LEN] for s in starts]).astype("float32")
    y = np.stack([values[s + SEQ_LEN : s + SEQ_LEN + HORIZON, col] for s in starts]).astype("float32")
    n_val = max(1, n_windows // 10)  # the most recent windows validate (no shuffling across time)
    return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])
'''

DATA_TEXT = '''
def read_texts(path):
    """(texts, labels, class names) from a CSV with text,label columns or DIR/<class>/*.txt."""
    import csv

    p = Path(path) if path else None
    if p is None or not p.exists():
        raise FileNotFoundError(f"--data must be a CSV (text,label) or a folder of class sub-folders (got {path!r})")
    if p.is_dir():
        classes = sorted(d.name for d in p.iterdir() if d.is_dir())
        texts, labels = [], []
        for i, name in enumerate(classes):
            for f in sorted((p / name).glob("*.txt")):
                texts.append(f.read_text(encoding="utf-8", errors="replace"))
                labels.append(i)
        return texts, np.asarray(labels, dtype="int32"), classes
    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "text" not in rows[0] or "label" not in rows[0]:
        raise ValueError(f"{p}: needs a header with 'text' and 'label' columns")
    classes = sorted({r["label"] for r in rows})
    if all(c.lstrip("-").isdigit() for c in classes):
        classes = sorted(classes, key=int)
    index = {c: i for i, c in enumerate(classes)}
    return [r["text"] for r in rows], np.asarray([index[r["label"]] for r in rows], dtype="int32"), classes
''' + _SPLIT + '''

def load_data(path):
    """Texts -> token ids (TextVectorization fitted on the training texts, VOCAB_SIZE, SEQ_LEN)."""
    texts, labels, classes = read_texts(path)
    if len(classes) != NUM_CLASSES:
        raise ValueError(f"{path}: {len(classes)} classes, the model has NUM_CLASSES={NUM_CLASSES}")
    (t_tr, y_tr), (t_val, y_val) = split(np.asarray(texts, dtype=object), labels)
    vectorize = keras.layers.TextVectorization(max_tokens=VOCAB_SIZE, output_sequence_length=SEQ_LEN)
    vectorize.adapt(t_tr.astype(str))
    ids = lambda t: np.asarray(vectorize(t.astype(str)), dtype="int32")
    return (ids(t_tr), y_tr), (ids(t_val), y_val)
'''

DATA_SYNTHETIC = '''
def load_data(path=None, target=None):
    """No dataset named: --data FILE.npz with arrays x and y, else 1024 synthetic examples."""
    if path:
        if not Path(path).is_file() or Path(path).suffix != ".npz":
            raise FileNotFoundError(f"{path}: expected an .npz file with arrays x and y")
        with np.load(path) as d:
            x, y = d["x"], d["y"]
    else:
        print("note: no --data; training on synthetic data", file=sys.stderr)
        x, y = example_batch(1024)
    n_val = max(1, len(x) // 10)
    return (x[n_val:], y[n_val:]), (x[:n_val], y[:n_val])
'''

DATA_CIFAR100 = '''
def _unpickle(path):
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def load_data(path):
    """CIFAR-100 from the python files (train, test) in DIR or DIR/cifar-100-python: the 100 fine labels."""
    if not path:
        raise FileNotFoundError("CIFAR-100 needs --data DIR (cifar-100-python); nothing is downloaded")
    p = Path(path)
    if (p / "cifar-100-python").is_dir():
        p = p / "cifar-100-python"
    if not (p / "train").is_file():
        raise FileNotFoundError(f"{p}: no CIFAR-100 python files (train, test)")

    def read(name):
        b = _unpickle(p / name)
        x = b[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype("float32") / 255.0
        y = np.asarray(b[b"fine_labels"]).astype("int32")
        if len(INPUT_SHAPE) == 1:
            x = x.reshape((len(x), -1))  # a dense model takes the flattened image
        elif tuple(x.shape[1:]) != tuple(INPUT_SHAPE):
            x = tf.image.resize(x, INPUT_SHAPE[:2]).numpy()
        return x, y

    return read("train"), read("test")
'''

DATA_BLOCKS = {
    "mnist": DATA_MNIST,
    "cifar10": DATA_CIFAR,
    "imagefolder": DATA_IMAGEFOLDER,
    "csv": DATA_CSV,
    "series": DATA_SERIES,
    "text": DATA_TEXT,
}

# An autoencoder trains on (x, x): the wrappers reuse the image loaders and drop their labels.
AE_WRAP_IMAGE = '''
_load_labelled = load_data


def load_data(path=None):
    """Images only: the target of an autoencoder is its input."""
    train, val = _load_labelled(path)
    if isinstance(train, tuple):
        return (train[0], train[0]), (val[0], val[0])
    return train.map(lambda x, y: (x, x)), val.map(lambda x, y: (x, x))
'''

AE_WRAP_FLAT = '''
_load_labelled = load_data


def load_data(path=None):
    """Flattened inputs in [0, 1]; the target of an autoencoder is its input."""
    train, val = _load_labelled(path)
    if not isinstance(train, tuple):
        raise ValueError("a dense autoencoder takes array data; use an image folder with a conv autoencoder")
    flat = lambda x: x.reshape((len(x), -1))[:, : INPUT_SHAPE[0]]
    if train[0].reshape((len(train[0]), -1)).shape[1] != INPUT_SHAPE[0]:
        raise ValueError(f"inputs have {train[0][0].size} values, the model expects {INPUT_SHAPE[0]}")
    return (flat(train[0]), flat(train[0])), (flat(val[0]), flat(val[0]))
'''
