"""The C extension behind the store's float chunks: rANS close to the entropy, the AVX2 and scalar
loops agree byte for byte, damaged payloads are refused, and chunks stay readable across coders."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from deepdive.engine.ckpt import codec

# Not importorskip: `make setup` compiles the extension (the machine has gcc), and a build that fell
# back to zstd silently must fail here rather than skip.
from deepdive.engine.ckpt import _rans


def entropy_bytes(plane: np.ndarray) -> float:
    counts = np.bincount(plane, minlength=256).astype(np.float64)
    p = counts[counts > 0] / plane.size
    return float(-(p * np.log2(p)).sum() * plane.size / 8)


def exponent_plane(n: int, seed: int = 0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    top = (torch.randn(n, generator=g) * 0.02).bfloat16().view(torch.int16).numpy().view(np.uint16)
    return (top >> 7).astype(np.uint8)


def planes() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = [exponent_plane(n) for n in (1, 15, 16, 17, 33, 1000, 65_537, 1 << 20)]
    out += [
        rng.integers(0, 256, 100_000, dtype=np.uint8),              # every symbol, close to uniform
        np.full(5000, 42, np.uint8),                                # one symbol
        (rng.random(200_003) < 1e-4).astype(np.uint8) * 255,        # two symbols, one of them rare
        rng.geometric(0.2, 300_001).clip(0, 255).astype(np.uint8),  # a long tail
        np.arange(256, dtype=np.uint8).repeat(3),                   # all symbols once each, in order
    ]
    return out


def test_the_extension_is_built_and_used():
    # `make setup` compiles it; a silent fall back to zstd would cost ratio and speed without failing
    # anything else, so this checks the install really has it.
    assert codec._rans is _rans
    w = (torch.randn(1 << 18) * 0.02).view(torch.uint8).numpy()
    header = codec.encode_parts(w, 4, True)[0]
    methods = [header[codec._HEAD.size + i * codec._PLANE.size] for i in range(3)]
    assert methods[-1] == codec.RANS


@pytest.mark.parametrize("plane", planes(), ids=lambda p: f"n{p.size}-k{len(np.unique(p))}")
def test_round_trip_and_both_loops_agree(plane: np.ndarray):
    payload = _rans.encode(plane)
    assert _rans.encode(plane, False) == payload          # the scalar loop writes the same words
    for simd in (True, False):
        out = np.empty_like(plane)
        _rans.decode(payload, out, simd)
        assert np.array_equal(out, plane)


def test_close_to_the_entropy_where_zstd_is_not():
    plane = exponent_plane(1 << 21)
    bound = entropy_bytes(plane)
    assert len(_rans.encode(plane)) < 1.003 * bound                      # measured: 0.11 % above
    assert len(codec._compressor("float", 1).compress(plane)) > 1.015 * bound   # zstd's Huffman: 2.4 % above


def test_chunks_beat_the_zstd_coder_and_zipnn():
    w = torch.randn(1 << 20) * 0.02
    fp32 = w.view(torch.uint8).numpy()
    bf16 = w.bfloat16().view(torch.int16).numpy().view(np.uint8)
    ratio = {(name, rans): raw.size / len(codec.encode(raw, size, True, use_rans=rans))
             for name, raw, size in (("fp32", fp32, 4), ("bf16", bf16, 2)) for rans in (True, False)}
    assert ratio["fp32", True] > 1.2045 > ratio["fp32", False]       # ZipNN 0.5.4: 1.2028
    assert ratio["bf16", True] > 1.514 > ratio["bf16", False]        # ZipNN 0.5.4: 1.5095


@pytest.mark.parametrize("size", [2, 4, 8])
def test_float_split_and_join_invert_each_other(size: int):
    dtype = {2: torch.bfloat16, 4: torch.float32, 8: torch.float64}[size]
    t = torch.cat([torch.randn(10_001) * 0.02, torch.tensor([float("nan"), float("inf"), -0.0, 0.0])]).to(dtype)
    raw = t.view(torch.uint8).numpy()
    low, signed, exponent, payload = _rans.encode_float(raw, size)
    assert payload is not None and len(low) == t.numel() * (size - 2) and len(signed) == t.numel()
    plain = np.empty(t.numel(), np.uint8)
    _rans.decode(payload, plain)
    assert plain.tobytes() == exponent
    out = np.empty_like(raw)
    _rans.join_float(low, signed, plain, out, size)
    assert np.array_equal(out, raw)
    # the same planes as the pure-numpy split of codec.py
    reference = codec.split_planes(raw, size, True)
    assert np.array_equal(reference[-1], plain) and np.array_equal(reference[-2], np.frombuffer(signed, np.uint8))


def test_random_exponents_are_stored_not_coded():
    raw = np.random.default_rng(3).integers(0, 256, 1 << 18, dtype=np.uint8)
    *_, payload = _rans.encode_float(raw, 2)
    assert payload is None
    header = codec.encode_parts(raw, 2, True)[0]
    assert header[codec._HEAD.size + codec._PLANE.size] == codec.RAW


def test_structured_float_buffers_still_go_to_zstd():
    # a causal attention mask (0 above, -inf below the diagonal): order-0 rANS sees two symbols at
    # about one bit each; zstd sees the repeats
    mask = torch.full((1024, 1024), float("-inf")).triu(1)
    raw = mask.view(torch.uint8).numpy().reshape(-1)
    data = codec.encode(raw, 4, True)
    assert raw.size / len(data) > 200
    assert np.array_equal(codec.decode(data), raw)


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="empty"):
        _rans.encode(b"")
    with pytest.raises(ValueError, match="2-, 4- or 8-byte"):
        _rans.encode_float(b"\x00" * 6, 4)
    with pytest.raises(ValueError, match="plane lengths"):
        _rans.join_float(b"", b"\x00", b"\x00\x00", bytearray(2), 2)


def test_damaged_payloads_are_refused():
    plane = exponent_plane(100_000, seed=1)
    payload = _rans.encode(plane)
    out = np.empty_like(plane)
    for bad in (payload[:-2], payload[:-600], payload + b"\x00\x00", payload[:40], b"\x07" + payload[1:],
                payload[:1] + b"\x0b" + payload[2:]):
        for simd in (True, False):
            with pytest.raises(_rans.RansError):
                _rans.decode(bad, out, simd)
    rng = np.random.default_rng(0)
    silent = 0
    for pos in rng.integers(0, len(payload), 300):
        damaged = bytearray(payload)
        damaged[pos] ^= 1 << int(rng.integers(0, 8))
        for simd in (True, False):
            try:
                _rans.decode(bytes(damaged), out, simd)
            except _rans.RansError:
                continue
            silent += np.array_equal(out, plane)
    assert silent == 0     # a flipped bit never decodes to the original (the store's hash names the tensor)


def test_threads_code_in_parallel_and_agree():
    chunks = [exponent_plane(1 << 18, seed=s) for s in range(8)]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(_rans.encode, chunks))
    assert parallel == [_rans.encode(c) for c in chunks]


def test_without_the_extension_chunks_use_zstd_and_rans_chunks_name_the_fix(monkeypatch):
    w = (torch.randn(1 << 18) * 0.02).view(torch.uint8).numpy()
    with_rans = codec.encode(w, 4, True)
    monkeypatch.setattr(codec, "_rans", None)
    plain = codec.encode(w, 4, True)
    assert np.array_equal(codec.decode(plain), w)
    with pytest.raises(codec.CodecError, match="C extension"):
        codec.decode(with_rans)
    monkeypatch.undo()
    assert np.array_equal(codec.decode(plain), w)         # older chunks stay readable with it
