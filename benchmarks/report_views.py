"""The docs tables that `benchmarks/report.py` writes, one function per named view.

A marker `<!-- report:FILE:VIEW -->` in README.md or docs/*.md names a result file
(benchmarks/results/FILE.json) and a view: `VIEWS[FILE][VIEW]`, or one of `COMMON`
(views every file has), or else a dotted key path into the JSON, rendered generically
(`generic`). Each view takes the parsed JSON and returns Markdown without a trailing
newline; a view that misses a key raises KeyError, which report.py turns into an error
naming the file and view.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from meta_report import tables as meta_tables  # benchmarks/ is on the path: run as a script

View = Callable[[dict[str, Any]], str]


# --------------------------------------------------------------------------- formatting
def number(value: Any, spec: str = ".3f") -> str:
    """A figure as the docs write it: `spec` for finite numbers, "inf"/"n/a" otherwise."""
    if value is None:
        return "n/a"
    if isinstance(value, str):  # non-finite floats are stored as strings ("inf")
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    """A Markdown table; `align` per column: "l" (`---`) or "r" (`---:`)."""
    align = align or ["l"] * len(header)
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    def line(cells: list[str]) -> str:
        return "|" + "|".join(f" {c} " if c else " " for c in (str(c).replace("|", "/") for c in cells)) + "|"

    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def generic(value: Any) -> str:
    """A key path's value: a table of a dict of dicts (one row per key) or of a list of
    dicts (one row per item), a two-column table of a dict of plain values, else the value."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        columns = list(dict.fromkeys(k for v in value.values() for k in v))
        rows = [[str(name)] + [_cell(v.get(c)) for c in columns] for name, v in value.items()]
        return table(["row", *columns], rows, ["l"] + ["r"] * len(columns))
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        columns = list(dict.fromkeys(k for v in value for k in v))
        return table(columns, [[_cell(v.get(c)) for c in columns] for v in value], ["r"] * len(columns))
    if isinstance(value, dict):
        return table(["key", "value"], [[str(k), _cell(v)] for k, v in value.items()], ["l", "r"])
    return _cell(value)


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return number(value)


# --------------------------------------------------------------------------- views every file has
def machine(data: dict[str, Any]) -> str:
    """One line: where and when it was measured, from the header (or a file's own older
    machine record), and how to refresh it."""
    m = data["machine"]
    flags = m.get("cpu_flags", m.get("flags", []))
    cores = m.get("cores")
    threads = m.get("threads", m.get("torch_threads"))
    parts = [f"{m.get('cpu', 'unknown CPU')}, {cores} cores" + (f", {threads} torch thread{'s' * (threads != 1)}" if threads else ""),
             "CPU flags: " + (", ".join(flags) if flags else "no avx2/avx512/amx")]
    if m.get("ONEDNN_MAX_CPU_ISA") or m.get("ATEN_CPU_CAPABILITY"):
        parts.append(f"kernels capped to {m.get('torch_cpu_capability', '?')} (ONEDNN_MAX_CPU_ISA="
                     f"{m.get('ONEDNN_MAX_CPU_ISA', '-')}, ATEN_CPU_CAPABILITY={m.get('ATEN_CPU_CAPABILITY', '-')})")
    if m.get("gpu"):
        gpu = m["gpu"]
        parts.append("GPU: " + (", ".join(gpu) if isinstance(gpu, list) else str(gpu)))
    parts.append(f"torch {m.get('torch', '?')}")
    when = data.get("written")
    line = "Measured on " + "; ".join(parts) + (f" ({when[:10]})" if when else "")
    commit = data.get("commit")
    if isinstance(commit, dict) and commit.get("sha"):
        line += f", commit {commit['sha'][:10]}" + (" with local changes" if commit.get("dirty") else "")
    if data.get("command"):
        line += f"; `{data['command']}`"
    elif data.get("provenance"):
        line += f"; {data['provenance']}"
    return line + "."


def paths(data: dict[str, Any]) -> str:
    """bench_infer / bench_sr rows (bench_common.path_rows): speed against the first row."""
    rows = data["rows"]
    first = rows[0]["fps"]
    out = []
    for r in rows:
        name = r["name"] + (f" ({r['note']})" if r.get("note") else "")
        peak = "" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
        out.append([name, number(r["fps"]), number(r["s_per_frame"]), f"{r['fps'] / first:.2f}x", peak,
                    number(r.get("psnr_db"), ".1f")])
    return table(["path", "frames/s", "s/frame", "speed-up", "peak RSS MiB", "PSNR dB"], out,
                 ["l", "r", "r", "r", "r", "r"])


