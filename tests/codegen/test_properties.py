"""Each stated property judged against real models: the probe (modules, shapes, the forward pass's data
flow) runs here in-process on models built with torch, its facts cross JSON as they do from the sandbox,
and the judge compares them with the request (issue #19, item 2). The sandboxed end-to-end runs are in
test_verify.py; these cover the families, tasks and training properties one by one, quickly."""

from __future__ import annotations

import ast
import json
import textwrap
import types

import pytest

torch = pytest.importorskip("torch")

from deepdive.codegen import probe, properties  # noqa: E402
from deepdive.codegen.source_facts import read_source  # noqa: E402
from deepdive.codegen.spec import Spec, Stated  # noqa: E402

HEADER = "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n"


def judged(source: str, *stated: tuple) -> dict[str, tuple[str, str]]:
    """``{property name: (status, detail)}`` for ``source`` (a module defining build_model/example_batch)."""
    source = HEADER + textwrap.dedent(source)
    spec = Spec(prompt="test", stated=[Stated(*s) for s in stated])
    module = types.ModuleType("program")
    exec(compile(source, "program.py", "exec"), module.__dict__)  # noqa: S102 - the test's own program
    data = json.loads(json.dumps(probe.collect(module, "torch", set(properties.wants(spec)))))
    tree = ast.parse(source)
    facts = properties.ProgramFacts("torch", read_source(tree), data)
    return {p.name: (p.status, p.detail) for p in properties.judge(spec, facts)}


RESNET = '''
class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn(self.conv(x)))
        {residual}
        return out


def build_model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Block(8), Block(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def example_batch(n=4):
    return torch.randn(n, 3, 16, 16), torch.randint(0, 10, (n,))
'''


def test_resnet_is_told_by_its_residual_connections() -> None:
    got = judged(RESNET.format(residual="out += x"), ("family", "resnet"), ("task", "image-classification"))
    assert got["family"] == ("met", "convolutions and 2 residual additions (a tensor added to a result computed from it)")
    assert got["task"][0] == "met"
    plain = judged(RESNET.format(residual="pass"), ("family", "resnet"))
    assert plain["family"] == ("failed", "no residual connection in the forward pass (no tensor is added to a result "
                                         "computed from it)")


UNET = '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.down, self.pool = nn.Conv2d(1, 8, 3, padding=1), nn.MaxPool2d(2)
        self.mid, self.up = nn.Conv2d(8, 16, 3, padding=1), nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.out = nn.Conv2d({out_in}, 3, 1)

    def forward(self, x):
        a = F.relu(self.down(x))
        u = self.up(F.relu(self.mid(self.pool(a))))
        return self.out({merge})


def build_model():
    return Net()


def example_batch(n=2):
    return torch.randn(n, 1, 16, 16), torch.randint(0, 3, (n, 16, 16))
'''


def test_unet_needs_skip_connections_and_segmentation_a_map_of_the_input_size() -> None:
    stated = (("family", "unet", "U-Net"), ("task", "semantic-segmentation"), ("outputs", 3, "3 classes"),
              ("no_layer", "Dropout", "without dropout"))
    got = judged(UNET.format(out_in=16, merge="torch.cat([a, u], dim=1)"), *stated)
    assert got["family"][0] == "met" and "1 skip concatenation" in got["family"][1]
    assert got["task"] == ("met", "class scores per pixel: output (2, 3, 16, 16) has the input (2, 1, 16, 16)'s spatial size")
    assert got["outputs"] == ("met", "output (2, 3, 16, 16): 3 class scores per pixel")
    assert got["no_layer"][0] == "met"

    no_skip = judged(UNET.format(out_in=8, merge="u"), *stated)
    assert no_skip["family"][0] == "failed" and "no skip connection" in no_skip["family"][1]

    classifier = judged(RESNET.format(residual="pass"), *stated)  # the "10-class CNN" for a U-Net request
    assert classifier["task"] == ("failed", "output (4, 10) is not a map of class scores per pixel (N, C, H, W)")
    assert classifier["outputs"] == ("failed", "output (4, 10): 10 units per example, not 3")
    assert classifier["family"][0] == "failed"


SEQUENCE = '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        {body}
        self.head = nn.Linear(16, 50)

    def forward(self, x):
        h = self.embed(x)
        {forward}
        return self.head(h)


def build_model():
    return Net()


def example_batch(n=4):
    x = torch.randint(0, 50, (n, 12))
    return x, torch.randint(0, 50, (n, 12))
'''
TRANSFORMER = ("self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2)",
               "h = self.enc(h)")
HAND_ATTENTION = ("self.qkv = nn.Linear(16, 48)",
                  "q, k, v = self.qkv(h).chunk(3, dim=-1); h = torch.softmax(q @ k.transpose(1, 2) / 4, dim=-1) @ v")
