"""FSDP2 done properly (the wrap policy, mixed precision, activation checkpointing, the user's mistakes) and
models bigger than one device (built on meta, sharded, then materialised; ``auto`` against a memory budget).

The torchrun tests run 2 processes on gloo and compare with torch's own DDP on the same weights and batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deepdive.engine as dd
from deepdive.engine.distributed import DistInfo, fits_one_device, optimizer_states
from deepdive.engine.fsdp import FsdpOptions, plan_units
from deepdive.engine.materialize import materialize
from deepdive.examples.polarity_bert import EncoderLayer, PolarityBERT

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "dist_scripts"
TIMEOUT = 240
CPU = DistInfo(rank=0, local_rank=0, world_size=2, backend="gloo", device=torch.device("cpu"))


def torchrun(script: str, *args: str, env: dict[str, str] | None = None) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(SCRIPTS / script), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]


def train(tmp_path: Path, model: str, *args: str) -> dict:
    out = tmp_path / "out.json"
    torchrun("fsdp_train.py", model, str(out), *args)
    return json.loads(out.read_text())


def max_relative_difference(result: dict) -> float:
    return max(abs(a - b) / abs(b) for rank in result["losses"] for a, b in zip(rank["engine"], rank["ddp"]))


def polarity(layers: int = 4) -> nn.Module:
    return PolarityBERT(50, dim=32, heads=4, ff=64, layers=layers, dropout=0.0)


def small_bert_config(**extra: object):
    from transformers import BertConfig

    return BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=32, **extra)


# -- the wrap policy ----------------------------------------------------------------------------


def test_each_layer_of_a_modulelist_transformer_is_a_unit_and_the_root_comes_last():
    plan = plan_units(polarity())
    assert [(u.path, u.kind, u.class_name) for u in plan.units] == [
        (f"layers.{i}", "block", "EncoderLayer") for i in range(4)]
    assert plan.block_classes == {"EncoderLayer": "nn.ModuleList"}
    outside = [p for name, p in polarity().named_parameters() if not name.startswith("layers")]
    assert plan.root_parameters == sum(p.numel() for p in outside)
    assert plan.summary().startswith("4 x EncoderLayer, then the root")


def test_lists_inside_lists_are_walked_through():
    class Stages(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stages = nn.ModuleList(nn.ModuleList(EncoderLayer(16, 2, 32, 0.0) for _ in range(2)) for _ in range(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    assert [u.path for u in plan_units(Stages()).units] == ["stages.0.0", "stages.0.1", "stages.1.0", "stages.1.1"]


def test_hugging_face_layers_are_units_and_tied_embeddings_stay_with_the_root():
    from transformers import BertForMaskedLM, BertModel

    encoder = plan_units(BertModel(small_bert_config()))
    assert encoder.counts() == {"BertEmbeddings": 1, "BertLayer": 2}
    assert encoder.block_classes["BertEmbeddings"] == "_no_split_modules"
    masked = plan_units(BertForMaskedLM(small_bert_config()))
    # the decoder shares the word embeddings: FSDP2 would refuse the parameter in two units
    assert masked.counts() == {"BertLayer": 2} and masked.kept_with_parent == ("bert.embeddings",)
    assert "kept with their parent for tied weights: bert.embeddings" in masked.summary()


def test_a_big_leaf_is_a_unit_unless_it_is_tied():
    class LM(nn.Module):
        def __init__(self, tied: bool) -> None:
            super().__init__()
            self.embed = nn.Embedding(5000, 32)
            self.layers = nn.ModuleList(EncoderLayer(32, 4, 64, 0.0) for _ in range(2))
            self.head = nn.Linear(32, 5000, bias=False)
            if tied:
                self.head.weight = self.embed.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    options = FsdpOptions(min_unit_params=100_000)
    assert plan_units(LM(False), options).counts() == {"EncoderLayer": 2, "Embedding (size)": 1, "Linear (size)": 1}
    tied = plan_units(LM(True), options)
    assert tied.counts() == {"EncoderLayer": 2} and set(tied.kept_with_parent) == {"embed", "head"}


def test_modules_kept_in_fp32_get_their_own_units_inside_the_blocks():
    plan = plan_units(polarity(2), fp32_classes=(nn.LayerNorm,))
    paths = [u.path for u in plan.units]
    assert paths == ["ln", "layers.0.ln1", "layers.0.ln2", "layers.0", "layers.1.ln1", "layers.1.ln2", "layers.1"]
    assert plan.counts() == {"LayerNorm (fp32)": 5, "EncoderLayer": 2}


def test_classes_named_in_the_options_are_blocks():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    assert plan_units(model).counts() == {"Linear": 3}  # repeated in a Sequential: today's digits layout
    mixed = nn.Sequential(nn.Linear(4, 8), nn.GRU(8, 8))
    assert plan_units(mixed).units == ()
    assert plan_units(mixed, FsdpOptions(blocks=("GRU",))).counts() == {"GRU": 1}


def test_a_model_fsdp2_cannot_shard_is_refused_in_one_line_with_the_fix():
    with pytest.raises(ValueError, match=r"^run.prepare got a ModuleList, which has no forward\(\): pass the module"):
        plan_units(nn.ModuleList([nn.Linear(2, 2)]))
    model = polarity(2)
    model.layers[1].ff1.weight = nn.Parameter(model.layers[1].ff1.weight.detach().half())
    with pytest.raises(ValueError, match=r"^layers.1 holds trainable parameters of dtypes float16 and float32: .*"
                                         r"cast the model to one dtype"):
        plan_units(model)


def test_setup_checks_the_fsdp_options_and_the_memory_budget(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown fsdp options \['offload'\]: use activation_checkpointing, "):
        dd.setup(grad_compression="none", fsdp={"offload": True})
    with pytest.raises(ValueError, match="fsdp blocks must be module classes or class names"):
        dd.setup(grad_compression="none", fsdp={"blocks": [3]})
    with pytest.raises(ValueError, match="memory_budget_gb must be a positive number of GB"):
        dd.setup(grad_compression="none", memory_budget_gb=0)
    monkeypatch.setenv("DEEPDIVE_MEMORY_BUDGET_GB", "lots")
    with pytest.raises(ValueError, match=r"DEEPDIVE_MEMORY_BUDGET_GB='lots' must be a number of GB"):
        dd.setup(grad_compression="none")


def test_what_fully_shard_itself_refuses_comes_back_in_one_line_with_the_fix(tmp_path):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from deepdive.engine.fsdp import fully_shard_unit

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        layer = nn.Linear(4, 4)
        mesh = init_device_mesh("cpu", (1,))
        fully_shard_unit("layers.0", layer, mesh=mesh)
        refused = r"^FSDP2 could not shard layers.0 \(FSDPLinear\): Each distinct composable .*; use strategy='ddp'"
        with pytest.raises(RuntimeError, match=refused):
            fully_shard_unit("layers.0", layer, mesh=mesh)
    finally:
        dist.destroy_process_group()


# -- auto: measured before anything is moved --------------------------------------------------


def test_auto_measures_parameters_gradients_and_optimizer_states_of_a_meta_model(monkeypatch):
    monkeypatch.delenv("DEEPDIVE_MEMORY_BUDGET_GB", raising=False)
    with dd.init_empty():
        model = nn.Sequential(nn.Linear(1000, 1000), nn.Linear(1000, 1000))  # 2,002,000 fp32: 8 MB
    adam = torch.optim.AdamW(model.parameters())
    fits, why = fits_one_device(model, CPU, adam, budget_gb=0.02)
    assert not fits and "need 0.03 GB per process, over the budget of 0.02 GB (memory_budget_gb=0.02)" in why
    assert "AdamW: 2 per parameter" in why
    fits, why = fits_one_device(model, CPU, torch.optim.SGD(model.parameters(), lr=0.1), budget_gb=0.02)
    assert fits and "need 0.02 GB" in why and "within" in why  # plain SGD keeps no state
    monkeypatch.setenv("DEEPDIVE_MEMORY_BUDGET_GB", "0.01")
    fits, why = fits_one_device(model, CPU, adam)
    assert not fits and "($DEEPDIVE_MEMORY_BUDGET_GB=0.01)" in why
    monkeypatch.delenv("DEEPDIVE_MEMORY_BUDGET_GB")
    fits, why = fits_one_device(model, CPU, adam)
    assert fits and why.startswith("no memory budget on the CPU (set memory_budget_gb=")
    assert all(p.is_meta for p in model.parameters())  # nothing was allocated to measure it
    assert optimizer_states(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))[0] == 1
    assert optimizer_states(torch.optim.Adam(model.parameters(), amsgrad=True))[0] == 3


# -- built on meta, one process ---------------------------------------------------------------


def test_a_model_built_on_meta_is_initialised_by_its_own_init_and_the_optimizer_follows():
    run = dd.setup(precision="fp32", grad_compression="none", seed=3)
    with run.init_empty():
        model = polarity()
    assert all(p.is_meta for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    after = torch.get_rng_state()
    model, optimizer = run.prepare(model, optimizer)
    assert torch.equal(torch.get_rng_state(), after), "materialising must not consume the script's random stream"
    assert not any(p.is_meta for p in model.parameters())
    assert [id(p) for p in optimizer.param_groups[0]["params"]] == [id(p) for p in model.parameters()]
    layer = model.layers[0]
    assert torch.equal(layer.ln1.weight, torch.ones(32)) and torch.equal(model.tokens.weight[0], torch.zeros(32))
    assert torch.equal(layer.attn.out_proj.bias, torch.zeros(32)), "MultiheadAttention's init runs after its children's"
    assert 0.5 < model.tokens.weight[1:].std().item() < 1.5  # nn.Embedding's N(0, 1), not leftover memory
    with dd.init_empty():
        again = polarity()
    materialize(again, "cpu", seed=3)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), f"{name}: the same seed gives the same weights"
    ids, y = torch.randint(2, 50, (4, 12)), torch.randint(0, 2, (4,))
    first = F.cross_entropy(model(ids), y)
    run.backward(first)
    run.step(optimizer)
    assert F.cross_entropy(model(ids), y) < first


def test_a_hugging_face_model_built_on_meta_gets_its_init_weights_and_keeps_its_ties():
    from transformers import BertForMaskedLM

    config = small_bert_config()
    run = dd.setup(precision="fp32", grad_compression="none", seed=0)
    with run.init_empty():
        model = BertForMaskedLM(config)
    model = run.prepare(model)
    embeddings = model.bert.embeddings
    assert model.cls.predictions.decoder.weight is embeddings.word_embeddings.weight
    assert torch.equal(embeddings.position_ids, torch.arange(32).unsqueeze(0)), "buffers stay real under init_empty"
    assert torch.equal(embeddings.LayerNorm.weight, torch.ones(32))
    dense = model.bert.encoder.layer[0].attention.self.query
    assert abs(dense.weight.std().item() - config.initializer_range) < 0.005
    assert torch.equal(dense.bias, torch.zeros(32))


def test_a_user_init_function_replaces_the_modules_own(tmp_path):
    calls = []

    def init(module: nn.Module) -> None:
        calls.append(type(module).__name__)
        for param in module.parameters(recurse=False):
            nn.init.constant_(param, 0.5)

    with dd.init_empty():
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert materialize(model, "cpu", init=init) == "4 tensors allocated from meta (2 modules by init)"
    assert calls == ["Linear", "Linear"] and all(torch.equal(p, torch.full_like(p, 0.5)) for p in model.parameters())


def test_weights_load_into_a_meta_model_and_weights_of_another_model_are_refused(tmp_path):
    source = polarity()
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    with dd.init_empty():
        model = polarity()
    assert "54 tensors loaded from" in materialize(model, "cpu", weights=path)
    for (name, a), b in zip(model.state_dict().items(), source.state_dict().values()):
        assert torch.equal(a, b), name
    with dd.init_empty():
        deeper = polarity(layers=5)
    with pytest.raises(ValueError, match=r"lack 12 of the model's tensors \(first: layers.4.attn.in_proj_bias, .*"
                                         r"pass a state dict of this model"):
        materialize(deeper, "cpu", weights=path)
    with dd.init_empty():
        shallower = polarity(layers=3)
    with pytest.raises(ValueError, match=r"hold 12 tensors the model does not have \(first: layers.3."):
        materialize(shallower, "cpu", weights=path)
    with dd.init_empty():
        wider = PolarityBERT(60, dim=32, heads=4, ff=64, layers=4, dropout=0.0)
    with pytest.raises(ValueError, match=r"weights\['tokens.weight'\] has shape \(50, 32\) but the model's "
                                         r"tokens.weight has \(60, 32\): pass weights saved from this model's"):
        materialize(wider, "cpu", weights=path)
    with pytest.raises(ValueError, match="weights file .*missing.pt not found"):
        materialize(polarity(), "cpu", weights=tmp_path / "missing.pt")
    from safetensors.torch import save_file

    save_file(source.state_dict(), tmp_path / "weights.safetensors")
    with dd.init_empty():
        model = polarity()
    materialize(model, "cpu", weights=tmp_path / "weights.safetensors")
    assert torch.equal(model.layers[3].ff2.weight, source.layers[3].ff2.weight)


# -- two processes (gloo) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp32_launch(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One torchrun for the fp32 cases: the ModuleList transformer, the digits Sequential, the mistakes."""
    folder = tmp_path_factory.mktemp("fsdp_fp32")
    return train(folder, "polarity,digits", "--mistakes", "--metrics-out", str(folder / "m.jsonl")), folder


