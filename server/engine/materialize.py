"""Models built on the ``meta`` device: allocated, initialised or loaded one piece at a time.

- :func:`init_empty` builds a model's parameters on ``meta`` (no memory); buffers stay real.
- :class:`Filler` allocates the meta tensors of one part of a model (an FSDP unit, or the whole
  model), initialises each module by its own init (``init(module)`` when given, else its Hugging
  Face model's ``_init_weights``, else its ``reset_parameters()``) and loads a full state dict tensor
  by tensor. :func:`deepdive.engine.fsdp.shard` fills each unit just before sharding it;
  :func:`materialize` fills a model in one piece (one process, DDP).

Each module is initialised from a seed made of the run's seed and the module's name, so the same
seed gives the same weights whether the model is sharded or not, at any world size, and the
script's own random stream is left where it was.
"""

from __future__ import annotations

import contextlib
import zlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Union

import attrs
import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from deepdive.engine.distributed import DistInfo

Weights = Union[str, Path, Mapping[str, torch.Tensor]]
InitFn = Callable[[nn.Module], None]


def join_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def managed_modules(unit_path: str, unit: nn.Module, unit_paths: set[str]) -> Iterator[tuple[str, nn.Module]]:
    """The modules whose own tensors belong to this unit, children before parents (nested units left out)."""
    for name, child in unit.named_children():
        child_path = join_path(unit_path, name)
        if child_path not in unit_paths:
            yield from managed_modules(child_path, child, unit_paths)
    yield unit_path, unit


@contextlib.contextmanager
def init_empty() -> Iterator[None]:
    """Build modules with their parameters on the ``meta`` device (no memory); buffers stay real.

    ``run.prepare`` then allocates and initialises the parameters one FSDP unit at a time (or loads
    them from ``weights=``). Buffers are kept real because many are computed at construction and
    not saved (Hugging Face's ``position_ids``). Not thread-safe: it patches
    ``nn.Module.register_parameter`` while the block runs.

    Example::

        with run.init_empty():
            model = Transformer(config)
        model, opt = run.prepare(model, torch.optim.AdamW(model.parameters()))
    """
    original = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: Optional[nn.Parameter]) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def has_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def shared_seed(info: "DistInfo") -> int:
    """Rank 0's ``torch.initial_seed()`` on every rank: the base of the per-module initialisation seeds."""
    seed = torch.initial_seed() % 2**63
    if info.distributed:
        tensor = torch.tensor([seed], dtype=torch.int64, device=info.device if info.backend == "nccl" else "cpu")
        dist.broadcast(tensor, src=0)
        seed = int(tensor.item())
    return seed


