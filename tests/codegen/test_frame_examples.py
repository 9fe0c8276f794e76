"""Reference examples for frame mode (issue #19 item 4).

A 0.5B model copies the example it is shown: the frame prompt shows a short reference definition of
the right kind of model for the request's family or task. Each example, spliced into the frame the
pipeline picks for a request of its kind, must pass the real sandboxed verifier with every property
such a request states met; :func:`example_for` must pick by family first, then task, and respect the
framework and the stated input's rank.
"""

from __future__ import annotations

import pytest

from deepdive.codegen.frames import frame_for
from deepdive.codegen.frames.examples import EXAMPLES, Example, example_for
from deepdive.codegen.frames.splice import top_level_names
from deepdive.codegen.spec import Spec, Stated
from deepdive.codegen.understand import read_request
from deepdive.codegen.verify import verify

#: (example key, framework) -> (a request of its kind, the properties that request states).
CASES: dict[tuple[str, str], tuple[str, list[tuple[str, object]]]] = {
    ("unet", "torch"): (
        "a U-Net for semantic segmentation of 1x64x64 grayscale images into 3 classes, without dropout",
        [("task", "semantic-segmentation"), ("family", "unet"), ("input_shape", [1, 64, 64]), ("outputs", 3),
         ("no_layer", "Dropout"), ("framework", "torch")]),
    ("cnn1d", "torch"): (
        "1-D CNN that classifies accelerometer windows (3 axes x 128 samples) into 6 activities",
        [("task", "signal-classification"), ("family", "cnn1d"), ("input_shape", [3, 128]), ("outputs", 6)]),
    ("char-lm", "torch"): (
        "a character-level language model with a GRU over 65 characters, reading sequences of 100 characters",
        [("task", "language-model"), ("family", "gru"), ("input_shape", [100]), ("outputs", 65)]),
    ("gpt-lm", "torch"): (
        "small GPT-style transformer language model, vocab size 5000, context length 64",
        [("task", "language-model"), ("family", "transformer"), ("input_shape", [64]), ("outputs", 5000)]),
    ("multi-label", "torch"): (
        "multi-label classifier for 3x64x64 RGB images with 20 possible tags",
        [("task", "multi-label-classification"), ("input_shape", [3, 64, 64]), ("outputs", 20),
         ("loss", "BCEWithLogitsLoss")]),
    ("forecasting", "torch"): (
        "LSTM that reads 48 past values and predicts the next 12",
        [("task", "forecasting"), ("family", "lstm"), ("input_shape", [48, 1]), ("outputs", 12)]),
    ("diffusion", "torch"): (
        "one training step of a denoising diffusion model on 3x32x32 images, a small U-Net predicts the noise",
        [("task", "diffusion"), ("family", "unet"), ("input_shape", [3, 32, 32])]),
    ("spectrogram", "torch"): (
        "spectrogram classifier: log-mel spectrograms of shape (1, 64, 128), 10 sound classes, 2D CNN",
        [("task", "audio-classification"), ("family", "cnn"), ("input_shape", [1, 64, 128]), ("outputs", 10)]),
    ("tagger", "torch"): (
        "named entity recognition with a BiLSTM tagger: sentences of 40 tokens, 9 BIO tags",
        [("task", "sequence-labeling"), ("family", "lstm"), ("input_shape", [40]), ("outputs", 9)]),
    ("gcn", "torch"): (
        "a GNN in plain PyTorch for node classification: 32 node features, 6 classes",
        [("task", "graph"), ("family", "gnn"), ("framework", "torch"), ("input_shape", [32]), ("outputs", 6)]),
    ("detection", "torch"): (
        "object detection head on a small conv backbone for 3x128x128 images, 5 classes",
        [("task", "object-detection"), ("family", "cnn"), ("input_shape", [3, 128, 128])]),
    ("policy", "torch"): (
        "a policy network for CartPole (4-dimensional observations, 2 actions) trained with REINFORCE",
        [("task", "policy"), ("input_shape", [4]), ("outputs", 2)]),
    ("recommender", "torch"): (
        "recommender with user and item embeddings predicting one click probability per (user, item) pair",
        [("task", "recommendation"), ("outputs", 1)]),
    ("recommender-all", "torch"): (
        "a recommender for 1000 users that scores all 2000 items for each user",
        [("task", "recommendation"), ("outputs", 2000)]),
    ("tabular-regression", "torch"): (
        "train an MLP on data.csv (16 feature columns) to predict price",
        [("task", "regression"), ("family", "mlp"), ("input_shape", [16]), ("outputs", 1)]),
    ("unet", "tensorflow"): (
        "Keras U-Net to segment 1x64x64 images into 3 classes, no dropout",
        [("task", "semantic-segmentation"), ("framework", "tensorflow"), ("family", "unet"),
         ("input_shape", [1, 64, 64]), ("outputs", 3), ("no_layer", "Dropout")]),
    ("cnn1d", "tensorflow"): (
        "Keras 1D conv net for sensor windows of 128 time steps x 3 channels, 6 classes",
        [("task", "signal-classification"), ("framework", "tensorflow"), ("family", "cnn1d"),
         ("input_shape", [128, 3]), ("outputs", 6)]),
    ("spectrogram", "tensorflow"): (
        "Keras model that classifies mel spectrograms (1 channel, 64 mel bins x 128 frames) into 10 classes",
        [("task", "audio-classification"), ("framework", "tensorflow"), ("input_shape", [1, 64, 128]),
         ("outputs", 10)]),
    ("tagger", "tensorflow"): (
        "part-of-speech tagging in Keras with a GRU over 40-token sentences, 9 tags",
        [("task", "sequence-labeling"), ("framework", "tensorflow"), ("family", "gru"), ("input_shape", [40]),
         ("outputs", 9)]),
    ("multi-label", "tensorflow"): (
        "Keras multi-label classifier for 3x64x64 images with 20 possible tags",
        [("task", "multi-label-classification"), ("framework", "tensorflow"), ("input_shape", [3, 64, 64]),
         ("outputs", 20), ("loss", "BCEWithLogitsLoss")]),
    ("recommender", "tensorflow"): (
        "recommendation model in Keras: user and item embeddings, one click score per (user, item) pair",
        [("task", "recommendation"), ("framework", "tensorflow"), ("outputs", 1)]),
    ("recommender-all", "tensorflow"): (
        "recommendation model in Keras: embed a user and score all 2000 items for that user",
        [("task", "recommendation"), ("framework", "tensorflow"), ("outputs", 2000)]),
}


