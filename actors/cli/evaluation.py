"""Run a question set against a Manta service and score it: the engine of ``manta eval`` and of
``bench/answer_quality.py``.

It drives the service only over HTTP, as a user would, so what it measures (answers, cited times,
latency) is what a client gets. The embedded service it can start uses a fresh temporary data_dir:
streams from an earlier run must not answer this run's questions. Scoring is in
``streaming.tools.evaluate``; this module only gathers responses.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from streaming.tools.evaluate import (MODES, SPLITS, TYPES, EvalQuestion, EvalReport, EvalResult, QuestionError,
                                Similarity, error_result, questions_from_jsonl, score, select_split)

from actors.cli.client import CliError, Client, status_table
from actors.cli.config import make_settings

REPO = Path(__file__).resolve().parents[2]
FINAL = ("finished", "failed", "stopped", "lost")
HEALTHY_WITHIN_S = 180.0


# -- inputs --------------------------------------------------------------------------------------
def default_media_dir() -> Path:
    return Path(os.environ.get("MANTA_MEDIA_DIR") or REPO.parent / "shared" / "media")


def load_questions(path: str | Path, types: list[str] | None = None,
                   split: str | None = None) -> list[EvalQuestion]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read questions file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"questions file {path} is not UTF-8 text") from None
    try:
        questions = questions_from_jsonl(text, source=path.name)
    except QuestionError as exc:
        raise CliError(str(exc)) from None
    if split is not None:
        if split not in SPLITS:
            raise CliError(f"unknown split {split} (expected {', '.join(SPLITS)})")
        questions = select_split(questions, split)
        if not questions:
            raise CliError(f"{path.name} has no questions in the {split} split (no \"split\" field?)")
    wanted = [t for arg in types or [] for t in arg.split(",") if t]
    unknown = sorted(set(wanted) - set(TYPES))
    if unknown:
        raise CliError(f"unknown question type {', '.join(unknown)} (expected {', '.join(TYPES)})")
    if wanted:
        questions = [q for q in questions if q.type in wanted]
        if not questions:
            raise CliError(f"{path.name} has no questions of type {', '.join(wanted)}")
    return questions


def parse_modes(text: str) -> list[str]:
    modes = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise CliError(f"unknown retrieval mode {', '.join(bad) or '(none)'} (expected {', '.join(MODES)})")
    return modes


def media_paths(questions: list[EvalQuestion], media_dir: Path) -> dict[str, Path]:
    """Stream id -> file for every media file the questions name; all missing ones in one error."""
    paths = {slug: (media_dir / name).resolve() for q in questions for name, slug in zip(q.media, q.streams)}
    missing = sorted({p.name for p in paths.values() if not p.is_file()})
    if missing:
        raise CliError(f"missing media in {media_dir}: {', '.join(missing)} (set --media-dir or MANTA_MEDIA_DIR)")
    return paths


def minilm_similarity(console: Console) -> Similarity | None:
    """Cosine of MiniLM vectors (the service's own embedder); None when it cannot load, so the
    run still scores exact matches."""
    try:
        from manta_models.perception.embed import TextEmbedder

        model = TextEmbedder("minilm")
    except Exception as exc:  # noqa: BLE001 - a missing model degrades scoring, it does not stop it
        console.print(f"[yellow]warning:[/yellow] answer similarity off: {exc}")
        return None
    cache: dict[str, object] = {}

    def vector(text: str):
        if text not in cache:
            cache[text] = model.encode([text])[0]
        return cache[text]

    return lambda a, b: float(vector(a) @ vector(b))


# -- the service -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def embedded_service(settings, console: Console) -> Iterator[str]:
    """A private Ray + Serve + Manta on an empty temporary data_dir; yields its base URL."""
    from actors import logs, runtime

    with tempfile.TemporaryDirectory(prefix="manta-eval-") as tmp:
        settings = settings.model_copy(update={"data_dir": Path(tmp)})
        # Settings read the environment before their arguments, in every replica too: a user's
        # MANTA_DATA_DIR would bring old streams in. Workers inherit it from here, set before Ray.
        saved = os.environ.get("MANTA_DATA_DIR")
        os.environ["MANTA_DATA_DIR"] = tmp
        logs.configure_logging()
        try:
            with console.status("starting Ray and the Serve app…"):
                runtime.start_ray(settings)
                url = runtime.deploy(settings, restore=False)
                wait_healthy(url)
            yield url
        finally:
            runtime.shutdown(settings)
            if saved is None:
                os.environ.pop("MANTA_DATA_DIR", None)
            else:
                os.environ["MANTA_DATA_DIR"] = saved


def wait_healthy(url: str, within: float = HEALTHY_WITHIN_S) -> None:
    client = Client(url, timeout=10)
    deadline = time.monotonic() + within
    while True:
        try:
            if client.http.get("/healthz").status_code == 200:
                return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        if time.monotonic() > deadline:
            raise CliError(f"Manta at {url} did not become healthy within {within:g} s")
        time.sleep(0.25)


def ingest_all(client: Client, media: dict[str, Path], timeout: float, console: Console) -> dict[str, str]:
    """Start every stream at once, then show progress until all end; returns errors by stream id."""
    errors: dict[str, str] = {}
    pending: dict[str, dict] = {}
    for slug, path in media.items():
        try:
            client.call("POST", "/v1/streams", json={"source": str(path), "name": slug})
        except CliError as exc:
            if exc.code == 2:
                raise
            if not str(exc).startswith("409"):
                errors[slug] = f"could not ingest {path.name}: {exc}"
                continue
            # Already there (a running service): reuse it if it finished or is still going.
        pending[slug] = {"id": slug, "state": "starting"}
    deadline = time.monotonic() + timeout
    with Live(status_table(list(pending.values())), console=console, refresh_per_second=4) as live:
        while True:
            for slug in [s for s, st in pending.items() if st.get("state") not in FINAL]:
                try:
                    pending[slug] = client.call("GET", f"/v1/streams/{slug}")
                except CliError as exc:
                    if exc.code == 2:
                        raise
                    pending[slug] = {"id": slug, "state": "failed", "last_error": str(exc)}
            live.update(status_table(list(pending.values())))
            if all(st.get("state") in FINAL for st in pending.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    for slug, st in pending.items():
        if st.get("state") != "finished":
            why = st.get("last_error") or (f"still {st.get('state')} after {timeout:g} s"
                                           if st.get("state") not in FINAL else "no reason given")
            errors[slug] = f"stream {slug} {st.get('state')}: {why}"
    return errors


def ask(client: Client, q: EvalQuestion, mode: str, similarity: Similarity | None,
        stream_errors: dict[str, str]) -> EvalResult:
    broken = [stream_errors[s] for s in q.streams if s in stream_errors]
    if broken:
        return error_result(q, mode, "; ".join(broken))
    body = {"question": q.question, "streams": list(q.streams), "start": None, "end": None,
            "retrieval": mode, "generate": True}
    started = time.perf_counter()
    try:
        response = client.call("POST", "/v1/query", json=body)
    except CliError as exc:
        if exc.code == 2 and "in time" not in str(exc):  # the service is gone: stop, do not score
            raise
        return error_result(q, mode, str(exc))
    client_ms = (time.perf_counter() - started) * 1000
    try:
        return score(q, mode, response, similarity, client_ms=client_ms)
    except (ValueError, TypeError) as exc:
        return error_result(q, mode, f"response not as the API promises: {exc}")


def ask_all(client: Client, questions: list[EvalQuestion], modes: list[str], similarity: Similarity | None,
            stream_errors: dict[str, str], console: Console) -> list[EvalResult]:
    """One question at a time, so each latency is the service's alone."""
    results = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("asking", total=len(questions) * len(modes))
        for q in questions:
            for mode in modes:
                results.append(ask(client, q, mode, similarity, stream_errors))
                progress.advance(task)
    return results


def evaluate(questions: list[EvalQuestion], media: dict[str, Path], url: str, modes: list[str],
             timeout: float, console: Console, similarity: Similarity | None) -> EvalReport:
    client = Client(url, timeout=timeout)
    needed = {s: media[s] for q in questions for s in q.streams}
    console.print(f"ingesting {len(needed)} media file(s) into {url}")
    stream_errors = ingest_all(client, needed, timeout, console)
    for problem in stream_errors.values():
        console.print(f"[red]error:[/red] {escape(problem)} (its questions are reported as errors)")
    return EvalReport(ask_all(client, questions, modes, similarity, stream_errors, console))


# -- output --------------------------------------------------------------------------------------
def _mark(flag: bool | None) -> str:
    return "–" if flag is None else "[green]✓[/green]" if flag else "[red]✗[/red]"


def results_table(results: list[EvalResult], width: int = 70) -> Table:
    table = Table(title="Answers", show_lines=False)
    for col in ("id", "type", "mode", "answer", "time", "stream", "ms", "answer text"):
        table.add_column(col, overflow="fold" if col == "answer text" else "ellipsis")
    for r in results:
        text = r.answer if r.error is None else f"[red]{escape(r.error)}[/red]"
        if r.error is None:
            text = escape(text if len(text) <= width else text[:width - 1] + "…")
        total = r.timings.get("total_ms", r.timings.get("client_ms"))
        table.add_row(escape(r.id), r.type, r.mode, _mark(r.answer_correct), _mark(r.time_correct),
                      _mark(r.stream_correct), "" if total is None else f"{total:.0f}", text)
    return table


def write_outputs(report: EvalReport, questions_file: str, json_out: str | None, md_out: str | None) -> None:
    try:
        if json_out:
            doc = {"questions": str(questions_file)} | report.to_dict()
            Path(json_out).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        if md_out:
            Path(md_out).write_text(report.to_markdown())
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename}: {exc.strerror}") from None


def run_cli(args, console: Console) -> int:
    """``manta eval``: validate everything before starting anything, then ingest, ask, report."""
    questions = load_questions(args.questions, args.types, getattr(args, "split", None))
    modes = parse_modes(args.modes)
    media_dir = Path(args.media_dir).expanduser() if args.media_dir else default_media_dir()
    media = media_paths(questions, media_dir)
    part = f" ({args.split} split)" if getattr(args, "split", None) else ""
    console.print(f"{len(questions)} question(s){part} × {len(modes)} mode(s) from {args.questions}")
    with console.status("loading MiniLM for answer similarity…"):
        similarity = minilm_similarity(console)
    if args.url:
        report = evaluate(questions, media, args.url, modes, args.timeout, console, similarity)
    else:
        settings = make_settings(args)
        if args.port is None:  # never collide with a service the user already runs on 8000
            settings = settings.model_copy(update={"port": free_port()})
        with embedded_service(settings, console) as url:
            report = evaluate(questions, media, url, modes, args.timeout, console, similarity)
    console.print(results_table(report.results))
    console.print(Markdown(report.to_markdown()))
    write_outputs(report, args.questions, args.json, args.markdown)
    return 0
