"""Structured pruning: kept channels compute what they did, coupled layers shrink together, heads go whole."""

from __future__ import annotations

import copy
import io
import statistics
import time

import pytest
import torch
from torch import nn

from deepdive.engine.compress.prune import HeadAttention, PruneError, prune


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


def _conv_bn() -> ConvBN:
    torch.manual_seed(0)
    model = ConvBN()
    with torch.no_grad():  # statistics and scales that are not the identity, as after training
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


class BasicBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + x)


class ResNetTiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.block1 = BasicBlock(16)
        self.block2 = BasicBlock(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = self.block2(self.block1(x))
        return self.fc(x.mean(dim=(2, 3)))


class Encoder(nn.Module):
    """A small classifier on nn.TransformerEncoderLayer, with a positional table."""

    def __init__(self, heads: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 64)
        self.pos = nn.Parameter(torch.randn(1, 12, 64) * 0.02)
        layer = nn.TransformerEncoderLayer(64, heads, 128, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(64, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.enc(self.emb(tokens) + self.pos).mean(1))


class BertBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, hidden)
        self.ff2 = nn.Linear(hidden, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x, x, x, need_weights=False)[0])
        return self.norm2(x + self.ff2(torch.nn.functional.gelu(self.ff1(x))))


class Bert(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(10, 32)
        self.blocks = nn.Sequential(BertBlock(32, 4, 64), BertBlock(32, 4, 64))
        self.head = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.proj(x))[:, 0])


# --- the kept channels compute what they computed before -------------------------------------


def test_kept_neurons_of_a_linear_compute_the_same_and_the_model_is_the_original_with_the_rest_zeroed() -> None:
    model = _mlp()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(4, 16)

    result = prune(model, x, 0.5)

    pruned = result.model
    kept = result.kept["0"]
    assert len(kept) == 16 and pruned[0].out_features == 16 and pruned[2].in_features == 16
    assert "2" not in result.kept and pruned[2].out_features == 8  # the output layer keeps its outputs
    with torch.no_grad():
        assert torch.allclose(pruned[0](x), model[0](x)[:, kept], atol=1e-6)
        zeroed = copy.deepcopy(model)
        removed = sorted(set(range(32)) - set(kept))
        zeroed[0].weight[removed] = 0.0
        zeroed[0].bias[removed] = 0.0
        assert torch.allclose(pruned(x), zeroed(x), atol=1e-6)
        assert not torch.allclose(pruned(x), model(x), atol=1e-6)  # the removed neurons did contribute
    for key, value in model.state_dict().items():  # the caller's model is untouched
        assert torch.equal(value, before[key])
    assert result.params_after < result.params_before == _params(model)
    assert result.params_after == _params(pruned)
    assert result.macs_after < result.macs_before


def test_kept_channels_of_a_conv_bn_block_compute_the_same() -> None:
    model = _conv_bn()
    x = torch.randn(2, 3, 8, 8)

    result = prune(model, x, 0.5)

    pruned = result.model.eval()
    kept = result.kept["conv"]
    assert pruned.conv.out_channels == 8 and pruned.bn.num_features == 8 and pruned.fc.in_features == 8
    with torch.no_grad():
        assert torch.allclose(pruned.conv(x), model.conv(x)[:, kept], atol=1e-5)
        assert torch.allclose(pruned.bn(pruned.conv(x)), model.bn(model.conv(x))[:, kept], atol=1e-5)
        zeroed = copy.deepcopy(model)
        removed = sorted(set(range(16)) - set(kept))
        zeroed.bn.weight[removed] = 0.0
        zeroed.bn.bias[removed] = 0.0
        assert torch.allclose(pruned(x), zeroed(x), atol=1e-5)


# --- smaller and faster -----------------------------------------------------------------------


