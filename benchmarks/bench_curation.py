"""Curation throughput on the embedded world: seeking (1 and N processes) vs plain sequential decoding.

    python benchmarks/bench_curation.py --quick          # ~1 min on 2 cores
    python benchmarks/bench_curation.py --videos 24 --workers 2

Reports, in the same run and on the same videos:
- frames/s: wanted frames (each action's input/target frame ±3) delivered per second by
  (a) plain sequential decoding (decode every frame from the start up to the last wanted one, 1 process),
  (b) seeking, 1 process, (c) seeking, N processes over videos;
- pairs/s: the whole ``curate`` pipeline (decode, score, similarity, PNG writes, journal) with 1 and N workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor


def _wanted_by_video(world: str, neighbours: int) -> dict[str, tuple[str, list[int]]]:
    from egoframe.data.records import load_records
    from egoframe.data.video import index_videos

    paths = index_videos(world)
    wanted: dict[str, set[int]] = {}
    for rec in load_records(os.path.join(world, "ground_truth.parquet")):
        frames = wanted.setdefault(rec.video_id, set())
        for nominal in (rec.input_frame, rec.target_frame):
            frames.update(range(max(0, nominal - neighbours), nominal + neighbours + 1))
    return {v: (paths[v], sorted(f)) for v, f in wanted.items()}


def _seek_one(job: tuple[str, list[int]]) -> int:
    from egoframe.data.video import VideoFrameReader

    with VideoFrameReader(job[0]) as reader:
        return len(reader.read(job[1]))


def _sequential_one(job: tuple[str, list[int]]) -> int:
    from egoframe.data.video import decode_sequential

    return len(decode_sequential(*job))


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="6 short videos at 128 px")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--actions", type=int, default=20, help="max actions per video (longer videos)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--world", default="", help="an existing world directory (skips making one)")
    args = parser.parse_args()
    if args.quick:
        args.videos, args.actions, args.resolution = 6, 12, 128

    from egoframe.data.curate import CurationConfig, curate

    tmp = tempfile.mkdtemp(prefix="bench-curation-")
    try:
        world = args.world
        if not world:
            from egoframe.world import make_world

            world = os.path.join(tmp, "world")
            _, seconds = _timed(lambda: make_world(world, n_videos=args.videos, resolution=args.resolution,
                                                   progress=False, min_actions=args.actions // 2,
                                                   max_actions=args.actions))
            print(f"world: {args.videos} videos at {args.resolution} px made in {seconds:.1f} s")
        jobs = list(_wanted_by_video(world, neighbours=3).values())
        n_wanted = sum(len(f) for _, f in jobs)

        seq, t_seq = _timed(lambda: sum(map(_sequential_one, jobs)))
        seek1, t_seek1 = _timed(lambda: sum(map(_seek_one, jobs)))
        with ProcessPoolExecutor(args.workers) as pool:
            list(pool.map(_seek_one, jobs[:args.workers]))  # start the workers outside the timing
            seekn, t_seekn = _timed(lambda: sum(pool.map(_seek_one, jobs)))
        assert seq == seek1 == seekn == n_wanted, (seq, seek1, seekn, n_wanted)
        print(f"frames: {n_wanted} wanted frames in {len(jobs)} videos")
        print(f"  sequential decode, 1 process : {n_wanted / t_seq:8.1f} frames/s")
        print(f"  seeking, 1 process           : {n_wanted / t_seek1:8.1f} frames/s  ({t_seq / t_seek1:.2f}x sequential)")
        print(f"  seeking, {args.workers} processes         : {n_wanted / t_seekn:8.1f} frames/s  "
              f"({t_seq / t_seekn:.2f}x sequential)")

        pair_rates = {}
        for workers in sorted({1, args.workers}):
            out = os.path.join(tmp, f"curated-{workers}")
            config = CurationConfig(format="ego4d", annotations=os.path.join(world, "annotations", "fho_main.json"),
                                    videos=world, out=out, workers=workers, filter_similarity=False)
            report, seconds = _timed(lambda: curate(config))
            pair_rates[workers] = report["counts"]["pairs_curated"] / seconds
            print(f"pairs: curate with {workers} worker(s): {report['counts']['pairs_curated']} pairs in "
                  f"{seconds:.2f} s = {pair_rates[workers]:.1f} pairs/s")
        if args.workers > 1:
            print(f"  {args.workers} workers vs 1: {pair_rates[args.workers] / pair_rates[1]:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
