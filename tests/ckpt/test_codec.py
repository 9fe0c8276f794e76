"""The chunk codec: lossless for every dtype, shrinks float exponents, rejects damaged chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepdive.engine.ckpt import codec


@pytest.mark.parametrize("tensor", [
    torch.randn(100_003) * 0.02,
    torch.randn(4097).bfloat16(),
    torch.randn(777).half(),
    torch.randn(1001).double(),
    torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-45, -3e38, 0.0]),
    torch.randint(-2**62, 2**62, (999,)),
    torch.rand(999) > 0.5,
    torch.randn(64).to(torch.float8_e4m3fn),
    torch.zeros(0),
    torch.zeros(10_000),
], ids=lambda t: f"{str(t.dtype).removeprefix('torch.')}-{t.numel()}")
def test_round_trip_is_exact(tensor: torch.Tensor):
    raw = tensor.reshape(-1).view(torch.uint8).numpy()
    data = codec.encode(raw, tensor.element_size(), tensor.is_floating_point())
    assert np.array_equal(codec.decode(data), raw)
    out = np.empty(raw.size, dtype=np.uint8)
    codec.decode(data, out)
    assert np.array_equal(out, raw)


def test_float_planes_compress_like_their_entropy():
    w = torch.randn(1 << 20) * 0.02
    fp32 = w.view(torch.uint8).numpy()
    bf16 = w.bfloat16().view(torch.int16).numpy().view(np.uint8)
    assert fp32.size / len(codec.encode(fp32, 4, True)) > 1.19       # zipnn: 1.20
    assert bf16.size / len(codec.encode(bf16, 2, True)) > 1.49       # zipnn: 1.51
    assert len(codec.encode(np.zeros(1 << 20, np.uint8), 4, True)) < 1000


def test_chunk_id_is_the_content():
    a = np.arange(1000, dtype=np.uint8)
    assert codec.chunk_id(a) == codec.chunk_id(a.copy()) != codec.chunk_id(a[::-1].copy())
    assert len(codec.chunk_id(a)) == 32


@pytest.mark.parametrize("damage", ["magic", "truncated", "trailing", "payload"])
def test_damaged_chunks_raise_codec_error(damage: str):
    raw = (torch.randn(10_000) * 0.02).view(torch.uint8).numpy()
    data = bytearray(codec.encode(raw, 4, True))
    if damage == "magic":
        data[0:4] = b"XXXX"
    elif damage == "truncated":
        del data[-10:]
    elif damage == "trailing":
        data += b"\x00"
    else:
        data[-5] ^= 0xFF                    # inside the exponent plane's coded payload
    try:
        decoded = codec.decode(bytes(data))
    except codec.CodecError:
        return
    assert damage == "payload" and not np.array_equal(decoded, raw)   # or decodes to other bytes: the hash catches it
