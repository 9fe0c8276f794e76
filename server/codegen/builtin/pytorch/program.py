"""A whole PyTorch program from its plan: the docstring, imports, constants, the parts, ``main()``."""

from __future__ import annotations

import json
import re

from deepdive.codegen.builtin.blocks.common import HELPERS
from deepdive.codegen.builtin.pytorch import loops, parts, training
from deepdive.codegen.builtin.pytorch.plan import CLASSIFY, Plan
from deepdive.codegen.builtin.pytorch.text import indent
from deepdive.codegen.intent import Intent


def generate_torch(intent: Intent) -> tuple[str, str]:
    """The program's source and a suggested file name."""
    p = Plan(intent)
    pieces = [_docstring(p), _imports(p), _constants(p), HELPERS, parts.model(p), parts.example(p), parts.loss(p), parts.data(p)]
    if p.kind == "gan":
        pieces.append(loops.gan_train(p))
    elif p.kind == "online":
        pieces.append(loops.online_train(p))
    else:
        pieces += [training.checkpoint_fns(p) if p.has("checkpoint") else "", training.loader(p), training.evaluate(p), training.train(p)]
        if p.has("optuna") and not p.engine:
            pieces.append(training.tune(p))
    if p.task == "streaming-inference":
        pieces.append(loops.stream(p))
    pieces += [_post(p), _main(p)]
    code = "\n".join(part.strip("\n") + "\n" for part in pieces if part.strip())
    code = re.sub(r"\n{4,}", "\n\n\n", code.replace("\n\n\n\n", "\n\n\n"))
    code = _space_defs(code)
    return code, program_filename(p)


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


def program_filename(p: Plan) -> str:
    data = {"mnist": "mnist", "cifar10": "cifar100" if p.cifar100 else "cifar10", "digits": "digits", "imagefolder": "images", "csv": "csv", "text": "text",
            "series": "series", "synthetic": ""}[p.dataset]
    arch = {"hf-finetune": "finetune", "protonet": "protonet"}.get(p.arch, p.arch)
    task = {"autoencoder": "", "vae": "", "gan": "", "few-shot": "fewshot", "streaming-inference": "streaming",
            "online-learning": "online", "forecasting": "forecast", "regression": "regression",
            "text-classification": "classifier" if not data else "", "image-classification": ""}[p.task]
    name = "_".join(x for x in (data, task, arch) if x)
    return f"{name or 'model'}.py"


_ARCH_TITLE = {"cnn": "CNN", "mlp": "MLP", "resnet": "ResNet", "efficientnet": "EfficientNet", "mobilenet": "MobileNetV2"}


def _docstring(p: Plan) -> str:
    title = {
        "image-classification": f"{_ARCH_TITLE.get(p.arch, p.arch.capitalize())} image classifier",
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
        runs.append(f"torchrun --nproc_per_node {p.intent.gpus or 2} {{file}} --data " + _default_data(p))
    if p.task == "streaming-inference":
        runs.append("python {file} --synthetic --stream values.txt   # one value per line; '-' reads stdin")
    if p.task == "online-learning":
        runs.append("python {file} --stream rows.csv   # features..., label per line; '-' reads stdin")
    body = "\n".join("    " + r.format(file=program_filename(p)) for r in runs)
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
    return {"mnist": "data/mnist", "cifar10": "data/cifar-100-python" if p.cifar100 else "data/cifar-10-batches-py", "digits": "(bundled with scikit-learn)", "imagefolder": "data/images",
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
    main = ['def main(argv: list[str] | None = None) -> int:'] + A + ['    try:'] + [indent(b, 8) for b in body]
    main += ['    except (DataError, FileNotFoundError, OSError) as exc:',
             '        if args.debug:',
             '            raise',
             '        print(f"error: {exc}", file=sys.stderr)',
             '        return 2']
    return "\n".join(main) + '\n\n\nif __name__ == "__main__":\n    sys.exit(main())\n'