@contextlib.contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """The default generator of ``device`` seeded with ``seed``; the caller's RNG state comes back after."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[cuda[0]].manual_seed(seed)
        yield


class _WeightSource:
    """A full state dict read one tensor at a time: a dict, a ``torch.save`` file (memory-mapped), ``.safetensors``."""

    def __init__(self, weights: Weights):
        if isinstance(weights, Mapping):
            self._tensors: Any = weights
            self.keys = set(weights)
            self.where = "the given state dict"
            return
        path = Path(weights)
        if not path.is_file():
            raise ValueError(f"weights file {path} not found: pass the path of torch.save(model.state_dict(), path), "
                             "a .safetensors file, or the state dict itself")
        self.where = str(path)
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            handle = safe_open(str(path), framework="pt", device="cpu")
            self.keys = set(handle.keys())
            self._tensors = _SafetensorsView(handle)
            return
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line answer
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"weights file {path} is not a state dict torch.load can read ({reason}): save it with "
                             "torch.save(model.state_dict(), path)") from None
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"weights file {path} does not hold a state dict (names to tensors): save it with "
                             "torch.save(model.state_dict(), path)")
        self._tensors = state
        self.keys = set(state)

    def get(self, key: str) -> torch.Tensor:
        return self._tensors[key]


@attrs.define
class _SafetensorsView:
    handle: Any

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.handle.get_tensor(key)


def _aliases(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Every state-dict name of a parameter or persistent buffer, with all the names of the same tensor."""
    groups: dict[int, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        tensors = [*module._parameters.items(),
                   *((n, b) for n, b in module._buffers.items() if n not in module._non_persistent_buffers_set)]
        for name, tensor in tensors:
            if tensor is not None:
                groups.setdefault(id(tensor), []).append(join_path(path, name))
    return {name: tuple(names) for names in groups.values() for name in names}


class Filler:
    """Fills a model part by part (an FSDP unit, or all of it): allocates its meta tensors on ``device``,
    initialises the modules that hold them, loads the tensors ``weights`` has."""

    def __init__(self, model: nn.Module, device: torch.device, init: Optional[InitFn], weights: Optional[Weights],
                 seed: int):
        self.device = device
        self.seed = seed
        self.init = init
        self.aliases = _aliases(model)
        self.hf_owner = _hf_owners(model)
        self.source = _WeightSource(weights) if weights is not None else None
        self.methods: Counter[str] = Counter()
        self.loaded = 0
        self.allocated = 0
        if self.source is not None:
            self._check_keys()

    def _check_keys(self) -> None:
        assert self.source is not None
        missing = sorted({names[0] for names in self.aliases.values() if not self.source.keys.intersection(names)})
        unexpected = sorted(self.source.keys - set(self.aliases))
        if missing:
            raise ValueError(f"weights from {self.source.where} lack {len(missing)} of the model's tensors (first: "
                             f"{', '.join(missing[:3])}): pass a state dict of this model (model.state_dict())")
        if unexpected:
            raise ValueError(f"weights from {self.source.where} hold {len(unexpected)} tensors the model does not "
                             f"have (first: {', '.join(unexpected[:3])}): pass a state dict of this model "
                             "(model.state_dict())")

    def _key(self, name: str) -> Optional[str]:
        if self.source is None:
            return None
        return next((n for n in self.aliases.get(name, ()) if n in self.source.keys), None)

    @torch.no_grad()
    def fill(self, unit_path: str, unit: nn.Module, unit_paths: set[str]) -> None:
        """Allocate, initialise and load the tensors this unit manages (nested units are done already)."""
        modules = list(managed_modules(unit_path, unit, unit_paths))
        fresh: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # old meta tensor id -> (old, new): ties kept
        to_init: list[tuple[str, nn.Module]] = []
        for path, module in modules:
            needs_init = False
            for store in (module._parameters, module._buffers):
                for name, tensor in store.items():
                    if tensor is None or not tensor.is_meta:
                        continue
                    if id(tensor) not in fresh:
                        fresh[id(tensor)] = (tensor, self._allocate(tensor))
                    store[name] = fresh[id(tensor)][1]
                    needs_init = needs_init or self._key(join_path(path, name)) is None
            if needs_init:
                to_init.append((path, module))
        self.allocated += len(fresh)
        for path, module in to_init:
            self._initialise(path, module)
        if self.source is not None:
            done: set[int] = set()  # a tied tensor is loaded once
            for path, module in modules:
                self._load(path, module, done)

    def _allocate(self, tensor: torch.Tensor) -> torch.Tensor:
        data = torch.empty_like(tensor, device=self.device)
        return nn.Parameter(data, requires_grad=tensor.requires_grad) if isinstance(tensor, nn.Parameter) else data

    def _initialise(self, path: str, module: nn.Module) -> None:
        with _seeded(self.device, (self.seed + zlib.crc32(path.encode())) % 2**63):
            if self.init is not None:
                self.init(module)
                self.methods["init"] += 1
                return
            owner = self.hf_owner.get(id(module))
            if owner is not None:
                owner._init_weights(module)
                self.methods["_init_weights"] += 1
                return
            for method in ("reset_parameters", "_reset_parameters"):
                fn = getattr(module, method, None)
                if callable(fn):
                    fn()
                    self.methods[method] += 1
                    return
        raise ValueError(f"{path or 'the root module'} ({type(module).__name__}) was built on the meta device and "
                         "nothing initialises it (no reset_parameters()): pass init=fn to run.prepare (called as "
                         "fn(module) for each module built on meta) or weights= with its tensors")

    def _load(self, path: str, module: nn.Module, done: set[int]) -> None:
        assert self.source is not None
        for store in (module._parameters, module._buffers):
            for name, tensor in store.items():
                key = self._key(join_path(path, name)) if tensor is not None and id(tensor) not in done else None
                if key is None:
                    continue
                done.add(id(tensor))
                value = self.source.get(key)
                if tuple(value.shape) != tuple(tensor.shape):
                    raise ValueError(f"weights[{key!r}] has shape {tuple(value.shape)} but the model's "
                                     f"{join_path(path, name)} has {tuple(tensor.shape)}: pass weights saved from this "
                                     "model's configuration")
                tensor.copy_(value)
                self.loaded += 1

    def describe(self) -> str:
        done = [f"{n} modules by {method}" for method, n in self.methods.items()]
        if self.source is not None:
            done.append(f"{self.loaded} tensors loaded from {self.source.where}")
        return f"{self.allocated} tensors allocated from meta" + (f" ({'; '.join(done)})" if done else "")


def _hf_owners(model: nn.Module) -> dict[int, nn.Module]:
    """For each module under a Hugging Face model, the innermost such model: its ``_init_weights`` initialises it."""
    owners: dict[int, nn.Module] = {}

    def visit(module: nn.Module, owner: Optional[nn.Module]) -> None:
        if callable(getattr(module, "_init_weights", None)) and hasattr(module, "config"):
            owner = module
        if owner is not None:
            owners[id(module)] = owner
        for child in module.children():
            visit(child, owner)

    visit(model, None)
    return owners


def materialize(model: nn.Module, device: torch.device | str, *, init: Optional[InitFn] = None,
                weights: Optional[Weights] = None, seed: Optional[int] = None) -> Optional[str]:
    """Allocate on ``device`` what ``model`` holds on ``meta``, initialise it and load ``weights``, in one piece.

    Each module built on meta is initialised by ``init(module)`` when given, else by its Hugging Face
    model's ``_init_weights(module)``, else by its own ``reset_parameters()``, seeded from ``seed``
    (default ``torch.initial_seed()``) and its name: the values :func:`deepdive.engine.fsdp.shard`
    gives a sharded copy.

    Returns:
        str | None: what was done, in words; None when there was nothing on meta and no weights.

    Raises:
        ValueError: a module on meta that nothing initialises, or weights that are not this model's.
    """
    if weights is None and not has_meta(model):
        return None
    filler = Filler(model, torch.device(device), init, weights, torch.initial_seed() if seed is None else seed)
    filler.fill("", model, set())
    return filler.describe()
