"""Group A static rules (DD101–DD131): each finds its problem at the line, stays quiet on the idiomatic
spelling, and its fix (when it has one) parses and removes the finding; suppression and disabling work."""

from __future__ import annotations

import ast
import textwrap

import pytest

from deepdive.diagnose.rules import RULES, Finding, analyze, apply_edits

HEAD = '''\
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset


class Squares(Dataset):
    def __len__(self):
        return 256

    def __getitem__(self, i):
        x = torch.full((8,), float(i))
        return x, i % 2


device = "cuda" if torch.cuda.is_available() else "cpu"
model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.1), nn.Linear(16, 2)).to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
criterion = nn.CrossEntropyLoss()
'''
"""The start of every case: a model, an optimizer, a loss and a dataset, on CUDA when there is one."""

MARK = "# <-"

LOOP = '''\
for x, y in loader:
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
'''

GOOD_LOADER = ("loader = DataLoader(Squares(), batch_size=32, shuffle=True, num_workers=2, persistent_workers=True, "
               "pin_memory=True)\n")

CASES: list[tuple[str, str, str]] = [
    # (code, positive body marked with MARK, negative body)
    ("DD101",
     "loader = DataLoader(Squares(), batch_size=32, pin_memory=True)  # <-\n" + LOOP,
     GOOD_LOADER + LOOP),
    ("DD101",
     "import torch.utils.data as data\n"
     "loader = data.DataLoader(Squares(), batch_size=32, num_workers=0, pin_memory=True)  # <-\n" + LOOP,
     "ds = torch.utils.data.TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))\n"
     "loader = DataLoader(ds, batch_size=32, pin_memory=True)\n" + LOOP),
    ("DD102",
     "loader = DataLoader(Squares(), batch_size=32, num_workers=2, persistent_workers=True)  # <-\n" + LOOP,
     GOOD_LOADER + LOOP),
    ("DD103",
     GOOD_LOADER
     + "for inputs, targets in loader:\n"
       "    inputs = inputs.to(device)  # <-\n"
       "    targets = targets.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    criterion(model(inputs), targets).backward()\n"
       "    optimizer.step()\n",
     GOOD_LOADER + LOOP),
    ("DD103",
     GOOD_LOADER
     + "for batch in loader:\n"
       "    batch = [t.cuda() for t in batch]  # <-\n"
       "    optimizer.zero_grad()\n"
       "    criterion(model(batch[0]), batch[1]).backward()\n"
       "    optimizer.step()\n",
     GOOD_LOADER
     + "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    x = x.to(torch.float32)\n"
       "    optimizer.zero_grad()\n"
       "    criterion(model(x), y).backward()\n"
       "    optimizer.step()\n"
       "    model.to(device)\n"),
    ("DD104",
     GOOD_LOADER
     + "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    noise = torch.randn(x.shape[0], 8).to(device)  # <-\n"
       "    optimizer.zero_grad()\n"
       "    criterion(model(x + noise), y).backward()\n"
       "    optimizer.step()\n",
     GOOD_LOADER
     + "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    noise = torch.randn(x.shape[0], 8, device=device)\n"
       "    optimizer.zero_grad()\n"
       "    criterion(model(x + noise), y).backward()\n"
       "    optimizer.step()\n"),
    ("DD110",
     GOOD_LOADER
     + "total = 0.0\n"
       "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    loss = criterion(model(x), y)\n"
       "    loss.backward()\n"
       "    optimizer.step()\n"
       "    total += loss.item()  # <-\n",
     GOOD_LOADER
     + "total = torch.zeros((), device=device)\n"
       "for epoch in range(2):\n"
       "    for step, (x, y) in enumerate(loader):\n"
       "        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "        optimizer.zero_grad()\n"
       "        loss = criterion(model(x), y)\n"
       "        loss.backward()\n"
       "        optimizer.step()\n"
       "        total += loss.detach()\n"
       "        if step % 100 == 0:\n"
       "            print(f'step {step} loss {loss.item():.3f}')\n"
       "    print(f'epoch {epoch} mean loss {total.item() / len(loader):.3f}')\n"),
    ("DD110",
     GOOD_LOADER
     + "def train_step(x, y):\n"
       "    optimizer.zero_grad()\n"
       "    loss = criterion(model(x), y)\n"
       "    loss.backward()\n"
       "    optimizer.step()\n"
       "    return loss.item()  # <-\n"
       "for x, y in loader:\n"
       "    train_step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))\n",
     GOOD_LOADER
     + "def fit(loader):\n"
       "    for x, y in loader:\n"
       "        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "        optimizer.zero_grad()\n"
       "        loss = criterion(model(x), y)\n"
       "        loss.backward()\n"
       "        optimizer.step()\n"
       "    return loss.item()\n"
       "for epoch in range(3):\n"
       "    print(fit(loader))\n"),
    ("DD111",
     GOOD_LOADER
     + "seen = []\n"
       "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    logits = model(x)\n"
       "    criterion(logits, y).backward()\n"
       "    optimizer.step()\n"
       "    seen.extend(logits.argmax(1).cpu().tolist())  # <-\n",
     GOOD_LOADER
     + "correct = torch.zeros((), device=device)\n"
       "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    logits = model(x)\n"
       "    criterion(logits, y).backward()\n"
       "    optimizer.step()\n"
       "    correct += (logits.argmax(1) == y).sum()\n"
       "model.cpu()\n"
       "print(correct.cpu().tolist())\n"),
    ("DD112",
     GOOD_LOADER
     + "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    out = model(x)\n"
       "    loss = criterion(out, y)\n"
       "    loss.backward()\n"
       "    optimizer.step()\n"
       "    print(f'loss {loss}')  # <-\n",
     GOOD_LOADER
     + "for step, (x, y) in enumerate(loader):\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    out = model(x)\n"
       "    loss = criterion(out, y)\n"
       "    loss.backward()\n"
       "    optimizer.step()\n"
       "    print(f'step {step} batch {out.shape}')\n"
       "    if step % 50 == 0:\n"
       "        print(loss)\n"),
    ("DD113",
     GOOD_LOADER
     + "running = 0.0\n"
       "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    loss = criterion(model(x), y)\n"
       "    loss.backward()\n"
       "    optimizer.step()\n"
       "    running += float(loss)  # <-\n",
     GOOD_LOADER
     + "best = float('inf')\n"
       "for step, (x, y) in enumerate(loader):\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    loss = criterion(model(x), y)\n"
       "    loss.backward()\n"
       "    optimizer.step()\n"
       "    if step % 10 == 0 and float(loss) < best:\n"
       "        best = float(loss)\n"),
    ("DD113",
     GOOD_LOADER
     + "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    loss = criterion(model(x), y)\n"
       "    if torch.isnan(loss):  # <-\n"
       "        continue\n"
       "    loss.backward()\n"
       "    optimizer.step()\n",
     GOOD_LOADER
     + "for i, (x, y) in enumerate(loader):\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    loss = criterion(model(x), y)\n"
       "    if i > 3 or x is None:\n"
       "        loss = loss * 1.0\n"
       "    loss.backward()\n"
       "    optimizer.step()\n"),
    ("DD114",
     GOOD_LOADER
     + "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    criterion(model(x), y).backward()\n"
       "    optimizer.step()\n"
       "    torch.cuda.synchronize()  # <-\n",
     "import time\n" + GOOD_LOADER
     + "for step, (x, y) in enumerate(loader):\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    criterion(model(x), y).backward()\n"
       "    optimizer.step()\n"
       "    if step % 100 == 0:\n"
       "        torch.cuda.synchronize()\n"
       "        elapsed = time.perf_counter()\n"
       "torch.cuda.synchronize()\n"),
    ("DD115",
     GOOD_LOADER
     + "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    optimizer.zero_grad()\n"
       "    criterion(model(x), y).backward()\n"
       "    optimizer.step()\n"
       "    if x.shape[0] > 0: torch.cuda.empty_cache()\n"
       "    torch.cuda.empty_cache()  # <-\n",
     GOOD_LOADER + LOOP + "torch.cuda.empty_cache()\n"),
    ("DD120",
     GOOD_LOADER
     + "for x, y in loader:\n"
       "    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)\n"
       "    opt_g = optimizer\n"
       "    opt_g.zero_grad(set_to_none=False)  # <-\n"
       "    criterion(model(x), y).backward()\n"
       "    opt_g.step()\n",
     GOOD_LOADER + LOOP + "model.zero_grad(set_to_none=True)\n"),
    ("DD120",
     GOOD_LOADER + LOOP + "model.zero_grad(set_to_none=False)  # <-\n",
     GOOD_LOADER + LOOP + "model.zero_grad()\n"),
    ("DD121",
     "from torch.optim import AdamW\n"
     "adam = AdamW(model.parameters(), lr=1e-3, foreach=False)  # <-\n",
     "import torch.optim as optim\n"
     "adam = optim.AdamW(model.parameters(), lr=1e-3, foreach=True)\n"
     "sgd = optim.SGD(model.parameters(), lr=1e-3, fused=False)\n"),
    ("DD122",
     "import deepdive.engine as dd\n"
     "run = dd.setup(precision='fp16')\n"
     "model, optimizer, loader = run.prepare(model, optimizer, DataLoader(Squares(), batch_size=32))\n"
     "for x, y in run.batches(loader, epochs=1):\n"
     "    with run.autocast():\n"
     "        loss = criterion(model(x), y)\n"
     "    (loss / 2).backward()  # <-\n"
     "    run.step(optimizer)\n",
     "import deepdive.engine as dd\n"
     "run = dd.setup(precision='bf16')\n"
     "model, optimizer, loader = run.prepare(model, optimizer, DataLoader(Squares(), batch_size=32))\n"
     "for x, y in run.batches(loader, epochs=1):\n"
     "    with run.autocast():\n"
     "        loss = criterion(model(x), y)\n"
     "    loss.backward()\n"
     "    run.step(optimizer)\n"),
    ("DD130",
     GOOD_LOADER + LOOP
     + "def evaluate(net, data):  # <-\n"
       "    net.eval()\n"
       "    hits = 0\n"
       "    for x, y in data:\n"
       "        hits += (net(x.to(device)).argmax(1) == y.to(device)).sum()\n"
       "    return hits\n"
       "print(evaluate(model, loader))\n",
     GOOD_LOADER + LOOP
     + "@torch.inference_mode()\n"
       "def evaluate(net: nn.Module, data):\n"
       "    net.eval()\n"
       "    return sum((net(x.to(device)).argmax(1) == y.to(device)).sum() for x, y in data)\n"
       "def validate(net, data):\n"
       "    net.eval()\n"
       "    return [net(x) for x, _ in data]\n"
       "with torch.no_grad():\n"
       "    print(evaluate(model, loader), validate(model, loader))\n"),
    ("DD130",
     GOOD_LOADER
     + "val_loader = DataLoader(Squares(), batch_size=64, num_workers=2, pin_memory=True)\n"
       "for epoch in range(2):\n"
       "    model.train()\n" + textwrap.indent(LOOP, "    ")
     + "    model.eval()\n"
       "    correct = 0\n"
       "    for x, y in val_loader:  # <-\n"
       "        '''a docstring-like string\n"
       "        spanning lines'''\n"
       "        correct += (model(x.to(device)).argmax(1) == y.to(device)).sum()\n"
       "    print(epoch, correct.item())\n",
     GOOD_LOADER
     + "val_loader = DataLoader(Squares(), batch_size=64, num_workers=2, pin_memory=True)\n"
       "for epoch in range(2):\n"
       "    model.train()\n" + textwrap.indent(LOOP, "    ")
     + "    model.eval()\n"
       "    with torch.inference_mode():\n"
       "        correct = sum((model(x.to(device)).argmax(1) == y.to(device)).sum() for x, y in val_loader)\n"
       "    print(epoch, correct.item())\n"),
    ("DD131",
     GOOD_LOADER
     + "for epoch in range(2):\n" + textwrap.indent(LOOP, "    ")
     + "    print(evaluate(model, loader))\n"
       "@torch.no_grad()\n"
       "def evaluate(model, loader):  # <-\n"
       "    '''Accuracy.'''\n"
       "    hits = sum((model(x.to(device)).argmax(1) == y.to(device)).sum() for x, y in loader)\n"
       "    return hits.item() / 256\n",
     GOOD_LOADER
     + "for epoch in range(2):\n"
       "    model.train()\n" + textwrap.indent(LOOP, "    ")
     + "    model.eval()\n"
       "    print(evaluate(model, loader))\n"
       "@torch.no_grad()\n"
       "def evaluate(model, loader):\n"
       "    return sum((model(x.to(device)).argmax(1) == y.to(device)).sum() for x, y in loader).item()\n"
       "class Lit(nn.Module):\n"
       "    def validation_step(self, batch, index):\n"
       "        return self.model(batch[0])\n"),
    ("DD131",
     GOOD_LOADER
     + "val_loader = DataLoader(Squares(), batch_size=64, num_workers=2, pin_memory=True)\n"
       "for epoch in range(2):\n"
       "    model.train()\n" + textwrap.indent(LOOP, "    ")
     + "    with torch.no_grad():\n"
       "        for x, y in val_loader:  # <-\n"
       "            print(model(x.to(device)).sum().item())\n",
     GOOD_LOADER
     + "val_loader = DataLoader(Squares(), batch_size=64, num_workers=2, pin_memory=True)\n"
       "for epoch in range(2):\n"
       "    model.train()\n" + textwrap.indent(LOOP, "    ")
     + "    model.eval()\n"
       "    with torch.no_grad():\n"
       "        for x, y in val_loader:\n"
       "            print(model(x.to(device)).sum().item())\n"),
]