def roofline_summary(data: dict[str, Any]) -> str:
    """bench_infer --roofline: the fp32 engine against the measured convolution peak."""
    r = next(row["extra"]["roofline"] for row in data["rows"] if "roofline" in row.get("extra", {}))
    rows = [["measured fp32 convolution peak", f"{r['peak_gflops']:.1f} GFLOP/s (best of the model's layers and "
             f"{r['reference_conv']}: {r['reference_conv_gflops']:.1f})"],
            ["convolution FLOPs per frame", f"{r['conv_gflop_per_frame']:.1f} GFLOP"],
            ["the fp32 engine achieves", f"{r['achieved_gflops']:.1f} GFLOP/s = "
             f"**{100 * r['achieved_share_of_peak']:.0f}%** of the peak"],
            [f"its {r['conv_calls_per_render']} convolutions timed one by one",
             f"{r['convs_alone_gflops']:.1f} GFLOP/s, {100 * r['convs_alone_share_of_frame_time']:.0f}% of the "
             "frame time (the rest: norms, sampling, element-wise)"]]
    return table(["measure", "value"], rows)


def roofline_layers(data: dict[str, Any], top: int = 12) -> str:
    """bench_infer --roofline: the convolutions that take the most time, timed one by one."""
    r = next(row["extra"]["roofline"] for row in data["rows"] if "roofline" in row.get("extra", {}))
    rows = [[layer["layer"], str(layer["calls_per_render"]), f"{layer['gflop_per_call']:.2f}",
             f"{layer['ms_per_call']:.1f}", f"{layer['gflops']:.1f}", f"{100 * layer['share_of_peak']:.0f}%",
             f"{100 * layer['share_of_frame_time']:.1f}%"] for layer in r["layers"][:top]]
    return table(["layer (batch as run)", "calls", "GFLOP", "ms", "GFLOP/s", "of peak", "of frame time"], rows,
                 ["l", "r", "r", "r", "r", "r", "r"])


COMMON: dict[str, View] = {"machine": machine, "paths": paths, "roofline": roofline_summary,
                           "roofline_layers": roofline_layers}


# --------------------------------------------------------------------------- bench_animate_quality
_QUALITY_ROWS = {"static source": "static source", "similarity warp": "similarity warp (no learning)",
                 # rows of result files written before the 128 px default: "bundled" was the 64 px model
                 "bundled, render model": "bundled 64 px model, `--render model`",
                 "bundled, full rendering": "bundled 64 px model, full rendering",
                 "64 px, render model": "previous default (64 px), `--render model`",
                 "64 px, full rendering": "previous default (64 px), full rendering",
                 "default, render model": "default (128 px), `--render model`",
                 "default, full rendering": "**default (128 px), full rendering**",
                 "new model, render model": "new model, `--render model`",
                 "new model, full rendering": "**new model, full rendering**"}


def _quality(kind: str | None) -> View:
    """The mean-over-people tables of one kind of task ("self", "cross"; None: every task),
    each under its task's name, in the file's order."""
    def view(data: dict[str, Any]) -> str:
        blocks = []
        for task, summary in data["summary"].items():
            if kind is not None and not task.startswith(kind + " "):
                continue
            columns = list(next(iter(summary.values())))
            rows = [[_QUALITY_ROWS.get(name, name)] + [number(v) for v in values.values()]
                    for name, values in summary.items()]
            blocks.append(f"{task}:\n\n" + table(["row", *columns], rows, ["l"] + ["r"] * len(columns)))
        if not blocks:
            raise KeyError(f"summary has no '{kind} (...)' task")
        return "\n\n".join(blocks)
    return view


# --------------------------------------------------------------------------- bench_app_load
def app_bursts(data: dict[str, Any]) -> str:
    rows = [[str(i), str(r["counts"]["video"]), str(r["counts"]["busy"]), str(r["counts"]["error"]),
             f"{r['seconds']} s", f"{r['rss_mib_after']} MiB"] for i, r in enumerate(data["rounds"], 1)]
    return table(["burst", "videos", "busy", "other errors", "burst wall time", "server RSS after"], rows)