def _median_latency(model: nn.Module, x: torch.Tensor, runs: int) -> float:
    times = []
    with torch.no_grad():
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.mark.slow
def test_pruned_mlp_is_smaller_and_measurably_faster() -> None:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(4):
        layers += [nn.Linear(1024, 1024), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(1024, 10)).eval()
    x = torch.randn(64, 1024)

    result = prune(model, x[:1], 0.5)
    pruned = result.model.eval()

    assert result.params_after < 0.45 * result.params_before
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for m in (model, pruned):  # warm-up
            _median_latency(m, x, 3)
        original, smaller = [], []
        for _ in range(5):  # interleaved, so that load from other processes hits both alike
            original.append(_median_latency(model, x, 5))
            smaller.append(_median_latency(pruned, x, 5))
    finally:
        torch.set_num_threads(threads)
    assert statistics.median(smaller) < statistics.median(original)


# --- coupled layers ---------------------------------------------------------------------------


def test_residual_block_prunes_both_sides_of_the_add_alike() -> None:
    torch.manual_seed(0)
    model = ResNetTiny().eval()
    x = torch.randn(2, 3, 16, 16)

    result = prune(model, x, 0.5)

    pruned = result.model.eval()
    assert pruned(x).shape == model(x).shape == (2, 10)
    # the stem's channels flow into both adds: the stem and each block's conv2 lose the same ones
    assert result.kept["stem"] == result.kept["block1.conv2"] == result.kept["block2.conv2"]
    assert len(result.kept["stem"]) == 8
    assert pruned.bn.num_features == pruned.block1.bn2.num_features == pruned.block1.conv1.in_channels == 8
    assert pruned.fc.in_features == 8
    # inside a block, conv1's outputs are a group of their own, pruned too
    assert pruned.block1.conv1.out_channels == pruned.block1.bn1.num_features == pruned.block1.conv2.in_channels == 8
    assert result.params_after < 0.35 * result.params_before


def test_bn_importance_removes_the_channels_with_the_smallest_scales() -> None:
    model = _conv_bn()
    strong = [1, 3, 4, 6, 9, 10, 13, 15]
    with torch.no_grad():
        model.bn.weight.fill_(0.01)
        model.bn.weight[strong] = 2.0

    result = prune(model, torch.randn(1, 3, 8, 8), 0.5, importance="bn")

    assert result.kept["conv"] == strong


# --- attention --------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [True, False])
def test_split_attention_computes_what_multihead_attention_does(batch_first: bool) -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    split = HeadAttention.from_mha(mha).eval()
    x = torch.randn(3, 5, 32) if batch_first else torch.randn(5, 3, 32)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[:, -1] = True
    causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    with torch.no_grad():
        for kwargs in ({}, {"key_padding_mask": padding, "attn_mask": causal}):
            for need_weights in (True, False):
                want, want_w = mha(x, x, x, need_weights=need_weights, **kwargs)
                got, got_w = split(x, x, x, need_weights=need_weights, **kwargs)
                assert torch.allclose(got, want, atol=1e-5)
                assert (got_w is None) == (want_w is None)
                if want_w is not None:
                    assert torch.allclose(got_w, want_w, atol=1e-6)


def test_transformer_encoder_loses_whole_heads_and_ffn_neurons_and_still_runs(tmp_path) -> None:
    torch.manual_seed(0)
    model = Encoder().eval()
    tokens = torch.randint(0, 50, (2, 12))

    result = prune(model, tokens, 0.5)

    pruned = result.model.eval()
    with torch.no_grad():
        assert pruned(tokens).shape == model(tokens).shape == (2, 3)
    assert result.heads == {"enc.layers.0.self_attn": (8, 4), "enc.layers.1.self_attn": (8, 4)}
    for layer in pruned.enc.layers:
        attn = layer.self_attn
        assert isinstance(attn, HeadAttention) and attn.num_heads == 4 and attn.head_dim == 8
        assert layer.linear1.out_features == 64
    # the embedding width (residual stream) is a coupled group too: halved everywhere
    assert pruned.emb.embedding_dim == pruned.pos.shape[-1] == pruned.fc.in_features == 32
    assert result.params_after < 0.4 * result.params_before
    path = tmp_path / "pruned.pt"
    torch.save(pruned, path)
    loaded = torch.load(path, weights_only=False).eval()
    with torch.no_grad():
        assert torch.allclose(loaded(tokens), pruned(tokens))