@pytest.mark.slow
def test_fsdp2_shards_each_layer_of_a_modulelist_transformer_and_matches_ddp(fp32_launch):
    """The layout that failed inside torch ("fully_shard does not support containers ...")."""
    launch, folder = fp32_launch
    result = launch["polarity"]
    assert result["strategy"] == "fsdp" and result["sharded_type"] == "DTensor"
    assert max_relative_difference(result) <= 1e-4, result["losses"]
    records = map(json.loads, (folder / "m.jsonl").read_text().splitlines())
    event = next(r for r in records if r.get("kind") == "prepare")
    assert event["fsdp"]["by_class"] == {"EncoderLayer": 4} and event["fsdp"]["units"] == 5
    assert "FSDP2 units: 4 x EncoderLayer, then the root" in event["strategy_reason"]


@pytest.mark.slow
def test_the_digits_sequential_matches_ddp(fp32_launch):
    result = fp32_launch[0]["digits"]
    assert "3 x Linear" in result["reason"]
    assert max_relative_difference(result) <= 1e-4, result["losses"]


@pytest.mark.slow
def test_the_users_mistakes_under_fsdp_are_answered_in_one_line_with_the_fix(fp32_launch):
    errors = fp32_launch[0]["mistakes"]
    assert all(message is not None and "\n" not in message for message in errors.values()), errors
    assert errors["half_a_layer"].startswith("ValueError: layers.1 holds trainable parameters of dtypes float16 and")
    assert "build it from model.parameters() of the model given to run.prepare" in errors["foreign_optimizer"]
    assert "pass the module whose forward() runs it" in errors["module_list"]
    assert errors["wrapped"].endswith("wrapped in DistributedDataParallel: pass the bare model; prepare wraps it")
    assert errors["sharded_layer"] == ("ValueError: layers.0 is sharded already (fully_shard was called on it): "
                                       "pass the model as built; run.prepare shards it")
    assert "pass init=fn to run.prepare" in errors["uninitialised"]