# --------------------------------------------------------------------------- bench_fullres
def fullres_rows(data: dict[str, Any]) -> str:
    rows = [[f"{r['box_side']} px", f"{r['frame'][0]}x{r['frame'][1]}", f"{r['ms_per_frame']:.0f}"]
            for r in data["rows"]]
    return table(["face box", "frame", "ms a frame"], rows, ["r", "r", "r"])


# --------------------------------------------------------------------------- bench_scale
def scale_preprocess(data: dict[str, Any]) -> str:
    single = data["preprocess_single_process"]
    rows = [["one process, no Ray", f"{single['frames_per_s']:.1f}",
             f"{single['cpu_seconds_per_frame']:.4f} CPU s per frame"]]
    for run in data["preprocess_ray"]:
        tries = run["rounds_frames_per_s"]
        rows.append([f"Ray, {run['cpus']} worker{'s' if run['cpus'] > 1 else ''}", f"{run['frames_per_s']:.1f}",
                     f"best of {len(tries)} ({', '.join(f'{t:.1f}' for t in sorted(tries))})"])
    rows.append(["**scaling 1 -> 2 workers**", f"**x{data['scaling_1_to_2']:.2f}**", ""])
    return table(["preprocessing", "frames/s", ""], rows)


def scale_formats(data: dict[str, Any]) -> str:
    folder, shards = data["formats"]["folder"], data["formats"]["shards"]
    frames = data["kept_frames"]
    per_gb = shards["mb_per_1000_frames"] / 1000  # 1 GB shards per 1,000 frames
    rows = [["folder (official layout)", f"{folder['files_per_1000_frames']:,.0f}", f"{folder['mb_per_1000_frames']:.1f}"],
            [f"shards (here {shards['files'] - 1} shard + index for {frames} frames)",
             f"{shards['files_per_1000_frames']:,.0f}", f"{shards['mb_per_1000_frames']:.1f}"],
            ["shards at 1 GB each", f"{per_gb:.2f}", f"{shards['mb_per_1000_frames']:.1f}"]]
    return table(["format, per 1,000 frames at 256", "files", "MB"], rows)


def scale_loader(data: dict[str, Any]) -> str:
    s = data["settings"]
    rows = [[name, f"{r['samples_per_s']:.1f} ({min(r['rounds']):.1f}-{max(r['rounds']):.1f})"]
            for name, r in data["loader"].items()]
    return table([f"training loader, {s['crop']} px, batch {s['loader_batch']}, {s['loader_workers']} workers",
                  f"samples/s (median of {s['rounds']}, alternated)"], rows)


def scale_voxceleb2(data: dict[str, Any]) -> str:
    v = data["voxceleb2"]
    per_frame = data["preprocess_single_process"]["cpu_seconds_per_frame"]
    rows = [["folder layout", f"{v['folder_files'] / 1e6:,.0f} M files"],
            ["shards of 1 GB", f"**{v['shards_1gb']:,} shards**, {v['shard_terabytes']:.1f} TB"],
            [f"preprocessing, CPU time ({per_frame:.4f} s per frame)", f"**{v['core_hours']:,} core-hours**"],
            [f"one {v['node_cores']}-core node (one video per core)", f"**{v['hours_one_node']:.0f} hours**"],
            [f"{v['nodes']} such nodes", f"**{v['hours_all_nodes']:.1f} hours**"]]
    return table(["", ""], rows)


# --------------------------------------------------------------------------- bench_preprocess
def preprocess_runs(files: dict[str, Any]) -> str:
    """One row per bench_preprocess result file (`bench_preprocess*`)."""
    rows, previous = [], None
    for data in files.values():
        m = data["machine"]
        where = f"{m['cores']} cores of {m['cpu']}, {m['threads']} torch thread{'s' * (m['threads'] != 1)}"
        run = (f"{data['videos']} videos x " if data["videos"] > 1 else "") + f"{data['frames_per_video']} frames"
        run += f" -> {data['size']}, `--workers {data['workers']}`"
        rates = data["frames_per_s"]
        rate = f"{rates[0]:.1f}" if len(rates) == 1 else f"{min(rates):.1f}-{max(rates):.1f} ({len(rates)} runs)"
        peaks = [r["peak_rss_mib"] for r in data["runs"] if r.get("peak_rss_mib")]  # older files have none
        peak = f"{max(peaks) / 1024:.2f} GiB" if peaks else "-"
        rows.append(["same" if where == previous else where, run, rate, peak, m["load_average"].split()[0]])
        previous = where
    return table(["machine", "run", "frames/s", "peak RSS", "load at start"], rows)


