"""Is the stream model worth having? Boundary detection: Mamba surprise vs cosine distance to the previous segment.

Ground truth: the shot cuts listed in ../shared/media/README.md (popeye p1/p3, big buck bunny) and
programme changes made by concatenating different clips (every junction is a boundary). Both
detectors see the same micro segments and the same fused features, and both go through the same
per-stream z-scoring and peak rule (streaming.ingest.novelty), so only the novelty signal differs.

The Mamba model is evaluated out of sample: files are split in two folds, a model is trained on
one fold with manta_models.train_stream.train (same recipe as the shipped weights) and scored on
the other, then the folds swap.
"""

from __future__ import annotations

import random

from bench.common import MEDIA, emit, parse_args, section, table
from manta_models.statespace.stream_model import StreamModelConfig, StreamStepper
from manta_models.train_stream import Extracted, extract, media_files, train
from streaming.records import SegmentFeatures
from streaming.ingest.novelty import SurpriseTracker, feature_distance

KEY = "boundaries"
CUTS = {"popeye_sinbad_1936_p1.mkv": [12.375, 27.375, 40.083],
        "popeye_sinbad_1936_p3.mkv": [13.792, 22.083, 30.75, 44.625, 55.667],
        "big_buck_bunny_0_30.webm": [11.795, 15.67, 22.961]}
TOLERANCE_S = 3.0  # one micro segment


def mamba_scores(model, seq: list[SegmentFeatures]) -> list[float]:
    stepper = StreamStepper(model)
    return [o.surprise if o.surprise is not None else 0.0 for o in (stepper.step(f.blocks()) for f in seq)]


def cosine_scores(seq: list[SegmentFeatures]) -> list[float]:
    return [feature_distance(seq[i - 1].blocks() if i else None, f.blocks()) or 0.0
            for i, f in enumerate(seq)]


def proposals(scores: list[float], threshold: float) -> list[int]:
    tracker = SurpriseTracker(threshold=threshold)
    return [i for i, s in enumerate(scores) if tracker.update(s)[1]]


def match(pred_t: list[float], truth: list[float]) -> tuple[int, int, int]:
    """Greedy one-to-one matching within the tolerance: (true positives, predicted, actual)."""
    used, tp = set(), 0
    for t in pred_t:
        best = min((abs(t - b), j) for j, b in enumerate(truth) if j not in used) if len(used) < len(truth) else None
        if best is not None and best[0] <= TOLERANCE_S:
            used.add(best[1])
            tp += 1
    return tp, len(pred_t), len(truth)


def prf(tp: int, npred: int, ntrue: int) -> tuple[float, float, float]:
    p = tp / npred if npred else 0.0
    r = tp / ntrue if ntrue else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def concatenations(items: list[tuple[str, Extracted]], rng: random.Random, n: int):
    """Sequences made of whole clips in random order: (features, starts, true boundaries)."""
    for _ in range(n):
        order = rng.sample(items, len(items))
        feats, starts, truth, offset = [], [], [], 0.0
        for k, (name, ex) in enumerate(order):
            if k:
                truth.append(offset)
            truth += [offset + c for c in CUTS.get(name, [])]
            feats += ex.features
            starts += list(offset + ex.t0)
            offset += float(ex.t1[-1])
        yield feats, starts, truth


def evaluate(model, items, rng, thresholds) -> dict:
    """Counts per (set, detector, threshold)."""
    counts: dict = {}
    sets = {"shot cuts": [(ex.features, list(ex.t0), CUTS[name]) for name, ex in items if name in CUTS],
            "programme changes": list(concatenations(items, rng, 6))}
    for set_name, seqs in sets.items():
        for feats, starts, truth in seqs:
            mamba, cosine = mamba_scores(model, feats), cosine_scores(feats)
            both = [a + b for a, b in zip(mamba, cosine)]
            for det, scores in (("mamba", mamba), ("cosine", cosine), ("mamba + cosine", both)):
                for th in thresholds:
                    got = match([starts[i] for i in proposals(scores, th)], truth)
                    key = (set_name, det, th)
                    counts[key] = tuple(a + b for a, b in zip(counts.get(key, (0, 0, 0)), got))
    return counts


