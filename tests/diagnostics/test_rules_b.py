"""Group B static rules (DD140–DD180): each finds its planted line, stays quiet on the idiomatic version, and its fix
re-parses and makes the finding go away.

Sources mark the line a finding is expected on with a trailing ``# <-``.
"""

from __future__ import annotations

import ast
import textwrap

import pytest

from deepdive.diagnose.rules import RULES, Finding, analyze, apply_edits

GROUP_B = ("DD140", "DD141", "DD142", "DD143", "DD150", "DD151", "DD152", "DD153", "DD160", "DD161", "DD162",
           "DD170", "DD174", "DD176", "DD180")

# -- sources -------------------------------------------------------------------------------------------------------

FP32_GPU_LOOP = """\
import torch
import torch.nn as nn
{setup}
device = "cuda" if torch.cuda.is_available() else "cpu"
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8)).to(device)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(10):  # <-
    x = torch.randn(16, 32, device=device)
    {forward}
    opt.zero_grad()
    loss.backward()
    opt.step()
"""


def fp32_loop(setup: str = "", forward: str = "loss = model(x).square().mean()") -> str:
    return FP32_GPU_LOOP.format(setup=setup, forward=forward)


CNN = """\
import torch
from torch import nn
{setup}
device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")
model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten()){tail}
{move}
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(4):
    x = torch.randn(2, 3, 8, 8, device=device){xtail}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(x).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
"""


def cnn(setup: str = "torch.backends.cudnn.benchmark = True", move: str = "model = model.to(device)",
        channels_last: bool = True) -> str:
    source = CNN.format(setup=setup, move=move, tail="",
                        xtail=".to(memory_format=torch.channels_last)" if channels_last else "")
    if channels_last:
        source = source.replace(move + "\n", move + "\nmodel = model.to(memory_format=torch.channels_last)\n", 1)
    return source


DDP_ACCUM = """\
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

def train(model, loader, opt, accum=4):
    model = DDP(model)
    for i, (x, y) in enumerate(loader):
        loss = nn.functional.mse_loss(model(x), y) / accum
        {backward}
        if (i + 1) % accum == 0:
            opt.step()
            opt.zero_grad()
"""

LOSS_TOTAL = """\
import torch
from torch import nn

def train(model, loader, opt):
    criterion = nn.CrossEntropyLoss()
    total = 0.0
    for epoch in range(3):
        for x, y in loader:
            loss = criterion(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            {accumulate}
    return total
"""

WORKERS = """\
import torch
from torch.utils.data import DataLoader, TensorDataset

def main(model, opt, workers=4):
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    loader = DataLoader(data, batch_size=8, num_workers={workers}{extra})  # <-
    for epoch in range(3):
        for x, y in loader:
            loss = (model(x) - y).square().mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
"""

MOVED = """\
import torch
from torch import nn

def main(loader, device):
    model = nn.Linear(4, 1)
    {before}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        {inside}
        loss = (model(x.to(device)) - y.to(device)).square().mean()
        loss.backward()
        opt.step()
"""