# --------------------------------------------------------------------------- gpu_check, bench_demo
def gpu_check_summary(data: dict[str, Any]) -> str:
    rows = data["rows"]
    counts = {k: sum(r["status"] == k for r in rows) for k in ("ok", "skipped", "failed")}
    m = data["machine"]
    return (f"Last run: {len(rows)} rows in {data['total_seconds']:.0f} s ({counts['ok']} ok, {counts['skipped']} "
            f"skipped, {counts['failed']} failed) on {m['cores']} cores of {m['cpu']}, "
            f"OMP_NUM_THREADS={m.get('omp_num_threads') or 'unset'}, load {m['load_average'].split()[0]} at the "
            f"start (`{data['command']}`).")


def demo_follow(data: dict[str, Any]) -> str:
    names = {"output": "**demo (bundled model, full rendering)**", "render model": "demo, `--render model`"}
    rows = [[names.get(name, name), f"{s['head_x']:.2f}", f"{s['head_y']:.2f}", f"{s['mouth_open']:.2f}"]
            for name, s in data["follow"].items()]
    return table(["video", "head x", "head y", "mouth opening"], rows, ["l", "r", "r", "r"])


def demo_quality(data: dict[str, Any]) -> str:
    q = data["face_quality"]
    rows = [[label, f"{q[key]['sharpness_ratio']:.3f}", f"{q[key]['identity_distance']:.2f}"]
            for key, label in (("full", "full rendering (default)"), ("model", "`--render model`"))]
    return table(["demo", "face sharpness / photo's", "dlib identity distance"], rows, ["l", "r", "r"])


# --------------------------------------------------------------------------- bench_real_clip
def _surroundings(value: float | str) -> str:
    """The surroundings' error, or why there is none (JSON keeps a NaN as the string "nan")."""
    value = float(value)
    return "n/a (no background away from the face)" if math.isnan(value) else f"{value:.1f}"


def real_clips(files: dict[str, Any]) -> str:
    """One row per bench_real_clip result file (`real_clip_*`: real_clip_<photo>_<clip>)."""
    rows = []
    for stem, data in files.items():
        run = data["runs"]["default"]
        photo, clip = stem.split("_")[2:4]
        follow = run["whole_clip"]
        shots = run["shots"]
        per_shot = "" if len(shots) == 1 else " (per shot " + " / ".join(f"{s['mouth_open']:.2f}" for s in shots) + ")"
        rows.append([photo, clip + ("" if data.get("head_limit", True) else ", `--no-head-limit`"),
                     f"{run['frames']}/{run['driving_frames']}", "yes" if run["audio"] else
                     ("no (none in the video)" if not run["driving_audio"] else "**lost**"),
                     f"{follow['head_x']:.2f}", f"{follow['head_y']:.2f}", f"{follow['mouth_open']:.2f}" + per_shot,
                     f"{run['sharpness_ratio']:.2f}", f"{run['identity_distance']:.2f}",
                     _surroundings(run['surroundings_error']['output'])])
    return table(["photo", "driving clip", "frames", "audio", "head x", "head y", "mouth", "sharpness",
                  "identity", "surroundings"], rows, ["l", "l", "r", "l", "r", "r", "r", "r", "r", "r"])


