"""Column streams of the dataset content hash (see :mod:`rldk.core.hashing`).

Within one block of rows each column is serialised into streams hashed with
xxh3-128: null positions, fixed-width value bytes (nulls zeroed, NaNs made
canonical) or variable-width bytes plus lengths, and nested children (list
items, struct fields). Layout-only encodings (dictionary, extension, views,
maps) are undone first, so only logical content reaches the hash.
"""
from __future__ import annotations


def new_hash():
    import xxhash

    return xxhash.xxh3_128()


def u64(n: int) -> bytes:
    return int(n).to_bytes(8, "little", signed=True)


def framed(text: str) -> bytes:
    data = text.encode("utf-8")
    return u64(len(data)) + data


def logical_type(t) -> str:
    """A type's name with layout choices removed: large/view strings, binaries and
    lists collapse to one name, dictionaries to their value type, extensions to storage."""
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_dictionary(t):
        return logical_type(t.value_type)
    if isinstance(t, pa.ExtensionType):
        return logical_type(t.storage_type)
    if pt.is_string(t) or pt.is_large_string(t) or _is_view(t, "string"):
        return "string"
    if pt.is_binary(t) or pt.is_large_binary(t) or _is_view(t, "binary"):
        return "binary"
    if pt.is_map(t):
        return f"map<{logical_type(t.key_type)}, {logical_type(t.item_type)}>"
    if pt.is_fixed_size_list(t):
        return f"list<{logical_type(t.value_type)}>[{t.list_size}]"
    if pt.is_list(t) or pt.is_large_list(t) or _is_view(t, "list"):
        return f"list<{logical_type(t.value_type)}>"
    if pt.is_struct(t):
        inner = ", ".join(f"{t.field(i).name}: {logical_type(t.field(i).type)}" for i in range(t.num_fields))
        return f"struct<{inner}>"
    return str(t)


def _is_view(t, family: str) -> bool:
    import pyarrow.types as pt

    check = getattr(pt, f"is_{family}_view", None)
    return bool(check and check(t))


class ColumnState:
    """Hash streams of one column (or one nested child) within one row block."""

    def __init__(self):
        self.count = 0
        self.nulls, self.data, self.lengths = new_hash(), new_hash(), new_hash()
        self.children: dict[str, ColumnState] = {}

    def child(self, key: str) -> "ColumnState":
        if key not in self.children:
            self.children[key] = ColumnState()
        return self.children[key]

    def update(self, arr) -> None:
        import numpy as np

        arr = _plain(arr)
        n = len(arr)
        if arr.null_count:
            where = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False)) + self.count
            self.nulls.update(where.astype("<i8").tobytes())
        _update_values(self, arr)
        self.count += n

    def digest(self) -> bytes:
        h = new_hash()
        h.update(u64(self.count))
        for stream in (self.nulls, self.data, self.lengths):
            h.update(stream.digest())
        for key in sorted(self.children):
            h.update(framed(key) + self.children[key].digest())
        return h.digest()


def _plain(arr):
    """``arr`` with layout-only encodings undone (dictionary, extension, views, maps)."""
    import pyarrow as pa
    import pyarrow.types as pt

    t = arr.type
    if pt.is_dictionary(t):
        return _plain(arr.dictionary_decode())
    if isinstance(t, pa.ExtensionType):
        return _plain(arr.storage)
    if _is_view(t, "string"):
        return arr.cast(pa.large_string())
    if _is_view(t, "binary"):
        return arr.cast(pa.large_binary())
    if _is_view(t, "list"):
        return arr.cast(pa.large_list(t.value_field))
    if pt.is_map(t):
        entry = pa.struct([pa.field("key", t.key_type), pa.field("value", t.item_type)])
        return arr.cast(pa.list_(entry))
    return arr


def _update_values(state: ColumnState, arr) -> None:
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.types as pt

    t = arr.type
    if pt.is_null(t):
        return
    if pt.is_boolean(t):
        values = pc.fill_null(arr, False).to_numpy(zero_copy_only=False)
        state.data.update(values.astype(np.uint8).tobytes())
    elif pt.is_string(t) or pt.is_large_string(t) or pt.is_binary(t) or pt.is_large_binary(t):
        _update_varwidth(state, arr)
    elif pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
        state.lengths.update(lengths.astype("<i8").tobytes())
        state.child("item").update(arr.flatten())
    elif pt.is_struct(t):
        for i, child in enumerate(arr.flatten()):
            state.child(t.field(i).name).update(child)
    elif getattr(t, "bit_width", 0) and t.bit_width % 8 == 0 and not pt.is_union(t):
        _update_fixed(state, arr)
    else:            # unions and other rare types: their Python values, in order
        for v in arr.to_pylist():
            state.data.update(framed(repr(v)))


def _update_fixed(state: ColumnState, arr) -> None:
    """Fixed-width values: the raw little-endian bytes, nulls zeroed, NaNs made canonical."""
    import numpy as np
    import pyarrow.types as pt

    width = arr.type.bit_width // 8
    n = len(arr)
    if n == 0:
        return
    buf = arr.buffers()[1]
    raw = np.frombuffer(buf, dtype=np.uint8, count=(arr.offset + n) * width)[arr.offset * width:]
    if pt.is_floating(arr.type):
        view = raw.view({2: np.float16, 4: np.float32, 8: np.float64}[width])
        nan = np.isnan(view)
        if nan.any():
            view = view.copy()
            view[nan] = np.nan
            raw = view.view(np.uint8)
    if arr.null_count:
        raw = raw.reshape(n, width).copy()
        raw[arr.is_null().to_numpy(zero_copy_only=False)] = 0
    state.data.update(memoryview(np.ascontiguousarray(raw)).cast("B"))


def _update_varwidth(state: ColumnState, arr) -> None:
    """Strings and binaries: their bytes back to back, and each value's length."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.types as pt

    if arr.null_count:        # bytes under a null slot are not part of the content
        arr = pc.fill_null(arr, "" if pt.is_string(arr.type) or pt.is_large_string(arr.type) else b"")
    n = len(arr)
    large = pt.is_large_string(arr.type) or pt.is_large_binary(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32,
                            count=arr.offset + n + 1)[arr.offset:]
    state.lengths.update(np.diff(offsets).astype("<i8").tobytes())
    data = arr.buffers()[2]
    if data is not None and offsets[-1] > offsets[0]:
        state.data.update(memoryview(data)[int(offsets[0]):int(offsets[-1])])