def pixel_cuts(path) -> list[float]:
    """Cut times from streaming.source.scenes.SceneDetector over every decoded frame of a file."""
    import av

    from streaming.source.scenes import SceneDetector, thumbnail

    detector, cuts = SceneDetector(), []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            cut = detector.update(frame.time, thumbnail(frame))
            if cut is not None:
                cuts.append(cut.t)
    return cuts


def main() -> None:
    args = parse_args(__doc__, [("--steps", dict(type=int, default=800)),
                                ("--threshold", dict(type=float, default=1.5))])
    from manta_models.loader import ModelSet
    from streaming.settings import Settings

    settings = Settings(stream_model="off", pace="fast")
    models = ModelSet(settings).for_stream
    files = media_files([MEDIA])
    data = [(p.name, extract(p, settings, models)) for p in files]
    data = [(n, ex) for n, ex in data if len(ex.features) >= 2]
    # Folds keep one popeye part and big buck bunny apart, so each fold has cuts to find.
    fold_a = [d for i, d in enumerate(data) if i % 2 == 0]
    fold_b = [d for i, d in enumerate(data) if i % 2 == 1]
    thresholds = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0]
    if args.threshold not in thresholds:
        thresholds.append(args.threshold)
    total: dict = {}
    curves = []
    for train_on, test_on in ((fold_a, fold_b), (fold_b, fold_a)):
        model, curve = train([ex.features for _, ex in train_on], StreamModelConfig(), steps=args.steps,
                             batch=16, length=24, lr=3e-3, align_weight=0.2, seed=0, log_every=args.steps)
        curves.append(curve[-1]["predict"])
        counts = evaluate(model, test_on, random.Random(0), thresholds)
        for k, v in counts.items():
            total[k] = tuple(a + b for a, b in zip(total.get(k, (0, 0, 0)), v))
    rows = []
    for set_name in ("shot cuts", "programme changes"):
        for det in ("mamba", "cosine", "mamba + cosine"):
            p, r, f = prf(*total[(set_name, det, args.threshold)])
            best_th, best = max(((th, prf(*total[(set_name, det, th)])[2]) for th in thresholds),
                                key=lambda x: x[1])
            tp, npred, ntrue = total[(set_name, det, args.threshold)]
            rows.append([set_name, det, f"{p:.2f}", f"{r:.2f}", f"**{f:.2f}**", f"{tp}/{npred}/{ntrue}",
                         f"{best:.2f} (z ≥ {best_th:g})"])
    # The pixel-level shot-cut detector the pipeline also uses (no training, so no folds).
    tp, npred, ntrue = (sum(x) for x in zip(*(match(pixel_cuts(MEDIA / n), c) for n, c in CUTS.items())))
    p, r, f = prf(tp, npred, ntrue)
    rows.insert(3, ["shot cuts", "pixel cut detector (streaming/source/scenes.py)", f"{p:.2f}", f"{r:.2f}",
                    f"**{f:.2f}**", f"{tp}/{npred}/{ntrue}", "–"])
    fold_names = [", ".join(n for n, _ in fold) for fold in (fold_a, fold_b)]
    body = [f"Folds: A = {fold_names[0]}; B = {fold_names[1]}.",
            f"Models trained {args.steps} steps per fold (final predict loss {', '.join(f'{c:.3f}' for c in curves)}); "
            f"tolerance ±{TOLERANCE_S:g} s; operating point z ≥ {args.threshold:g} (Manta's default).", "",
            *table(["boundaries", "detector", "precision", "recall", "F1", "TP/pred/true",
                    "best F1 over thresholds"], rows)]
    emit(KEY, section("Is the stream model worth it? Boundary detection", body), args.write)


if __name__ == "__main__":
    main()