@pytest.mark.slow
def test_a_model_built_on_meta_is_sharded_then_initialised_like_an_unsharded_one_with_checkpointing_and_offload(
        tmp_path):
    result = train(tmp_path, "polarity", "--meta", "--ac", "--offload")["polarity"]
    assert result["on_meta"] and max_relative_difference(result) <= 1e-4, result["losses"]
    assert result["forwards_per_step"] == {f"layers.{i}": 2.0 for i in range(4)}, "each block recomputed in backward"
    assert "activation checkpointing per block; CPU offload" in result["reason"]
    assert "from meta unit by unit" in result["reason"]


@pytest.mark.slow
def test_bf16_gathers_the_blocks_in_bf16_and_the_norms_in_fp32_and_reduces_in_fp32(tmp_path):
    result = train(tmp_path, "polarity", "--precision", "bf16", "--steps", "3")["polarity"]
    assert result["dtypes_in_forward"] == {"Linear": ["torch.bfloat16"], "LayerNorm": ["torch.float32"]}
    assert result["sharded_dtype"] == "torch.float32", "the sharded parameters the optimizer updates stay fp32"
    assert "mixed precision: bf16 parameters, fp32 gradient reduction" in result["reason"]
    assert max_relative_difference(result) <= 0.02, result["losses"]  # bf16 rounding against autocast DDP


