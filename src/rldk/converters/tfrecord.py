"""TensorBoard event files read without TensorFlow: TFRecord framing, CRC32C, protobuf.

A TFRecord file is a sequence of records::

    uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)

and each record's data is a serialized ``tensorflow.Event``. Only the fields rldk
imports are decoded by hand (no protobuf package, no TensorFlow):

    Event    1 wall_time double, 2 step int64, 5 summary Summary
    Summary  1 value repeated Value
    Value    1 tag string, 2 simple_value float, 9 metadata SummaryMetadata, 8 tensor TensorProto
             (3 histo-old, 4 image, 5 histo, 6 audio: counted, not imported)
    SummaryMetadata  1 plugin_data {1 plugin_name}
    TensorProto      1 dtype, 2 shape, 4 tensor_content, 5 float_val, 6 double_val, 7 int_val,
                     8 string_val, 10 int64_val, 11 bool_val, 13 half_val

Speed: the record framing is walked in one tight loop; CRCs are computed for all
records at once with NumPy (one table lookup per byte column across records); and
the common record shape written by ``SummaryWriter.add_scalar`` (one
``simple_value`` per event) is decoded for all records at once with NumPy. Other
records (new-style tensor scalars, text, several values per event) go through a
small pure-Python protobuf reader.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
#: Records longer than this are not CRC-checked (a column-wise check of one huge
#: image record would cost more than it is worth); their count is reported.
CRC_MAX_BYTES = 1 << 16
#: Records decoded (and CRC-checked) per batch: bounds the temporary arrays.
CHUNK = 1 << 17

_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 17: "<u2",
           19: "<f2", 22: "<u4", 23: "<u8"}
_UNSUPPORTED = {3: "histogram", 4: "image", 5: "histogram", 6: "audio"}


class RecordError(Exception):
    """A framing problem: ``index`` is the record number, ``offset`` its byte offset."""

    def __init__(self, index: int, offset: int, reason: str):
        super().__init__(f"record {index} at byte {offset}: {reason}")
        self.index, self.offset, self.reason = index, offset, reason


# ------------------------------------------------------------------ CRC32C
def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1).astype(np.uint32)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli) of ``data`` (reference implementation for tests)."""
    arr = np.frombuffer(data, np.uint8)
    return int(crc32c_many(arr, np.zeros(1, np.int64), np.array([len(arr)], np.int64))[0])


def crc32c_many(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CRC32C of ``buf[starts[i]:starts[i]+lengths[i]]`` for every i.

    Records of equal length are processed together (see ``_crc_equal_length``),
    so the Python loop runs once per byte position where records differ, not per byte.
    """
    out = np.empty(len(starts), np.uint32)
    if not len(starts):
        return out
    for length in np.unique(lengths).tolist():
        sel = np.flatnonzero(lengths == length)
        out[sel] = _crc_equal_length(buf, starts[sel], int(length))
    return out


def _crc_equal_length(buf: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """CRC32C of equal-length records, using CRC linearity: for equal lengths,
    ``crc(a) ^ crc(b) == raw(a ^ b)`` where ``raw`` (zero init, no final xor) is
    linear, so each record's CRC is the first record's CRC xor one table lookup per
    byte position where the records differ (steps, times, values: few positions)."""
    first = int(_crc_bytewise(buf[starts[0]:starts[0] + length]))
    crc = np.full(len(starts), first, np.uint32)
    if length == 0 or len(starts) == 1:
        return crc
    tables = None
    for p in range(length):
        col = buf.take(starts + p)          # byte p of every record (1-D gathers beat a 2-D copy)
        diff = col ^ col[0]
        if diff.any():
            tables = _position_tables(length) if tables is None else tables
            crc ^= tables[p][diff]
    return crc


def _crc_bytewise(data: np.ndarray) -> np.uint32:
    crc = 0xFFFFFFFF
    table = _TABLE_LIST
    for b in data.tolist():
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return np.uint32(crc ^ 0xFFFFFFFF)


_TABLE_LIST = _TABLE.tolist()
_POSITION_TABLES: dict = {}


def _position_tables(length: int) -> np.ndarray:
    """``T[p][b]``: the zero-init CRC of a ``length``-byte message that is all zeros
    except byte ``b`` at position ``p`` (built from the end: one zero byte at a time)."""
    if length not in _POSITION_TABLES:
        tables = np.empty((length, 256), np.uint32)
        state = _TABLE.copy()                         # byte b as the last byte
        for p in range(length - 1, -1, -1):
            tables[p] = state
            state = _TABLE[state & 0xFF] ^ (state >> 8)   # one more zero byte after it
        if len(_POSITION_TABLES) > 64:
            _POSITION_TABLES.clear()
        _POSITION_TABLES[length] = tables
    return _POSITION_TABLES[length]


def masked(crc: np.ndarray) -> np.ndarray:
    """TFRecord's masked CRC: rotate right by 15, add a constant (mod 2**32)."""
    crc = crc.astype(np.uint64)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA).astype(np.uint64) & 0xFFFFFFFF


