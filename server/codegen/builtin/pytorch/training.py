"""The training part of a PyTorch program: checkpoints, the data loaders and the device, evaluation,
the training loop, and an Optuna study."""

from __future__ import annotations

from deepdive.codegen.builtin.pytorch.plan import Plan
from deepdive.codegen.builtin.pytorch.text import indent


def checkpoint_fns(p: Plan) -> str:
    """``save_checkpoint()`` and ``load_checkpoint()`` (atomic saves; the scheduler too when there is one)."""
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


def loader(p: Plan) -> str:
    """The data loaders, the device and the process setup (DDP under torchrun, or the engine's)."""
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
    out = sig + "\n" + indent("\n".join(body), 4) + "\n"
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


def evaluate(p: Plan) -> str:
    """``evaluate()``: the validation loss and, for classifiers, the accuracy."""
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
{indent(inner, 8)}
        n = len(batch[-1])
        total, count = total + loss.item() * n, count + n
        if correct is not None:
            right += int(correct)
    model.train()
    return total / max(count, 1), (right / max(count, 1) if correct is not None else None)
'''


def train(p: Plan) -> str:
    """``train()``: the training loop with the features asked for."""
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


def tune(p: Plan) -> str:
    """``tune()``: an Optuna study over the learning rate and dropout, before the final run."""
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
