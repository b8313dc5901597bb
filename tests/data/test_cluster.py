from egoframe.data.curate import CurationConfig, curate
from egoframe.data.records import load_records


def test_dask_path_gives_the_same_pairs_as_the_local_run(fixtures_dir, epic_videos, tmp_path):
    from egoframe.data.cluster import curate_with_dask

    def config(out):
        return CurationConfig(format="epic100", annotations=str(fixtures_dir / "EPIC_100_train_sample.csv"),
                              videos=str(epic_videos), out=str(out), filter_similarity=False, workers=2)

    local = curate(config(tmp_path / "local"))
    report = curate_with_dask(config(tmp_path / "dask"), scheduler="processes")
    assert report["counts"] == local["counts"]
    assert [s["id"] for s in report["skipped"]] == [s["id"] for s in local["skipped"]]
    a = load_records(str(tmp_path / "local" / "all_pairs.parquet"))
    b = load_records(str(tmp_path / "dask" / "all_pairs.parquet"))
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]
