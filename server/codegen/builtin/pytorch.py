"""Compose a complete PyTorch program from an :class:`Intent` (pure string work, no torch import)."""

from __future__ import annotations

import json
import math
import re
from string import Template
from typing import Optional

from deepdive.codegen.builtin import blocks as B
from deepdive.codegen.intent import Intent
from deepdive.codegen.spec import same_layer

CLASSIFY = ("image-classification", "text-classification")


def _t(text: str, **values: object) -> str:
    return Template(text).substitute({k: str(v) for k, v in values.items()})


def _ind(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line.strip() else "" for line in text.splitlines())


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
        layer_default = {"cnn": 3, "mlp": 3, "lstm": 2, "gru": 2, "transformer": 2, "resnet": 8, "efficientnet": 7}
        self.layers = intent.layers or layer_default.get(self.arch, 2)
        self.hidden = intent.hidden_size or (128 if self.kind in ("series", "classify") and self.arch in ("lstm", "gru") else
                                             256 if self.kind != "series" else 64)
        # Layer types the prompt excluded: Dropout everywhere, BatchNorm2d in the plain CNN (see _without);
        # traits.describe() says which remain, and the reading reports those as gaps.
        self.no_dropout = any(same_layer(name, "Dropout") for name in intent.exclude_layers)
        self.no_batchnorm = any(same_layer(name, "BatchNorm2d") for name in intent.exclude_layers)
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


# ------------------------------------------------------------------------------------------------


def generate_torch(intent: Intent) -> tuple[str, str]:
    """The program's source and a suggested file name."""
    p = Plan(intent)
    parts = [_docstring(p), _imports(p), _constants(p), B.HELPERS, _model(p), _example(p), _loss(p), _data(p)]
    if p.kind == "gan":
        parts.append(_gan_train(p))
    elif p.kind == "online":
        parts.append(_online_train(p))
    else:
        parts += [_checkpoint_fns(p) if p.has("checkpoint") else "", _loader(p), _evaluate(p), _train(p)]
        if p.has("optuna") and not p.engine:
            parts.append(_tune(p))
    if p.task == "streaming-inference":
        parts.append(_stream(p))
    parts += [_post(p), _main(p)]
    code = "\n".join(part.strip("\n") + "\n" for part in parts if part.strip())
    code = re.sub(r"\n{4,}", "\n\n\n", code.replace("\n\n\n\n", "\n\n\n"))
    code = _space_defs(code)
    return code, _filename(p)


def _space_defs(code: str) -> str:
    # Two blank lines before every top-level def/class (after the imports/constants).
    lines = code.split("\n")
    out: list[str] = []
    for line in lines:
        if re.match(r"(def |class |@torch|if __name__)", line) and out and not out[-1].startswith("@"):
            while out and out[-1] == "":
                out.pop()
            out += ["", ""]
        out.append(line)
    return "\n".join(out).rstrip() + "\n"


def _filename(p: Plan) -> str:
    data = {"mnist": "mnist", "cifar10": "cifar10", "digits": "digits", "imagefolder": "images", "csv": "csv", "text": "text",
            "series": "series", "synthetic": ""}[p.dataset]
    arch = {"hf-finetune": "finetune", "protonet": "protonet"}.get(p.arch, p.arch)
    task = {"autoencoder": "", "vae": "", "gan": "", "few-shot": "fewshot", "streaming-inference": "streaming",
            "online-learning": "online", "forecasting": "forecast", "regression": "regression",
            "text-classification": "classifier" if not data else "", "image-classification": ""}[p.task]
    name = "_".join(x for x in (data, task, arch) if x)
    return f"{name or 'model'}.py"


def _docstring(p: Plan) -> str:
    title = {
        "image-classification": f"{p.arch.upper() if p.arch in ('cnn', 'mlp') else p.arch.capitalize()} image classifier",
        "text-classification": "fine-tuned Hugging Face text classifier" if p.hf else f"{p.arch.upper() if p.arch != 'transformer' else 'Transformer'} text classifier",
        "regression": "MLP regression", "autoencoder": "autoencoder", "vae": "variational autoencoder",
        "gan": "GAN for data augmentation", "forecasting": f"{p.arch.upper() if p.arch != 'transformer' else 'Transformer'} time-series forecaster",
        "few-shot": "few-shot prototypical network", "streaming-inference": "sliding-window streaming inference",
        "online-learning": "online learning loop",
    }[p.task]
    if p.task == "image-classification" and p.dataset == "csv":
        title = "MLP classifier for tabular data"
    if p.multi_label:
        title = "multi-label " + title
    prompt = " ".join(p.intent.prompt.split()).replace('"""', "'''").replace("\\", "/")
    runs = ["python {file} --smoke             # one tiny step on synthetic data", "python {file} --synthetic --epochs 2"]
    if p.dataset == "digits":
        runs.append("python {file}                     # scikit-learn's bundled digits")
    elif p.dataset != "synthetic":
        runs.append("python {file} --data " + _default_data(p))
    if p.has("ddp"):
        runs.append("torchrun --nproc_per_node 2 {file} --data " + _default_data(p))
    if p.task == "streaming-inference":
        runs.append("python {file} --synthetic --stream values.txt   # one value per line; '-' reads stdin")
    if p.task == "online-learning":
        runs.append("python {file} --stream rows.csv   # features..., label per line; '-' reads stdin")
    body = "\n".join("    " + r.format(file=_filename(p)) for r in runs)
    notes = []
    if p.ignored:
        notes.append(f"Not applied to this kind of training loop: {', '.join(sorted(p.ignored))}.")
    if p.engine_note:
        notes.append("Written in plain PyTorch: deepdive.engine's loop helpers expect one model and one optimizer.")
    note = ("\n\n" + "\n".join(notes)) if notes else ""
    return f'''"""{title[0].upper() + title[1:]}, generated by Deepdive's builtin generator.

Prompt: {prompt}

Run::

{body}

Data is read from local files only; nothing is downloaded.{note}
"""'''