def test_bert_block_heads_go_whole_and_the_model_is_the_original_with_them_zeroed() -> None:
    torch.manual_seed(0)
    model = Bert().eval()
    x = torch.randn(2, 6, 10)

    # keeping the input projection keeps the residual width: only heads and FFN neurons go
    result = prune(model, x, 0.5, ignored_layers=[model.proj])

    pruned = result.model.eval()
    assert result.heads == {"blocks.0.attn": (4, 2), "blocks.1.attn": (4, 2)}
    zeroed = copy.deepcopy(model)
    for i in range(2):
        name = f"blocks.{i}.attn"
        q, k, v = (result.kept[f"{name}.{p}_proj"] for p in "qkv")
        assert q == k == v and len(q) == 16
        heads = sorted({row // 8 for row in q})
        assert q == [h * 8 + j for h in heads for j in range(8)]  # whole heads, head_dim kept
        assert pruned.blocks[i].attn.head_ids == heads
        removed_rows = sorted(set(range(32)) - set(q))
        removed_neurons = sorted(set(range(64)) - set(result.kept[f"blocks.{i}.ff1"]))
        with torch.no_grad():
            zeroed.blocks[i].attn.out_proj.weight[:, removed_rows] = 0.0
            zeroed.blocks[i].ff2.weight[:, removed_neurons] = 0.0
    with torch.no_grad():
        assert torch.allclose(pruned(x), zeroed(x), atol=1e-5)
        assert not torch.allclose(pruned(x), model(x), atol=1e-4)


class TableEncoder(nn.Module):
    """Positions read straight from an Embedding's table (never called), with a padding mask."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(40, 32, padding_idx=0)
        self.positions = nn.Embedding(16, 32)
        self.block = BertBlock(32, 4, 64)
        self.head = nn.Linear(32, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions.weight[: ids.shape[1]]
        pad = ids == 0
        attended = self.block.attn(x, x, x, key_padding_mask=pad, need_weights=False)[0]
        x = self.block.norm1(x + attended)
        x = self.block.norm2(x + self.block.ff2(torch.relu(self.block.ff1(x))))
        return self.head(x.mean(1))


def test_an_embedding_read_as_a_table_is_pruned_with_the_width_it_is_added_to() -> None:
    torch.manual_seed(0)
    model = TableEncoder().eval()
    ids = torch.randint(1, 40, (2, 10))
    ids[:, -2:] = 0

    result = prune(model, ids, 0.5)

    pruned = result.model.eval()
    assert pruned.tokens.embedding_dim == pruned.positions.embedding_dim == 16
    assert pruned.positions.weight.shape == (16, 16)
    with torch.no_grad():
        assert pruned(ids).shape == (2, 2)


def test_without_heads_attention_stays_multihead_attention() -> None:
    torch.manual_seed(0)
    model = Encoder().eval()
    tokens = torch.randint(0, 50, (2, 12))

    result = prune(model, tokens, 0.5, heads=False)

    attn = result.model.enc.layers[0].self_attn
    assert isinstance(attn, nn.MultiheadAttention) and attn.num_heads == 8 and attn.embed_dim == 32
    assert result.heads == {}
    with torch.no_grad():
        assert result.model.eval()(tokens).shape == (2, 3)


# --- progressive, Taylor ----------------------------------------------------------------------


def test_progressive_pruning_fine_tunes_after_each_step_and_reaches_the_amount() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 60), nn.ReLU(), nn.Linear(60, 60), nn.ReLU(), nn.Linear(60, 4))
    x = torch.randn(8, 16)
    calls = []

    def fine_tune(m: nn.Module, step: int) -> None:
        calls.append((step, m[0].out_features, m.training))
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        m.train()
        loss = m(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()

    result = prune(model, x, 0.5, steps=3, fine_tune=fine_tune)

    assert [(step, width) for step, width, _ in calls] == [(0, 50), (1, 40), (2, 30)]
    assert all(training for *_, training in calls)  # the caller's mode (train) during fine-tuning
    assert result.model[0].out_features == result.model[2].out_features == 30
    params = [s["params"] for s in result.steps]
    assert [s["step"] for s in result.steps] == [1, 2, 3]
    assert params[0] > params[1] > params[2] == result.params_after == _params(result.model)
    one_shot = prune(model, x, 0.5)
    assert one_shot.params_after == result.params_after


def test_progressive_head_pruning_reaches_the_amount_of_the_original_heads() -> None:
    torch.manual_seed(0)
    model = Encoder().eval()
    tokens = torch.randint(0, 50, (2, 12))
    heads = []

    def fine_tune(m: nn.Module, step: int) -> None:
        heads.append(m.enc.layers[0].self_attn.num_heads)

    result = prune(model, tokens, 0.5, steps=2, fine_tune=fine_tune)

    assert heads == [6, 4]
    assert result.heads["enc.layers.1.self_attn"] == (8, 4)


def test_taylor_removes_neurons_that_do_not_affect_the_loss_even_with_large_weights() -> None:
    model = _mlp()
    dead = list(range(0, 32, 2))
    with torch.no_grad():
        model[0].weight[dead] *= 50.0  # large, so that magnitude keeps them ...
        model[2].weight[:, dead] = 0.0  # ... but they reach nothing, so their Taylor score is 0
    x, y = torch.randn(32, 16), torch.randint(0, 8, (32,))
    calls = []

    def loss_fn(m: nn.Module) -> torch.Tensor:
        calls.append(1)
        return nn.functional.cross_entropy(m(x), y)

    taylor = prune(model, x, 0.5, importance="taylor", loss_fn=loss_fn)
    magnitude = prune(model, x, 0.5, importance="l2")

    assert calls == [1]
    assert set(taylor.kept["0"]).isdisjoint(dead)
    assert set(magnitude.kept["0"]) == set(dead)
    assert all(p.grad is None for p in taylor.model.parameters())


def test_l1_and_round_to() -> None:
    model = _mlp()
    result = prune(model, torch.randn(2, 16), 0.4, importance="l1", round_to=8)
    assert result.model[0].out_features == 16  # 32 * 0.6 = 19.2 -> rounded down to a multiple of 8


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"amount": 0.0}, {"amount": 1.2}, {"amount": 1.0}, {"amount": -0.1},
    {"importance": "l3"}, {"steps": 0}, {"importance": "taylor"},
    {"importance": "bn"},  # the MLP has no BatchNorm
    {"round_to": 0},
])
def test_bad_requests_raise_a_one_line_prune_error(kwargs) -> None:
    args = {"amount": 0.5, **kwargs}
    amount = args.pop("amount")
    with pytest.raises(PruneError) as info:
        prune(_mlp(), torch.randn(2, 16), amount, **args)
    assert "\n" not in str(info.value) and str(info.value)


def test_an_ignored_layer_of_another_model_and_inputs_the_model_rejects_raise_prune_error() -> None:
    with pytest.raises(PruneError, match="not a submodule"):
        prune(_mlp(), torch.randn(2, 16), 0.5, ignored_layers=[nn.Linear(2, 2)])
    with pytest.raises(PruneError, match="does not run on example_inputs"):
        prune(_mlp(), torch.randn(2, 7), 0.5)


def test_ignored_layers_keep_their_outputs() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    result = prune(model, torch.randn(2, 16), 0.5, ignored_layers=[model[0]])
    assert result.model[0].out_features == 32 and result.model[2].out_features == 16
    buffer = io.BytesIO()
    torch.save(result.model, buffer)
    assert buffer.tell() > 0