POSITIVE: dict[str, list[str]] = {
    "DD140": [fp32_loop(setup='torch.set_float32_matmul_precision("high")'),
              fp32_loop(setup="torch.backends.cuda.matmul.allow_tf32 = True")],
    "DD141": [
        "import torch\nwith torch.cuda.amp.autocast():  # <-\n    y = 1\n",
        "from torch.cuda.amp import autocast\n\n@autocast(dtype=None)  # <-\ndef f(x):\n    return x\n",
        "import torch as T\nctx = T.cuda.amp.autocast(True, T.bfloat16)  # <-\n",
    ],
    "DD142": [
        "import torch\nscaler = torch.cuda.amp.GradScaler()  # <-\n",
        "from torch.cuda.amp import GradScaler\nscaler = GradScaler(2.0 ** 14, enabled=True)  # <-\n",
    ],
    "DD143": [fp32_loop(), "import torch.nn as nn\n" + fp32_loop().replace("import torch\n", "import numpy\n", 1)
              .replace("torch.cuda.is_available()", "True").replace("torch.randn(16, 32, device=device)",
                                                                     "nn.init.normal_(model[0].weight)")],
    "DD150": [
        cnn(setup="").replace("nn.Flatten())\n", "nn.Flatten())  # <-\n", 1),
        cnn(setup="torch.backends.cudnn.benchmark = False  # <-"),
        cnn(setup="from torch.backends import cudnn\ncudnn.benchmark = False  # <-"),
    ],
    "DD151": [
        cnn(move="model = model.to(device)  # <-", channels_last=False),
        cnn(move="model.cuda()  # <-", channels_last=False),
    ],
    "DD152": [
        "from torch import nn\nblock = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))  # <-\n",
        "import torch.nn as nn\nlayers = [nn.Conv1d(3, 8, 3, bias=True), nn.BatchNorm1d(8), nn.ReLU()]  # <-\n",
        textwrap.dedent("""\
            import torch.nn as nn
            import torch.nn.functional as F
            class Block(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv1 = nn.Conv2d(3, 8, 3, padding=1)  # <-
                    self.bn1 = nn.BatchNorm2d(8)
                def forward(self, x):
                    return F.relu(self.bn1(self.conv1(x)))
            """),
        textwrap.dedent("""\
            from torch import nn
            class Block(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.c = nn.Conv2d(  # <-
                        3, 8, 3,
                    )
                    self.n = nn.BatchNorm2d(8)
                def forward(self, x):
                    y = self.c(x)
                    return self.n(y)
            """),
    ],
    "DD153": [
        "import torch\nfrom torch import nn\ndev = torch.device('cuda')\nfc = nn.Linear(784, 500)  # <-\n",
        "import torch.nn as nn\nx = 'cuda'\nfc = nn.Linear(in_features=100, out_features=256)  # <-\n",
    ],
    "DD160": [DDP_ACCUM.format(backward="loss.backward()  # <-")],
    "DD161": [
        "from torch.nn.parallel import DistributedDataParallel as DDP\n"
        "def wrap(m, rank):\n    return DDP(m, device_ids=[rank], find_unused_parameters=True)  # <-\n",
        "import torch\nimport torch.nn as nn\n"
        "def wrap(m):\n    return nn.parallel.DistributedDataParallel(\n        m,\n"
        "        find_unused_parameters=True,  # <-\n        broadcast_buffers=False,\n    )\n",
    ],
    "DD162": [
        "import torch\nfrom torch import nn\nmodel = nn.DataParallel(nn.Linear(4, 4)).cuda()  # <-\n",
        "import torch\nmodel = torch.nn.parallel.DataParallel(torch.nn.Linear(4, 4))  # <-\n",
    ],
    "DD170": [
        "import torch\nfrom torch.autograd import Variable\nx = Variable(torch.ones(3))  # <-\n",
        "import torch\nx = torch.ones(3)\nw = torch.autograd.Variable(x * 2, requires_grad=True)  # <-\n",
    ],
    "DD174": [
        LOSS_TOTAL.format(accumulate="total += loss  # <-"),
        LOSS_TOTAL.format(accumulate="total += loss * x.size(0)  # <-"),
    ],
    "DD176": [WORKERS.format(workers="4", extra=""), WORKERS.format(workers="workers", extra=", pin_memory=True,")],
    "DD180": [
        MOVED.format(before="pass", inside="model.to(device)  # <-"),
        MOVED.format(before="pass", inside="model = model.cuda()  # <-"),
    ],
}

