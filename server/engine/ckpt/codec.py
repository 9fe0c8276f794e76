"""Chunk codec: content hash of the raw bytes, byte grouping, rANS and zstd.

A chunk is up to a few MiB of one tensor's raw bytes. It is named by the hash of those raw bytes
(xxh3-128: about 8 GB/s on one core here, against 4.7 GB/s for blake3; content addressing only
needs protection against accidental collisions, and the store is a local directory the user owns).

Encoding splits each element's bytes into planes (byte grouping) so that the bytes carrying a
float's exponent sit together: for floats, the 8 exponent bits form one plane (the sign moves down
beside the top 7 mantissa bits), and the low mantissa bytes, which are close to random, form
another. Other dtypes are split into ``itemsize`` byte planes (int64 token ids: the high planes are
zeros). Each plane is then coded on its own, or stored raw when coding does not shrink it (a 64 KiB
sample decides for zstd, so random planes cost a copy, not a compression).

The exponent plane carries about 2.55 bits per byte on normal(0, 0.02) weights. It goes to the
order-0 rANS coder of the C extension ``_rans`` (frequencies on 2^12 slots: 0.1 % above the
plane's entropy; sixteen interleaved states, coded with AVX2 where the CPU has it), which also does
the split in one pass. zstd's Huffman literal coder, the store's first coder for that plane, lands
2.3 % above the entropy (its "fast" strategy with a 64-entry hash table, which finds almost no
matches; zstd levels 1-3 do worse). Whole chunk (4 MiB, normal(0, 0.02)): fp32 1.205x and bf16
1.517x with rANS, 1.203x and 1.508x with zstd. Without the extension (no C compiler at install)
the exponent plane goes to zstd and chunks stay readable both ways; a chunk that needs rANS then
names the fix. Other planes use zstd: they are close to random for float weights, but integer
tensors, masks and zero-filled buffers compress well with it.

File layout (little endian)::

    b"DDCK" u8 version u8 planes u8 transform u8 itemsize u64 raw_len   then per plane: u8 method u64 length
    then the planes' payloads in order.   method 0 = raw, 1 = zstd, 2 = rANS (the payload _rans.c documents)
    transform 0: ``itemsize`` byte planes, low byte first
    transform 1 (floats of 2, 4 or 8 bytes): the low ``itemsize - 2`` bytes of each element as one
      plane (mantissa: close to random), then the sign with the top 7 mantissa bits, then the
      8 exponent bits (for fp16: 5 exponent and 3 mantissa bits)
"""

from __future__ import annotations

import struct
import threading
from typing import Optional, Union

import numpy as np
import xxhash
import zstandard as zstd

try:
    from . import _rans
except ImportError:        # built without a C compiler: zstd codes every plane
    _rans = None

HASH_NAME = "xxh3-128"
MAGIC = b"DDCK"
VERSION = 1
_HEAD = struct.Struct("<4sBBBBQ")
_PLANE = struct.Struct("<BQ")
RAW, ZSTD, RANS = 0, 1, 2
PLAIN, FLOAT_EXP = 0, 1

_SAMPLE = 64 * 1024      # bytes of a plane compressed first to decide whether the plane is worth it
_MIN_GAIN = 0.98         # keep zstd's output only when it is at most this fraction of the input
_EXPONENT_SAMPLE = 16 * 1024   # bytes of an exponent plane zstd tries against the rANS payload
_SMALL = 64 * 1024       # float chunks of at most this many elements try both coders on the exponent plane
_LARGE = 1 << 31         # and the C coder takes at most this many (its histograms count in 32 bits)

# Planes of floats: zstd's fast strategy with a tiny hash table: almost pure Huffman (see above).
_FLOAT_PARAMS = dict(write_content_size=1, strategy=zstd.STRATEGY_FAST, min_match=7, hash_log=6, window_log=20, search_log=1)

Buffer = Union[bytes, bytearray, memoryview, np.ndarray]


class CodecError(ValueError):
    """A chunk file that cannot be decoded (truncated, wrong magic, bad zstd frame)."""


def chunk_id(raw: Buffer) -> str:
    """The content address of ``raw``: the hex xxh3-128 of the bytes."""
    return xxhash.xxh3_128_hexdigest(raw)


_local = threading.local()


def _compressor(kind: str, level: int) -> zstd.ZstdCompressor:
    """One compressor per thread and setting (python-zstandard objects are not thread-safe)."""
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    key = (kind, level)
    if key not in cache:
        if kind == "float":
            params = zstd.ZstdCompressionParameters(**_FLOAT_PARAMS)
            cache[key] = zstd.ZstdCompressor(compression_params=params)
        else:
            cache[key] = zstd.ZstdCompressor(level=level, write_content_size=True)
    return cache[key]


