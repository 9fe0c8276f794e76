"""FSDP2 through ``run.prepare`` against torch's own DDP on the same model, data and optimizer (torchrun, gloo).

Usage: fsdp_train.py MODELS OUT.json [--steps N] [--precision fp32|bf16] [--meta [--weights PATH]] [--ac]
                    [--offload] [--mistakes] [--metrics-out PATH]

MODELS, comma-separated, each prepared by the same run in turn: ``polarity`` (the example's
``nn.ModuleList`` transformer, ``server/examples/polarity_bert.py``), ``bert`` (a Hugging Face
``BertForMaskedLM`` from a small config: tied embeddings), ``digits`` (the digits example's
``nn.Sequential``). Both arms start from the same weights and see the same batches (each rank its
own); rank 0 writes OUT.json, per model: both arms' losses per step and rank, the strategy and its
reason, how often each engine block ran forward, and the parameter dtypes seen inside the forward
pass; with ``--mistakes``, also what each mistake of ``fsdp_mistakes.py`` raised.

``--meta``: the engine's model is built under ``run.init_empty()`` and materialised by ``prepare``;
the DDP arm's model is built the same way and materialised in one piece
(:func:`deepdive.engine.materialize.materialize`) with the same seed, so equal losses mean sharded
and unsharded initialisation agree. With ``--weights PATH`` the DDP arm is built normally, rank 0
saves its state dict there, and ``prepare(..., weights=PATH)`` loads it into the engine's model unit
by unit.
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import deepdive.engine as dd
from deepdive.engine.materialize import materialize

Batches = Callable[[torch.Generator], tuple[Any, torch.Tensor]]  # seeded generator -> (inputs, targets)


def polarity() -> tuple[Callable[[], nn.Module], Batches, type[nn.Module]]:
    from deepdive.examples.polarity_bert import EncoderLayer, PolarityBERT

    def batch(gen: torch.Generator) -> tuple[Any, torch.Tensor]:
        return torch.randint(2, 50, (4, 12), generator=gen), torch.randint(0, 2, (4,), generator=gen)

    return (lambda: PolarityBERT(50, dim=32, heads=4, ff=64, layers=4, dropout=0.0)), batch, EncoderLayer


def bert() -> tuple[Callable[[], nn.Module], Batches, type[nn.Module]]:
    from transformers import BertConfig, BertForMaskedLM
    from transformers.models.bert.modeling_bert import BertLayer

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)

    def batch(gen: torch.Generator) -> tuple[Any, torch.Tensor]:
        return torch.randint(1, 100, (4, 10), generator=gen), torch.randint(0, 100, (4, 10), generator=gen)

    return (lambda: BertForMaskedLM(config)), batch, BertLayer


def digits() -> tuple[Callable[[], nn.Module], Batches, type[nn.Module]]:
    from deepdive.examples.digits import build_model

    def batch(gen: torch.Generator) -> tuple[Any, torch.Tensor]:
        return torch.randn(8, 64, generator=gen), torch.randint(0, 10, (8,), generator=gen)

    return (lambda: build_model(32)), batch, nn.Linear


def loss_of(model: nn.Module, x: Any, y: torch.Tensor) -> torch.Tensor:
    out = model(x)
    logits = out.logits if hasattr(out, "logits") else out
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))


def count_forwards(model: nn.Module, block: type[nn.Module]) -> dict[str, int]:
    """How often each block instance of the engine's model ran forward (recomputation included)."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, block):
            counts[name] = 0
            forward = module.forward

            def counted(*args: Any, _name: str = name, _forward: Any = forward, **kwargs: Any) -> Any:
                counts[_name] += 1
                return _forward(*args, **kwargs)

            module.forward = counted  # type: ignore[method-assign]
    return counts


def dtypes_in_forward(model: nn.Module) -> dict[str, list[str]]:
    """The dtypes of the Linear and LayerNorm weights while they compute."""
    seen: dict[str, set[str]] = {"Linear": set(), "LayerNorm": set()}
    for module in model.modules():
        for kind in (nn.Linear, nn.LayerNorm):
            if isinstance(module, kind):
                module.register_forward_pre_hook(
                    lambda mod, _args, _k=kind.__name__: seen[_k].add(str(mod.weight.dtype)))
    return seen  # type: ignore[return-value]


def compare(run: dd.Run, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``name`` through the engine and through torch's DDP side by side; what rank 0 reports of it."""
    build, make_batch, block = {"polarity": polarity, "bert": bert, "digits": digits}[name]()
    if args.meta:
        with run.init_empty():
            model = build()
        if args.weights:  # the DDP arm is built normally; its state dict is the file the engine loads unit by unit
            reference = build()
            if run.is_main:
                torch.save(reference.state_dict(), args.weights)
            dist.barrier()
        else:
            with dd.init_empty():
                reference = build()
            materialize(reference, run.device, seed=torch.initial_seed())
    else:
        model = build()
        reference = copy.deepcopy(model)
    reference = DistributedDataParallel(reference)
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=1e-3)
    on_meta = all(p.is_meta for p in model.parameters())
    model, opt = run.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-3), weights=args.weights)
    counts = count_forwards(model, block)
    seen = dtypes_in_forward(model)

    engine, ddp = [], []
    for step in range(args.steps):
        x, y = make_batch(torch.Generator().manual_seed(1000 * step + run.rank))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            ref_loss = loss_of(reference, x, y)
        ref_loss.backward()
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
        with run.autocast():
            loss = loss_of(model, x, y)
        run.backward(loss)
        run.step(opt)
        engine.append(loss.item())
        ddp.append(ref_loss.item())

    gathered: list[Any] = [None] * run.world_size
    dist.all_gather_object(gathered, {"engine": engine, "ddp": ddp})
    some = next(p for p in model.parameters())
    return {"strategy": run.strategy, "reason": run.strategy_reason, "losses": gathered, "on_meta": on_meta,
            "forwards_per_step": {k: v / args.steps for k, v in counts.items()},
            "dtypes_in_forward": {k: sorted(v) for k, v in seen.items() if v},
            "sharded_dtype": str(some.dtype), "sharded_type": type(some).__name__}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", help="comma-separated: polarity, bert, digits")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--meta", action="store_true")
    parser.add_argument("--ac", action="store_true")
    parser.add_argument("--offload", action="store_true")
    parser.add_argument("--weights", default=None, help="with --meta: load the DDP arm's initial state from this file")
    parser.add_argument("--mistakes", action="store_true", help="then the user's mistakes (fsdp_mistakes.py)")
    parser.add_argument("--metrics-out", default=None)
    args = parser.parse_args()

    run = dd.setup(precision=args.precision, grad_compression="none", strategy="fsdp", seed=0,
                   metrics_out=args.metrics_out,
                   fsdp={"activation_checkpointing": args.ac, "cpu_offload": args.offload})
    result: dict[str, Any] = {name: compare(run, name, args) for name in args.models.split(",")}
    if args.mistakes:
        from fsdp_mistakes import mistakes

        result["mistakes"] = mistakes(run)
    if run.is_main:
        with open(args.out, "w") as f:
            json.dump(result, f)
    run.finish()


if __name__ == "__main__":
    main()