# --------------------------------------------------------------------------- bench_suite
def suite_times(data: dict[str, Any]) -> str:
    """One row per timed suite: its command, the counts pytest reported and its time."""
    commands = {"fast": 'python -m pytest -q -m "not slow"', "full": "python -m pytest -q"}
    rows = []
    for name, s in data["suites"].items():
        minutes, seconds = divmod(round(s["pytest_seconds"]), 60)
        counts = ", ".join(f"{s[k]} {k}" for k in ("passed", "skipped", "failed", "errors") if s.get(k))
        rows.append([f"`{commands.get(name, name)}`", counts, f"{minutes}:{seconds:02d}"])
    m = data["machine"]
    return (table(["suite", "tests", "time (pytest's, min:s)"], rows, ["l", "l", "r"])
            + f"\n\nMeasured on {m['cores']} cores of {m['cpu']} "
              f"({'with AVX-512' if 'avx512f' in m.get('cpu_flags', []) else 'no AVX-512'}), "
              f"load {m['load_average'].split()[0]} at the start, commit {str((data.get('commit') or {}).get('sha'))[:10]}.")


# --------------------------------------------------------------------------- bench_emulated
def emulated_costs(data: dict[str, Any]) -> str:
    """One row per measurement (the CPU as it is; its kernels capped at AVX2): each
    precision's time and how many times fp32's it is."""
    names = {"as_is": "this CPU's own kernels", "avx2_cap": "kernels capped at AVX2 (an AVX2-only CPU's)"}

    def times(ratio: float) -> str:
        return f"{ratio:.2g}x" if ratio < 10 else f"{ratio:.0f}x"
    rows = []
    for key, run in data["runs"].items():
        slower = run["slower_than_fp32"]
        conv, step = run["conv_ms"], run["train_step_ms"]
        rows.append([names.get(key, key), f"{conv['fp32']:.1f} ms",
                     f"{conv['bf16']:.1f} ms ({times(slower['conv_ms']['bf16'])})",
                     f"{conv['fp16']:.1f} ms ({times(slower['conv_ms']['fp16'])})", f"{step['fp32']:.0f} ms",
                     f"{step['bf16']:.0f} ms ({times(slower['train_step_ms']['bf16'])})"])
    return table(["kernels", "conv fp32", "conv bf16", "conv fp16", "training step fp32",
                  "training step, bf16 autocast"], rows, ["l", "r", "r", "r", "r", "r"])


# --------------------------------------------------------------------------- tune_fullres
def flow_smooth_medians(files: dict[str, Any]) -> str:
    """`tune_fullres*`: per `flow_smooth` value and model, the median identity distance over
    the self and the cross runs, and the median cross mouth correlation (the variants that
    change only flow_smooth; medians, as one erratic dlib pair dominates the means)."""
    import statistics

    runs, values = [], {}
    for data in files.values():
        runs += data["runs"]
        for name, settings in data["variants"].items():
            others = {k: v for k, v in settings.items() if k != "flow_smooth"}
            values[name] = (settings["flow_smooth"], others)
    plain = next(others for smooth, others in values.values() if smooth == 0)
    chosen = sorted((smooth, name) for name, (smooth, others) in values.items() if others == plain)
    models = list(dict.fromkeys(r["model"] for r in runs))
    rows = []
    for smooth, name in chosen:
        cells = [f"{smooth:g}"]
        for model in models:
            mine = [r for r in runs if r["model"] == model and r["variant"] == name]
            med = {task: statistics.median(r["identity_distance"] for r in mine if r["task"] == task)
                   for task in ("self", "cross")}
            mouth = statistics.median(r["corr_mouth_open"] for r in mine if r["task"] == "cross")
            cells.append(f"{med['self']:.2f} / {med['cross']:.2f}, mouth {mouth:.2f}")
        rows.append(cells)
    return table(["`flow_smooth`", *models], rows)


def variant_clips(files: dict[str, Any]) -> str:
    """`<name>_<photo>_<clip>` bench_real_clip files run with --variant: per photo and clip, the
    defaults beside each variant (sharpness, identity, mouth correlation)."""
    rows = []
    for stem, data in files.items():
        photo, clip = stem.split("_")[-2:]
        for name, run in data["runs"].items():
            rows.append([photo, clip, "defaults" if "," not in name else name.split(", ", 1)[1],
                         f"{run['sharpness_ratio']:.3f}", f"{run['identity_distance']:.3f}",
                         f"{run['whole_clip']['mouth_open']:.2f}"])
    return table(["photo", "driving clip", "settings", "sharpness", "identity", "mouth"], rows,
                 ["l", "l", "l", "r", "r", "r"])