NEGATIVE: dict[str, list[str]] = {
    "DD140": [fp32_loop(setup='torch.set_float32_matmul_precision("high")',
                        forward="with torch.autocast('cuda', dtype=torch.bfloat16):\n        loss = model(x).sum()"),
              fp32_loop(setup="import deepdive.engine as dd\nrun = dd.setup(precision='auto')"),
              fp32_loop(setup='torch.set_float32_matmul_precision("high")\nmodel = model.to(torch.bfloat16)'),
              # no CUDA: a CPU script is not told about GPU precision
              fp32_loop(setup='torch.set_float32_matmul_precision("high")').replace(
                  '"cuda" if torch.cuda.is_available() else "cpu"', '"cpu"')],
    "DD141": ["import torch\nwith torch.amp.autocast('cuda'):\n    y = 1\n",
              "import torch\nwith torch.autocast('cuda', dtype=torch.bfloat16):\n    y = 1\n"],
    "DD142": ["import torch\nscaler = torch.amp.GradScaler('cuda')\n",
              "from torch.amp import GradScaler\nscaler = GradScaler('cuda')\n"],
    "DD143": [fp32_loop(setup='torch.set_float32_matmul_precision("high")'),
              fp32_loop(setup="torch.backends.cuda.matmul.allow_tf32 = True"),
              fp32_loop(forward="with torch.cuda.amp.autocast():\n        loss = model(x).sum()"),
              fp32_loop(setup="import deepdive.engine as dd"),
              fp32_loop(setup="from accelerate import Accelerator\naccelerator = Accelerator(mixed_precision='bf16')")],
    "DD150": [cnn(), cnn(setup="torch.backends.cudnn.deterministic = True\ntorch.backends.cudnn.benchmark = False"),
              cnn(setup="torch.backends.cudnn.benchmark = args.benchmark"),
              cnn(setup="torch.use_deterministic_algorithms(True)")],
    "DD151": [cnn(), cnn(move="model = model.to(device)", channels_last=False).replace(
        "nn.Conv2d(3, 8, 3, bias=False)", "nn.Conv1d(3, 8, 3, bias=False)").replace("BatchNorm2d", "BatchNorm1d")],
    "DD152": ["from torch import nn\nblock = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8))\n",
              "from torch import nn\nblock = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.BatchNorm2d(8))\n",
              "from torch import nn\nblock = nn.Sequential(nn.Conv2d(3, 8, 3, bias=use_bias), nn.BatchNorm2d(8))\n",
              textwrap.dedent("""\
                  from torch import nn
                  class Block(nn.Module):
                      def __init__(self):
                          super().__init__()
                          self.conv = nn.Conv2d(3, 8, 3)
                          self.bn = nn.BatchNorm2d(8)
                      def forward(self, x):
                          return self.conv(self.bn(x))
                  """)],
    "DD153": ["import torch.nn as nn\nx = 'cuda'\nfc = nn.Linear(784, 512)\nhead = nn.Linear(512, 10)\n",
              "import torch.nn as nn\nx = 'cuda'\nfc = nn.Linear(hidden, 500)\n"],
    "DD160": [DDP_ACCUM.format(backward="with model.no_sync() if (i + 1) % accum else nullcontext():\n"
                                        "            loss.backward()"),
              DDP_ACCUM.format(backward="loss.backward()").replace("model = DDP(model)", "pass")],
    "DD161": ["from torch.nn.parallel import DistributedDataParallel as DDP\n"
              "def wrap(m, rank):\n    return DDP(m, device_ids=[rank])\n",
              "from torch.nn.parallel import DistributedDataParallel as DDP\n"
              "def wrap(m, unused):\n    return DDP(m, find_unused_parameters=unused)\n"],
    "DD162": ["import torch\nfrom torch.nn.parallel import DistributedDataParallel as DDP\nmodel = DDP(torch.nn.Linear(4, 4))\n"],
    "DD170": ["import torch\nx = torch.ones(3, requires_grad=True)\n",
              "from torch.autograd import Function\nclass Variable:\n    pass\nv = Variable()\n"],
    "DD174": [LOSS_TOTAL.format(accumulate="total += loss.detach()"),
              LOSS_TOTAL.format(accumulate="total += loss.item()"),
              LOSS_TOTAL.format(accumulate="if epoch == 2:\n                total += loss"),
              # a deliberate sum of losses that is backpropagated
              "def f(model, heads, x, opt):\n    for step in range(3):\n        loss = 0\n"
              "        for h in heads:\n            loss += h(model(x)).sum()\n        loss.backward()\n"
              "        opt.step()\n"],
    "DD176": [WORKERS.format(workers="4", extra=", persistent_workers=True").replace("  # <-", ""),
              WORKERS.format(workers="0", extra="").replace("  # <-", ""),
              # one pass over the loader: workers start once anyway
              WORKERS.format(workers="4", extra="").replace("  # <-", "").replace(
                  "    for epoch in range(3):\n        for x, y in loader:", "    for x, y in loader:\n        if True:")],
    "DD180": [MOVED.format(before="model.to(device)", inside="pass"),
              MOVED.format(before="pass", inside="x = x.to(device)")],
}


def marked_lines(source: str) -> list[int]:
    return [i for i, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith("# <-")]


def of(code: str, source: str) -> list[Finding]:
    return [f for f in analyze(source) if f.code == code]


@pytest.mark.parametrize("code,source", [(c, s) for c, sources in POSITIVE.items() for s in sources],
                         ids=[f"{c}-{i}" for c, sources in POSITIVE.items() for i in range(len(sources))])
def test_rule_finds_the_planted_line(code: str, source: str) -> None:
    ast.parse(source)
    expected = marked_lines(source)
    assert expected, "the positive case marks its line with '# <-'"
    assert [f.line for f in of(code, source)] == expected


@pytest.mark.parametrize("code,source", [(c, s) for c, sources in NEGATIVE.items() for s in sources],
                         ids=[f"{c}-{i}" for c, sources in NEGATIVE.items() for i in range(len(sources))])