IDS = [f"{code}-{i}" for i, (code, _, _) in enumerate(CASES)]


def _source(body: str) -> str:
    return HEAD + body


def _marked_line(source: str) -> int:
    lines = [i for i, raw in enumerate(source.splitlines(), start=1) if MARK in raw]
    assert len(lines) == 1, "a positive case marks exactly one line"
    return lines[0]


def _of(findings: list[Finding], code: str) -> list[Finding]:
    return [f for f in findings if f.code == code]


@pytest.mark.parametrize("code, positive, negative", CASES, ids=IDS)
def test_positive_case_is_found_at_its_line(code: str, positive: str, negative: str) -> None:
    source = _source(positive)
    found = _of(analyze(source, "train.py"), code)
    assert [f.line for f in found] == [_marked_line(source)], found
    assert found[0].message and "\n" not in found[0].message


@pytest.mark.parametrize("code, positive, negative", CASES, ids=IDS)
def test_idiomatic_version_has_no_finding(code: str, positive: str, negative: str) -> None:
    assert _of(analyze(_source(negative), "train.py"), code) == []


FIXABLE = [case for case in CASES if RULES[case[0]].fixable]


@pytest.mark.parametrize("code, positive, negative", FIXABLE, ids=[f"{c[0]}-{i}" for i, c in enumerate(FIXABLE)])
def test_fix_parses_and_removes_the_finding(code: str, positive: str, negative: str) -> None:
    source = _source(positive)
    line = _marked_line(source)
    (finding,) = _of(analyze(source, "train.py"), code)
    assert finding.fix is not None and finding.fix.edits, f"{code} is fixable but its finding has no fix"
    fixed = apply_edits(source, finding.fix.edits)
    ast.parse(fixed)
    assert fixed != source
    after = _of(analyze(fixed, "train.py"), code)
    # the fix removes this finding; an inserted line shifts later lines, so compare by count
    assert len(after) == 0, (fixed, after, line)


