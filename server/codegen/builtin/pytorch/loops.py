"""The training loops of their own: a GAN's two optimizers, online learning from a stream, and streaming inference."""

from __future__ import annotations

from deepdive.codegen.builtin.pytorch.plan import Plan


def gan_train(p: Plan) -> str:
    """``train()`` of a GAN: discriminator and generator steps, each with its optimizer."""
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


def online_train(p: Plan) -> str:
    """Online learning: ``read_stream()``, ``synthetic_stream()`` and a ``train()`` that learns one sample at a time."""
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


def stream(p: Plan) -> str:
    """Streaming inference: ``stream()`` over a sliding window of values read from a file or stdin."""
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