@pytest.mark.slow
def test_hugging_face_bert_from_a_config_loaded_unit_by_unit_matches_ddp(tmp_path):
    result = train(tmp_path, "bert", "--meta", "--weights", str(tmp_path / "bert.pt"))["bert"]
    assert result["forwards_per_step"] == {f"bert.encoder.layer.{i}": 1.0 for i in range(3)}
    assert "3 x BertLayer" in result["reason"] and "tensors loaded from" in result["reason"]
    assert max_relative_difference(result) <= 1e-4, result["losses"]


@pytest.mark.slow
def test_auto_shards_a_model_over_the_memory_budget_without_any_rank_holding_all_of_it(tmp_path):
    out = tmp_path / "budget.json"
    # 63 MB of parameters: 252 MB with gradients and AdamW's states, over 200 MB per process
    torchrun("fsdp_budget.py", str(out), env={"DEEPDIVE_MEMORY_BUDGET_GB": "0.2", "MALLOC_MMAP_THRESHOLD_": "65536"})
    result = json.loads(out.read_text())
    replica = result["replica"]
    assert result["on_meta"] and replica["total"] > 0.2e9
    assert result["strategy"] == "fsdp" and "over the budget of 0.20 GB" in result["reason"]
    for rank in result["ranks"]:
        assert rank["param_peak"] < 0.75 * replica["parameters"], rank  # a shard plus a gathered unit or two
        assert rank["rss_growth"] < 0.2e9, rank  # within the budget, everything included
        assert all(torch.isfinite(torch.tensor(rank["losses"])))
