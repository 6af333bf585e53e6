"""Train/validation overlap: validation rows whose content also occurs in training."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rldk.core.errors import UsageError
from rldk.core.hashing import (
    TABLE_SUFFIXES,
    MissingData,
    jsonl_records,
    skipped_path,
    to_arrow,
)


@dataclass(frozen=True)
class Overlap:
    """Rows of a validation set whose content also occurs in a training set.

    columns: the columns compared. shared_rows: validation rows found in training
    (duplicates counted each time). fraction: shared_rows / val_rows.
    examples: up to 5 ``{"val_index", "train_index"}`` pairs (0-based row numbers).
    """

    columns: tuple[str, ...]
    train_rows: int
    val_rows: int
    shared_rows: int
    examples: tuple[dict, ...]
    normalized: bool = False

    @property
    def fraction(self) -> float:
        return self.shared_rows / self.val_rows if self.val_rows else 0.0

    def to_dict(self) -> dict:
        # the JSON carries the derived fraction next to the counts
        return {"columns": list(self.columns), "train_rows": self.train_rows, "val_rows": self.val_rows,
                "shared_rows": self.shared_rows, "fraction": self.fraction,
                "examples": list(self.examples), "normalized": self.normalized}


def overlap(train, val, columns=None, *, normalize: bool = False) -> Overlap:
    """Validation rows whose content (over ``columns``) also appears in training.

    ``train`` and ``val`` are anything :func:`hash_data` accepts (a list of strings
    is one column "value"). ``columns`` defaults to the columns both share.
    ``normalize`` compares strings lower-cased with whitespace collapsed. Rows are
    matched by a hash of their values and then compared exactly, so a hash
    collision never counts as a match.
    """
    import polars as pl

    left, right = _frame(train), _frame(val)
    cols = _overlap_columns(left, right, columns)
    left, right = left.select(cols), right.select(cols)
    if normalize:
        left, right = _normalized(left), _normalized(right)
    for c in cols:
        if left.schema[c] != right.schema[c]:
            raise UsageError(f"column {c!r} is {left.schema[c]} in train but {right.schema[c]} in val: "
                             "cast one side, or compare other columns")
    lh = left.hash_rows(seed=0)
    rh = right.hash_rows(seed=0)
    first_train = (pl.DataFrame({"h": lh, "train_index": pl.int_range(0, len(lh), eager=True)})
                   .group_by("h").agg(pl.col("train_index")))
    cand = (pl.DataFrame({"h": rh, "val_index": pl.int_range(0, len(rh), eager=True)})
            .join(first_train, on="h", how="inner").sort("val_index"))
    pairs = cand.select("val_index", "train_index").explode("train_index")
    equal = [a == b for a, b in zip(left[pairs["train_index"]].rows(), right[pairs["val_index"]].rows())]
    matches = {}                                  # val row -> first train row with equal values
    for (val_index, train_index), same in zip(pairs.iter_rows(), equal):
        if same and val_index not in matches:
            matches[val_index] = train_index
    examples = tuple({"val_index": v, "train_index": t} for v, t in sorted(matches.items())[:5])
    return Overlap(tuple(cols), left.height, right.height, len(matches), examples, normalize)


def load_table(path):
    """An Arrow table from a Parquet, Arrow IPC/Feather, JSON Lines or CSV file, or from
    every such file of a directory (concatenated in path order)."""
    import pyarrow as pa

    p = Path(path)
    if p.is_dir():
        files = [f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in
                 (*TABLE_SUFFIXES, ".csv") and not skipped_path(f.relative_to(p).as_posix())]
        if not files:
            raise UsageError(f"no data files (.parquet, .arrow, .jsonl, .csv) in directory {p}")
        return pa.concat_tables([load_table(f) for f in files], promote_options="default")
    if not p.is_file():
        raise MissingData(f"no such data file: {p}")
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(p)
    if suffix in (".arrow", ".feather", ".ipc"):
        return _read_ipc(p)
    if suffix == ".jsonl":
        records = jsonl_records(p)
        if records is None:
            raise UsageError(f"{p}: its lines are not JSON objects, so it is not a table of records")
        return pa.Table.from_pylist(records)
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(p)
    raise UsageError(f"cannot read {p} as a table: use a .parquet, .arrow, .feather, .jsonl or .csv file")


def _read_ipc(p: Path):
    import pyarrow as pa

    with pa.memory_map(str(p)) as source:
        try:
            return pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_stream(source).read_all()


def _frame(data):
    import polars as pl

    return pl.from_arrow(to_arrow(data))


def _overlap_columns(left, right, columns) -> list[str]:
    if columns:
        cols = [columns] if isinstance(columns, str) else list(columns)
        for side, frame in (("train", left), ("val", right)):
            absent = [c for c in cols if c not in frame.columns]
            if absent:
                raise UsageError(f"{side} has no column {absent[0]!r}; columns: {', '.join(frame.columns)}")
        return cols
    cols = [c for c in left.columns if c in right.columns]
    if not cols:
        raise UsageError(f"train and val share no column (train: {', '.join(left.columns)}; "
                         f"val: {', '.join(right.columns)}): pass columns=")
    return cols


def _normalized(frame):
    import polars as pl

    exprs = [pl.col(c).str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
             if frame.schema[c] == pl.String else pl.col(c) for c in frame.columns]
    return frame.select(exprs)
