"""Tests for seed_rl.transport.wire: the binary array format of the actor stream."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from seed_rl.transport import wire
from seed_rl.transport.wire import WireError

ALL_DTYPES = ["bool", "uint8", "int8", "int16", "uint16", "int32", "int64", "float16", "float32", "float64"]


def _array(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape, dtype=np.int64))
    values = np.arange(size) % 7 - 3
    if dtype == "bool":
        return (values > 0).reshape(shape)
    if dtype.startswith("uint"):
        values = values + 3
    return values.astype(dtype).reshape(shape)


def _field(name: bytes, dtype: bytes, shape: tuple[int, ...], nbytes: int, data: bytes) -> bytes:
    """One raw field, written by hand so that its parts can be made inconsistent."""
    return (
        struct.pack("<H", len(name))
        + name
        + struct.pack("<B", len(dtype))
        + dtype
        + struct.pack("<B", len(shape))
        + struct.pack(f"<{len(shape)}I", *shape)
        + struct.pack("<Q", nbytes)
        + data
    )


def _message(*fields: bytes, magic: bytes = wire.MAGIC) -> bytes:
    return magic + struct.pack("<H", len(fields)) + b"".join(fields)


def _assert_same(decoded: np.ndarray, original: np.ndarray) -> None:
    assert decoded.dtype == original.dtype
    assert decoded.shape == original.shape
    np.testing.assert_array_equal(decoded, original)


# ----------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (0, 3), (3, 0), (1,), (5,), (2, 3), (2, 3, 4)])
def test_round_trip_dtypes_and_shapes(dtype, shape):
    original = _array(dtype, shape)
    decoded = wire.decode(wire.encode({"x": original}))
    assert list(decoded) == ["x"]
    _assert_same(decoded["x"], original)


def test_round_trip_zero_dimensional_arrays_keep_their_shape():
    for value in (np.array(3.5), np.float64(-1.25), np.array(7, dtype=np.int32), np.bool_(True)):
        decoded = wire.decode(wire.encode({"scalar": value}))["scalar"]
        assert decoded.shape == (), f"{value!r} came back with shape {decoded.shape}"
        _assert_same(decoded, np.asarray(value))


def test_round_trip_several_fields_keeps_order_and_values():
    fields = {
        "observation": _array("uint8", (2, 4, 8, 8)),
        "reward": np.array([1.5, -0.25], dtype=np.float32),
        "done": np.array([True, False]),
        "episode_return": np.zeros(0, dtype=np.float32),
        "ünïcode name": np.array([[1, 2], [3, 4]], dtype=np.int64),
    }
    decoded = wire.decode(wire.encode(fields))
    assert list(decoded) == list(fields)
    for name, value in fields.items():
        _assert_same(decoded[name], value)


def test_round_trip_empty_message():
    assert wire.decode(wire.encode({})) == {}


def test_round_trip_extreme_values():
    fields = {
        "i64": np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max], dtype=np.int64),
        "u16": np.array([0, 65535], dtype=np.uint16),
        "f32": np.array([np.inf, -np.inf, 1e-45, -0.0], dtype=np.float32),
        "f16": np.array([65504.0, -65504.0], dtype=np.float16),
    }
    decoded = wire.decode(wire.encode(fields))
    for name, value in fields.items():
        _assert_same(decoded[name], value)
    nan = wire.decode(wire.encode({"nan": np.array([np.nan], np.float64)}))["nan"]
    assert np.isnan(nan[0])


def test_round_trip_non_contiguous_arrays():
    base = _array("float32", (6, 8))
    for view in (base.T, base[::2, 1::3], base[:, ::-1]):
        assert not view.flags.c_contiguous
        _assert_same(wire.decode(wire.encode({"v": view}))["v"], view)


def test_round_trip_non_native_byte_order_keeps_values():
    # The name of a big-endian float32 is still "float32"; its values must survive.
    big = (np.arange(5) * 1.5).astype(">f4")
    assert big.dtype.byteorder == ">"
    decoded = wire.decode(wire.encode({"big": big}))["big"]
    np.testing.assert_array_equal(decoded, big)
    assert decoded.dtype == np.float32


def test_round_trip_maximum_dimensions():
    original = _array("int16", (1, 2, 1, 2, 1, 2, 1, 2))
    _assert_same(wire.decode(wire.encode({"x": original}))["x"], original)


def test_round_trip_accepts_python_lists():
    decoded = wire.decode(wire.encode({"x": [1.0, 2.0]}))["x"]
    _assert_same(decoded, np.array([1.0, 2.0]))


def test_decoded_arrays_are_read_only():
    decoded = wire.decode(wire.encode({"x": np.arange(3, dtype=np.int32)}))["x"]
    with pytest.raises(ValueError):
        decoded[0] = 5


def test_hand_written_message_decodes():
    data = np.array([1, 2, 3], dtype="<i4").tobytes()
    decoded = wire.decode(_message(_field(b"abc", b"int32", (3,), 12, data)))
    _assert_same(decoded["abc"], np.array([1, 2, 3], dtype=np.int32))


# ----------------------------------------------------------------------------
# Malformed messages


def test_every_truncation_raises_wire_error():
    message = wire.encode(
        {"observation": _array("float32", (2, 3)), "done": np.array([True, False]), "e": np.zeros(0, np.int32)}
    )
    for cut in range(len(message)):
        with pytest.raises(WireError, match="truncated"):
            wire.decode(message[:cut])


def test_truncated_data_names_the_field_and_sizes():
    message = wire.encode({"reward": np.zeros(4, np.float32)})
    with pytest.raises(WireError, match=r"truncated while reading data of 'reward': needs 16 bytes"):
        wire.decode(message[:-1])


def test_bad_magic():
    message = wire.encode({"x": np.zeros(2, np.float32)})
    with pytest.raises(WireError, match="bad magic"):
        wire.decode(b"SRL2" + message[4:])
    with pytest.raises(WireError, match="bad magic"):
        wire.decode(b"GET / HTTP/1.1\r\n\r\n")


def test_wrong_nbytes():
    data = np.zeros(3, np.float32).tobytes()
    for nbytes in (11, 13, 0, 2**63):
        bad = _message(_field(b"obs", b"float32", (3,), nbytes, data))
        with pytest.raises(WireError, match=rf"'obs': {nbytes} bytes do not match shape \(3,\) of float32 \(12 bytes\)"):
            wire.decode(bad)


def test_shape_whose_size_overflows_int64_is_refused():
    # 65536 ** 4 * 1 byte == 2 ** 64: a product computed in int64 wraps to 0.
    bad = _message(_field(b"obs", b"uint8", (65536,) * 4, 0, b""))
    with pytest.raises(WireError, match="do not match shape"):
        wire.decode(bad)


def test_trailing_bytes():
    message = wire.encode({"x": np.zeros(2, np.float32)})
    with pytest.raises(WireError, match="3 unexpected trailing bytes"):
        wire.decode(message + b"abc")


def test_more_fields_than_announced_is_trailing():
    field = _field(b"x", b"uint8", (1,), 1, b"\x01")
    message = wire.MAGIC + struct.pack("<H", 1) + field + field
    with pytest.raises(WireError, match="trailing bytes"):
        wire.decode(message)


@pytest.mark.parametrize("dtype", [b"complex64", b"object", b"<U3", b"float128", b"", b"uint64"])
def test_decode_unsupported_dtype(dtype):
    bad = _message(_field(b"obs", dtype, (1,), 8, b"\0" * 8))
    with pytest.raises(WireError, match=r"field 'obs': unsupported dtype"):
        wire.decode(bad)


@pytest.mark.parametrize(
    "value",
    [
        np.zeros(2, np.complex64),
        np.array(["a", "b"]),
        np.array([object(), None], dtype=object),
        np.zeros(2, np.uint64),
        np.zeros(2, "datetime64[s]"),
    ],
)
def test_encode_unsupported_dtype(value):
    with pytest.raises(WireError, match=r"field 'bad': dtype \S+ cannot be sent"):
        wire.encode({"ok": np.zeros(1), "bad": value})


def test_too_many_dimensions():
    nine = np.zeros((1,) * 9, np.float32)
    with pytest.raises(WireError, match=r"field 'deep': 9 dimensions, at most 8 allowed"):
        wire.decode(wire.encode({"deep": nine}))
    bad = _message(_field(b"deep", b"uint8", (1,) * 200, 1, b"\x00"))
    with pytest.raises(WireError, match="200 dimensions"):
        wire.decode(bad)


def test_name_that_is_not_utf8():
    bad = _message(_field(b"\xff\xfe", b"uint8", (1,), 1, b"\x00"))
    with pytest.raises(WireError, match="not UTF-8"):
        wire.decode(bad)


def test_wire_error_is_a_value_error():
    assert issubclass(WireError, ValueError)


def test_truncated_flags_are_optional_and_checked():
    from seed_rl.transport import protocol
    from seed_rl.envs import EnvSpec

    spec = EnvSpec((2,), "float32", 2)
    obs = np.zeros((3, 2), np.float32)
    plain = protocol.decode_request(protocol.encode_request({"observation": obs, "reward": np.zeros(3), "done": [True, False, False]}), spec, None)
    assert plain["truncated"].tolist() == [False, False, False]
    flagged = protocol.encode_request(
        {"observation": obs, "reward": np.zeros(3), "done": [True, False, False], "truncated": [True, False, False]}
    )
    assert protocol.decode_request(flagged, spec, None)["truncated"].tolist() == [True, False, False]
    inconsistent = protocol.encode_request(
        {"observation": obs, "reward": np.zeros(3), "done": [False, False, False], "truncated": [True, False, False]}
    )
    with pytest.raises(protocol.ProtocolError, match="truncated is set"):
        protocol.decode_request(inconsistent, spec, None)
