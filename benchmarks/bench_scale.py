"""Corpus scale on this machine: Ray preprocessing with 1 and 2 workers, the training loader
from a dataset folder against WebDataset shards, both formats' file counts and bytes, and a
VoxCeleb2 projection from the measured rates. Not a test: numbers only.

Preprocessing: synthetic 1280x720 talking-head videos (scikit-image's astronaut moving on
a canvas, as bench_preprocess.py), first in this process without Ray (wall rate and CPU
seconds per frame), then one Ray task each on a local Ray instance of 1 and of 2 CPUs,
alternated, best of `--ray-rounds`; each instance first runs one short video per worker
so its workers are started and warm, then the timed run processes all videos (decode,
detection, Face Mesh, smoothing, theta, identity, writes and commits). Loader: the 256 px mediapipe478 dataset just made,
read as a folder (OfficialDataset + DataLoader) and as shards (ShardStream), the same
batch size and workers, alternated `--rounds` times; samples/s of fully decoded items
(images, line images, masks), the median of the rounds.

    python benchmarks/bench_scale.py [--videos 4] [--frames 100] [--rounds 3] [--loader-workers 2]

Writes benchmarks/results/bench_scale.json by default (`--out`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_preprocess import synth_frames  # noqa: E402

from bench_common import cpu_flags, load_average, machine_info, result_header, result_path, write_result  # noqa: E402

# VoxCeleb2 (Chung et al., 2018): 1,128,246 utterances of 6,112 people, 2,442 hours of 25 fps video.
VOX2_HOURS, VOX2_FPS, VOX2_UTTERANCES = 2442, 25, 1_128_246


def scale_flags() -> list[str]:
    return sorted(f for f in cpu_flags() if f == "avx2" or f.startswith("avx512") or f.startswith("amx"))


def preprocess_on_ray(videos: list[str], warmup: list[str], cpus: int, out: Path) -> dict:
    import ray

    from talkingface.recipes.preprocess import PreprocessOptions, run_preprocess

    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        # one short video per worker, at once: every worker has imported and run the pipeline before timing
        run_preprocess(PreprocessOptions(inputs=warmup[:cpus], out=str(out / f"warmup_{cpus}"), ray="auto"))
        start = time.perf_counter()
        report = run_preprocess(PreprocessOptions(inputs=videos, out=str(out / f"ray_{cpus}"), ray="auto"))
        seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    return {"cpus": cpus, "frames": report.frames_decoded, "seconds": round(seconds, 2),
            "frames_per_s": round(report.frames_decoded / seconds, 2)}


def preprocess_single(videos: list[str], out: Path) -> dict:
    """The same videos in this process, no Ray: wall rate and CPU seconds per frame (the latter holds
    on a shared machine, where wall time does not)."""
    import resource

    from talkingface.recipes.preprocess import PreprocessOptions, run_preprocess

    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    report = run_preprocess(PreprocessOptions(inputs=videos, out=str(out / "single")))
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"frames": report.frames_decoded, "seconds": round(seconds, 2),
            "frames_per_s": round(report.frames_decoded / seconds, 2),
            "cpu_seconds_per_frame": round(cpu / report.frames_decoded, 4)}


def footprint(folder: Path, frames: int) -> dict:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    size = sum(p.stat().st_size for p in files)
    return {"files": len(files), "bytes": size, "files_per_1000_frames": round(len(files) * 1000 / frames, 1),
            "mb_per_1000_frames": round(size * 1000 / frames / 1e6, 2)}


def loader_rates(folder: Path, shards: Path, batch: int, workers: int, rounds: int) -> dict:
    from talkingface.data.official import OfficialDataset
    from talkingface.data.shard_reader import ShardStream, StreamSettings
    from talkingface.landmarks.scheme import get_scheme
    from talkingface.training.batches import BatchSettings, FolderBatches
    from talkingface.training.distributed import DistInfo

    scheme = get_scheme("mediapipe478")
    folder_batches = FolderBatches(OfficialDataset(folder, scheme, 256, 128), BatchSettings(batch, workers), DistInfo())
    shard_batches = ShardStream(shards, scheme, 256, 128, StreamSettings(batch_size=batch, num_workers=workers))

    def rate(source, epoch: int) -> float:
        start, samples = time.perf_counter(), 0
        for batch_ in source.epoch(epoch):
            samples += len(batch_["index"])
        return samples / (time.perf_counter() - start)

    measured: dict[str, list[float]] = {"folder": [], "shards": []}
    for r in range(rounds):
        measured["folder"].append(rate(folder_batches, r))
        measured["shards"].append(rate(shard_batches, r))
    return {name: {"samples_per_s": round(statistics.median(values), 1), "rounds": [round(v, 1) for v in values]}
            for name, values in measured.items()}


def projection(cpu_seconds_per_frame: float, shard_mb_per_1000: float, folder_files_per_1000: float,
               node_cores: int, nodes: int) -> dict:
    """VoxCeleb2 at the measured CPU cost per frame: inputs are independent (one task per core, no
    shared state), so a node of C cores runs C tasks at once; the measured 1 -> 2 worker ratio
    says how far this machine (shared) was from that."""
    frames = VOX2_HOURS * 3600 * VOX2_FPS
    core_hours = frames * cpu_seconds_per_frame / 3600
    shard_bytes = frames / 1000 * shard_mb_per_1000 * 1e6
    return {"frames": frames, "utterances": VOX2_UTTERANCES, "shards_1gb": round(shard_bytes / 1e9),
            "shard_terabytes": round(shard_bytes / 1e12, 2), "folder_files": round(frames / 1000 * folder_files_per_1000),
            "core_hours": round(core_hours), "node_cores": node_cores,
            "hours_one_node": round(core_hours / node_cores, 1), "nodes": nodes,
            "hours_all_nodes": round(core_hours / node_cores / nodes, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=100, help="frames per video")
    parser.add_argument("--rounds", type=int, default=3, help="loader measurements per format (median)")
    parser.add_argument("--ray-rounds", type=int, default=2, help="Ray runs per worker count (best)")
    parser.add_argument("--loader-batch", type=int, default=8)
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--node-cores", type=int, default=32, help="cores of a node, for the projection")
    parser.add_argument("--nodes", type=int, default=16, help="nodes, for the projection")
    parser.add_argument("--out", default=None, help="JSON result file (default benchmarks/results/bench_scale.json).")
    args = parser.parse_args()

    from talkingface.recipes.preprocess import PackOptions, run_pack
    from talkingface.utils.video import write_video

    info = machine_info("cpu")
    header = result_header("cpu")  # its load average is the one before the run
    print("\n".join(info.lines()))
    print(f"CPU flags (avx2/avx512*/amx*): {' '.join(scale_flags()) or 'none'}")
    load_before = load_average()
    print(f"load average before: {load_before}")
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        tmp = Path(tmp)
        videos = []
        for v in range(args.videos):
            path = tmp / f"talk_{v}.mp4"
            write_video(path, synth_frames(args.frames, seed=v), 25)
            videos.append(str(path))
        warmup = [str(tmp / f"warmup_{w}.mp4") for w in range(2)]
        for w, path in enumerate(warmup):
            write_video(path, synth_frames(6, seed=99 + w), 25)
        single = preprocess_single(videos, tmp)
        print(f"preprocess in one process (no Ray): {single['frames']} frames in {single['seconds']} s, "
              f"{single['frames_per_s']} frames/s, {single['cpu_seconds_per_frame']} CPU s per frame")
        # alternated, best of `--ray-rounds` each: on a shared machine the best run is the least disturbed
        tries: dict[int, list[dict]] = {1: [], 2: []}
        for r in range(args.ray_rounds):
            for cpus in (1, 2):
                tries[cpus].append(preprocess_on_ray(videos, warmup, cpus, tmp / f"round{r}"))
        runs = [max(tries[cpus], key=lambda run: run["frames_per_s"]) | {
            "rounds_frames_per_s": [run["frames_per_s"] for run in tries[cpus]]} for cpus in (1, 2)]
        ratio = runs[1]["frames_per_s"] / runs[0]["frames_per_s"]
        for run in runs:
            print(f"preprocess on Ray, {run['cpus']} worker(s): {run['frames']} frames, best {run['seconds']} s, "
                  f"{run['frames_per_s']} frames/s (rounds: {run['rounds_frames_per_s']})")
        print(f"scaling 1 -> 2 workers: x{ratio:.2f}")

        folder = tmp / "round0" / "ray_2"
        kept = json.loads((folder / "meta.json").read_text())["identities"]
        kept_frames = sum(row["frames"] for row in kept)
        shards = tmp / "shards"
        run_pack(PackOptions(root=str(folder), out=str(shards)))
        formats = {"folder": footprint(folder, kept_frames), "shards": footprint(shards, kept_frames)}
        for name, f in formats.items():
            print(f"{name}: {f['files']} files, {f['bytes'] / 1e6:.1f} MB for {kept_frames} frames = "
                  f"{f['files_per_1000_frames']} files and {f['mb_per_1000_frames']} MB per 1,000 frames")
        loader = loader_rates(folder, shards, args.loader_batch, args.loader_workers, args.rounds)
        for name, r in loader.items():
            print(f"loader at 256, {name}: {r['samples_per_s']} samples/s (batch {args.loader_batch}, "
                  f"{args.loader_workers} workers; rounds {r['rounds']})")
    vox = projection(single["cpu_seconds_per_frame"], formats["shards"]["mb_per_1000_frames"],
                     formats["folder"]["files_per_1000_frames"], args.node_cores, args.nodes)
    print(f"VoxCeleb2 projection: {vox['frames'] / 1e6:.0f} M frames, {vox['shards_1gb']} shards of 1 GB "
          f"({vox['shard_terabytes']} TB; a folder would be {vox['folder_files'] / 1e6:.0f} M files), "
          f"{vox['core_hours']} core-hours; {vox['hours_one_node']} h on one {vox['node_cores']}-core node, "
          f"{vox['hours_all_nodes']} h on {vox['nodes']}")
    load_after = load_average()
    print(f"load average after: {load_after}")
    result = {"load_average_after": load_after,
              "settings": {"videos": args.videos, "frames_per_video": args.frames, "source": "1280x720 synthetic",
                           "crop": 256, "loader_batch": args.loader_batch, "loader_workers": args.loader_workers,
                           "rounds": args.rounds, "ray_rounds": args.ray_rounds},
              "preprocess_single_process": single, "preprocess_ray": runs, "scaling_1_to_2": round(ratio, 2), "kept_frames": kept_frames,
              "formats": formats, "loader": loader, "voxceleb2": vox}
    out = write_result(args.out or result_path(__file__), result, header)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
