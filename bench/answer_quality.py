"""Answer quality: Manta's hierarchical retrieval vs the single-level baseline, same run, same models.

Runs ``manta eval`` (actors.cli.evaluation) on eval/questions.jsonl against a private, empty Manta in
this process, asking every question in both retrieval modes: "manta" (the hierarchy) and
"baseline" (fixed 30 s chunks, one level, dense top-k: what most video-RAG systems do). Both modes
share the ingest, the models and the answer generator, so the difference is the retrieval alone.
Gold answers and spans come only from ../shared/media/README.md (each question's ``note`` says
which fact). A time is right only when the cited span lies inside the gold span ± its tolerance.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console

from actors.cli.evaluation import (default_media_dir, embedded_service, evaluate, load_questions,
                               media_paths, minilm_similarity, parse_modes, write_outputs)
from streaming.tools.evaluate import MODES, SIMILAR, SPLITS, EvalReport
from streaming.settings import Settings

from .common import REPO, emit, free_port, parse_args, section

KEY = "answer_quality"
TITLE = "Answer quality: Manta vs the single-level baseline"
QUESTIONS = REPO / "eval" / "questions.jsonl"


def not_found_decision(results) -> list[str]:
    """The not-found gate as a classifier of absent questions, per mode: precision of its "not found"
    (how many were truly absent) and recall on answerable questions (how many got an answer)."""
    rows = ["| mode | said \"not found\" | of which absent (precision) | answerable | answered (recall) |",
            "|---|---|---|---|---|"]
    for mode in MODES:
        mine = [r for r in results if r.mode == mode and r.error is None]
        if not mine:
            continue
        refused = [r for r in mine if r.found is False]
        answerable = [r for r in mine if r.type != "absent"]
        answered = [r for r in answerable if r.found]
        prec = sum(r.type == "absent" for r in refused) / len(refused) if refused else float("nan")
        rec = len(answered) / len(answerable) if answerable else float("nan")
        rows.append(f"| {mode} | {len(refused)} | {prec:.0%} | {len(answerable)} | {len(answered)} ({rec:.0%}) |")
    return rows


def main() -> None:
    args = parse_args(__doc__, [
        ("--questions", dict(default=str(QUESTIONS), help="question file (JSONL)")),
        ("--url", dict(help="use this running service instead of starting an empty one")),
        ("--timeout", dict(type=float, default=1800.0, help="ingest wait and per-answer limit, s")),
        ("--json", dict(help="also write every result here")),
        ("--modes", dict(default=",".join(MODES), help="retrieval modes to ask in, comma separated"))])
    console = Console(stderr=True)  # stdout carries only the Markdown section
    questions = load_questions(args.questions)
    media = media_paths(questions, default_media_dir())
    similarity = minilm_similarity(console)
    modes = parse_modes(args.modes)
    if args.url:
        url = args.url
        report = evaluate(questions, media, url, modes, args.timeout, console, similarity)
    else:
        settings = Settings(port=free_port())
        with embedded_service(settings, console) as url:
            report = evaluate(questions, media, url, modes, args.timeout, console, similarity)
    write_outputs(report, args.questions, args.json, None)
    counts = Counter(q.type for q in questions)
    models = sorted({r.model for r in report.results if r.model})
    errors = [r for r in report.results if r.error]
    try:
        shown_path = Path(args.questions).resolve().relative_to(REPO)
    except ValueError:
        shown_path = Path(args.questions)
    body = [f"{len(questions)} questions from `{shown_path}` "
            f"({', '.join(f'{t} {n}' for t, n in counts.items())}) over {len(media)} files of "
            "`../shared/media`, each asked once per mode on one service: "
            + ("an empty private one, default settings" if not args.url else f"{url}") + ".",
            f"Answer model: {', '.join(models) or 'none named by the service'}.", "",
            "Answer: a gold string occurs in the normalised answer (\"match\"), or the MiniLM cosine "
            f"between answer and gold is ≥ {SIMILAR:g} (\"similar\"); absent questions: right iff the "
            "service says it did not find it. Time: `citations[0]` is in the right stream and lies inside "
            "the gold span ± tolerance (\"contained\"); \"overlaps\" is the looser rate. cross_stream "
            "answers also need `citations[0]` in the right stream. A question whose stream failed or whose "
            "request failed counts as wrong. Latency is per question, measured by the service (client = "
            "the HTTP round trip).", ""]
    if errors:
        body += [f"Errors ({len(errors)}): " + "; ".join(f"{r.id}/{r.mode}: {r.error}" for r in errors[:10]), ""]
    split_of = {q.id: q.split for q in questions}
    splits = [s for s in SPLITS if s in split_of.values()]
    if not splits:
        body += report.to_markdown().splitlines()
        body += ["", "Not-found decision:", "", *not_found_decision(report.results)]
    for split in splits:  # tuned on dev only; test is reported every time, never tuned on
        part = [r for r in report.results if split_of[r.id] == split]
        body += [f"## Split `{split}` ({sum(1 for v in split_of.values() if v == split)} questions)", "",
                 *EvalReport(part, report.threshold).to_markdown().replace("### ", "#### ").splitlines(), "",
                 "Not-found decision:", "", *not_found_decision(part), ""]
    key = KEY if Path(args.questions).resolve() == QUESTIONS.resolve() else f"{KEY}_{Path(args.questions).stem}"
    emit(key, section(TITLE + (f" ({Path(args.questions).name})" if key != KEY else ""), body), args.write)


if __name__ == "__main__":
    main()