def _fixed(code: str, index: int = 0) -> str:
    source = _source([c for c in CASES if c[0] == code][index][1])
    (finding,) = _of(analyze(source, "train.py"), code)
    assert finding.fix is not None
    return apply_edits(source, finding.fix.edits)


def test_fixes_write_what_their_titles_say() -> None:
    assert "num_workers=4, persistent_workers=True)" in _fixed("DD101")
    assert "num_workers=4, pin_memory=True, persistent_workers=True)" in _fixed("DD101", 1)
    assert "pin_memory=True)" in _fixed("DD102")
    assert "inputs = inputs.to(device, non_blocking=True)  # <-" in _fixed("DD103")
    assert "[t.cuda(non_blocking=True) for t in batch]" in _fixed("DD103", 1)
    assert "noise = torch.randn(x.shape[0], 8, device=device)  # <-" in _fixed("DD104")
    assert "torch.cuda.synchronize()" not in _fixed("DD114")
    assert _fixed("DD115").count("torch.cuda.empty_cache()") == 1
    assert "    opt_g.zero_grad()  # <-" in _fixed("DD120")
    assert "AdamW(model.parameters(), lr=1e-3)  # <-" in _fixed("DD121")
    assert "    run.backward(loss / 2)  # <-" in _fixed("DD122")
    assert "@torch.no_grad()\ndef evaluate(net, data):" in _fixed("DD130")
    wrapped = _fixed("DD130", 1)
    assert "    with torch.no_grad():\n        for x, y in val_loader:" in wrapped
    assert "'''a docstring-like string\n        spanning lines'''" in wrapped  # string continuation not re-indented
    # no model.train() anywhere: the fix restores training mode when evaluate returns
    restored = _fixed("DD131")
    assert "    '''Accuracy.'''\n    model.eval()\n    try:\n        hits = " in restored
    assert "    finally:\n        model.train()\n" in restored
    assert "        model.eval()\n        for x, y in val_loader:" in _fixed("DD131", 1)
    assert "            print(model(x.to(device)).sum().item())\n        model.train()\n" in _fixed("DD131", 1)


