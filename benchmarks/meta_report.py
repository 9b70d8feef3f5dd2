"""bench_meta.py's tables: learning-rate choice on validation, test PSNR, paired gains and the verdict.

`scores` maps "start|person|lr" (lr "start" for the untouched start) to
{k: {"validate": dB, "test": dB}}. Starts are "pretrained", "meta_seed<S>" and
"ordinary_seed<S>". Each kind of start gets, for each k, the learning rate with the best
mean validation PSNR over its seeds and the people; the test PSNR at that rate is what
the tables show. "best other start" is, per k, whichever of the ordinary and the
pretrained start has the better validation mean.
"""
from __future__ import annotations

import numpy as np

KINDS = ("meta", "ordinary", "pretrained")


def _starts(kind: str, seeds: list[int]) -> list[tuple[str, int | None]]:
    return [("pretrained", None)] if kind == "pretrained" else [(f"{kind}_seed{s}", s) for s in seeds]


def run_key(start: str, person: str, lr: float | None) -> str:
    """The key of one fine-tuning run in `scores` (bench_meta.py writes them)."""
    return f"{start}|{person}|{'start' if lr is None else f'{lr:g}'}"


def _values(scores, kind, seeds, people, lr, k, stage) -> dict[tuple[int | None, str], float]:
    """(seed, person) -> PSNR; the pretrained start has seed None."""
    step = "0" if k == 0 else str(k)
    return {(seed, p): scores[run_key(start, p, None if k == 0 else lr)][step][stage]
            for start, seed in _starts(kind, seeds) for p in people}


def choose(scores, args, people) -> dict[str, dict[int, dict]]:
    """Per kind and k: the chosen lr, its validation mean and the test values by (seed, person)."""
    chosen: dict[str, dict[int, dict]] = {}
    for kind in KINDS:
        chosen[kind] = {}
        for k in args.k:
            candidates = [None] if k == 0 else args.lrs
            by_lr = {lr: float(np.mean(list(_values(scores, kind, args.seeds, people, lr, k, "validate").values())))
                     for lr in candidates}
            lr = max(by_lr, key=by_lr.get)
            chosen[kind][k] = {"lr": lr, "validation_mean": by_lr[lr], "validation_by_lr": by_lr,
                               "test": _values(scores, kind, args.seeds, people, lr, k, "test")}
    chosen["best other"] = {}
    for k in args.k:
        kind = max(("ordinary", "pretrained"), key=lambda c: chosen[c][k]["validation_mean"])
        chosen["best other"][k] = {**chosen[kind][k], "kind": kind}
    return chosen


def _mean_std(values) -> tuple[float, float]:
    values = list(values)
    return float(np.mean(values)), float(np.std(values))


def paired_gains(meta: dict, other: dict) -> list[float]:
    """meta - other for every (seed, person); a start without seeds pairs with every seed."""
    return [value - other.get((seed, person), other.get((None, person)))
            for (seed, person), value in meta.items()]


def report(scores, args, people, accounting, times) -> tuple[dict, str]:
    """The result (numbers only; `tables` renders them) and the whole Markdown report."""
    chosen = choose(scores, args, people)
    ks = args.k
    gains = {label: {k: paired_gains(chosen["meta"][k]["test"], chosen[kind][k]["test"]) for k in ks}
             for label, kind in (("meta - ordinary", "ordinary"), ("meta - pretrained", "pretrained"),
                                 ("meta - best other", "best other"))}
    best = gains["meta - best other"]
    lines, target = verdict(chosen, best, args)
    result = {
        "k": ks, "people": people, "seeds": args.seeds,
        "test_psnr_db": {kind: {str(k): _mean_std(chosen[kind][k]["test"].values()) for k in ks} for kind in chosen},
        "chosen_lr": {kind: {str(k): chosen[kind][k]["lr"] for k in ks} for kind in chosen},
        "best_other_kind": {str(k): chosen["best other"][k]["kind"] for k in ks},
        "validation_psnr_db_by_lr": {kind: {str(k): {f"{lr}": v for lr, v in chosen[kind][k]["validation_by_lr"].items()}
                                            for k in ks} for kind in KINDS},
        "test_psnr_db_by_seed_person": {kind: {str(k): {f"{s}|{p}": v for (s, p), v in chosen[kind][k]["test"].items()}
                                               for k in ks} for kind in chosen},
        "paired_gain_db": {label: {str(k): [*_mean_std(g[k]), sum(x > 0 for x in g[k]), len(g[k])] for k in ks}
                           for label, g in gains.items()},
        "gain_over_best_other_by_person_db": {person: {str(k): float(np.mean(
            [v for (_, p), v in zip(chosen["meta"][k]["test"], best[k]) if p == person])) for k in ks}
            for person in people},
        "target": target, "verdict": lines, "accounting": accounting, "seconds": times, "scores": scores,
    }
    t = tables(result)
    markdown = "\n".join([
        "## Test PSNR (dB) after k fine-tuning steps", "",
        f"Mean ± standard deviation over {len(args.seeds)} training seeds x {len(people)} held-out people "
        "(the pretrained start: over the people).", "", t["test"], "",
        "## Learning rate chosen on validation", "", t["lr"], "",
        "## Paired gain of the meta start (dB; mean ± std, pairs where meta is ahead)", "", t["gain"], "",
        "## Meta start minus best other start, per person (dB, mean over seeds)", "", t["person"], "",
        "## Equal compute", "", *[f"- {a}" for a in accounting], "",
        "## Time (wall; process CPU, all threads)", "",
        *[f"- {k}: {v['wall_s']:.0f} s wall, {v['cpu_s']:.0f} s CPU" for k, v in times.items()], "",
        "## Verdict", "", t["verdict"], ""])
    return result, markdown


