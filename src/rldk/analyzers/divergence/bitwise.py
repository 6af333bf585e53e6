"""The bitwise level: tensor checksums and RNG-state digests compared per (rank, step, name).

The strongest evidence: the first step where a tensor checksum (``log_tensors``)
or an RNG digest (``log_rng``) differs, naming the first tensor or RNG source that
differs there, in run A's logging order. One DuckDB query over both runs' files.
"""
from __future__ import annotations

from rldk.analyzers import _series
from rldk.analyzers.divergence.result import BitwiseEvidence
from rldk.core.fs import register_filesystems

BITWISE_SQL = """
WITH a AS (
    SELECT rank, step, name, arg_max(digest, struct_pack(t := wall_time, s := seq)) AS digest,
           min(struct_pack(s := seq, r := file_row_number)) AS seq
    FROM read_parquet($files_a, union_by_name = true, file_row_number = true)
    WHERE kind = $kind AND run_id = $run_a AND step IS NOT NULL
    GROUP BY rank, step, name),
b AS (
    SELECT rank, step, name, arg_max(digest, struct_pack(t := wall_time, s := seq)) AS digest
    FROM read_parquet($files_b, union_by_name = true)
    WHERE kind = $kind AND run_id = $run_b AND step IS NOT NULL
    GROUP BY rank, step, name),
joined AS (
    SELECT coalesce(a.step, b.step) AS step, coalesce(a.name, b.name) AS name, a.seq,
           a.digest IS NOT NULL AND b.digest IS NOT NULL AS in_both,
           a.digest IS NULL AS only_b, b.digest IS NULL AS only_a,
           a.digest IS DISTINCT FROM b.digest AS differs
    FROM a FULL OUTER JOIN b USING (rank, step, name)),
first_step AS (SELECT min(step) AS step FROM joined WHERE in_both AND differs)
SELECT (SELECT count(*) FROM joined WHERE in_both) AS compared,
       (SELECT count(DISTINCT step) FROM joined WHERE in_both) AS steps,
       (SELECT min(step) FROM joined WHERE in_both) AS first_common,
       (SELECT count(*) FROM joined WHERE only_a) AS only_a,
       (SELECT count(*) FROM joined WHERE only_b) AS only_b,
       (SELECT step FROM first_step) AS first_step,
       (SELECT count(*) FROM joined WHERE in_both AND differs
         AND step = (SELECT step FROM first_step)) AS differing,
       (SELECT list(name ORDER BY seq, name)[1:20] FROM joined
         WHERE in_both AND differs AND step = (SELECT step FROM first_step)) AS names
"""


def compare_digests(a, b, kind: str) -> BitwiseEvidence | None:
    """Compare ``kind`` events ("tensor" or "rng") of two ``_series.Source`` runs;
    None when either run logs none."""
    if not (has_kind(a, kind) and has_kind(b, kind)):
        return None
    import duckdb

    con = duckdb.connect()
    register_filesystems(con, [*a.store.sql_files, *b.store.sql_files])
    row = con.execute(BITWISE_SQL, {"files_a": a.store.sql_files, "files_b": b.store.sql_files,
                                    "run_a": a.run_id, "run_b": b.run_id, "kind": kind}).fetchone()
    compared, steps, first_common, only_a, only_b, first, differing, names = row
    return BitwiseEvidence(kind, int(compared), int(steps), first_common, first, tuple(names or ()),
                           int(differing), int(only_a), int(only_b))


def has_kind(src, kind: str) -> bool:
    """Whether the run logs events of ``kind``."""
    return kind in _series.run_facts(src).kinds