def _spec(prompt: str, stated: list[tuple[str, object]]) -> Spec:
    return Spec(prompt=prompt, stated=[Stated(name, value, prompt) for name, value in stated])


def _spec_of(**stated: object) -> Spec:
    return Spec(prompt="test", stated=[Stated(name, value) for name, value in stated.items()])


def test_every_example_has_a_request_of_its_kind_below() -> None:
    assert {(e.key, e.framework) for e in EXAMPLES} == set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("key, framework", sorted(CASES), ids=[f"{k}-{fw}" for k, fw in sorted(CASES)])
def test_each_example_spliced_into_its_frame_meets_every_stated_property(key: str, framework: str) -> None:
    prompt, stated = CASES[(key, framework)]
    spec = _spec(prompt, stated)
    example = example_for(spec, framework)
    assert example is not None and (example.key, example.framework) == (key, framework)
    code_lines = [line for line in example.source.splitlines() if line.strip()]
    assert len(code_lines) <= 35, "a 0.5B model reads the example in its prompt: every token costs time"
    names = top_level_names(example.source)
    assert "build_model" in names and "example_batch" in names
    assert framework != "torch" or "compute_loss" in names
    frame = frame_for(spec, read_request(prompt, framework).intent, framework)
    assert frame is not None
    code = frame.splice(example.source)
    result = verify(code, None, spec=spec)
    statuses = {p.label: (p.status, p.detail) for p in result.properties}
    assert result.verified, (result.message, statuses)
    assert [p.name for p in result.properties] == [name for name, _ in stated]
    assert all(p.status == "met" for p in result.properties), statuses


