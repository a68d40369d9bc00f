"""Fast conversion between parameter lists and Flower `ArrayRecord`s.

Flower stores each array as a `.npy` byte string and decodes it with
`np.load`, which parses the text header with `ast` on every call — for the
small arrays of CDSGD, which travel every step, that parsing costs more than
the gradient. These functions write and read the same `.npy` bytes (so any
Flower code, FedAvg's aggregation included, reads them as usual) but build
each header once per shape and skip parsing it on the way back.

A parameter list whose layers share a dtype travels as one array: the layers'
values flattened and concatenated in order, under a key that names their
shapes (`layers:64x64|64|10x64|10`). In a deployment every array is an object
of Flower's object protocol, fetched with an HTTP request of its own at each
hop (and with its chunk, two), so one array per point instead of one per layer
halves a round's requests. FedAvg averages key by key, so it averages the
packed vector exactly as it would each layer, and keeps the key. Mixed dtypes
travel one array per layer, under "0", "1", ... as `ArrayRecord(list)` makes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from flwr.app import Array, ArrayRecord

NUMPY_STYPE = "numpy.ndarray"
PACKED_PREFIX = "layers:"  # the key of a packed parameter list, followed by its shapes


@lru_cache(maxsize=1024)
def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@lru_cache(maxsize=1024)
def _data_offset(header: bytes) -> int | None:
    """Where the array data starts after this `.npy` header; None if not C-ordered."""
    buffer = io.BytesIO(header)
    major, _ = np.lib.format.read_magic(buffer)
    read = np.lib.format.read_array_header_1_0 if major == 1 \
        else np.lib.format.read_array_header_2_0
    _, fortran_order, _ = read(buffer)
    return None if fortran_order else buffer.tell()


def _packed_key(shapes: Sequence[tuple[int, ...]]) -> str:
    return PACKED_PREFIX + "|".join("x".join(str(size) for size in shape) for shape in shapes)


def _shapes_of(key: str) -> list[tuple[int, ...]]:
    return [tuple(int(size) for size in part.split("x") if size)
            for part in key.removeprefix(PACKED_PREFIX).split("|")]


def _array(dtype: np.dtype, shape: tuple[int, ...], chunks: Sequence[bytes]) -> Array:
    """A Flower Array of this dtype and shape whose `.npy` values are `chunks` joined."""
    shape = tuple(int(size) for size in shape)
    return Array(dtype=str(dtype), shape=shape, stype=NUMPY_STYPE,
                 data=b"".join([_npy_header(str(dtype), shape), *chunks]))


def to_record(arrays: Sequence[np.ndarray]) -> ArrayRecord:
    """An ArrayRecord of a parameter list: one packed array when the layers share a
    dtype, else one array per layer under "0", "1", ... (see the module docstring)."""
    arrays = [np.asarray(array, order="C") for array in arrays]
    record = ArrayRecord()
    if arrays and len({array.dtype for array in arrays}) == 1:
        record[_packed_key([array.shape for array in arrays])] = _array(
            arrays[0].dtype, (sum(array.size for array in arrays),),
            [array.tobytes() for array in arrays])
        return record
    for index, array in enumerate(arrays):
        record[str(index)] = _array(array.dtype, array.shape, [array.tobytes()])
    return record


def _values(array: Array) -> np.ndarray:
    """An Array's values: a read-only view of its bytes when they are C-ordered `.npy`."""
    if array.stype != NUMPY_STYPE:
        return array.numpy()
    data = array.data
    header_end = _header_length(data)
    offset = _data_offset(data[:header_end]) if header_end else None
    if offset is None:
        return array.numpy()
    return np.frombuffer(data, dtype=np.dtype(array.dtype), offset=offset).reshape(array.shape)


def record_bytes(record: ArrayRecord) -> int:
    """Bytes of the parameter data a record holds (the arrays' values, not their `.npy`
    headers or keys)."""
    return sum(np.dtype(array.dtype).itemsize * math.prod(array.shape)
               for array in record.values())


def from_record(record: ArrayRecord, writable: bool = True) -> list[np.ndarray]:
    """The parameter list of a record (packed or one array per layer, in key order);
    read-only views of its bytes unless `writable`."""
    if len(record) == 1 and next(iter(record)).startswith(PACKED_PREFIX):
        key, array = next(iter(record.items()))
        flat = _values(array)
        flat = flat.copy() if writable else flat
        layers, start = [], 0
        for shape in _shapes_of(key):
            size = int(np.prod(shape))
            layers.append(flat[start:start + size].reshape(shape))
            start += size
        return layers
    arrays = [_values(array) for array in record.values()]
    return [array.copy() if writable else array for array in arrays]


def _header_length(data: bytes) -> int:
    """Length of the `.npy` magic and header at the start of `data` (0 if not `.npy`)."""
    if data[:6] != b"\x93NUMPY":
        return 0
    if data[6] == 1:
        return 10 + int.from_bytes(data[8:10], "little")
    return 12 + int.from_bytes(data[8:12], "little")