# ------------------------------------------------------------------ framing
@dataclass
class Records:
    """The complete records of a file: data offsets and lengths, and what went wrong."""

    buf: bytes
    starts: np.ndarray
    lengths: np.ndarray
    error: RecordError | None = None            # a cut or corrupt frame ends the walk
    bad_crc: list = field(default_factory=list)  # record indices whose data CRC failed
    unchecked: int = 0                           # records too long to CRC-check


def read_records(buf: bytes, verify: bool = True) -> Records:
    """Walk the TFRecord frames of ``buf``; stop at the first cut or corrupt frame."""
    n, pos, starts, lengths, error = len(buf), 0, [], [], None
    unpack = _U64.unpack_from
    while pos < n:
        if pos + 12 > n:
            error = RecordError(len(starts), pos, f"header cut: {n - pos} of 12 bytes present")
            break
        (length,) = unpack(buf, pos)
        if pos + 16 + length > n:
            error = _cut_or_corrupt(buf, pos, length, len(starts), n)
            break
        starts.append(pos)
        lengths.append(length)
        pos += 16 + length
    rec = Records(buf, np.array(starts, np.int64) + 12, np.array(lengths, np.int64), error)
    if verify and len(starts):
        _verify(rec)
    return rec


def _cut_or_corrupt(buf, pos: int, length: int, index: int, n: int) -> RecordError:
    """A frame running past the end: cut (its header checksum holds) or a corrupt length."""
    header_ok = int(masked(np.array([_crc_bytewise(np.frombuffer(buf[pos:pos + 8], np.uint8))]))[0]) \
        == _U32.unpack_from(buf, pos + 8)[0]
    if not header_ok:
        return RecordError(index, pos, "length checksum mismatch (corrupt header); "
                           "records after it cannot be located")
    return RecordError(index, pos, f"data cut: record says {length} bytes, "
                       f"{max(0, n - pos - 12)} present (file ends at byte {n})")


def _verify(rec: Records) -> None:
    arr = np.frombuffer(rec.buf, np.uint8)
    heads = rec.starts - 12
    got = masked(crc32c_many(arr, heads, np.full(len(heads), 8, np.int64)))
    want = _read_u32(arr, heads + 8)
    bad = np.flatnonzero(got != want)
    if len(bad):
        i = int(bad[0])
        _truncate(rec, i)
        rec.error = RecordError(i, int(heads[i]), "length checksum mismatch (corrupt header); "
                                "records after it cannot be located")
    rec.bad_crc, rec.unchecked = [], 0
    for lo in range(0, len(rec.starts), CHUNK):
        starts, lengths = rec.starts[lo:lo + CHUNK], rec.lengths[lo:lo + CHUNK]
        idx = np.flatnonzero(lengths <= CRC_MAX_BYTES)
        got = masked(crc32c_many(arr, starts[idx], lengths[idx]))
        want = _read_u32(arr, starts[idx] + lengths[idx])
        rec.bad_crc += (idx[got != want] + lo).tolist()
        rec.unchecked += int(len(lengths) - len(idx))