def _decompressor() -> zstd.ZstdDecompressor:
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstd.ZstdDecompressor()
    return dec


def split_planes(raw: np.ndarray, itemsize: int, is_float: bool) -> list[np.ndarray]:
    """The planes of ``raw`` (uint8, a whole number of ``itemsize`` elements); see the module doc."""
    if itemsize == 1:
        return [raw]
    if is_float:
        words = raw.view(np.uint16).reshape(-1, itemsize // 2)
        planes = [] if itemsize == 2 else [np.ascontiguousarray(words[:, :-1]).reshape(-1).view(np.uint8)]
        top = words[:, -1] if itemsize == 2 else np.ascontiguousarray(words[:, -1])   # sign, exponent, mantissa
        exponent = (top >> 7).astype(np.uint8)          # bits 7-14 (the sign falls off the byte)
        signed = top & 0x807F
        signed |= signed >> 8                           # the sign to bit 7, beside the top 7 mantissa bits
        planes += [signed.astype(np.uint8), exponent]
        return planes
    grid = raw.reshape(-1, itemsize)
    return [np.ascontiguousarray(grid[:, i]) for i in range(itemsize)]   # strided copies: ~1.1 GB/s


def join_planes(planes: list[np.ndarray], itemsize: int, is_float: bool, out: np.ndarray) -> None:
    """The inverse of :func:`split_planes`, written into ``out`` (uint8, contiguous)."""
    if itemsize == 1:
        out[:] = planes[0]
        return
    if is_float:
        signed, exponent = planes[-2], planes[-1]
        top = exponent.astype(np.uint16) << 7
        top |= (signed & 0x80).astype(np.uint16) << 8
        top |= signed & 0x7F
        words = out.view(np.uint16).reshape(-1, itemsize // 2)
        if itemsize == 2:
            words[:, 0] = top
        else:
            words[:, :-1] = planes[0].view(np.uint16).reshape(-1, itemsize // 2 - 1)
            words[:, -1] = top
        return
    grid = out.reshape(-1, itemsize)
    for i in range(itemsize):
        grid[:, i] = planes[i]


def encode_parts(raw: Buffer, itemsize: int = 1, is_float: bool = False, level: int = 1,
                 use_rans: bool = True) -> list[Buffer]:
    """Encode one chunk of raw bytes (a whole number of elements of ``itemsize`` bytes).

    Returns the file's content as a list of buffers (header, then each plane), ready for
    ``os.writev``; :func:`encode` joins them. ``use_rans=False`` codes the exponent plane with zstd,
    as a build without the C extension does.
    """
    arr = raw.reshape(-1).view(np.uint8) if isinstance(raw, np.ndarray) else np.frombuffer(raw, dtype=np.uint8)
    n = arr.size
    if itemsize < 1 or n % itemsize:
        itemsize, is_float = 1, False
    is_float = is_float and itemsize in (2, 4, 8)
    comp = _compressor("float" if is_float else "level", level)
    rans = use_rans and _rans is not None
    if is_float and rans and _SMALL < n // itemsize <= _LARGE:
        low, signed, exponent, payload = _rans.encode_float(arr, itemsize)
        planes: list[Buffer] = ([low] if itemsize > 2 else []) + [signed]
        coded = [_zstd_or_raw(comp, memoryview(p)) for p in planes]
        coded.append(_rans_or_zstd(comp, memoryview(exponent), payload))
    elif is_float and rans and 0 < n // itemsize <= _SMALL:
        # a small chunk: its rANS table weighs more, and zstd may find repeats: keep the smaller
        *planes, exponent = split_planes(arr, itemsize, is_float)
        coded = [_zstd_or_raw(comp, memoryview(p).cast("B")) for p in planes]
        by_zstd, by_rans = _zstd_or_raw(comp, memoryview(exponent)), _rans.encode(exponent)
        coded.append((RANS, by_rans) if len(by_rans) < len(by_zstd[1]) else by_zstd)
    else:
        coded = [_zstd_or_raw(comp, memoryview(p).cast("B")) for p in split_planes(arr, itemsize, is_float)]
    table = [_HEAD.pack(MAGIC, VERSION, len(coded), FLOAT_EXP if is_float else PLAIN, itemsize, n)]
    table += [_PLANE.pack(method, len(data)) for method, data in coded]
    return [b"".join(table), *(data for _, data in coded)]


def _rans_or_zstd(comp: zstd.ZstdCompressor, plane: memoryview, payload: Optional[bytes]) -> tuple[int, Buffer]:
    """The rANS payload of an exponent plane, unless zstd does better on a 16 KiB sample: order-0
    coding cannot see repeats, and a float buffer with structure (a causal mask of 0 and -inf, a
    table of positions) has them. On weights the sample costs about 1 % of the chunk's time."""
    sample = plane[:_EXPONENT_SAMPLE]
    if payload is not None and len(payload) * len(sample) <= len(comp.compress(sample)) * len(plane):
        return RANS, payload
    return _zstd_or_raw(comp, plane)


def _zstd_or_raw(comp: zstd.ZstdCompressor, plane: memoryview) -> tuple[int, Buffer]:
    """(ZSTD, packed) when zstd shrinks the plane by 2 % or more (a 64 KiB sample tries first), else (RAW, plane)."""
    if len(plane):
        sample = plane[:_SAMPLE]
        if len(comp.compress(sample)) <= _MIN_GAIN * len(sample):
            packed = comp.compress(plane)
            if len(packed) <= _MIN_GAIN * len(plane):
                return ZSTD, packed
    return RAW, plane


def encode(raw: Buffer, itemsize: int = 1, is_float: bool = False, level: int = 1, use_rans: bool = True) -> bytes:
    """:func:`encode_parts` joined into the chunk file's bytes."""
    return b"".join(encode_parts(raw, itemsize, is_float, level, use_rans))


def decode(data: Buffer, out: np.ndarray | None = None) -> np.ndarray:
    """Decode a chunk file's bytes into its raw bytes (into ``out`` when given; uint8, right size)."""
    view = memoryview(data).cast("B")
    if len(view) < _HEAD.size:
        raise CodecError("truncated chunk header")
    magic, version, nplanes, transform, itemsize, n = _HEAD.unpack_from(view, 0)
    if magic != MAGIC or version != VERSION or transform not in (PLAIN, FLOAT_EXP) or itemsize < 1 or n % itemsize:
        raise CodecError("not a chunk file (bad magic, version, transform or element size)")
    count = n // itemsize
    if transform == FLOAT_EXP:
        if itemsize not in (2, 4, 8) or nplanes != (2 if itemsize == 2 else 3):
            raise CodecError("bad plane count for a float chunk")
        lengths = ([] if itemsize == 2 else [count * (itemsize - 2)]) + [count, count]
    else:
        if nplanes != itemsize:
            raise CodecError("bad plane count")
        lengths = [count] * itemsize
    pos = _HEAD.size + nplanes * _PLANE.size
    if len(view) < pos:
        raise CodecError("truncated plane table")
    planes: list[np.ndarray] = []
    dec = _decompressor()
    for i, plane_len in enumerate(lengths):
        method, length = _PLANE.unpack_from(view, _HEAD.size + i * _PLANE.size)
        payload = view[pos:pos + length]
        if len(payload) != length:
            raise CodecError("truncated plane payload")
        pos += length
        if method == RAW:
            if length != plane_len:
                raise CodecError("raw plane of the wrong length")
            planes.append(np.frombuffer(payload, dtype=np.uint8))
        elif method == ZSTD:
            try:
                plain = dec.decompress(payload, max_output_size=plane_len)
            except zstd.ZstdError as exc:
                raise CodecError(f"zstd: {exc}") from None
            if len(plain) != plane_len:
                raise CodecError("zstd plane of the wrong length")
            planes.append(np.frombuffer(plain, dtype=np.uint8))
        elif method == RANS:
            if _rans is None:
                raise CodecError("this chunk's exponent plane is rANS-coded, and deepdive was installed without "
                                 "its C extension: reinstall it where a C compiler is available (pip install -e .)")
            plane = np.empty(plane_len, dtype=np.uint8)
            try:
                _rans.decode(payload, plane)
            except _rans.RansError as exc:
                raise CodecError(f"rANS: {exc}") from None
            planes.append(plane)
        else:
            raise CodecError(f"unknown plane method {method}")
    if pos != len(view):
        raise CodecError("trailing bytes after the last plane")
    if out is None:
        out = np.empty(n, dtype=np.uint8)
    elif out.size != n:
        raise CodecError(f"chunk holds {n} bytes, {out.size} expected")
    if transform == FLOAT_EXP and _rans is not None and count:
        low = planes[0] if itemsize > 2 else b""
        _rans.join_float(low, planes[-2], planes[-1], out, itemsize)
    else:
        join_planes(planes, itemsize, transform == FLOAT_EXP, out)
    return out
