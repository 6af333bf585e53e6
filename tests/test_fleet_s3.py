"""Fleet analysis of a store on object storage (an S3 server on loopback): the Ray
tasks read their runs from S3 themselves and gather the local table; Ray Data reads
the same store's live files (the ones ``open_store`` lists: merged files, never the
segments they cover) with exactly the rows rldk counts."""
from __future__ import annotations

import pytest
from test_fleet import _clean, write_run
from test_s3 import bucket, endpoint  # noqa: F401  (fixtures: moto S3 server, a fresh bucket)

from rldk.core import fs as rldk_fs
from rldk.core.compaction import compact
from rldk.core.store import open_store
from rldk.fleet import fleet


@pytest.fixture(scope="module")
def ray_on_s3(endpoint):  # noqa: F811
    """A local Ray instance started after the S3 endpoint is in the environment, so its
    workers reach the same server."""
    ray = pytest.importorskip("ray", reason="ray not installed (pip install 'rldk[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def s3_store(bucket):  # noqa: F811
    root = f"{bucket}/runs"
    write_run(root, "a-clean")
    write_run(root, "b-nan", nan_at=25, spike_at=12)
    write_run(root, "c-leak", leak=True)
    return root


def test_fleet_on_ray_over_s3_equals_local(s3_store, ray_on_s3):
    local, on_ray = fleet(s3_store), fleet(s3_store, engine="ray")
    assert on_ray.engine == "ray"
    assert _clean(on_ray.to_dict()) == _clean(local.to_dict())
    rows = {row.run_id: row for row in on_ray.rows}
    assert sorted(rows) == ["a-clean", "b-nan", "c-leak"]
    assert rows["b-nan"].verdict == "problems" and rows["a-clean"].verdict == "ok"


def test_ray_data_reads_the_live_files_of_an_s3_store(s3_store, ray_on_s3):
    import pyarrow.fs as pafs

    write_run(s3_store, "a-clean")              # a second writer session of the same run
    compact(s3_store)                           # merged files now cover the segments
    store = open_store(s3_store)
    expected = store.sql("SELECT count(*) AS n FROM events").item()
    filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(rldk_fs.filesystem("s3")))
    data = ray_on_s3.data.read_parquet([rldk_fs.strip(f) for f in store.files], filesystem=filesystem)
    assert data.count() == expected > 0
    per_run = {row["run_id"]: row["count()"] for row in data.groupby("run_id").count().take_all()}
    assert per_run == dict(store.sql("SELECT run_id, count(*) FROM events GROUP BY 1").rows())



def _findings(store, name):
    from rldk.analyzers import _series, get
    from rldk.fleet.tasks import _result

    _series.clear_cache()
    return [(f.code, f.run_id, f.steps) for f in _result(get(name), store, {}).report().findings]


def test_a_task_reads_its_objects_from_one_local_copy_each(s3_store):
    """A unit's objects are fetched once into a scratch folder that is gone after the
    task, and a store with copies reads only them: with the objects deleted from the
    bucket once copied, its findings are the ones read from S3 itself."""
    import os

    from rldk.core.fs import local_copies
    from rldk.core.store import Store
    from rldk.fleet import footers_of, units

    store = open_store(s3_store)
    unit = next(u for u in units(store) if u.run_ids == ("b-nan",))
    footers = footers_of(store, unit.files)
    from_s3 = _findings(Store(list(unit.files), footers), "nan_onset")
    assert from_s3 and from_s3[0][:2] == ("nan_onset", "b-nan")
    fs = rldk_fs.filesystem("s3")
    with local_copies(unit.files) as copies:
        assert sorted(copies) == sorted(unit.files)
        for url, path in copies.items():
            with open(path, "rb") as f:
                assert f.read() == fs.cat_file(rldk_fs.strip(url))
        for url in unit.files:
            fs.rm_file(rldk_fs.strip(url))
        copied = Store(list(unit.files), footers, copies=copies)
        assert _findings(copied, "nan_onset") == from_s3
        assert copied.sql("SELECT count(DISTINCT run_id) AS n FROM events").item() == 1
    assert not any(os.path.exists(p) for p in copies.values())


def test_an_object_gone_before_its_task_is_one_clear_error(s3_store):
    from rldk.core.errors import StoreError
    from rldk.core.fs import local_copies

    gone = f"{s3_store}/no-such-object.parquet"
    with pytest.raises(StoreError, match="no-such-object.parquet.*gone.*run the command again"):
        with local_copies([gone]):
            pass
