"""Frames: the model writes the model part, the builtin's program is the rest (issue #19 item 4).

Splicing is string work (fast); the frame-mode pipeline runs against a real streaming chat server on
127.0.0.1 playing the model, and the real sandboxed verifier.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap

import pytest

from deepdive.codegen.frames import SpliceError, absent_reads, frame_for
from deepdive.codegen.frames.prompt import frame_system_prompt
from deepdive.codegen.frames.reading import merge_reading, parse_reading
from deepdive.codegen.frames.splice import definition_source, splice, top_level_names, undefined_reads
from deepdive.codegen.generation import GenerateCheck, GenerateParams
from deepdive.codegen.pipeline import generate
from deepdive.codegen.properties import MODEL_READING, verdict
from deepdive.codegen.spec import Spec, Stated
from deepdive.codegen.understand import read_request
from tests.codegen.test_pipeline import ChatServer, collect

UNET_PROMPT = "a U-Net for semantic segmentation of 64x64 grayscale images, 3 classes, without dropout"

UNET_ANSWER = textwrap.dedent('''\
    Here is the model part.
    ```python
    import torch
    from torch.nn.functional as F

    NUM_CLASSES = 3


    def double_conv(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU())


    class UNet(nn.Module):
        def __init__(self, c_in=1, classes=NUM_CLASSES):
            super().__init__()
            self.down1, self.down2 = double_conv(c_in, 16), double_conv(16, 32)
            self.up = nn.ConvTranspose2d(32, 16, 2, stride=2)
            self.dec = double_conv(32, 16)
            self.out = nn.Conv2d(16, classes, 1)

        def forward(self, x):
            a = self.down1(x)
            b = self.down2(F.max_pool2d(a, 2))
            return self.out(self.dec(torch.cat([self.up(b), a], dim=1)))


    def build_model():
        return UNet()


    def example_batch(batch_size: int = 8):
        g = torch.Generator().manual_seed(SEED)
        x = torch.randn(batch_size, *INPUT_SHAPE, generator=g)
        return x, torch.randint(0, NUM_CLASSES, (batch_size, *INPUT_SHAPE[1:]), generator=g)


    def compute_loss(model, batch):
        x, y = batch
        logits = model(x).float()
        return F.cross_entropy(logits, y), (logits.argmax(1) == y).sum()


    def main():
        print("the model's own main is not used")


    if __name__ == "__main__":
        main()
    ```
    ''')


def _frame(prompt: str):
    reading = read_request(prompt)
    return reading, frame_for(reading.spec, reading.intent, "torch")


# -- splice ------------------------------------------------------------------------------------


FRAME = textwrap.dedent('''\
    """A frame."""
    import torch
    from torch import nn

    SEED = 0
    NUM_CLASSES = 10


    class Old(nn.Module):
        pass


    def build_model():
        return Old()


    def helper():
        return 1


    def main():
        return helper() + (build_model() is not None)


    if __name__ == "__main__":
        main()
    ''')


def test_splice_puts_each_definition_in_its_place_and_drops_the_old_model() -> None:
    answer = "import math\nNUM_CLASSES = 3\nEXTRA = math.floor(2.5)\n\nclass New(nn.Module):\n    pass\n\ndef build_model():\n    return New()\n"
    program = splice(FRAME, answer)
    assert top_level_names(program) == ["New", "build_model", "helper", "main"]  # Old is gone, New precedes build_model
    assert "NUM_CLASSES = 3" in program and "NUM_CLASSES = 10" not in program and "EXTRA = math.floor(2.5)" in program
    assert "import math" in program and program.count("import torch") == 1
    ast.parse(program)


def test_the_answers_constants_go_together_so_one_may_name_another() -> None:
    answer = "K = 3\nNUM_CLASSES = K\n\ndef build_model():\n    return nn.Linear(2, NUM_CLASSES)\n"
    program = splice(FRAME, answer)
    namespace: dict = {"__name__": "frame_under_test"}
    exec(compile(program, "frame.py", "exec"), namespace)  # NUM_CLASSES = K before K would raise NameError
    assert namespace["NUM_CLASSES"] == 3 and namespace["SEED"] == 0


def test_the_frames_imports_win_and_a_lone_module_class_gets_its_build_model() -> None:
    reading, frame = _frame("CNN classifier for MNIST without dropout")
    answer = ("from torch.nn.functional import F\nimport numpy as np\n\n"
              "class Net(nn.Module):\n    def __init__(self, width=8):\n        super().__init__()\n"
              "        self.conv = nn.Conv2d(1, width, 3)\n        self.head = nn.Linear(width, NUM_CLASSES)\n\n"
              "    def forward(self, x):\n        return self.head(F.adaptive_avg_pool2d(self.conv(x), 1).flatten(1))\n")
    program = frame.splice(answer)
    assert "from torch.nn.functional import F" not in program
    assert "import numpy as np" not in program  # the answer's import nothing uses is left out
    assert "def build_model():\n    return Net()" in program and "class CNN" not in program
    assert frame.added_build_model(answer) == "Net"


def test_the_reference_examples_constants_join_the_frame_and_the_requests_stay() -> None:
    reading, frame = _frame("policy network for CartPole: 8 observations, 4 actions, trained with REINFORCE")
    assert "a policy network" in frame.example_title
    assert "INPUT_SHAPE = (8,)" in frame.constants and "OBS_DIM = INPUT_SHAPE[0]" in frame.constants
    assert "NUM_ACTIONS" in frame.constants  # the example's, for the model to redefine
    assert "INPUT_SHAPE = (4,)" not in frame.source  # the example's own shape did not replace the request's


def test_splice_keeps_the_frames_main_and_drops_a_garbled_import_line() -> None:
    program = splice(FRAME, "from torch.nn.functional as F\ndef build_model():\n    return nn.Linear(2, 2)\n"
                            "def main():\n    raise SystemExit('not the frame')\n")
    assert "return helper() + (build_model() is not None)" in program and "not the frame" not in program
    assert "functional" not in program


def test_the_answers_imports_that_nothing_uses_are_left_out_and_those_used_stay() -> None:
    # A 0.5B model's answer: a model in plain torch under imports of packages that are not installed here.
    answer = ("from torchvision import datasets, transforms\nimport tensorflow_hub as hub\nimport math\n"
              "from collections import OrderedDict\n\n"
              "class New(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.body = nn.Sequential(OrderedDict(fc=nn.Linear(4, NUM_CLASSES)))\n\n"
              "def load_images(root):\n    return datasets.ImageFolder(root, transforms.ToTensor())\n\n"
              "def build_model():\n    return New()\n")
    program = splice(FRAME, answer)
    assert "torchvision" not in program and "tensorflow_hub" not in program  # only the unused load_images used them
    assert "load_images" not in program and "import math" not in program
    assert "from collections import OrderedDict" in program  # used by the model: kept
    assert "import torch\nfrom torch import nn\n" in program  # the frame's own imports are never touched
    # Used by a definition the program keeps, an import stays, installed or not (the imports check names it).
    kept = splice(FRAME, answer.replace("return New()", "load_images('x')\n    return New()"))
    assert "from torchvision import datasets, transforms" in kept and "tensorflow_hub" not in kept


@pytest.mark.parametrize("answer, words", [
    ("class Net(nn.Module):\n    pass\n", ["defines Net", "not build_model()"]),
    ("NUM_CLASSES = 3\n", ["defines no function or class (it needs build_model())", "write build_model()"]),
    ("def build_model(:\n    pass\n", ["not valid Python", "line 1", "def build_model(:"]),
    ("I cannot do that.", ["not valid Python"]),
])
def test_an_answer_that_cannot_be_placed_says_what_to_write(answer: str, words: list[str]) -> None:
    with pytest.raises(SpliceError) as err:
        splice(FRAME, answer)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_a_repair_that_rewrites_only_build_model_keeps_the_earlier_model_class() -> None:
    reading, frame = _frame(UNET_PROMPT)
    code = extract(UNET_ANSWER)
    repair = "def build_model():\n    return UNet(c_in=1)\n"
    program = frame.splice(repair, [code])
    assert "class UNet" in program and "return UNet(c_in=1)" in program
    # Alone, what it uses but does not write comes from the reference example (its U-Net, example_batch, loss).
    assert {"UNet", "double_conv", "example_batch", "compute_loss"} <= set(top_level_names(frame.borrowed(repair)))
    assert "class UNet(nn.Module):\n    def __init__(self, c_in=1" not in frame.splice(repair)  # the example's, not the answer's


def extract(answer: str) -> str:
    from deepdive.codegen.pipeline import extract_code

    return extract_code(answer)


# -- frame_for ---------------------------------------------------------------------------------


def test_a_request_the_builtin_reads_gets_its_program_as_the_frame_and_writes_only_the_model() -> None:
    reading, frame = _frame("CNN classifier for MNIST without dropout")
    assert frame.write == ("build_model",) and not frame.task_changed
    assert "mnist" in frame.base and "class CNN" in frame.example and "def build_model" in frame.example
    assert "def train(" not in frame.example  # the loop is the frame's, not shown as the model's part
    assert "Prompt: CNN classifier for MNIST without dropout" in frame.source
    system = frame_system_prompt(frame, reading.spec)
    assert "NO Dropout layer" in system and "INPUT_SHAPE = (1, 28, 28)" in system
    assert "Do not write main()" in system


def test_a_task_the_builtin_has_no_template_for_makes_the_model_write_the_tasks_parts() -> None:
    reading, frame = _frame(UNET_PROMPT)
    assert frame.task_changed and frame.write == ("build_model", "example_batch", "compute_loss")
    system = frame_system_prompt(frame, reading.spec)
    assert "semantic segmentation" in system and "load_data(args)" in system


def test_the_compact_prompt_keeps_the_request_out_of_the_system_prompt_so_a_warmed_state_covers_it() -> None:
    """Two U-Net requests with other sizes, classes and exclusions get the same system prompt, one the worker
    warms; everything of the request is in the short user message."""
    from deepdive.codegen.frames.prompt import frame_prompt, warm_prefixes

    other = "a U-Net that segments 128x128 RGB street scenes into 19 classes"
    (r1, f1), (r2, f2) = _frame(UNET_PROMPT), _frame(other)
    system1, user1 = frame_prompt(f1, r1.spec, UNET_PROMPT, "compact")
    system2, user2 = frame_prompt(f2, r2.spec, other, "compact")
    assert system1 == system2 and system1 in warm_prefixes("compact")
    assert "U-Net" in system1 and "Write:" in system1 and "task semantic-segmentation: semantic segmentation" in system1
    assert "Request:" not in system1 and "grayscale" not in system1 and "street" not in system1  # nothing of either request
    lines = user1.splitlines()
    assert lines[0].startswith("Frame: the builtin's PyTorch") and "DataError" not in lines[0]  # named in the system
    assert "helpers, where it has them (call them if useful; do not rewrite them): DataError, to_device" in system1
    assert lines[1].startswith("Constants: ") and "NUM_CLASSES = 3" in lines[1] and "INPUT_SHAPE = (1, 64, 64)" in lines[1]
    assert "EPOCHS" not in lines[1] and "SEED" not in lines[1]  # the loop's constants are not the model part's
    assert lines[2] == f"Request: {UNET_PROMPT}"
    checked = lines[3]
    assert checked.startswith("Checked: task semantic-segmentation;") and "outputs 3" in checked
    assert "NO Dropout" in checked and "PyTorch only" not in checked  # the system prompt is PyTorch's already
    assert lines[-1] == "Write the model class and build_model(), example_batch(), compute_loss() in one ```python block."
    assert "outputs 19" in user2 and "INPUT_SHAPE = (3, 128, 128)" in user2
    assert len(user1) < 0.15 * len(system1)


def test_the_compact_prompt_describes_a_task_or_family_its_example_does_not_show() -> None:
    from deepdive.codegen.frames.prompt import frame_prompt

    prompt = "LSTM that reads 48 past values and predicts the next 12"
    reading, frame = _frame(prompt)
    system, user = frame_prompt(frame, reading.spec, prompt, "compact")
    assert "task forecasting:" in system  # the forecasting example's task, described before the request
    assert "task forecasting;" in user and "the model is an LSTM (an LSTM layer)" in user  # the example shows no family


def test_the_frame_prompt_style_is_compact_unless_the_environment_asks_for_the_full_one(monkeypatch) -> None:
    from deepdive.codegen.frames import prompt

    monkeypatch.delenv(prompt.STYLE_ENV, raising=False)
    assert prompt.prompt_style() == "compact"
    monkeypatch.setenv(prompt.STYLE_ENV, "full")
    assert prompt.prompt_style() == "full"
    reading, frame = _frame(UNET_PROMPT)
    system, user = prompt.frame_prompt(frame, reading.spec, UNET_PROMPT)
    assert system == frame_system_prompt(frame, reading.spec) and user.startswith(f"Request: {UNET_PROMPT}")
    monkeypatch.setenv(prompt.STYLE_ENV, "tiny")
    assert prompt.prompt_style() == "compact"  # not a style: the default


def test_a_reference_request_starts_with_a_warmed_beginning_and_its_own_part_is_short() -> None:
    from deepdive.codegen.frames.prompt import warm_prefixes

    reading, frame = _frame(UNET_PROMPT)
    system = frame_system_prompt(frame, reading.spec)
    warmed = [w for w in warm_prefixes("full") if system.startswith(w)]
    assert len(warmed) == 1 and "U-Net" in warmed[0] and "Write:" in warmed[0]  # what to write is in it too
    rest = system[len(warmed[0]):]
    # the request's own part: the frame's functions and constants, then the stated properties
    assert rest.index("Its constants") < rest.index("The request states these properties")
    assert len(rest) < 0.5 * len(system)
    from deepdive.codegen.frames.reading import reading_prompt

    assert reading_prompt(reading.spec)[0] in warm_prefixes("full")  # the model's reading, asked before the frame
    assert reading_prompt(reading.spec)[0] in warm_prefixes("compact")


def test_the_prompt_names_the_packages_a_model_reaches_for_that_are_not_installed(monkeypatch) -> None:
    from deepdive.codegen.frames import prompt

    monkeypatch.setattr(prompt, "_installed", lambda name: name != "torchvision")
    reading, frame = _frame(UNET_PROMPT)
    system = frame_system_prompt(frame, reading.spec)
    assert "Not installed where the program runs: torchvision." in system
    monkeypatch.setattr(prompt, "_installed", lambda name: True)
    assert "Not installed" not in frame_system_prompt(frame, reading.spec)


@pytest.mark.slow
def test_a_spliced_program_without_a_reader_says_so_in_one_line(tmp_path) -> None:
    reading, frame = _frame(UNET_PROMPT)
    program = frame.splice(extract(UNET_ANSWER))
    assert frame.no_reader(extract(UNET_ANSWER))
    path = tmp_path / "unet.py"
    path.write_text(program)
    run = subprocess.run([sys.executable, str(path), "--data", str(tmp_path / "nothing")], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().startswith("error: no reader for") and "--synthetic" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


# -- the model's reading -----------------------------------------------------------------------


def test_the_models_reading_adds_what_the_parser_missed_and_never_makes_a_result_verified() -> None:
    spec = read_request("policy network for CartPole trained with REINFORCE").spec
    read = parse_reading('Sure: {"task": "policy", "input_shape": [4], "outputs": 2, "family": "warp-drive", '
                         '"exclude": ["Dropout", "Teleporter"], "precision": null}')
    names = {(s.name, json.dumps(s.value)) for s in read}
    assert ("outputs", "2") in names and ("no_layer", '"Dropout"') in names
    assert not any(s.name == "family" for s in read)  # not in the vocabulary: dropped
    merged = merge_reading(spec, read + parse_reading('{"framework": "tensorflow", "outputs": 3}'))
    assert merged.get("task") == "policy"  # the parser's own reading stays
    # Only what the prompt has words for is taken: it names no dropout, no Keras and none of the numbers.
    assert {s.name for s in merged.stated if s.text == "read by the model"} <= {"task", "family"}
    grounded = merge_reading(read_request("a policy for a 6-joint arm with 17 sensor readings, REINFORCE").spec,
                             parse_reading('{"input_shape": [17], "outputs": 6, "framework": "tensorflow"}'))
    assert grounded.get("input_shape") == [17] and grounded.get("framework") is None
    assert merged.unknown == spec.unknown  # what the parser did not understand stays said
    ok = [GenerateCheck(name="smoke", ok=True)]
    understood = read_request("an MLP classifier with 4 classes").spec
    assert verdict(ok, [], understood) is None
    by_model = Spec(prompt=understood.prompt, stated=[*understood.stated, Stated("layer_count", ["Linear", 2], MODEL_READING)])
    assert "model's reading" in verdict(ok, [], by_model)


# -- the pipeline in frame mode ------------------------------------------------------------------


@pytest.mark.slow
def test_frame_mode_places_the_models_part_repairs_with_the_checks_message_and_verifies() -> None:
    broken = UNET_ANSWER.replace("return UNet()", "return UNet(c_in=3)")  # the wrong input channels

    def reply(body: dict) -> str:
        return UNET_ANSWER if "Earlier answer 1 failed the checker" in body["messages"][-1]["content"] else broken

    partials, on_partial = collect()
    with ChatServer(reply, chunk=60) as srv:
        params = GenerateParams(prompt=UNET_PROMPT, backend="openai-compatible", endpoint=srv.url, model="coder")
        result = generate(params, on_partial=on_partial)
    assert result.verified, result.message
    assert result.rounds == 1
    first, second = srv.requests
    system = first["messages"][0]["content"]
    assert "Write ONLY the top-level definitions" in system and "def train(" not in system
    assert "Write the model class and build_model(), example_batch(), compute_loss()" in first["messages"][1]["content"]
    # the repair is a fresh request told what the failed answer got wrong, without that answer (a small
    # model copies an answer it sees, token for token)
    assert [m["role"] for m in second["messages"]] == ["system", "user"]
    retry = second["messages"][-1]["content"]
    assert retry.startswith(first["messages"][1]["content"])
    assert "expected input[8, 1, 64, 64] to have 3 channels" in retry or "channels" in retry
    assert "Write every definition asked for again" in retry and broken not in retry
    assert first["temperature"] == 0.0 and second["temperature"] == 0.4  # a greedy repeat of the failed answer is no repair
    frame_check = result.checks[0]
    assert frame_check.name == "frame" and frame_check.ok
    assert "UNet" in frame_check.detail and "no data reader" in frame_check.detail
    assert "def train(" in result.code and "class UNet" in result.code and "class CNN" not in result.code
    assert f"python {result.filename} --smoke" in result.code  # the docstring names the program, not the frame's template
    assert {p.name: p.status for p in result.properties} == {"task": "met", "input_shape": "met", "family": "met",
                                                            "outputs": "met", "no_layer": "met"} or all(
        p.status == "met" for p in result.properties)
    kinds = [p.kind for p in partials]
    assert kinds.count("reset") >= 2  # each placed program replaces the streamed definitions


@pytest.mark.slow
def test_a_request_the_builtin_builds_exactly_is_answered_by_it_and_the_model_is_not_asked() -> None:
    from deepdive.codegen.pipeline import BUILTIN_COMPLETE

    partials, on_partial = collect()
    with ChatServer(lambda body: "the model should not be asked") as srv:
        params = GenerateParams(prompt="a 2-layer MLP classifier with 4 classes", backend="openai-compatible",
                                endpoint=srv.url, model="coder")
        result = generate(params, on_partial=on_partial)
        assert result.verified, result.message
        assert srv.requests == [] and result.backend == "builtin" and result.rounds == 0
        assert result.checks[0].name == "frame" and result.checks[0].detail == BUILTIN_COMPLETE
        # A request the builtin reads with a gap goes to the model, whose answer the frame places.
        gap = GenerateParams(prompt=UNET_PROMPT, backend="openai-compatible", endpoint=srv.url, model="coder")
        other = generate(gap, repair_rounds=0)
        assert len(srv.requests) == 1 and other.backend == "openai-compatible" and not other.verified
    with ChatServer(lambda body: "unused") as srv:  # frame=False: the model writes the whole program
        generate(GenerateParams(prompt="a 2-layer MLP classifier with 4 classes", backend="openai-compatible",
                                endpoint=srv.url, model="coder"), frame=False, repair_rounds=0)
        assert len(srv.requests) == 1


def test_frame_false_keeps_the_whole_program_mode() -> None:
    with ChatServer(lambda body: "no code") as srv:
        params = GenerateParams(prompt=UNET_PROMPT, backend="openai-compatible", endpoint=srv.url, model="coder")
        result = generate(params, frame=False, repair_rounds=0)
    assert not result.verified and result.rounds == 0 and len(srv.requests) == 1
    assert "Answer with the whole program" in srv.requests[0]["messages"][0]["content"]


@pytest.mark.slow
def test_what_an_answer_uses_from_the_reference_example_is_taken_from_it_and_the_program_verifies() -> None:
    from deepdive.codegen.verify import verify

    reading, frame = _frame("a U-Net for semantic segmentation of 128x128 grayscale medical images, 2 classes, "
                            "without dropout")
    # What the 0.5B answered: the example's U-Net class without its double_conv helper, no example_batch, no loss.
    answer = textwrap.dedent('''\
        from torch.nn.functional import F

        class UNet(nn.Module):
            def __init__(self, c_in=INPUT_SHAPE[0], classes=NUM_CLASSES, w=16):
                super().__init__()
                self.enc1, self.mid = double_conv(c_in, w), double_conv(w, 2 * w)
                self.up1, self.dec1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2), double_conv(2 * w, w)
                self.out = nn.Conv2d(w, classes, 1)

            def forward(self, x):
                e1 = self.enc1(x)
                m = self.mid(F.max_pool2d(e1, 2))
                return self.out(self.dec1(torch.cat([self.up1(m), e1], dim=1)))

        def build_model():
            return UNet()
        ''')
    program = frame.splice(answer)
    assert set(top_level_names(frame.borrowed(answer))) == {"double_conv", "example_batch", "compute_loss"}
    outcome = verify(program, reading.intent, spec=reading.spec)
    assert outcome.verified, outcome.message


def test_a_new_tasks_frame_carries_the_requests_sizes_in_its_constants() -> None:
    reading, frame = _frame("用一维卷积网络给心电信号分类，12导联，每条长度2000，共4个类别")
    assert "INPUT_SHAPE = (12, 2000)" in frame.constants and "NUM_CLASSES = 4" in frame.constants
    reading = read_request("a Keras 1-D CNN for vibration signals: 3 channels of 256 samples, 5 fault classes")
    keras_frame = frame_for(reading.spec, reading.intent, "tensorflow")
    assert "INPUT_SHAPE = (256, 3)" in keras_frame.constants  # channels-last


def test_a_lone_model_class_whose_arguments_name_constants_is_built_with_them() -> None:
    reading = read_request("Keras GRU tagger for part-of-speech tags: sentences of 50 tokens, 17 tags")
    frame = frame_for(reading.spec, reading.intent, "tensorflow")
    answer = ("EMBED_DIM = 64\n\nclass Tagger(keras.Model):\n    def __init__(self, vocab_size, num_tags, embed_dim, units=32):\n"
              "        super().__init__()\n        self.emb = keras.layers.Embedding(vocab_size, embed_dim)\n"
              "        self.gru = keras.layers.GRU(units, return_sequences=True)\n"
              "        self.out = keras.layers.Dense(num_tags)\n\n    def call(self, x):\n"
              "        return self.out(self.gru(self.emb(x)))\n")
    assert "VOCAB_SIZE" in frame.source and "NUM_CLASSES" in frame.source
    program = frame.splice(answer)
    assert "model = Tagger(vocab_size=VOCAB_SIZE, num_tags=NUM_CLASSES, embed_dim=EMBED_DIM)" in program
    assert frame.added_build_model(answer) == "Tagger"
    # an argument that names no constant is not guessed: the model is asked for build_model() instead
    with pytest.raises(SpliceError, match="build_model"):
        frame.splice(answer.replace("embed_dim, units=32", "embed_dim, dilation, units=32"))


def test_a_module_that_is_not_installed_is_to_be_written_without_in_the_repair() -> None:
    from deepdive.codegen.instructions import missing_modules, repair_message

    check = GenerateCheck(name="imports", ok=False, detail="module 'torchvision.models' is not installed for "
                          "/venv/bin/python: pip install torchvision (also missing: timm)")
    assert missing_modules([check]) == ["torchvision", "timm"]
    text = repair_message([check], "", None)
    assert "torchvision and timm cannot be installed where the program runs: do not import them" in text


def test_a_lone_keras_model_class_is_built_and_compiled_by_the_frame() -> None:
    reading = read_request("Keras CNN for Fashion-MNIST with 2 conv layers and dropout")
    frame = frame_for(reading.spec, reading.intent, "tensorflow")
    answer = ("class FashionNet(keras.Model):\n    def __init__(self):\n        super().__init__()\n"
              "        self.conv = keras.layers.Conv2D(8, 3)\n\n    def call(self, x):\n        return self.conv(x)\n")
    program = frame.splice(answer)
    assert "model = FashionNet()\n    model.build((None, *INPUT_SHAPE))\n    compile_model(model, lr, decay_steps)" in program
    assert "def compile_model(" in program and frame.added_build_model(answer) == "FashionNet"


def test_an_optional_definition_that_reads_an_undefined_name_is_left_to_the_reference_example() -> None:
    # The 0.5B model's answer to a GNN request (eval set: cora-gnn-plain-torch): example_batch's body copied
    # into synthetic_dataset(n), where num_nodes is defined by nothing; the smoke run stopped at NameError.
    reading, frame = _frame("a GNN in plain PyTorch (no torch_geometric) for node classification on Cora: "
                            "1433-dim node features, 7 classes")
    body = ("    a = (torch.rand(num_nodes, num_nodes) < 0.05).float()\n"
            "    x, y = torch.randn(num_nodes, *INPUT_SHAPE), torch.randint(0, NUM_CLASSES, (num_nodes,))\n"
            "    return (x, a), y\n")
    answer = ("class GCN(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.lin = nn.Linear(INPUT_SHAPE[0], NUM_CLASSES)\n\n"
              "    def forward(self, x, adj):\n        return adj @ self.lin(x)\n\n"
              "def build_model():\n    return GCN()\n\n"
              f"def example_batch(num_nodes=NUM_NODES):\n{body}\n"
              f"def synthetic_dataset(n):\n{body}")
    assert "synthetic_dataset" in frame.optional
    assert undefined_reads(frame.splice(answer)) == {"synthetic_dataset": {"num_nodes"}}
    kept, notes = frame.drop_broken(answer)
    assert "def synthetic_dataset" not in kept and "def example_batch(num_nodes=NUM_NODES)" in kept
    assert notes == ["the model's synthetic_dataset() uses num_nodes, which nothing defines: left out, "
                     "the reference example's is used"]
    program = frame.splice(kept)
    assert undefined_reads(program) == {}
    assert "return [example_batch() for _ in range(n)]" in program  # the GCN example's: whole graphs
    # A required definition with the same defect stays: the checks judge it and the repair names it.
    broken_model = answer.replace("return GCN()", "return GCN(hidden)")
    assert frame.drop_broken(broken_model)[0].count("def build_model") == 1
    # Nothing to leave out: the answer comes back as it was, with no note.
    assert frame.drop_broken(kept) == (kept, [])


def test_undefined_reads_sees_through_comprehensions_and_nested_scopes_and_knows_builtins() -> None:
    program = ("import torch\nK = 2\n\ndef f(n):\n    return [torch.zeros(K) for _ in range(n)] + [len(x) for x in y]\n\n"
               "class A:\n    size = K\n    def g(self):\n        def h():\n            return missing + K\n        return h\n")
    assert undefined_reads(program) == {"f": {"y"}, "A": {"missing"}}
    assert undefined_reads("from torch import *\n\ndef f():\n    return nn\n") == {}  # a star import binds unknown names
    assert undefined_reads("def f():\n    global CACHE\n    CACHE = 1\n\ndef g():\n    return CACHE\n") == {}


def test_the_frames_functions_the_model_is_told_not_to_rewrite_are_kept_and_a_broken_rewrite_is_left_out() -> None:
    # As the 0.5B model answered a tabular request (eval set: tabular-mlp-batchnorm): it rewrote the frame's
    # split() and to_device() (told "do not rewrite them"), and an example_batch() that reads `args`.
    reading, frame = _frame("CNN classifier for MNIST without dropout")
    assert {"DataError", "to_device"} <= set(frame.kept_names) and "example_batch" not in frame.write
    answer = ("def to_device(obj, device):\n    return obj.to(device)\n\n"
              "def split(dataset, val_fraction: float = 0.1):\n    n = int(val_fraction * len(dataset))\n"
              "    return dataset[:n], dataset[n:]\n\n"
              "def build_model():\n    return nn.Sequential(nn.Linear(30, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 2))\n\n"
              "def example_batch(batch_size=8):\n    return read_csv(args.data)\n")
    kept, notes = frame.drop_broken(answer)
    assert "def build_model" in kept and "def to_device" not in kept and "def example_batch" not in kept
    rewritten = [n for n in ("to_device", "split") if n in frame.kept_names]
    assert notes[0].startswith(f"the model rewrote {', '.join(n + '()' for n in rewritten)}, which the frame keeps")
    assert notes[-1] == "the model's example_batch() uses args, read_csv, which nothing defines: left out, the frame's is used"
    program = frame.splice(kept)
    assert definition_source(program, "to_device") == definition_source(frame.source, "to_device")
    assert definition_source(program, "example_batch") == definition_source(frame.source, "example_batch")


def test_a_reader_that_uses_a_package_that_is_not_installed_is_left_to_the_frame() -> None:
    # As the 0.5B model answered mobilenet-flowers: a torchvision ImageFolder reader beside a plain-torch model.
    reading, frame = _frame("CNN classifier for MNIST without dropout")
    answer = ("from surely_not_installed_vision import transforms\nfrom surely_not_installed_vision.datasets import ImageFolder\n\n"
              "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.fc = nn.Linear(784, NUM_CLASSES)\n\n    def forward(self, x):\n        return self.fc(x.flatten(1))\n\n"
              "def load_data(args):\n    data = ImageFolder(args.data, transform=transforms.ToTensor())\n    return split(data)\n\n"
              "def build_model():\n    return Net()\n")
    assert absent_reads(frame.splice(answer)) == {"load_data": {"surely_not_installed_vision"}}
    kept, notes = frame.drop_broken(answer)
    assert notes == ["the model's load_data() uses surely_not_installed_vision, which is not installed where the program "
                     "runs: left out, the frame's is used"]
    program = frame.splice(kept)
    assert "surely_not_installed_vision" not in program and "class Net" in program  # its imports went with it
    assert definition_source(program, "load_data") == definition_source(frame.source, "load_data")
    # The model part itself is required: a model class that uses the package stays, and the imports check names it.
    needs = answer.replace("nn.Linear(784, NUM_CLASSES)", "nn.Sequential(transforms.Lambda(abs), nn.Linear(784, NUM_CLASSES))")
    assert "surely_not_installed_vision" in frame.splice(frame.drop_broken(needs)[0])
    # The frame's own model class rewritten with the package is the model's part: never swapped for the builtin's.
    frame_model = next(n for n in top_level_names(frame.source) if n not in frame.kept_names and
                       definition_source(frame.source, n).startswith("class ") and "nn.Module" in definition_source(frame.source, n))
    rewritten = needs.replace("class Net(", f"class {frame_model}(").replace("return Net()", f"return {frame_model}()")
    assert frame.drop_broken(rewritten)[0].count(f"class {frame_model}(") == 1


def test_a_recommenders_item_count_is_its_outputs_only_where_scores_over_all_items_are_asked() -> None:
    reading, frame = _frame("a recommender for 1000 users that scores all 500 items for each user")
    assert "NUM_ITEMS = 500  # as the request states" in frame.constants and "every item" in frame.example_title
    reading, frame = _frame("recommender with user and item embeddings predicting one click probability per (user, item) pair")
    assert "NUM_ITEMS = 2000\n" in frame.constants and "NUM_ITEMS = 1 " not in frame.constants


# The 1.5B model's answer to keras-vibration-conv1d (eval set, compact prompt): build_model() without the
# frame's decay_steps, twice, although the prompt says "keep this signature" and the repair named the TypeError.
KERAS_NO_DECAY_ANSWER = '''```python
import numpy as np
import tensorflow as tf
import keras

INPUT_SHAPE = (1024, 1)  # length of the signal
NUM_CLASSES = 4


def build_model(lr=LR, dropout=DROPOUT):
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = inputs
    for filters, kernel in ((8, 7), (16, 5)):
        x = keras.layers.Conv1D(filters, kernel, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, *INPUT_SHAPE)).astype("float32")
    return x, rng.integers(0, NUM_CLASSES, size=(batch_size,)).astype("int32")
```'''


def test_a_keras_build_model_without_the_frames_parameters_gets_them_and_the_frame_check_says_what_is_lost() -> None:
    from deepdive.codegen.frames import widen_keras_build_model
    from deepdive.codegen.rounds import _frame_detail

    reading = read_request("Keras 1D conv net for vibration signals of length 1024 (single channel), 4 fault types")
    frame = frame_for(reading.spec, reading.intent, "tensorflow")
    answer = extract(KERAS_NO_DECAY_ANSWER)
    program = frame.splice(answer)
    tree = ast.parse(program)
    build = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_model")
    assert [a.arg for a in build.args.args] == ["lr", "dropout"] and [a.arg for a in build.args.kwonlyargs] == ["decay_steps"]
    assert "model.compile(optimizer=keras.optimizers.Adam(lr)" in program  # the model's own body, unchanged
    assert frame.widened_build_model(answer) == ["decay_steps"]
    assert frame.widened_build_model("def example_batch(batch_size=8):\n    return 1\n", [answer]) == ["decay_steps"]
    detail = _frame_detail(frame, [answer])
    assert ("build_model() took no decay_steps: it was added as a parameter the model's code does not use (the "
            "frame's cosine learning-rate decay not applied)") in detail
    # Nothing to add: a full signature, **kwargs, torch frames
    whole = answer.replace("def build_model(lr=LR, dropout=DROPOUT):", "def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):")
    assert widen_keras_build_model(whole) == (whole, [])
    assert widen_keras_build_model("def build_model(**options):\n    return None\n")[1] == []
    assert "took no" not in _frame_detail(frame, [whole])
    _, torch_frame = _frame(UNET_PROMPT)
    assert torch_frame.widened_build_model(answer) == []


@pytest.mark.slow
def test_the_widened_keras_program_passes_its_smoke_run(tmp_path) -> None:
    reading = read_request("Keras 1D conv net for vibration signals of length 1024 (single channel), 4 fault types")
    frame = frame_for(reading.spec, reading.intent, "tensorflow")
    path = tmp_path / "vibration.py"
    path.write_text(frame.splice(extract(KERAS_NO_DECAY_ANSWER)))
    run = subprocess.run([sys.executable, str(path), "--smoke"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