ROWS = {"meta": "meta start", "ordinary": "ordinary start (equal compute)", "pretrained": "pretrained start",
        "best other": "best other start (per k, on validation)"}


def tables(result: dict) -> dict[str, str]:
    """Markdown tables of a bench_meta result: test, lr, gain, person, verdict (report.py's views too)."""
    ks = [str(k) for k in result["k"]]
    head = ["| start | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---:|" * len(ks)]
    test = head + [f"| {label} | " + " | ".join(
        "{:.2f} ± {:.2f}".format(*result["test_psnr_db"][kind][k]) for k in ks) + " |" for kind, label in ROWS.items()]
    lr = head + [f"| {label} | " + " | ".join(
        "-" if k == "0" else f"{result['chosen_lr'][kind][k]:g}" + (
            f" ({result['best_other_kind'][k]})" if kind == "best other" else "") for k in ks) + " |"
        for kind, label in ROWS.items()]
    gain = head + [f"| {label} | " + " | ".join(
        "{:+.2f} ± {:.2f} ({}/{})".format(*g[k]) for k in ks) + " |" for label, g in result["paired_gain_db"].items()]
    person = ["| person | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---:|" * len(ks)] + [
        f"| {p} | " + " | ".join(f"{g[k]:+.2f}" for k in ks) + " |"
        for p, g in result["gain_over_best_other_by_person_db"].items()]
    lines = verdict_of(result) if "test_psnr_db_by_seed_person" in result else result["verdict"]
    return {"test": "\n".join(test), "lr": "\n".join(lr), "gain": "\n".join(gain), "person": "\n".join(person),
            "verdict": "\n".join(f"- {line}" for line in lines)}


def verdict_of(result: dict) -> list[str]:
    """The verdict lines recomputed from a result's stored per-pair test scores (so a
    change to the wording reaches results already written)."""
    import argparse

    def pairs(kind: str, k: int) -> dict:
        return {(None if s == "None" else int(s), p): v
                for (s, p), v in ((key.split("|", 1), v)
                                  for key, v in result["test_psnr_db_by_seed_person"][kind][str(k)].items())}

    ks = result["k"]
    chosen = {kind: {k: {"test": pairs(kind, k), "kind": result["best_other_kind"][str(k)]} for k in ks}
              for kind in ("meta", "best other")}
    gains = {k: paired_gains(chosen["meta"][k]["test"], chosen["best other"][k]["test"]) for k in ks}
    args = argparse.Namespace(k=ks, within=result["target"]["within"], reference=result["target"]["reference"])
    return verdict(chosen, gains, args)[0]


def verdict(chosen, gains: dict[int, list[float]], args) -> tuple[list[str], dict]:
    """Plain sentences from the numbers, and the target (meta at `within` vs best other at `reference`).

    A gain counts as clear when its mean over the seed x person pairs is more than two
    standard errors from zero.
    """
    ks = [k for k in args.k if k]
    lines = []
    clear = {k: _clear(gains[k]) for k in ks}
    for k in ks:
        g = gains[k]
        lines.append(f"k = {k}: meta start {np.mean(g):+.2f} ± {np.std(g):.2f} dB against the best other start "
                     f"({chosen['best other'][k]['kind']}), ahead in {sum(x > 0 for x in g)} of {len(g)} "
                     f"seed x person pairs: {clear[k]}")
    ahead = [k for k in ks if clear[k] == "ahead"]
    behind = [k for k in ks if clear[k] == "behind"]
    if len(ahead) == len(ks):
        lines.append("Reptile pays off at this scale: the meta start is clearly ahead of the best other start "
                     "at every k.")
    elif len(behind) == len(ks):
        lines.append("Reptile does not pay off at this scale: the meta start is clearly behind the best other "
                     "start at every k.")
    else:
        parts = [f"{what} at k = {_listed(which)}" for what, which in
                 (("clearly ahead", ahead), ("clearly behind", behind),
                  ("within the spread", [k for k in ks if k not in ahead + behind])) if which]
        lines.append("Reptile does not clearly pay off at this scale: the meta start is "
                     + ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] + ".")
    target = {"within": args.within, "reference": args.reference, "met": None}
    if args.within in args.k and args.reference in args.k:
        meta = float(np.mean(list(chosen["meta"][args.within]["test"].values())))
        other = float(np.mean(list(chosen["best other"][args.reference]["test"].values())))
        target.update(met=meta >= other, meta_db=meta, other_db=other)
        lines.append(f"Target {'MET' if meta >= other else 'NOT MET'}: meta after {args.within} steps {meta:.2f} dB "
                     f"against the best other start after {args.reference} steps {other:.2f} dB "
                     f"({meta - other:+.2f} dB).")
    return lines, target


def _clear(gains: list[float]) -> str:
    """"ahead" / "behind" when the mean paired gain is more than two standard errors from 0."""
    mean, err = float(np.mean(gains)), 2 * float(np.std(gains, ddof=1) if len(gains) > 1 else np.inf) / np.sqrt(len(gains))
    return "ahead" if mean - err > 0 else "behind" if mean + err < 0 else "within the spread"


def _listed(ks: list[int]) -> str:
    return ", ".join(map(str, ks)) or "none"