# --------------------------------------------------------------------------- bench_speak
def speak_summary(data: dict[str, Any]) -> str:
    forced, recog = data["alignment"]["forced"], data["alignment"]["recognition"]
    track, video = data["lip_closure"]["track"], data["lip_closure"]["video"]
    corr = data["mouth_loudness_correlation"]
    speed = data["speed"]
    per = data["per_sentence"]
    per_corr = [s["mouth_loudness_corr_video"] for s in per.values()]
    first = next(iter(per))
    best = min(per, key=lambda name: per[name]["render_seconds"] / per[name]["audio_seconds"])
    b = per[best]

    def share(r: dict[str, Any]) -> str:
        return f"{r['matched_phones']} / {r['reference_phones']} ({r['matched_share']:.0%})"

    def errors(r: dict[str, Any]) -> list[str]:
        return [f"{r['mean_ms']:.1f} ms / {r['median_ms']:.1f} ms", f"{r['within_20ms']:.0%} / {r['within_40ms']:.0%}"]

    forced_err, recog_err = errors(forced), errors(recog)
    rows = [
        ["alignment, forced (the transcript, as `--text` does): phones matched to espeak-ng's", share(forced)],
        ["... boundary error, mean / median", forced_err[0]],
        ["... boundaries within 20 ms / 40 ms", forced_err[1]],
        ["alignment, recognition (no transcript): phones matched", share(recog)],
        ["... boundary error of those, mean / median", recog_err[0]],
        ["... boundaries within 20 ms / 40 ms", recog_err[1]],
        ["lips closed within 40 ms of every p/b/m, landmark track", f"{track['closed']} / {track['bilabials']}"],
        ["lips closed within 40 ms of every p/b/m, rendered video (MediaPipe)",
         f"{video['closed']} / {video['bilabials']}"],
        ["mouth open on vowels of 60 ms or more: track / rendered video",
         f"{track['vowels_open']} / {track['vowels']}, {video['vowels_open']} / {video['vowels']}"],
        ["mouth opening (MediaPipe, rendered video) vs loudness, Pearson",
         f"{corr['video_mediapipe']:.2f} (per sentence {min(per_corr):.2f}-{max(per_corr):.2f})"],
        ["the same for the landmark track's own opening", f"{corr['track']:.2f}"],
        [f"speed, all {_WORDS.get(len(per), len(per))} runs: wall seconds per second of audio",
         f"{speed['wall_per_audio_second']:.1f} ({speed['render_per_audio_second']:.1f} rendering and encoding, "
         f"{speed['startup_seconds_per_run']:.1f} s start-up a run)"],
        [f"speed, least disturbed run (\"{best}\", {b['audio_seconds']:.2f} s of audio)",
         f"{b['render_seconds'] / b['audio_seconds']:.1f} s rendering and encoding per second of audio; "
         f"{b['wall_seconds']:.1f} s in all" + (" (the first run: imports included)" if best == first else "")],
        ["forced alignment alone, per second of audio", f"{speed['forced_alignment_per_audio_second']:.2f} s"],
    ]
    return table(["measure", "result"], rows)


_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}

VIEWS: dict[str, dict[str, View]] = {
    "bench_animate_quality": {"tables": _quality(None), "self": _quality("self"), "cross": _quality("cross")},
    "bench_animate_quality_128px": {"tables": _quality(None)},  # the same benchmark with the 128 px model
    "bench_app_load": {"bursts": app_bursts},
    "bench_fullres": {"rows": fullres_rows},
    "bench_preprocess*": {"runs": preprocess_runs},
    "bench_demo": {"follow": demo_follow, "quality": demo_quality},
    "bench_emulated": {"costs": emulated_costs},
    "bench_suite": {"times": suite_times},
    "gpu_check_cpu_quick": {"summary": gpu_check_summary},
    "bench_scale": {"preprocess": scale_preprocess, "formats": scale_formats, "loader": scale_loader,
                    "voxceleb2": scale_voxceleb2},
    "bench_speak": {"summary": speak_summary},
    "real_clip_*": {"rows": real_clips},
    "occlusion_detail_*": {"rows": variant_clips},
    "tune_fullres*": {"flow_smooth": flow_smooth_medians},
    # bench_meta's own tables (meta_report.tables renders both its results.md and these blocks)
    "bench_meta": {name: (lambda data, name=name: meta_tables(data)[name])
                   for name in ("test", "lr", "gain", "person", "verdict")},
}