def _default_data(p: Plan) -> str:
    if p.dataset == "csv" and p.intent.csv_path:
        return p.intent.csv_path
    return {"mnist": "data/mnist", "cifar10": "data/cifar-10-batches-py", "digits": "(bundled with scikit-learn)", "imagefolder": "data/images",
            "csv": "data.csv", "text": "data/train.tsv", "series": "data/series.csv",
            "synthetic": "DIR"}[p.dataset]


def _imports(p: Plan) -> str:
    std = ["argparse", "math", "os", "random", "sys"]
    if p.dataset in ("csv", "series") or p.kind in ("series", "online"):
        std.append("csv")
    if p.dataset == "mnist":
        std.append("gzip")
    if p.dataset == "text" and not p.hf:
        std += ["collections", "json", "re"]
    elif p.dataset == "text":
        std.append("re")
    if p.has("checkpoint") or p.kind == "online":
        pass
    if p.task == "streaming-inference":
        std.append("collections")
    lines = ["from __future__ import annotations", ""] + [f"import {m}" for m in sorted(set(std))] + [""]
    if p.has("optuna") and not p.engine:
        lines.append("import optuna")
    lines += ["import torch", "import torch.nn.functional as F", "from torch import nn"]
    if p.has("prune"):
        lines.append("from torch.nn.utils import prune")
    if p.has("ddp") and not p.engine:
        lines += ["import torch.distributed as dist", "from torch.nn.parallel import DistributedDataParallel as DDP"]
    loaders = ["DataLoader", "Dataset", "Subset", "TensorDataset", "random_split"]
    if p.has("ddp") and not p.engine:
        loaders.insert(2, "DistributedSampler")
    lines.append(f"from torch.utils.data import {', '.join(loaders)}")
    if p.engine:
        lines += ["", "import deepdive.engine as dd"]
    return "\n".join(lines)


def _constants(p: Plan) -> str:
    c = [f"SEED = {p.intent.seed or 0}", f"INPUT_SHAPE = {tuple(p.input_shape)!r}  # one example, without the batch dimension"]
    if p.kind in ("classify", "hf", "online", "fewshot") or p.task in CLASSIFY:
        if p.kind != "fewshot":
            c.append(f"NUM_CLASSES = {p.num_classes}" + ("  # labels; any number of them per example" if p.multi_label else ""))
    c += [f"HIDDEN = {p.hidden}", f"DROPOUT = {p.dropout}" + ("  # the prompt excluded dropout: no Dropout layers" if p.no_dropout else "")]
    if p.task == "text-classification":
        c += [f"SEQ_LEN = {p.seq_len}"]
        if not p.hf:
            c += [f"VOCAB_SIZE = {p.vocab}", f"EMBED_DIM = {p.embed}", "PAD, UNK = 0, 1  # token ids 0 and 1"]
        else:
            c += [f"MODEL_PATH = {p.model_path!r}  # a local Hugging Face model directory (--model overrides)"]
    if p.kind == "series":
        c += [f"SEQ_LEN = {p.seq_len}  # input window (time steps)", f"CHANNELS = {p.channels}",
              f"HORIZON = {p.horizon}  # steps predicted"]
    if p.kind in ("recon", "vae", "gan"):
        c.append(f"LATENT_DIM = {p.latent}")
    if p.kind == "fewshot":
        c += [f"N_WAY = {p.n_way}", f"K_SHOT = {p.k_shot}", f"N_QUERY = {p.n_way * 3}  # query images per episode"]
    c += [f"EPOCHS = {p.epochs}", f"BATCH_SIZE = {p.batch}", f"LR = {p.lr!r}"]
    return "\n".join(c)


def _model(p: Plan) -> str:
    return _without(p, _model_source(p))


def _without(p: Plan, code: str) -> str:
    """The model source without the layer types the prompt excluded (what traits.describe() promises)."""
    if p.no_dropout:
        code = code.replace(", nn.Dropout(DROPOUT)", "").replace("nn.Dropout(DROPOUT)", "nn.Identity()")
        code = code.replace("global average pooling, dropout and", "global average pooling and")
        # nn.TransformerEncoderLayer makes its own Dropout modules: replace them after it is built.
        code = re.sub(r"\n( +)(self\.encoder = nn\.TransformerEncoder\([^\n]*\))\n",
                      "\n\\1\\2\n\\1for block in self.encoder.layers:  # the prompt excluded dropout\n"
                      "\\1    block.dropout, block.dropout1, block.dropout2 = nn.Identity(), nn.Identity(), nn.Identity()\n",
                      code)
    if p.no_batchnorm and p.arch == "cnn":
        code = code.replace("nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), ",
                            "nn.Conv2d(c_in, c_out, 3, padding=1), ")
        code = code.replace("3x3 convolution, batch norm, ReLU", "3x3 convolution, ReLU")
    return code