def test_fix_imports_torch_when_the_file_does_not() -> None:
    source = textwrap.dedent('''\
        from torch import nn
        import torch.nn.functional as F

        def validate(model: nn.Module, batches):
            model.eval()
            return [F.softmax(model(x), -1) for x in batches]
        ''')
    (finding,) = _of(analyze(source, "t.py"), "DD130")
    fixed = apply_edits(source, finding.fix.edits)  # type: ignore[union-attr]
    ast.parse(fixed)
    assert "import torch\n" in fixed and "@torch.no_grad()\ndef validate" in fixed
    assert _of(analyze(fixed, "t.py"), "DD130") == []


def test_the_fix_behaves_like_the_original_except_the_fix() -> None:
    """DD131's try/finally fix, run: the function evaluates in eval mode and leaves the model training."""
    torch = pytest.importorskip("torch")
    source = textwrap.dedent('''\
        import torch
        from torch import nn
        model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        seen = []

        def evaluate(model, x):
            seen.append(model.training)
            return model(x)
        ''')
    (finding,) = _of(analyze(source, "t.py"), "DD131")
    fixed = apply_edits(source, finding.fix.edits)  # type: ignore[union-attr]
    namespace: dict[str, object] = {}
    exec(compile(fixed, "t.py", "exec"), namespace)
    model = namespace["model"]
    out = namespace["evaluate"](model, torch.ones(2, 4))  # type: ignore[operator]
    assert namespace["seen"] == [False] and model.training  # type: ignore[attr-defined]
    assert torch.equal(out, namespace["evaluate"](model, torch.ones(2, 4)))  # type: ignore[operator]


