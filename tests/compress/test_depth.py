"""Depth reduction: a shallower model from the teacher's own blocks, checked to run, measured faster."""

import pytest
import torch
from torch import nn

from deepdive.engine.compress import CompressError
from deepdive.engine.compress.depth import DepthError, evenly_spaced, find_blocks, reduce_depth
from deepdive.engine.compress.measure import count_params, latency


class Encoder(nn.Module):
    """A small BERT-style encoder: embeddings, nn.TransformerEncoderLayer blocks in a ModuleList, a head."""

    def __init__(self, layers: int = 6, dim: int = 64, vocab: int = 100):
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True)
                                    for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.Linear(dim, 2))  # 2 Linears: a smaller repeated group
        self.num_layers = layers

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(1))


class Stages(nn.Module):
    """Repeated residual MLP blocks in an nn.Sequential (the blocks keep the width)."""

    class Block(nn.Module):
        def __init__(self, dim: int):
            super().__init__()
            self.fc = nn.Linear(dim, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.relu(self.fc(x))

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*(self.Block(32) for _ in range(4)))
        self.out = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def _ids(batch: int = 1, length: int = 12) -> tuple[torch.Tensor]:
    return (torch.randint(0, 100, (batch, length), generator=torch.Generator().manual_seed(0)),)


def test_keeps_evenly_spaced_blocks_of_the_teacher():
    torch.manual_seed(0)
    teacher = Encoder(6).eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    result = reduce_depth(teacher, 3, _ids())
    student = result.model
    assert (result.path, result.block, result.layers_before, result.layers_after) == ("blocks", "TransformerEncoderLayer", 6, 3)
    assert result.kept == [0, 2, 5]  # first and last kept, the rest spread evenly
    assert len(student.blocks) == 3 and student.num_layers == 3  # the stored count follows
    # the student's blocks are copies of the teacher's kept blocks (DistilBERT-style initialisation)
    for new, old in zip(student.blocks, result.kept):
        for (name, p), q in zip(new.named_parameters(), teacher.blocks[old].parameters()):
            assert torch.equal(p, q), name
            assert p.data_ptr() != q.data_ptr()
    # the teacher is unchanged
    assert len(teacher.blocks) == 6
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    # fewer parameters, the same output shape
    assert result.params_after < 0.6 * result.params_before
    assert result.params_after == count_params(student)
    with torch.no_grad():
        assert student(*_ids(4)).shape == teacher(*_ids(4)).shape == (4, 2)


def test_shallow_model_is_measured_faster():
    torch.manual_seed(0)
    teacher = Encoder(6, dim=128).eval()
    student = reduce_depth(teacher, 1, _ids()).model
    x = _ids(1, 16)
    # compared within one run, on one thread (a busy machine makes multi-threaded waits erratic), the
    # best p50 of three alternating rounds each; six layers against one leaves a wide margin
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rounds = [(latency(teacher, x, budget_s=0.2)["p50_ms"], latency(student, x, budget_s=0.2)["p50_ms"])
                  for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    t_teacher, t_student = min(r[0] for r in rounds), min(r[1] for r in rounds)
    assert t_student < 0.75 * t_teacher, rounds


def test_sequential_blocks_and_explicit_keep():
    model = Stages().eval()
    path, container = find_blocks(model)
    assert path == "body" and len(container) == 4
    result = reduce_depth(model, 2, torch.randn(5, 32), keep=[1, 3])
    assert result.kept == [1, 3] and isinstance(result.model.body, nn.Sequential) and len(result.model.body) == 2
    assert torch.equal(result.model.body[0].fc.weight, model.body[1].fc.weight)
    assert result.model(torch.randn(5, 32)).shape == (5, 3)


def test_evenly_spaced():
    assert evenly_spaced(4, 2) == [0, 3]
    assert evenly_spaced(4, 1) == [0]
    assert evenly_spaced(12, 4) == [0, 4, 7, 11]
    assert evenly_spaced(4, 4) == [0, 1, 2, 3]


def test_one_line_errors():
    flat = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(DepthError, match=r"found no repeated blocks in Sequential: .* drop --layers$") as info:
        reduce_depth(flat, 1, torch.randn(2, 8))
    assert isinstance(info.value, CompressError) and "\n" not in str(info.value)

    model = Encoder(4)
    for bad in (0, 4, 7):
        with pytest.raises(DepthError, match=rf"--layers {bad} is out of range: blocks \(4 TransformerEncoderLayer\) "
                                             r"can keep 1 to 3 of its 4 blocks"):
            reduce_depth(model, bad, _ids())
    with pytest.raises(DepthError, match="keep must be 2 distinct indices in 0..3"):
        reduce_depth(model, 2, _ids(), keep=[0, 9])


def test_blocks_that_change_the_shape_cannot_be_dropped():
    class Widening(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.ModuleList([nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 4)])

        def forward(self, x):
            for layer in self.body:
                x = layer(x)
            return x

    with pytest.raises(DepthError, match=r"the model with 2 of the 3 Linear in body does not run \(RuntimeError: .*"
                                         r"drop --layers$"):
        reduce_depth(Widening(), 2, torch.randn(2, 8), keep=[1, 2])
    with pytest.raises(DepthError, match=r"gives outputs of shape \(2, 16\), not \(2, 4\)"):
        reduce_depth(Widening(), 1, torch.randn(2, 8))

    class Reshaping(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])

        def forward(self, x):
            return torch.stack([layer(x) for layer in self.body], 1)  # one output row per block

    with pytest.raises(DepthError, match=r"gives outputs of shape \(2, 1, 8\), not \(2, 3, 8\)"):
        reduce_depth(Reshaping(), 1, torch.randn(2, 8))