GRU = ("self.rnn = nn.GRU(16, 16, num_layers=2, batch_first=True)", "h, _ = self.rnn(h)")


@pytest.mark.parametrize("parts", [TRANSFORMER, HAND_ATTENTION], ids=["nn-transformer", "hand-written-attention"])
def test_a_transformer_is_told_by_attention(parts) -> None:
    got = judged(SEQUENCE.format(body=parts[0], forward=parts[1]), ("family", "transformer"),
                 ("task", "language-model"), ("outputs", 50, "a vocabulary of 50 characters"))
    assert got["family"][0] == "met", got
    assert got["task"] == ("met", "inputs (4, 12), output (4, 12, 50): a distribution over the vocabulary per token")
    assert got["outputs"] == ("met", "output (4, 12, 50): 50 scores per token")


def test_dont_use_a_transformer_use_a_gru() -> None:
    stated = (("no_layer", "TransformerEncoderLayer", "don't use a transformer"), ("family", "gru", "use a GRU"),
              ("layer_count", ["GRU", 2], "2-layer GRU"))
    got = judged(SEQUENCE.format(body=GRU[0], forward=GRU[1]), *stated)
    assert got["no_layer"][0] == "met"
    assert got["family"] == ("met", "model has 2 GRU layers (rnn)")
    assert got["layer_count"] == ("met", "model has 2 GRU layers (rnn)")
    wrong = judged(SEQUENCE.format(body=TRANSFORMER[0], forward=TRANSFORMER[1]), *stated)
    assert wrong["no_layer"][0] == "failed" and "TransformerEncoderLayer" in wrong["no_layer"][1]
    assert wrong["family"][0] == "failed"


def test_a_character_level_language_model_is_not_a_two_class_classifier() -> None:
    got = judged(RESNET.format(residual="pass"), ("task", "language-model"), ("outputs", 50))
    assert got["task"] == ("failed", "inputs (4, 3, 16, 16) are not token ids (N, T)")


FORECAST = '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(1, 16, batch_first=True)
        self.head = nn.Linear(16, {horizon})

    def forward(self, x):
        h, _ = self.lstm(x)
        return self.head(h[:, -1])


def build_model():
    return Net()


def example_batch(n=4):
    return torch.randn(n, 48, 1), torch.randn(n, {horizon})
'''


def test_lstm_that_reads_48_values_and_predicts_the_next_12() -> None:
    stated = (("task", "forecasting"), ("input_shape", [48], "48 past values"), ("outputs", 12, "the next 12"),
              ("family", "lstm"))
    got = judged(FORECAST.format(horizon=12), *stated)
    assert {k: v[0] for k, v in got.items()} == dict.fromkeys(("task", "input_shape", "outputs", "family"), "met"), got
    assert got["input_shape"] == ("met", "example_batch() gives inputs (4, 48, 1): (48,) up to dimensions of size 1")
    two = judged(FORECAST.format(horizon=2), *stated)  # what the issue saw
    assert two["outputs"] == ("failed", "output (4, 2): 2 units per example, not 12")


MULTILABEL = '''
def build_model():
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 20))


def example_batch(n=4):
    return torch.randn(n, 32), torch.randint(0, 2, (n, 20)).float()


def train_step(model, x, y):
    return {loss}(model(x), y)
'''


def test_multi_label_needs_a_per_label_loss() -> None:
    stated = (("task", "multi-label-classification"), ("outputs", 20, "20 labels"), ("loss", "BCEWithLogitsLoss"))
    got = judged(MULTILABEL.format(loss="nn.BCEWithLogitsLoss()"), *stated)
    assert got["task"][0] == "met" and got["outputs"][0] == "met"
    assert got["loss"] == ("met", "the program uses BCEWithLogitsLoss (line 14)")
    softmax = judged(MULTILABEL.format(loss="F.cross_entropy"), *stated)
    assert softmax["task"] == ("failed", "the loss is cross_entropy: a softmax over labels picks one label, not several")
    assert softmax["loss"] == ("failed", "the program uses cross_entropy (line 14), not BCEWithLogitsLoss")


TRAINING = '''
import deepdive.engine as dd
from torch.nn.parallel import DistributedDataParallel as DDP


def build_model():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def example_batch(n=4):
    return torch.randn(n, 4), torch.randint(0, 2, (n,))