def test_one_finding_per_element_loop_says_per_element() -> None:
    source = _source(GOOD_LOADER + LOOP.replace("    optimizer.step()\n", "    optimizer.step()\n"
                                                "    for v in loss.detach().flatten():\n"
                                                "        print(v.item())  # <-\n"))
    (finding,) = _of(analyze(source), "DD110")
    assert finding.line == _marked_line(source) and "per element" in finding.message


def test_cuda_only_rules_are_quiet_on_cpu_scripts() -> None:
    source = _source(CASES[2][1]).replace('"cuda" if torch.cuda.is_available() else "cpu"', '"cpu"')
    assert _of(analyze(source), "DD102") == []


def test_suppression_comment_is_honoured() -> None:
    source = _source([c for c in CASES if c[0] == "DD110"][0][1])
    assert _of(analyze(source), "DD110")
    assert _of(analyze(source.replace("# <-", "# deepdive: ignore[DD110]")), "DD110") == []
    assert _of(analyze(source.replace("# <-", "# deepdive: ignore")), "DD110") == []
    assert _of(analyze(source.replace("# <-", "# deepdive: ignore[DD111]")), "DD110")


def test_disabled_rules_are_honoured() -> None:
    source = _source([c for c in CASES if c[0] == "DD101"][0][1])
    assert _of(analyze(source), "DD101")
    assert _of(analyze(source, disabled=["dd101", "DD110"]), "DD101") == []


CLEAN = '''\
"""A clean, idiomatic training script: every group A rule stays quiet."""
import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Noisy(Dataset):
    def __init__(self, n: int) -> None:
        self.x = torch.randn(n, 16)
        self.y = (self.x.sum(1) > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i] + 0.01 * torch.randn(16), self.y[i]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@torch.inference_mode()
def evaluate(net: nn.Module, loader: DataLoader, device: torch.device) -> float:
    net.eval()
    correct = torch.zeros((), device=device)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        correct += (net(x).argmax(1) == y).sum()
    net.train()
    return correct.item() / len(loader.dataset)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    use_cuda = device.type == "cuda"
    train_dl = DataLoader(Noisy(512), batch_size=64, shuffle=True, num_workers=2, pin_memory=use_cuda,
                          persistent_workers=True)
    val_dl = DataLoader(Noisy(128), batch_size=128, num_workers=2, pin_memory=use_cuda)
    net = Net().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        net.train()
        running = torch.zeros((), device=device)
        for step, (x, y) in enumerate(train_dl):
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            opt.step()
            running += loss.detach()
            if step % 20 == 0:
                print(f"epoch {epoch} step {step} loss {loss.item():.4f}")
        acc = evaluate(net, val_dl, device)
        print(f"epoch {epoch}: mean loss {running.item() / len(train_dl):.4f}, accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
'''


def test_clean_script_has_no_group_a_findings() -> None:
    assert [f for f in analyze(CLEAN, "train.py") if f.code < "DD140"] == []