def _truncate(rec: Records, i: int) -> None:
    rec.starts, rec.lengths = rec.starts[:i], rec.lengths[:i]


def _read_u32(arr: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return _gather(arr, pos, 4).view("<u4").reshape(-1).astype(np.uint64)


# ------------------------------------------------------------------ decoding
@dataclass
class Decoded:
    """Scalars and texts of a set of records (parallel lists/arrays), and what was ignored."""

    steps: list = field(default_factory=list)      # of int64 arrays
    walls: list = field(default_factory=list)      # of float64 arrays (seconds)
    names: list = field(default_factory=list)      # of Arrow string/dictionary arrays
    values: list = field(default_factory=list)     # of float64 arrays
    texts: list = field(default_factory=list)      # (step, wall, tag, text)
    ignored: dict = field(default_factory=dict)    # reason -> count
    malformed: list = field(default_factory=list)  # (record index, reason)


def decode(rec: Records, skip: set | None = None) -> Decoded:
    """Scalars (``simple_value`` and one-element numeric tensors) and text of every record,
    in chunks of ``CHUNK`` records so that temporary arrays stay small."""
    out = Decoded()
    arr = np.frombuffer(rec.buf, np.uint8)
    for lo in range(0, len(rec.starts), CHUNK):
        _decode_chunk(rec, arr, lo, min(lo + CHUNK, len(rec.starts)), skip or set(), out)
    return out


def _decode_chunk(rec: Records, arr, lo: int, hi: int, skip: set, out: Decoded) -> None:
    import pyarrow as pa

    fast, step, wall, tag_start, tag_len, value = _fast_scalars(arr, rec.starts[lo:hi], rec.lengths[lo:hi])
    for i in skip:
        if lo <= i < hi:
            fast[i - lo] = False
    idx = np.flatnonzero(fast)
    if len(idx):
        out.steps.append(step[idx])
        out.walls.append(wall[idx])
        out.values.append(value[idx])
        out.names.append(_tags(arr, tag_start[idx], tag_len[idx]))
    rows = ([], [], [], [])
    for i in (np.flatnonzero(~fast) + lo).tolist():
        if i in skip:
            continue
        start, length = int(rec.starts[i]), int(rec.lengths[i])
        try:
            _decode_event(rec.buf, start, start + length, rows, out)
        except (ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
            out.malformed.append((i, f"cannot decode the event: {exc}"))
    if rows[0]:
        out.steps.append(np.array(rows[0], np.int64))
        out.walls.append(np.array(rows[1], np.float64))
        out.names.append(pa.array(rows[2], pa.string()))
        out.values.append(np.array(rows[3], np.float64))


def _fast_scalars(arr, starts, lengths):
    """Vectorized decode of events shaped exactly like ``add_scalar``'s output:
    wall_time, [step], summary{ value{ tag, simple_value } }. ``ok`` marks them."""
    n = len(starts)
    end = starts + lengths
    last = len(arr) - 1
    at = lambda pos: arr[np.minimum(pos, last)]   # noqa: E731  (reads past a record are masked by ok)
    ok = (lengths >= 20) & (at(starts) == 0x09)
    wall = _gather(arr, np.minimum(starts + 1, last - 8), 8).view("<f8").reshape(n)
    p = starts + 9
    has_step = at(p) == 0x10
    step, after, good = _varint(arr, p + 1, end)
    step = np.where(has_step, step, 0).astype(np.int64)
    p = np.where(has_step, after, p)
    ok &= ~has_step | good
    for _ in range(2):       # Summary (field 5) holding exactly one Value (field 1)
        ok &= at(p) == (0x2A if _ == 0 else 0x0A)
        size, p, good = _varint(arr, p + 1, end)
        ok &= good & (p + size.astype(np.int64) == end)
    ok &= at(p) == 0x0A
    tag_len, p, good = _varint(arr, p + 1, end)
    tag_len = tag_len.astype(np.int64)
    ok &= good & (tag_len > 0) & (tag_len < 4096)
    tag_start = p
    p = p + np.where(ok, tag_len, 0)
    ok &= (at(p) == 0x15) & (p + 5 == end)
    value = _gather(arr, np.minimum(p + 1, last - 4), 4).view("<f4").reshape(n).astype(np.float64)
    return ok, step, wall, tag_start, tag_len, value


def _gather(arr, pos, width):
    """Rows of ``width`` bytes starting at each ``pos`` (one row copy each, no index matrix)."""
    return np.lib.stride_tricks.sliding_window_view(arr, width)[pos]


def _varint(arr, pos, end):
    """Decode one varint at each ``pos`` (at most 10 bytes): (value, next pos, ok)."""
    last = len(arr) - 1
    value = np.zeros(len(pos), np.uint64)
    done = np.zeros(len(pos), bool)
    p = pos.copy()
    for k in range(10):
        b = arr[np.minimum(p, last)].astype(np.uint64)
        live = ~done
        value[live] |= (b[live] & np.uint64(0x7F)) << np.uint64(7 * k)
        p[live] += 1
        done |= (b & np.uint64(0x80)) == 0
        if done.all():
            break
    return value, p, done & (p <= end)


def _tags(arr, starts, lens):
    """Tag strings as an Arrow dictionary array (the few distinct tags decoded once)."""
    import pyarrow as pa

    codes = np.empty(len(starts), np.int32)
    words: list[str] = []
    for width in np.unique(lens).tolist():
        sel = np.flatnonzero(lens == width)
        raw = _gather(arr, starts[sel], width)
        group_codes, group_words = _distinct_rows(raw)
        codes[sel] = group_codes + len(words)
        words.extend(w.decode("utf-8", errors="replace") for w in group_words)
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(words, pa.string()))


def _distinct_rows(raw: np.ndarray, max_peel: int = 64):
    """``(codes, distinct byte strings)`` of the rows of a uint8 matrix. Tags are few,
    so each distinct row is peeled off with one vectorized compare of row hashes,
    then all rows are checked byte for byte against their representative; many
    distinct rows, or a hash collision, fall back to an exact sort."""
    h = np.zeros(len(raw), np.uint64)
    for col in raw.T:
        h = (h * np.uint64(1099511628211)) ^ col.astype(np.uint64)
    codes = np.full(len(raw), -1, np.int32)
    firsts, left = [], np.arange(len(raw))
    while len(left) and len(firsts) < max_peel:
        same = h[left] == h[left[0]]
        codes[left[same]] = len(firsts)
        firsts.append(left[0])
        left = left[~same]
    if len(left) or not np.array_equal(raw[np.array(firsts)][codes], raw):
        uniq, first, inverse = np.unique(raw.view(f"S{raw.shape[1]}").reshape(-1), return_index=True,
                                         return_inverse=True)
        return inverse.reshape(-1).astype(np.int32), [raw[i].tobytes() for i in first.tolist()]
    return codes, [raw[i].tobytes() for i in firsts]


# ------------------------------------------------------------ pure-Python protobuf
def _fields(buf: bytes, pos: int, end: int):
    """Yield ``(field number, wire type, value)``; value is an int, or (start, end) for bytes."""
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = (pos, pos + 8), pos + 8
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            value, pos = (pos, pos + size), pos + size
        elif wire == 5:
            value, pos = (pos, pos + 4), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire} for field {number}")
        if pos > end:
            raise ValueError(f"field {number} runs past its message")
        yield number, wire, value


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _decode_event(buf: bytes, start: int, end: int, rows, out: Decoded) -> None:
    wall, step, summaries = 0.0, 0, []
    for number, wire, value in _fields(buf, start, end):
        if number == 1 and wire == 1:
            wall = struct.unpack_from("<d", buf, value[0])[0]
        elif number == 2 and wire == 0:
            step = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 5 and wire == 2:
            summaries.append(value)
    for s, e in summaries:
        for number, wire, value in _fields(buf, s, e):
            if number == 1 and wire == 2:
                _decode_value(buf, *value, step, wall, rows, out)