def train(model, loader):
{body}
'''


def training(body: str) -> str:
    return TRAINING.format(body=textwrap.indent(textwrap.dedent(body).strip(), "    "))


def test_precision_and_distribution_are_read_from_the_source() -> None:
    amp = training('''
        torch.distributed.init_process_group("gloo")
        model = DDP(model)
        with torch.autocast("cuda", dtype=torch.float16):
            pass
    ''')
    got = judged(amp, ("precision", "fp32", "no mixed precision"), ("distributed", True, "with DDP"))
    assert got["precision"] == ("failed", "the program turns on mixed precision: torch.autocast (line 20) "
                                      "(read from the source)")
    assert got["distributed"] == ("met", "the program uses init_process_group (line 18), DistributedDataParallel "
                                         "(line 19) (read from the source; the checks run one process)")
    disabled = training('with torch.autocast("cpu", enabled=False):\n    pass')
    assert judged(disabled, ("precision", "mixed"))["precision"][0] == "failed"

    engine = training('''
        run = dd.setup()
        model, opt, loader = run.prepare(model, None, loader)
        with run.autocast():
            pass
    ''')
    got = judged(engine, ("precision", "mixed"), ("distributed", True))
    assert got["precision"] == ("met", "the program uses deepdive.engine precision=auto with run.autocast() (line 20) "
                                       "(read from the source)")
    assert got["distributed"][0] == "met" and "run.prepare (line 19)" in got["distributed"][1]
    fp32 = training('run = dd.setup(precision="fp32")\nwith run.autocast():\n    pass')
    assert judged(fp32, ("precision", "fp32"))["precision"][0] == "met"
    assert judged(training("pass"), ("distributed", True))["distributed"][0] == "failed"
    assert judged(training("pass"), ("distributed", False))["distributed"][0] == "met"
    assert judged(amp, ("distributed", False))["distributed"][0] == "failed"


def test_functional_dropout_counts_as_dropout() -> None:
    source = '''
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(F.dropout(x, 0.5, self.training))


    def build_model():
        return Net()


    def example_batch(n=4):
        return torch.randn(n, 4), torch.randint(0, 2, (n,))
    '''
    got = judged(source, ("no_layer", "Dropout", "without dropout"), ("has_layer", "Linear"))
    assert got["no_layer"] == ("failed", "the program calls torch.nn.functional.dropout (line 11)")
    assert got["has_layer"] == ("met", "model has 1 Linear module (fc)")


AUTOENCODER = '''
def build_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, {code}), nn.ReLU(), nn.Linear({code}, 64), nn.Unflatten(1, (1, 8, 8)))


def example_batch(n=4):
    x = torch.rand(n, 1, 8, 8)
    return x, x
'''


def test_an_autoencoder_needs_a_bottleneck() -> None:
    got = judged(AUTOENCODER.format(code=8), ("task", "autoencoder"), ("family", "autoencoder"))
    assert got["task"] == ("met", "output (4, 1, 8, 8) reconstructs the input through a bottleneck of 8 values (input 64)")
    wide = judged(AUTOENCODER.format(code=128), ("task", "autoencoder"))
    assert wide["task"] == ("failed", "no layer narrower than the input's 64 values: nothing forces a compressed code")


def test_depthwise_convolutions_make_a_mobilenet() -> None:
    source = '''
    def build_model():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups={groups}),
                             nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))


    def example_batch(n=2):
        return torch.randn(n, 3, 16, 16), torch.randint(0, 5, (n,))
    '''
    assert judged(source.format(groups=8), ("family", "mobilenet"))["family"] == ("met", "model has 1 depthwise convolution")
    assert judged(source.format(groups=1), ("family", "mobilenet"))["family"][0] == "failed"


def test_what_no_check_can_tell_is_not_checked() -> None:
    got = judged(RESNET.format(residual="pass"), ("task", "gan"), ("family", "yolo"), ("task", "few-shot"))
    assert got["task"] == ("not_checked", "episodic few-shot training cannot be checked by one forward pass")
    assert got["family"] == ("not_checked", "no check can tell a yolo from other models by its structure")


def test_the_data_flow_is_recorded_only_when_a_check_needs_it() -> None:
    assert properties.wants(Spec("x", stated=[Stated("family", "resnet")])) == ["graph"]
    assert properties.wants(Spec("x", stated=[Stated("outputs", 10), Stated("no_layer", "Dropout")])) == []
    assert properties.wants(None) == []


def test_keras_depthwise_layers_make_a_mobilenet() -> None:
    """A Keras model's DepthwiseConv2D/SeparableConv2D layers count (the probe records no torch convs there)."""
    from deepdive.codegen.properties.family import _fam_mobilenet

    facts = properties.ProgramFacts("tensorflow", read_source(ast.parse("")),
                                    {"counts": {"DepthwiseConv2D": 2, "SeparableConv2D": 1, "Dense": 1}, "convs": []})
    assert _fam_mobilenet(facts) == ("met", "model has 3 depthwise convolutions")
    facts.run["counts"] = {"Conv2D": 3}
    assert _fam_mobilenet(facts)[0] == "failed"