def _model_source(p: Plan) -> str:
    if p.kind in ("classify", "online", "regress") and p.task != "text-classification":
        n_in = math.prod(p.input_shape)
        if p.arch == "mlp" or p.kind in ("online", "regress"):
            out = "NUM_CLASSES" if p.kind in ("classify", "online") else "1"
            return _t(B.MLP, LAYERS=p.layers, IN_FEATURES="math.prod(INPUT_SHAPE)", OUT_FEATURES=out)
        if p.arch == "cnn":
            return _t(B.CNN, LAYERS=p.layers)
        if p.arch == "resnet":
            block = "Bottleneck" if p.block == "bottleneck" else "BasicBlock"
            return (B.BOTTLENECK if block == "Bottleneck" else B.BASIC_BLOCK) + _t(
                B.RESNET, STAGES=_stages(p.layers, p.block), BLOCKS_TOTAL=p.layers, BLOCK=block)
        if p.arch == "efficientnet":
            return _t(B.EFFICIENTNET, BLOCKS_TOTAL=p.layers)
        del n_in
    if p.task == "text-classification":
        if p.hf:
            return _t(B.HF_MODEL, NUM_CLASSES=p.num_classes)
        if p.arch == "transformer":
            return _t(B.TEXT_TRANSFORMER, LAYERS=p.layers, HEADS=_heads(p.embed))
        return _t(B.TEXT_RNN, LAYERS=p.layers, RNN="GRU" if p.arch == "gru" else "LSTM")
    if p.kind == "series":
        if p.arch == "transformer":
            return _t(B.SERIES_TRANSFORMER, LAYERS=p.layers, D_MODEL=64, HEADS=4)
        if p.arch == "mlp":
            return _t(B.SERIES_MLP, LAYERS=p.layers)
        return _t(B.SERIES_RNN, LAYERS=p.layers, RNN="GRU" if p.arch == "gru" else "LSTM")
    return {"recon": B.AUTOENCODER, "vae": B.VAE, "gan": B.GAN, "fewshot": B.PROTONET}[p.kind]


# Blocks per stage of the published ResNets, by total block count: ResNet-18 and -34 (basic blocks),
# ResNet-50, -101 and -152 (bottlenecks).
_PUBLISHED_STAGES = {("basic", 8): (2, 2, 2, 2), ("basic", 16): (3, 4, 6, 3), ("bottleneck", 16): (3, 4, 6, 3),
                     ("bottleneck", 33): (3, 4, 23, 3), ("bottleneck", 50): (3, 8, 36, 3)}