def _decode_value(buf, start, end, step, wall, rows, out: Decoded) -> None:
    tag, simple, tensor, plugin, other = None, None, None, None, None
    for number, wire, value in _fields(buf, start, end):
        if number == 1 and wire == 2:
            tag = buf[value[0]:value[1]].decode("utf-8", errors="replace")
        elif number == 7 and wire == 2 and tag is None:
            tag = buf[value[0]:value[1]].decode("utf-8", errors="replace")
        elif number == 2 and wire == 5:
            simple = struct.unpack_from("<f", buf, value[0])[0]
        elif number == 8 and wire == 2:
            tensor = value
        elif number == 9 and wire == 2:
            plugin = _plugin_name(buf, *value)
        elif number in _UNSUPPORTED:
            other = _UNSUPPORTED[number]
    if simple is not None:
        rows[0].append(step), rows[1].append(wall), rows[2].append(tag or ""), rows[3].append(simple)
    elif tensor is not None:
        _decode_tensor(buf, *tensor, tag or "", step, wall, plugin, rows, out)
    elif other is not None:
        out.ignored[f"{other} summaries"] = out.ignored.get(f"{other} summaries", 0) + 1


def _plugin_name(buf, start, end) -> str | None:
    for number, wire, value in _fields(buf, start, end):
        if number == 1 and wire == 2:
            for n2, w2, v2 in _fields(buf, *value):
                if n2 == 1 and w2 == 2:
                    return buf[v2[0]:v2[1]].decode("utf-8", errors="replace")
    return None