def test_rule_is_quiet_on_the_idiomatic_version(code: str, source: str) -> None:
    ast.parse(source)
    assert of(code, source) == []


FIXABLE_CASES = [(c, s) for c, sources in POSITIVE.items() for s in sources if RULES[c].fixable]


@pytest.mark.parametrize("code,source", FIXABLE_CASES,
                         ids=[f"{c}-{i}" for c, sources in POSITIVE.items() if RULES[c].fixable
                              for i in range(len(sources))])
def test_fix_parses_and_removes_the_finding(code: str, source: str) -> None:
    (finding,) = of(code, source)
    assert finding.fix is not None
    fixed = apply_edits(source, finding.fix.edits)
    ast.parse(fixed)
    assert of(code, fixed) == []
    # nothing else of group B appears because of the fix (DD143's fix leads to DD140, the next precision step)
    before = {f.code for f in analyze(source)}
    after = {f.code for f in analyze(fixed)} - {"DD140"}
    assert after <= before


def test_every_group_b_rule_is_registered_with_a_documented_fix() -> None:
    for code in GROUP_B:
        doc = RULES[code].check.__doc__ or ""
        assert RULES[code].summary and "Why:" in doc and "Fix:" in doc and "# before" in doc and "# after" in doc
        assert POSITIVE[code] and NEGATIVE[code]


def fixed(code: str, source: str) -> str:
    (finding,) = of(code, source)
    assert finding.fix is not None
    return apply_edits(source, finding.fix.edits)


def test_cuda_amp_autocast_fix_passes_old_positional_arguments_by_name() -> None:
    out = fixed("DD141", "import torch as T\nctx = T.cuda.amp.autocast(True, T.bfloat16)\n")
    assert out == 'import torch as T\nctx = T.amp.autocast("cuda", enabled=True, dtype=T.bfloat16)\n'


def test_cuda_amp_fix_imports_torch_when_only_the_function_was_imported() -> None:
    out = fixed("DD142", "from torch.cuda.amp import GradScaler\nscaler = GradScaler(2.0 ** 14, enabled=True)\n")
    assert out == ("from torch.cuda.amp import GradScaler\nimport torch\n"
                   'scaler = torch.amp.GradScaler("cuda", 2.0 ** 14, enabled=True)\n')


def test_tf32_fix_goes_after_the_last_import() -> None:
    source = fp32_loop()
    out = fixed("DD143", source)
    assert out.splitlines()[2] == 'torch.set_float32_matmul_precision("high")'
    assert out.splitlines()[:2] == ["import torch", "import torch.nn as nn"]


def test_precision_rules_form_a_ladder() -> None:
    """fp32 without TF32 → DD143 only; after its fix → DD140 only; with autocast → neither."""
    source = fp32_loop()
    assert {f.code for f in analyze(source)} & {"DD140", "DD143"} == {"DD143"}
    after = fixed("DD143", source)
    assert {f.code for f in analyze(after)} & {"DD140", "DD143"} == {"DD140"}


def test_channels_last_fix_inserts_after_the_move_with_its_indent() -> None:
    source = textwrap.dedent("""\
        import torch
        from torch import nn
        torch.backends.cudnn.benchmark = True
        def main():
            model = nn.Sequential(nn.Conv2d(3, 8, 3))
            net = model.cuda()
            return net(torch.randn(1, 3, 8, 8).cuda())
        """)
    out = fixed("DD151", source)
    assert "    net = model.cuda()\n    net = net.to(memory_format=torch.channels_last)\n" in out


def test_channels_last_fix_converts_in_place_where_the_move_was_a_statement() -> None:
    """``net.to(device)`` inside a function on a global model: an assignment would make ``net`` local there."""
    source = textwrap.dedent("""\
        import torch
        import torch.nn as nn
        torch.backends.cudnn.benchmark = True
        net = nn.Sequential(nn.Conv2d(3, 8, 3))
        def main(device="cuda"):
            net.to(device)
            return net(torch.randn(1, 3, 8, 8, device=device))
        """)
    out = fixed("DD151", source)
    assert "    net.to(device)\n    net.to(memory_format=torch.channels_last)\n" in out


def test_find_unused_parameters_fix_keeps_the_other_arguments() -> None:
    source = POSITIVE["DD161"][1]
    out = fixed("DD161", source)
    assert "find_unused_parameters" not in out and "broadcast_buffers=False" in out and "        m," in out