def _stages(n: int, block: str = "basic") -> tuple[int, ...]:
    if (block, n) in _PUBLISHED_STAGES:
        return _PUBLISHED_STAGES[(block, n)]
    stages = tuple(n // 4 + (1 if i < n % 4 else 0) for i in range(4))
    return tuple(s for s in stages if s) or (1,)


def _heads(dim: int) -> int:
    for h in (8, 4, 2):
        if dim % h == 0:
            return h
    return 1


def _example(p: Plan) -> str:
    if p.kind == "hf":
        return B.EXAMPLE_HF + B.SYNTHETIC_DEFAULT
    if p.multi_label:
        return B.EXAMPLE_TEXT_MULTILABEL + B.SYNTHETIC_DEFAULT
    if p.task == "text-classification":
        return B.EXAMPLE_TEXT + B.SYNTHETIC_DEFAULT
    if p.kind in ("classify", "online"):
        return B.EXAMPLE_IMAGE_CLS + B.SYNTHETIC_DEFAULT
    return {"regress": B.EXAMPLE_REGRESSION + B.SYNTHETIC_DEFAULT, "series": B.EXAMPLE_SERIES + B.SYNTHETIC_DEFAULT,
            "recon": B.EXAMPLE_RECON + B.SYNTHETIC_DEFAULT, "vae": B.EXAMPLE_RECON + B.SYNTHETIC_DEFAULT,
            "gan": B.EXAMPLE_GAN, "fewshot": B.EXAMPLE_FEWSHOT}[p.kind]


def _loss(p: Plan) -> str:
    if p.multi_label:
        return B.LOSS_MULTILABEL
    return {"classify": B.LOSS_CLASSIFY, "online": B.LOSS_CLASSIFY, "hf": B.LOSS_HF, "fewshot": B.LOSS_FEWSHOT,
            "regress": B.LOSS_REGRESSION, "series": B.LOSS_SERIES, "recon": B.LOSS_AUTOENCODER, "vae": B.LOSS_VAE,
            "gan": ""}[p.kind]


def _data(p: Plan) -> str:
    d, k = p.dataset, p.kind
    if k == "online":
        return B.CSV_READER
    if k == "hf":
        return B.TEXT_DATA + B.TEXT_HF
    if p.multi_label:
        return B.TEXT_DATA + B.LABEL_SETS + _replace_once(B.TEXT_VOCAB, "y = label_ids(labels)", "y = label_sets(labels)")
    if p.task == "text-classification":
        return B.TEXT_DATA + B.TEXT_VOCAB
    if k == "series":
        return B.SERIES_DATA
    if k == "fewshot":
        return B.IMAGE_FOLDER + B.FEWSHOT_DATA
    image_src = {"mnist": B.MNIST, "cifar10": B.CIFAR10, "digits": B.DIGITS, "imagefolder": B.IMAGE_FOLDER}.get(d)
    if image_src and k in ("classify", "recon", "vae", "gan"):
        wrap = {"classify": B.IMAGES_CLASSIFY, "recon": B.IMAGES_RECON, "vae": B.IMAGES_RECON, "gan": B.IMAGES_GAN}[k]
        return image_src + wrap
    if k == "regress":
        return B.CSV_READER + B.CSV_REGRESSION
    if k == "classify" and (d == "csv" or len(p.input_shape) == 1):
        return B.CSV_READER + B.CSV_CLASSIFY
    if k in ("recon", "vae") and len(p.input_shape) == 1:
        return B.CSV_READER + B.CSV_RECON
    if k == "classify" and len(p.input_shape) == 3:
        return B.IMAGE_FOLDER + B.IMAGES_CLASSIFY
    if k in ("recon", "vae", "gan") and len(p.input_shape) == 3:
        return B.IMAGE_FOLDER + {"recon": B.IMAGES_RECON, "vae": B.IMAGES_RECON, "gan": B.IMAGES_GAN}[k]
    return B.NO_DATA


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise AssertionError(f"template anchor {old!r} not found exactly once")
    return text.replace(old, new)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def _checkpoint_fns(p: Plan) -> str:
    sched = p.has("lr_schedule")
    return f'''
def save_checkpoint(path: str, model: nn.Module, optimizer, {"scheduler, " if sched else ""}epoch: int, best: float) -> None:
    """Save atomically: write a temporary file, then rename it over the checkpoint."""
    state = {{"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "best": best{', "scheduler": scheduler.state_dict()' if sched else ""}}}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{{path}}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, model: nn.Module, optimizer, {"scheduler, " if sched else ""}device) -> tuple[int, float]:
    """Restore model and optimizer state; returns (epochs done, best validation loss)."""
    state = torch.load(path, map_location=device)
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"]){chr(10) + '    scheduler.load_state_dict(state["scheduler"])' if sched else ""}
    return state["epoch"], state["best"]
'''


def _loader(p: Plan) -> str:
    ddp = p.has("ddp") and not p.engine
    batched = p.kind != "fewshot"
    body = []
    if not batched:
        body.append("# Each item is a whole episode: no batching.")
        if ddp:
            body.append("sampler = DistributedSampler(dataset, shuffle=shuffle, seed=SEED) if distributed else None")
            body.append("return DataLoader(dataset, batch_size=None, shuffle=shuffle and sampler is None, sampler=sampler,")
            body.append("                  generator=torch.Generator().manual_seed(SEED))")
        else:
            body.append("return DataLoader(dataset, batch_size=None, shuffle=shuffle, generator=torch.Generator().manual_seed(SEED))")
    elif ddp:
        body += ["sampler = DistributedSampler(dataset, shuffle=shuffle, seed=SEED) if distributed else None",
                 "return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,",
                 "                  generator=torch.Generator().manual_seed(SEED))"]
    else:
        body.append("return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(SEED))")
    sig = "def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, distributed: bool = False) -> DataLoader:"
    out = sig + "\n" + _ind("\n".join(body), 4) + "\n"
    out += '''

def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)
'''
    if p.has("amp") and not p.engine:
        out += '''

def autocast(device: torch.device):
    """Mixed precision: bfloat16 on CPU, float16 on CUDA (with a GradScaler, see train())."""
    return torch.autocast(device_type=device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)
'''
    if p.has("ddp") and not p.engine:
        out += '''

def setup_device() -> tuple[torch.device, bool]:
    """(device, distributed): under torchrun, join the process group (NCCL on GPUs, gloo on CPU)."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank), distributed
    return torch.device("cpu"), distributed


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0
'''
    else:
        out += '''

def setup_device() -> tuple[torch.device, bool]:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu"), False


def is_main_process() -> bool:
    return True
'''
    return out


def _evaluate(p: Plan) -> str:
    ctx = "run.autocast()" if p.engine else ("autocast(device)" if p.has("amp") else None)
    head = "def evaluate(model: nn.Module, loader: DataLoader, device" + (", run" if p.engine else "") + ") -> tuple[float, float | None]:"
    inner = "loss, correct = compute_loss(model, batch)"
    if ctx:
        inner = f"with {ctx}:\n    loss, correct = compute_loss(model, batch)"
    return f'''
@torch.no_grad()
{head}
    """Mean validation loss, and accuracy when the model classifies."""
    model.eval()
    total, right, count = 0.0, 0, 0
    for batch in loader:
        batch = to_device(batch, device)
{_ind(inner, 8)}
        n = len(batch[-1])
        total, count = total + loss.item() * n, count + n
        if correct is not None:
            right += int(correct)
    model.train()
    return total / max(count, 1), (right / max(count, 1) if correct is not None else None)
'''


def _train(p: Plan) -> str:
    e, amp, ddp, ck = p.engine, p.has("amp"), p.has("ddp"), p.has("checkpoint")
    es, sched = p.has("early_stopping"), p.has("lr_schedule")
    sched_args = "scheduler, " if sched else ""
    L: list[str] = []
    L.append('def train(args, train_set: Dataset, val_set: Dataset, lr: float | None = None, quiet: bool = False) -> tuple[nn.Module, float]:')
    L.append('    """Train; returns the model and the best validation loss."""')
    if e:
        L.append('    run = dd.setup(precision=args.precision, seed=args.seed)')
        L.append('    if lr is None:')
        L.append('        lr = run.suggest("lr", 1e-5, 1e-1, log=True, default=args.lr)  # searched under `deepdive tune`')
        L.append('    device, main_process = run.device, run.is_main')
        L.append('    model = build_model()')
        L.append('    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)')
        L.append('    train_loader = make_loader(train_set, args.batch_size, shuffle=True)')
        L.append('    val_loader = make_loader(val_set, args.batch_size, shuffle=False)')
        L.append('    # run.prepare: device, precision policy, DDP/FSDP under torchrun, sharded loader.')
        L.append('    model, optimizer, train_loader = run.prepare(model, optimizer, train_loader)')
    else:
        L.append('    lr = args.lr if lr is None else lr')
        L.append('    device, distributed = setup_device()')
        L.append('    main_process = is_main_process()')
        L.append('    model = build_model().to(device)')
        if ddp:
            L.append('    if distributed:')
            L.append('        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)')
        L.append('    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)')
        L.append(f'    train_loader = make_loader(train_set, args.batch_size, shuffle=True{", distributed=distributed" if ddp else ""})')
        L.append('    val_loader = make_loader(val_set, args.batch_size, shuffle=False)')
        if amp:
            L.append('    # fp16 on CUDA needs loss scaling; bf16 on CPU does not (the scaler is then a no-op).')
            L.append('    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")')
    if sched:
        if p.schedule == "onecycle":
            L.append('    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(2, args.epochs * len(train_loader)))')
        else:
            L.append('    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, args.epochs * len(train_loader)))')
    L.append('    start_epoch, best, bad_epochs = 0, math.inf, 0')
    if ck:
        L.append('    if args.resume and args.checkpoint and os.path.exists(args.checkpoint):')
        L.append(f'        start_epoch, best = load_checkpoint(args.checkpoint, model, optimizer, {sched_args}device)')
        L.append('        if main_process and not quiet:')
        L.append('            print(f"resumed from {args.checkpoint} at epoch {start_epoch}")')
    L.append('    end_epoch = start_epoch + 1 if args.smoke else args.epochs')
    L.append('    for epoch in range(start_epoch, end_epoch):')
    if ddp and not e:
        L.append('        if distributed:')
        L.append('            train_loader.sampler.set_epoch(epoch)')
    L.append('        model.train()')
    if e:
        L.append('        for step, batch in enumerate(run.batches(train_loader)):')
        L.append('            with run.autocast():')
        L.append('                loss, _ = compute_loss(model, batch)')
        L.append('            run.backward(loss)')
        L.append('            run.step(optimizer)')
        if sched:
            L.append('            scheduler.step()')
        L.append('            run.log(loss=loss)')
    else:
        L.append('        for step, batch in enumerate(train_loader):')
        L.append('            batch = to_device(batch, device)')
        if amp:
            L.append('            with autocast(device):')
            L.append('                loss, _ = compute_loss(model, batch)')
            L.append('            scaler.scale(loss).backward()')
            L.append('            scaler.step(optimizer)')
            L.append('            scaler.update()')
        else:
            L.append('            loss, _ = compute_loss(model, batch)')
            L.append('            loss.backward()')
            L.append('            optimizer.step()')
        L.append('            optimizer.zero_grad(set_to_none=True)')
        if sched:
            L.append('            scheduler.step()')
    L.append('            if args.max_steps and step + 1 >= args.max_steps:')
    L.append('                break')
    L.append(f'        val_loss, accuracy = evaluate(model, val_loader, device{", run" if e else ""})')
    if es:
        L.append('        improved = val_loss < best')
    L.append('        best = min(best, val_loss)')
    L.append('        if main_process and not quiet:')
    L.append('            extra = f", val accuracy {accuracy:.3f}" if accuracy is not None else ""')
    L.append('            print(f"epoch {epoch + 1}/{end_epoch}: train loss {loss.item():.4f}, val loss {val_loss:.4f}{extra}")')
    if ck:
        L.append('        if args.checkpoint and main_process:')
        L.append(f'            save_checkpoint(args.checkpoint, model, optimizer, {sched_args}epoch + 1, best)')
    if es:
        L.append('        bad_epochs = 0 if improved else bad_epochs + 1')
        L.append('        if bad_epochs >= args.patience:')
        L.append('            if main_process and not quiet:')
        L.append('                print(f"early stopping: no improvement in {args.patience} epochs")')
        L.append('            break')
    if e:
        L.append('    run.finish()')
    return "\n".join(L) + "\n    return unwrap(model), best\n"


def _tune(p: Plan) -> str:
    return '''
def tune(args, train_set: Dataset, val_set: Dataset) -> float:
    """An Optuna study over the learning rate (TPE, seeded); returns the best one."""
    trial_args = argparse.Namespace(**{**vars(args), "checkpoint": None, "resume": False})

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        _, best = train(trial_args, train_set, val_set, lr=lr, quiet=True)
        return best

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=args.seed))
    study.optimize(objective, n_trials=args.trials)
    print(f"optuna: best lr {study.best_params['lr']:.3g} (val loss {study.best_value:.4f}, {len(study.trials)} trials)")
    return study.best_params["lr"]
'''


def _gan_train(p: Plan) -> str:
    amp, ck = p.has("amp"), p.has("checkpoint")
    L = ['def train(args, train_set: Dataset, val_set: Dataset) -> tuple[nn.Module, float]:',
         '    """Alternate discriminator and generator steps (non-saturating loss); returns the GAN and the last generator loss."""',
         '    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")',
         '    model = build_model().to(device)',
         '    opt_g = torch.optim.Adam(model.generator.parameters(), lr=args.lr, betas=(0.5, 0.999))',
         '    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))',
         '    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=len(train_set) > args.batch_size,',
         '                        generator=torch.Generator().manual_seed(SEED))']
    if amp:
        L += ['    # Mixed precision: bf16 on CPU, fp16 + loss scaling on CUDA.',
              '    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16',
              '    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")']
    L.append('    start_epoch = 0')
    if ck:
        L += ['    if args.resume and args.checkpoint and os.path.exists(args.checkpoint):',
              '        state = torch.load(args.checkpoint, map_location=device)',
              '        model.load_state_dict(state["model"])',
              '        opt_g.load_state_dict(state["opt_g"])',
              '        opt_d.load_state_dict(state["opt_d"])',
              '        start_epoch = state["epoch"]',
              '        print(f"resumed from {args.checkpoint} at epoch {start_epoch}")']
    L += ['    end_epoch = start_epoch + 1 if args.smoke else args.epochs',
          '    for epoch in range(start_epoch, end_epoch):',
          '        for step, (real,) in enumerate(loader):',
          '            real = real.to(device)',
          '            z = torch.randn(len(real), LATENT_DIM, device=device)',
          '            ones, zeros = torch.ones(len(real), device=device), torch.zeros(len(real), device=device)']
    ctx = 'torch.autocast(device_type=device.type, dtype=dtype)' if amp else None

    def step(lines: list[str], loss: str, opt: str) -> list[str]:
        out = []
        if ctx:
            out.append(f'            with {ctx}:')
            out += ['    ' + ln for ln in lines]
            out += [f'            scaler.scale({loss}).backward()', f'            scaler.step({opt})', '            scaler.update()']
        else:
            out += lines + [f'            {loss}.backward()', f'            {opt}.step()']
        out.append(f'            {opt}.zero_grad(set_to_none=True)')
        return out

    L.append('            # Discriminator: real images -> 1, generated -> 0.')
    L += step(['            fake = model.generator(z)',
               '            loss_d = (F.binary_cross_entropy_with_logits(model.discriminator(real).float(), ones)',
               '                      + F.binary_cross_entropy_with_logits(model.discriminator(fake.detach()).float(), zeros))'],
              'loss_d', 'opt_d')
    L.append('            # Generator: make the discriminator say 1 for generated images.')
    L += step(['            loss_g = F.binary_cross_entropy_with_logits(model.discriminator(model.generator(z)).float(), ones)'],
              'loss_g', 'opt_g')
    L.append('            opt_d.zero_grad(set_to_none=True)  # the generator step also reached the discriminator')
    L += ['            if args.max_steps and step + 1 >= args.max_steps:',
          '                break',
          '        print(f"epoch {epoch + 1}/{end_epoch}: discriminator loss {loss_d.item():.4f}, generator loss {loss_g.item():.4f}")']
    if ck:
        L += ['        if args.checkpoint:',
              '            # Atomic save: a temporary file renamed over the checkpoint.',
              '            state = {"model": model.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "epoch": epoch + 1}',
              '            torch.save(state, args.checkpoint + ".tmp")',
              '            os.replace(args.checkpoint + ".tmp", args.checkpoint)']
    L.append('    return model, loss_g.item()')
    L += ['', '', '@torch.no_grad()',
          'def generate_samples(model: nn.Module, n: int, path: str) -> torch.Tensor:',
          '    """n generated images in [0, 1], saved with torch.save: extra training data for augmentation."""',
          '    model.eval()',
          '    device = next(model.parameters()).device',
          '    samples = (model.generator(torch.randn(n, LATENT_DIM, device=device)).float().cpu() + 1) / 2',
          '    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)',
          '    torch.save(samples, path)',
          '    print(f"saved {n} generated samples of shape {tuple(samples.shape[1:])} to {path}")',
          '    return samples']
    return "\n".join(L) + "\n"


def _online_train(p: Plan) -> str:
    amp, ck = p.has("amp"), p.has("checkpoint")
    ctx_open = '        with torch.autocast(device_type=device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16):\n    ' if amp else ""
    ck_load = ('''
    seen = 0
    if args.resume and args.checkpoint and os.path.exists(args.checkpoint):
        state = torch.load(args.checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        seen = state["seen"]
        print(f"resumed from {args.checkpoint} after {seen} examples")''' if ck else "\n    seen = 0")
    ck_save = ('''
        if args.checkpoint and seen % args.save_every == 0:
            # Atomic save: a temporary file renamed over the checkpoint.
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "seen": seen}, args.checkpoint + ".tmp")
            os.replace(args.checkpoint + ".tmp", args.checkpoint)''' if ck else "")
    return f'''
def read_stream(path: str):
    """Examples one at a time from a CSV file or stdin ('-'): numeric features, then an integer label."""
    f = sys.stdin if path == "-" else open(path, newline="", encoding="utf-8")
    try:
        for line, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            try:
                values = [float(v) for v in row]
            except ValueError:
                if line == 1:
                    continue  # a header
                raise DataError(f"{{path}}:{{line}}: non-numeric value") from None
            if len(values) != math.prod(INPUT_SHAPE) + 1:
                raise DataError(f"{{path}}:{{line}}: {{len(values)}} values, expected {{math.prod(INPUT_SHAPE)}} features and a label")
            yield torch.tensor(values[:-1]).view(1, *INPUT_SHAPE), torch.tensor([int(values[-1])])
    finally:
        if f is not sys.stdin:
            f.close()


def synthetic_stream(n: int):
    """A synthetic stream whose classes depend linearly on the features (with drift half-way)."""
    g = torch.Generator().manual_seed(SEED)
    w = torch.randn(math.prod(INPUT_SHAPE), NUM_CLASSES, generator=g)
    for i in range(n):
        x = torch.randn(1, *INPUT_SHAPE, generator=g)
        drift = 1.0 if i < n // 2 else -1.0
        yield x, (x.flatten(1) @ (w * drift)).argmax(1)


def train(args, stream) -> tuple[nn.Module, float]:
    """Online learning, test-then-train: predict each new example, score it, then take one SGD step on it."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9){ck_load}
    correct, recent = 0, []
    for x, y in stream:
        x, y = x.to(device), y.to(device)
        model.train()
{ctx_open}        loss, right = compute_loss(model, (x, y))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seen += 1
        correct += int(right)
        recent = (recent + [int(right)])[-100:]
        if seen % args.report_every == 0:
            print(f"{{seen}} examples: accuracy {{correct / seen:.3f}} (last 100: {{sum(recent) / len(recent):.3f}}), loss {{loss.item():.4f}}"){ck_save}
        if args.max_steps and seen >= args.max_steps:
            break
    return model, correct / max(seen, 1)
'''


def _stream(p: Plan) -> str:
    return '''
@torch.no_grad()
def stream(model: nn.Module, values, out=sys.stdout) -> int:
    """Sliding-window inference: keep the last SEQ_LEN values, predict the next one after each new value.

    ``values`` yields one row of CHANNELS numbers per time step (already standardised like the training data).
    Prints "step, prediction, error of the previous prediction"; returns the number of predictions.
    """
    model.eval()
    device = next(model.parameters()).device
    window = collections.deque(maxlen=SEQ_LEN)
    previous, predictions = None, 0
    for t, value in enumerate(values):
        value = torch.as_tensor(value, dtype=torch.float32).view(CHANNELS)
        error = "" if previous is None else f"{(value - previous).abs().mean().item():.4f}"
        window.append(value)
        if len(window) == SEQ_LEN:
            x = torch.stack(list(window)).unsqueeze(0).to(device)
            previous = model(x)[0, 0].float().cpu()
            predictions += 1
            print(f"{t},{' '.join(f'{v:.4f}' for v in previous.tolist())},{error}", file=out)
    return predictions


def read_values(path: str):
    """One row of CHANNELS numbers per line from a file or stdin ('-')."""
    f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    try:
        for line in f:
            if line.strip():
                yield [float(v) for v in line.replace(",", " ").split()][-CHANNELS:]
    finally:
        if f is not sys.stdin:
            f.close()
'''


def _post(p: Plan) -> str:
    fs = p.features
    if not fs & {"quantize", "prune", "torchscript", "onnx"}:
        return ""
    L = ['def compress_and_export(model: nn.Module, args) -> nn.Module:',
         '    """After training: prune, quantize and export as asked; files go to --out."""',
         '    os.makedirs(args.out, exist_ok=True)',
         '    model = model.cpu().eval()',
         '    inputs = example_batch(2)[0]',
         '    inputs = inputs if isinstance(inputs, tuple) else (inputs,)']
    if p.kind == "gan":
        L[4:6] = ['    inputs = (example_batch(2)[0],)  # noise for the generator']
    if "prune" in fs:
        L += ['    # Magnitude pruning: zero the smallest 30 % of each Linear/Conv weight, then make it permanent.',
              '    prunable = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]',
              '    for module in prunable:',
              '        prune.l1_unstructured(module, "weight", amount=args.prune_amount)',
              '        prune.remove(module, "weight")',
              '    zeros = sum(int((m.weight == 0).sum()) for m in prunable)',
              '    total = sum(m.weight.numel() for m in prunable)',
              '    print(f"pruned: {zeros / max(total, 1):.1%} of {total} weights are zero")']
    if "torchscript" in fs:
        if p.hf:
            L += ['    print("TorchScript export skipped: export Hugging Face models with their own tools (optimum, ONNX)")']
        else:
            L += ['    scripted = torch.jit.trace(model, inputs if len(inputs) > 1 else inputs[0], check_trace=False)',
                  '    scripted.save(os.path.join(args.out, "model.torchscript.pt"))',
                  '    print(f"saved TorchScript to {os.path.join(args.out, \'model.torchscript.pt\')}")']
    if "onnx" in fs:
        L += ['    try:',
              '        import onnx  # noqa: F401  (torch.onnx.export needs the onnx package)',
              '    except ImportError:',
              '        print("ONNX export skipped: the onnx package is not installed (pip install onnx onnxscript)")',
              '    else:',
              '        path = os.path.join(args.out, "model.onnx")',
              '        torch.onnx.export(model, inputs if not isinstance(inputs[0], dict) else (), path,',
              '                          kwargs=inputs[0] if isinstance(inputs[0], dict) else None)',
              '        print(f"saved ONNX to {path}")']
    if "quantize" in fs:
        L += ['    # Dynamic int8 quantization of Linear and recurrent layers (CPU inference).',
              '    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8)',
              '    torch.save(quantized.state_dict(), os.path.join(args.out, "model_int8.pt"))',
              '    size = os.path.getsize(os.path.join(args.out, "model_int8.pt"))',
              '    print(f"quantized to int8 (dynamic): {size / 1e6:.2f} MB saved to {os.path.join(args.out, \'model_int8.pt\')}")',
              '    model = quantized']
    L.append('    return model')
    return "\n".join(L) + "\n"


def _main(p: Plan) -> str:
    fs, e = p.features, p.engine
    A = ['    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])',
         '    parser.add_argument("--smoke", action="store_true", help="one tiny step on synthetic data, then exit")',
         '    parser.add_argument("--synthetic", action="store_true", help="train on random data of the right shapes")']
    if p.kind != "online":
        A.append(f'    parser.add_argument("--data", default={json.dumps(_default_data(p))}, help="where the training data is")')
    if p.dataset == "csv" and p.kind in ("classify", "regress"):
        A.append(f'    parser.add_argument("--target", default={json.dumps(p.intent.target) if p.intent.target else None}, '
                 'help="target column (name or index; default: the last)")')
    if p.hf:
        A.append('    parser.add_argument("--model", default=MODEL_PATH, help="local Hugging Face model directory")')
    A += ['    parser.add_argument("--epochs", type=int, default=EPOCHS)',
          '    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)',
          '    parser.add_argument("--lr", type=float, default=LR)',
          '    parser.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many steps (0: no limit)")',
          '    parser.add_argument("--seed", type=int, default=SEED)',
          '    parser.add_argument("--out", default="outputs", help="directory for exported models and samples")']
    if "checkpoint" in fs:
        A += ['    parser.add_argument("--checkpoint", default="checkpoint.pt", help="saved after every epoch (atomically)")',
              '    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")']
    if "early_stopping" in fs:
        A.append('    parser.add_argument("--patience", type=int, default=3, help="epochs without improvement before stopping")')
    if "optuna" in fs and not e:
        A.append('    parser.add_argument("--trials", type=int, default=20, help="Optuna trials (0: no search)")')
    if e:
        A.append(f'    parser.add_argument("--precision", default={"auto" if "amp" in fs else "fp32"!r}, choices=("auto", "fp32", "bf16", "fp16"))')
    if "prune" in fs:
        A.append('    parser.add_argument("--prune-amount", type=float, default=0.3)')
    if p.kind == "gan":
        A.append('    parser.add_argument("--samples", type=int, default=1000, help="generated images saved for augmentation")')
    if p.task == "streaming-inference":
        A.append('    parser.add_argument("--stream", default=None, help="values to run inference on, one per line (\'-\': stdin)")')
    if p.kind == "online":
        A += ['    parser.add_argument("--stream", default="-", help="CSV rows of features and a label (\'-\': stdin)")',
              '    parser.add_argument("--report-every", type=int, default=100)']
        if "checkpoint" in fs:
            A.append('    parser.add_argument("--save-every", type=int, default=1000, help="examples between checkpoints")')
    A += ['    parser.add_argument("--debug", action="store_true", help="show tracebacks")',
          '    args = parser.parse_args(argv)', '']
    A += ['    random.seed(args.seed)', '    torch.manual_seed(args.seed)']
    if p.hf:
        A.insert(0, '    global MODEL_PATH  # --model overrides it')
        A += ['    MODEL_PATH = args.model']
    body: list[str] = []
    if p.kind == "online":
        body += ['if args.smoke:',
                 '    args.max_steps, args.report_every = 1, 1',
                 'stream_source = synthetic_stream(8 if args.smoke else 5000) if (args.smoke or args.synthetic) else read_stream(args.stream)',
                 'model, accuracy = train(args, stream_source)',
                 'print(f"online accuracy {accuracy:.3f}")']
    else:
        body += ['if args.smoke:',
                 '    args.max_steps, args.batch_size = 1, 4',
                 '    train_set = val_set = synthetic_dataset(4)',
                 'elif args.synthetic:',
                 '    train_set, val_set = synthetic_dataset(512), synthetic_dataset(128)',
                 'else:',
                 '    train_set, val_set = load_data(args)']
        if "optuna" in fs and not e:
            body += ['if args.smoke:', '    args.trials = 1',
                     'if args.trials:', '    args.lr = tune(args, train_set, val_set)']
        body.append('model, best = train(args, train_set, val_set)')
        if p.kind == "gan":
            body += ['generate_samples(model, 8 if args.smoke else args.samples, os.path.join(args.out, "generated.pt"))']
        else:
            main_only = 'is_main_process()' if not e else 'int(os.environ.get("RANK", "0")) == 0'  # one line under torchrun
            body += [f'if {main_only}:', '    print(f"best validation loss {best:.4f}")']
        if p.task == "streaming-inference":
            body += ['if args.smoke or (args.synthetic and args.stream is None):',
                     '    values = example_batch(1)[0][0].tolist() * 2  # a short synthetic stream',
                     '    print(f"streamed {stream(model, values)} predictions")',
                     'elif args.stream:',
                     '    stream(model, read_values(args.stream))']
    if fs & {"quantize", "prune", "torchscript", "onnx"}:
        body.append('model = compress_and_export(model, args)')
    if "ddp" in fs and not e and p.kind not in ("gan", "online"):
        body += ['if dist.is_initialized():', '    dist.destroy_process_group()']
    body.append('return 0')
    main = ['def main(argv: list[str] | None = None) -> int:'] + A + ['    try:'] + [_ind(b, 8) for b in body]
    main += ['    except (DataError, FileNotFoundError, OSError) as exc:',
             '        if args.debug:',
             '            raise',
             '        print(f"error: {exc}", file=sys.stderr)',
             '        return 2']
    return "\n".join(main) + '\n\n\nif __name__ == "__main__":\n    sys.exit(main())\n'