def _decode_tensor(buf, start, end, tag, step, wall, plugin, rows, out: Decoded) -> None:
    dtype, dims, content, strings, packed = 0, [], None, [], {}
    for number, wire, value in _fields(buf, start, end):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 2 and wire == 2:
            dims = _dims(buf, *value)
        elif number == 4 and wire == 2:
            content = buf[value[0]:value[1]]
        elif number == 8 and wire == 2:
            strings.append(buf[value[0]:value[1]])
        elif number in (5, 6, 7, 10, 11, 13):
            packed.setdefault(number, []).append((wire, value))
    if dtype == 7:                                  # DT_STRING: text summaries
        text = "\n".join(s.decode("utf-8", errors="replace") for s in strings)
        out.texts.append((step, wall, tag, text))
        return
    numbers = _tensor_numbers(buf, dtype, content, packed)
    numel = int(np.prod(dims)) if dims else 1
    if numbers is None or len(numbers) == 0 or numel != 1:
        label = f"{plugin or 'tensor'} tensors (not a scalar)"
        out.ignored[label] = out.ignored.get(label, 0) + 1
        return
    rows[0].append(step), rows[1].append(wall), rows[2].append(tag), rows[3].append(float(numbers[0]))


def _dims(buf, start, end) -> list[int]:
    dims = []
    for number, wire, value in _fields(buf, start, end):
        if number == 2 and wire == 2:
            size = 0
            for n2, w2, v2 in _fields(buf, *value):
                if n2 == 1 and w2 == 0:
                    size = v2
            dims.append(size)
    return dims


def _tensor_numbers(buf, dtype, content, packed):
    if content is not None and dtype in _DTYPES:
        return np.frombuffer(content, _DTYPES[dtype])
    for number, fmt in ((5, "<f4"), (6, "<f8")):
        if number in packed:
            return np.concatenate([np.frombuffer(buf[v[0]:v[1]], fmt) for _, v in packed[number]])
    for number in (7, 10, 11, 13):
        if number in packed:
            vals = [x for wire, v in packed[number] for x in _varints(buf, wire, v)]
            if number == 13:
                return np.array(vals, np.uint16).view("<f2")
            return np.array([x - (1 << 64) if x >= 1 << 63 else x for x in vals], np.float64)
    return None


def _varints(buf, wire, value):
    if wire == 0:
        return [value]
    out, pos, end = [], value[0], value[1]
    while pos < end:
        v, pos = _read_varint(buf, pos)
        out.append(v)
    return out
