"""Binary encoding of named numpy arrays for the actor <-> learner stream.

The messages are small dictionaries of arrays (observations, rewards, actions).
A self-describing raw format avoids a protobuf code-generation step and copies
each array once. Layout (little endian)::

    b"SRL1" | u16 count | count * (u16 name_len | name | u8 dtype_len | dtype
            | u8 ndim | ndim * u32 dims | u64 nbytes | raw bytes)

Decoding checks every length against the buffer, so a truncated or malicious
message raises :class:`WireError` instead of reading garbage.
"""

from __future__ import annotations

import math
import struct

import numpy as np

MAGIC = b"SRL1"
_ALLOWED_DTYPES = frozenset(
    ["bool", "uint8", "int8", "int16", "uint16", "int32", "int64", "float16", "float32", "float64"]
)
_MAX_NDIM = 8


class WireError(ValueError):
    """A message could not be decoded; the text says what was wrong."""


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    """Serializes a dict of arrays into one bytes object."""
    parts = [MAGIC, struct.pack("<H", len(arrays))]
    for name, value in arrays.items():
        array = np.asarray(value)
        array = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")  # keeps 0-d, little endian
        dtype = array.dtype.name
        if dtype not in _ALLOWED_DTYPES:
            raise WireError(f"field {name!r}: dtype {dtype} cannot be sent")
        name_bytes = name.encode()
        dtype_bytes = dtype.encode()
        parts.append(struct.pack("<H", len(name_bytes)))
        parts.append(name_bytes)
        parts.append(struct.pack("<B", len(dtype_bytes)))
        parts.append(dtype_bytes)
        parts.append(struct.pack("<B", array.ndim))
        parts.append(struct.pack(f"<{array.ndim}I", *array.shape))
        parts.append(struct.pack("<Q", array.nbytes))
        parts.append(array.tobytes())
    return b"".join(parts)


class _Reader:
    def __init__(self, data: bytes):
        self.view = memoryview(data)
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.view):
            raise WireError(
                f"message truncated while reading {what}: needs {n} bytes at offset "
                f"{self.pos}, message has {len(self.view)}"
            )
        chunk = self.view[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def decode(data: bytes) -> dict[str, np.ndarray]:
    """Parses bytes made by :func:`encode`. Arrays are read-only views of ``data``."""
    reader = _Reader(data)
    if bytes(reader.take(4, "magic")) != MAGIC:
        raise WireError("not a seed_rl message (bad magic); is the actor the same seed_rl version?")
    (count,) = reader.unpack("<H", "field count")
    arrays: dict[str, np.ndarray] = {}
    for _ in range(count):
        (name_len,) = reader.unpack("<H", "name length")
        try:
            name = bytes(reader.take(name_len, "name")).decode()
            (dtype_len,) = reader.unpack("<B", "dtype length")
            dtype = bytes(reader.take(dtype_len, f"dtype of {name!r}")).decode()
        except UnicodeDecodeError as e:
            raise WireError(f"field name or dtype is not UTF-8: {e}") from None
        if dtype not in _ALLOWED_DTYPES:
            raise WireError(f"field {name!r}: unsupported dtype {dtype!r}")
        (ndim,) = reader.unpack("<B", f"ndim of {name!r}")
        if ndim > _MAX_NDIM:
            raise WireError(f"field {name!r}: {ndim} dimensions, at most {_MAX_NDIM} allowed")
        shape = reader.unpack(f"<{ndim}I", f"shape of {name!r}")
        (nbytes,) = reader.unpack("<Q", f"size of {name!r}")
        expected = math.prod(shape) * np.dtype(dtype).itemsize  # Python ints: no int64 overflow
        if nbytes != expected:
            raise WireError(
                f"field {name!r}: {nbytes} bytes do not match shape {shape} of {dtype} ({expected} bytes)"
            )
        raw = reader.take(nbytes, f"data of {name!r}")
        arrays[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if reader.pos != len(reader.view):
        raise WireError(f"{len(reader.view) - reader.pos} unexpected trailing bytes after the last field")
    return arrays