def test_family_wins_over_task() -> None:
    assert example_for(_spec_of(task="audio-classification"), "torch").key == "spectrogram"
    assert example_for(_spec_of(task="audio-classification", family="cnn1d"), "torch").key == "cnn1d"
    assert example_for(_spec_of(task="object-detection", family="unet"), "torch").key == "unet"
    # A family with several examples: the one made for the request's task.
    assert example_for(_spec_of(task="diffusion", family="unet"), "torch").key == "diffusion"
    assert example_for(_spec_of(family="unet"), "torch").key == "unet"
    # Families the builtin frame already shows go on to the task.
    assert example_for(_spec_of(task="object-detection", family="resnet"), "torch").key == "detection"
    # An example first for some families of its task, and only there.
    assert example_for(_spec_of(task="language-model", family="transformer"), "torch").key == "gpt-lm"
    assert example_for(_spec_of(task="language-model"), "torch").key == "char-lm"
    assert example_for(_spec_of(task="text-classification", family="transformer"), "torch") is None


def test_a_recurrent_example_takes_the_recurrent_layer_the_request_names() -> None:
    lstm = example_for(_spec_of(task="language-model", family="lstm"), "torch")
    assert lstm.key == "char-lm" and "nn.LSTM(" in lstm.source and "nn.GRU(" not in lstm.source
    assert lstm.title == "a character-level LSTM language model"
    gru = example_for(_spec_of(task="sequence-labeling", family="gru"), "torch")
    assert "nn.GRU(" in gru.source and "nn.LSTM(" not in gru.source and "BiGRU" in gru.title
    keras = example_for(_spec_of(task="sequence-labeling", family="lstm"), "tensorflow")
    assert "layers.LSTM(" in keras.source and "layers.GRU(" not in keras.source
    unchanged = example_for(_spec_of(task="language-model", family="gru"), "torch")
    assert unchanged == next(e for e in EXAMPLES if e.key == "char-lm")


def test_unknown_or_builtin_requests_get_no_example() -> None:
    assert example_for(Spec(prompt="something"), "torch") is None
    assert example_for(_spec_of(task="image-classification", family="resnet"), "torch") is None
    assert example_for(_spec_of(task="gan"), "torch") is None
    assert example_for(_spec_of(family="transformer"), "torch") is None


def test_the_framework_is_respected() -> None:
    keras = example_for(_spec_of(task="semantic-segmentation"), "tensorflow")
    assert isinstance(keras, Example) and keras.framework == "tensorflow" and "keras." in keras.source
    assert "nn.Module" not in keras.source
    torch = example_for(_spec_of(task="semantic-segmentation"), "torch")
    assert torch.framework == "torch" and "nn.Module" in torch.source
    assert example_for(_spec_of(task="graph", family="gnn"), "tensorflow") is None  # no Keras GNN: no torch code either
    assert all(e.framework in ("torch", "tensorflow") for e in EXAMPLES)


def test_the_stated_input_rank_picks_the_variant_or_none() -> None:
    assert example_for(_spec_of(task="audio-classification", input_shape=[1, 16000]), "torch").key == "cnn1d"
    assert example_for(_spec_of(task="audio-classification", input_shape=[1, 40, 98]), "torch").key == "spectrogram"
    images = _spec_of(task="multi-label-classification", input_shape=[3, 64, 64])
    assert example_for(images, "torch").key == "multi-label"
    documents = _spec_of(task="multi-label-classification", input_shape=[300])
    assert example_for(documents, "torch") is None  # an image CNN would mislead a text model


def test_the_stated_output_count_picks_one_score_per_pair_or_scores_over_all_items() -> None:
    for framework in ("torch", "tensorflow"):
        assert example_for(_spec_of(task="recommendation", outputs=500), framework).key == "recommender-all"
        assert example_for(_spec_of(task="recommendation", outputs=1), framework).key == "recommender"
        assert example_for(_spec_of(task="recommendation"), framework).key == "recommender"


def test_a_parsed_request_gets_the_example_of_its_kind() -> None:
    spec = read_request("a U-Net for semantic segmentation of medical images, without dropout").spec
    example = example_for(spec, "torch")
    assert example.key == "unet" and "torch.cat" in example.source and "ConvTranspose2d" in example.source
    assert "Dropout" not in example.source
    assert example.title.startswith("a small U-Net") and "\n" not in example.title