def test_conv_bias_fix_survives_a_trailing_comma() -> None:
    out = fixed("DD152", POSITIVE["DD152"][3])
    assert "3, 8, 3, bias=False,\n" in out


@pytest.mark.parametrize("source,expected", [
    ("import torch\nfrom torch.autograd import Variable\nx = Variable(torch.ones(3))\n", "x = torch.ones(3)\n"),
    ("import torch\nx = torch.ones(3)\nw = torch.autograd.Variable(x * 2, requires_grad=True)\n",
     "w = (x * 2).detach().requires_grad_(True)\n"),
])
def test_variable_fix_uses_the_tensor(source: str, expected: str) -> None:
    assert fixed("DD170", source).endswith(expected)


CLEAN_CNN = '''\
"""A small CNN trained with AMP on the GPU when there is one."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

torch.backends.cudnn.benchmark = True


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.head(x.mean((2, 3)))


def main() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = TensorDataset(torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,)))
    loader = DataLoader(data, batch_size=32, shuffle=True, num_workers=2, pin_memory=True, persistent_workers=True)
    model = Net().to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=device == "cuda")
    for epoch in range(3):
        model.train()
        total = torch.zeros((), device=device)
        for step, (x, y) in enumerate(loader):
            x = x.to(device, non_blocking=True).to(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=torch.float16):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.detach()
            if step % 50 == 0:
                print(epoch, step, loss.item())
        print("epoch", epoch, (total / len(loader)).item())


if __name__ == "__main__":
    main()
'''

CLEAN_DDP = '''\
import os
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

torch.backends.cuda.matmul.allow_tf32 = True


def main():
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = int(os.environ["LOCAL_RANK"])
    device = torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    model = DDP(model, device_ids=[rank] if device.type == "cuda" else None)
    data = TensorDataset(torch.randn(1024, 128), torch.randint(0, 10, (1024,)))
    sampler = DistributedSampler(data)
    loader = DataLoader(data, batch_size=64, sampler=sampler, num_workers=2, persistent_workers=True, pin_memory=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    accum = 4
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for i, (x, y) in enumerate(loader):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sync = (i + 1) % accum == 0
            with nullcontext() if sync else model.no_sync():
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = loss_fn(model(x), y) / accum
                loss.backward()
            if sync:
                opt.step()
                opt.zero_grad()
    dist.destroy_process_group()
'''

CLEAN_ENGINE = '''\
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import deepdive.engine as dd


def main():
    run = dd.setup(precision="auto")
    model = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 26 * 26, 10))
    opt = torch.optim.AdamW(model.parameters())
    loader = DataLoader(TensorDataset(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))), batch_size=8)
    model, opt, loader = run.prepare(model, opt, loader)
    torch.backends.cudnn.benchmark = True
    for x, y in run.batches(loader, epochs=2):
        with run.autocast():
            loss = nn.functional.cross_entropy(model(x), y)
        run.backward(loss)
        run.step(opt)
        run.log(loss=loss)
    print(torch.cuda.is_available())
'''


@pytest.mark.parametrize("source", [CLEAN_CNN, CLEAN_DDP, CLEAN_ENGINE], ids=["cnn-amp", "ddp-accum", "engine"])
def test_clean_training_scripts_have_no_group_b_findings(source: str) -> None:
    assert [(f.code, f.line) for f in analyze(source) if f.code in GROUP_B] == []


RUNNABLE_LOSS_TOTAL = """\
import torch
from torch import nn
from torch.autograd import Variable

torch.manual_seed(0)
model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(5)]
total = 0.0
for epoch in range(2):
    for x, y in data:
        x = Variable(x)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss
"""


@pytest.mark.parametrize("code", ["DD174", "DD170"])
def test_fixed_script_computes_the_same_result(code: str) -> None:
    """The fix changes how the total is held (DD174: no graph) or drops the wrapper (DD170), not what is computed."""
    pytest.importorskip("torch")
    before: dict[str, object] = {}
    after: dict[str, object] = {}
    exec(compile(RUNNABLE_LOSS_TOTAL, "<before>", "exec"), before)  # noqa: S102 - our own test script
    exec(compile(fixed(code, RUNNABLE_LOSS_TOTAL), "<after>", "exec"), after)  # noqa: S102
    assert after["total"].detach().item() == before["total"].detach().item()  # type: ignore[attr-defined]
    assert before["total"].requires_grad  # type: ignore[attr-defined]
    assert after["total"].requires_grad is (code != "DD174")  # type: ignore[attr-defined]
