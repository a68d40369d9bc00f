"""Fast conversion between parameter lists and Flower `ArrayRecord`s.

Flower stores each array as a `.npy` byte string and decodes it with
`np.load`, which parses the text header with `ast` on every call — for the
small arrays of CDSGD, which travel every step, that parsing costs more than
the gradient. These functions write and read the same `.npy` bytes (so any
Flower code, FedAvg's aggregation included, reads them as usual) but build
each header once per shape and skip parsing it on the way back.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from flwr.app import Array, ArrayRecord

NUMPY_STYPE = "numpy.ndarray"


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


def to_record(arrays: Sequence[np.ndarray]) -> ArrayRecord:
    """An ArrayRecord with keys "0", "1", ... as `ArrayRecord(list_of_arrays)` makes."""
    record = ArrayRecord()
    for index, array in enumerate(arrays):
        array = np.ascontiguousarray(array)
        shape = tuple(int(size) for size in array.shape)
        record[str(index)] = Array(dtype=str(array.dtype), shape=shape, stype=NUMPY_STYPE,
                                   data=_npy_header(str(array.dtype), shape) + array.tobytes())
    return record


def from_record(record: ArrayRecord, writable: bool = True) -> list[np.ndarray]:
    """The arrays of a record in key order; read-only views of its bytes unless `writable`."""
    arrays = []
    for array in record.values():
        if array.stype != NUMPY_STYPE:
            arrays.append(array.numpy())
            continue
        data = array.data
        header_end = _header_length(data)
        offset = _data_offset(data[:header_end]) if header_end else None
        if offset is None:
            arrays.append(array.numpy())
            continue
        values = np.frombuffer(data, dtype=np.dtype(array.dtype), offset=offset)
        values = values.reshape(array.shape)
        arrays.append(values.copy() if writable else values)
    return arrays


def _header_length(data: bytes) -> int:
    """Length of the `.npy` magic and header at the start of `data` (0 if not `.npy`)."""
    if data[:6] != b"\x93NUMPY":
        return 0
    if data[6] == 1:
        return 10 + int.from_bytes(data[8:10], "little")
    return 12 + int.from_bytes(data[8:12], "little")
