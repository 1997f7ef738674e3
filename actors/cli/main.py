"""``manta``: run the service, feed it streams, ask it questions.

``up`` and ``demo`` start (or join) Ray and deploy the Serve app in this process; every other
command is a plain HTTP client of a running service, so it needs no Ray connection or token.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from rich.live import Live
from rich.markup import escape


from actors.cli.client import CliError, Client, console, err, status_table, stream_answer
from actors.cli.config import make_settings
from actors.cli import monitor

def wait_for_stream(client: Client, stream_id: str, timeout: float) -> dict:
    """Show live progress until the stream is finished, failed or stopped."""
    deadline = time.monotonic() + timeout
    with Live(status_table([]), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            status = client.call("GET", f"/v1/streams/{stream_id}")
            live.update(status_table([status]))
            if status.get("state") in ("finished", "failed", "stopped", "lost"):
                return status
            if time.monotonic() > deadline:
                raise CliError(f"stream {stream_id} still {status.get('state')} after {timeout:g} s")
            time.sleep(0.5)


# -- commands --------------------------------------------------------------------------------------

def cmd_up(args) -> int:
    from actors import logs, runtime

    settings = make_settings(args)
    try:
        settings.check_exposure()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    logs.configure_logging()
    with console.status("starting Ray and the Serve app…"):
        runtime.start_ray(settings)
        url = runtime.deploy(settings)
    console.print(f"Manta is serving on [bold]{url}[/bold] — Ctrl+C to stop.")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        runtime.shutdown(settings)
    return 0


def cmd_ingest(args) -> int:
    settings = make_settings(args)
    client = Client(settings.url, token=settings.api_token())
    source = args.source
    if "://" not in source:  # the service resolves paths on its side: send an absolute one
        source = str(Path(source).expanduser().resolve())
    body = {"source": source, "name": args.name, "pace": args.pace}
    result = client.call("POST", "/v1/streams", json={k: v for k, v in body.items() if v})
    console.print(f"stream [bold]{result['id']}[/bold] ingesting {source}")
    if args.wait:
        final = wait_for_stream(client, result["id"], args.timeout)
        if final.get("state") == "failed":
            raise CliError(f"stream {result['id']} failed: {final.get('last_error')}")
    return 0


def cmd_ask(args) -> int:
    settings = make_settings(args)
    client = Client(settings.url, token=settings.api_token())
    body = {"question": args.question, "streams": args.stream or None, "start": args.start,
            "end": args.end, "k": args.k, "modality": args.modality,
            "generate": False if args.no_generate else None}
    body = {k: v for k, v in body.items() if v is not None}
    if args.json:
        console.print_json(data=client.call("POST", "/v1/query", json=body))
    else:
        stream_answer(client, body)
    return 0


def cmd_status(args) -> int:
    settings = make_settings(args)
    client = Client(settings.url, token=settings.api_token())

    def fetch():
        if args.stream:
            return status_table([client.call("GET", f"/v1/streams/{args.stream}")])
        listed = client.call("GET", "/v1/streams")
        return status_table(listed["streams"], listed.get("total"))

    if not args.watch:
        console.print(fetch())
        return 0
    with Live(fetch(), console=console, refresh_per_second=2) as live:
        try:
            while True:
                time.sleep(1.0)
                live.update(fetch())
        except KeyboardInterrupt:
            return 0


def cmd_stop(args) -> int:
    settings = make_settings(args)
    client = Client(settings.url, token=settings.api_token())
    status = client.call("DELETE", f"/v1/streams/{args.stream}",
                                       params={"remove": "true"} if args.remove else None)
    console.print(f"stream {args.stream} removed: its actor ended and its data was deleted" if args.remove
                  else f"stream {args.stream} {status.get('state')}; its segments stay searchable")
    return 0


def cmd_replay(args) -> int:
    from streaming.tools.replay import replay

    path = Path(args.file).expanduser()
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    if not args.url.startswith(("udp://", "tcp://", "srt://", "rtp://")):
        raise CliError("replay sends MPEG-TS: use a udp://, tcp://, srt:// or rtp:// URL")
    console.print(f"sending {path.name} to {args.url} as live MPEG-TS at {args.speed:g}× (Ctrl+C to stop)")
    try:
        log = replay(path, args.url, speed=args.speed)
    except Exception as exc:  # noqa: BLE001 - PyAV errors (bad URL, unreadable file) as one line
        raise CliError(f"replay failed: {exc}") from None
    console.print(f"sent {log.sent[-1][0]:.1f} s of media" if log.sent else "sent nothing")
    return 0


def cmd_broadcast(args) -> int:
    from streaming.tools import broadcast

    path = Path(args.file).expanduser()
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    if args.speed <= 0:
        raise CliError("--speed must be positive")
    serve = {"http-ts": broadcast.http_ts, "hls": broadcast.hls, "rtmp": broadcast.rtmp,
             "rtsp": broadcast.rtsp, "srt": broadcast.srt}[args.protocol]
    try:
        b = serve(path, args.port, speed=args.speed)
    except Exception as exc:  # noqa: BLE001 - a taken port, an unreadable file: one line
        raise CliError(f"broadcast failed: {exc}") from None
    console.print(f"serving {path.name} at {args.speed:g}× on 127.0.0.1 (Ctrl+C to stop); point Manta at it:\n"
                  f"  manta ingest {b.url}")
    try:
        while (b.sender is None or b.sender.is_alive()) and not b.errors:
            b.stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        b.close()
    if b.errors:
        raise CliError(f"broadcast failed: {b.errors[0]}")
    return 0


DEMO_QUESTIONS = ("When will the harbour bridge close for repairs?",
                  "Who won the regional rowing final?")


def cmd_demo(args) -> int:
    from manta_models.tts import demo_speaker
    from streaming.tools.demo import ensure_demo_media

    from actors import logs, runtime

    settings = make_settings(args)
    logs.configure_logging()
    with console.status("making the demo bulletin (eSpeak NG + PyAV)…"):
        demo = ensure_demo_media(settings.cache_dir, *demo_speaker())
    console.print(f"demo source: {demo.path} ({demo.duration:.1f} s of video with speech)")
    with console.status("starting Ray and the Serve app…"):
        runtime.start_ray(settings)
        # The demo starts from scratch each time: its "demo" stream from an earlier run is removed.
        url = runtime.deploy(settings, restore=False)
    console.print(f"Manta is serving on [bold]{url}[/bold]")
    try:
        client = Client(url, timeout=60)
        # A stored stream's name is refused (409) until it is removed: the demo removes its own.
        r = client.http.delete("/v1/streams/demo", params={"remove": "true"})
        if r.status_code != 404:
            client.raise_for(r)
        result = client.call("POST", "/v1/streams", json={"source": str(demo.path), "name": "demo"})
        final = wait_for_stream(client, result["id"], args.timeout)
        if final.get("state") != "finished":
            raise CliError(f"demo stream ended {final.get('state')}: {final.get('last_error')}")
        for question in args.question or DEMO_QUESTIONS:
            console.print(f"\n[dim]Q:[/dim] {question}")
            stream_answer(client, {"question": question})
        if args.keep:
            console.print(f"\nStill serving on {url}; try: manta ask \"what is the weather tomorrow?\"  "
                          "(Ctrl+C to stop)")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        runtime.shutdown(settings)
    return 0


def cmd_eval(args) -> int:
    from actors.cli.evaluation import run_cli

    try:
        return run_cli(args, console)
    except CliError as exc:  # its messages quote spans like [t0, t1]: not rich markup
        raise CliError(escape(str(exc)), exc.code) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="manta", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, server: bool = False):
        sp.add_argument("--config", help="serve_config.yaml to read settings from")
        sp.add_argument("--host", help="service host (default 127.0.0.1)")
        sp.add_argument("--port", type=int, help="service port (default 8000)")
        if server:
            sp.add_argument("--address", dest="ray_address", help="join this Ray cluster")
            sp.add_argument("--asr-model", help="base, tiny.en, or a local Whisper folder")
        return sp

    common(sub.add_parser("up", help="start Ray and the Serve app; serve until Ctrl+C"), server=True)
    sp = common(sub.add_parser("ingest", help="start ingesting a file or live URL"))
    sp.add_argument("source", help="path, file://, udp://, http(s)://, rtmp://, rtsp://, srt://")
    sp.add_argument("--name", help="stream id to use (default: derived from the source)")
    sp.add_argument("--pace", choices=("fast", "realtime"), help="files: read as fast as possible "
                    "(default) or at broadcast speed")
    sp.add_argument("--wait", action="store_true", help="show progress until the stream ends")
    sp.add_argument("--timeout", type=float, default=3600.0)
    sp = common(sub.add_parser("ask", help="ask a question about the streams"))
    sp.add_argument("question")
    sp.add_argument("--stream", action="append", help="limit to this stream (repeatable)")
    sp.add_argument("--start", type=float, help="media seconds")
    sp.add_argument("--end", type=float, help="media seconds")
    sp.add_argument("-k", type=int, help="evidence items")
    sp.add_argument("--modality", choices=("any", "said", "shown", "seen"),
                    help="what was said, shown (on-screen text, subtitles) or seen; default: guessed")
    sp.add_argument("--no-generate", action="store_true",
                    help="answer with the best quote only (no answer model)")
    sp.add_argument("--json", action="store_true", help="print the raw JSON response")
    sp = common(sub.add_parser("status", help="progress per stream"))
    sp.add_argument("stream", nargs="?")
    sp.add_argument("--watch", action="store_true", help="refresh until Ctrl+C")
    sp = common(sub.add_parser("stop", help="stop ingesting a stream (its data stays searchable)"))
    sp.add_argument("stream")
    sp.add_argument("--remove", action="store_true",
                    help="also forget it: end its actor (freeing its CPU share) and delete its data")
    sp = sub.add_parser("replay", help="send a file as a live MPEG-TS broadcast (to try live ingest)")
    sp.add_argument("file")
    sp.add_argument("url", help="e.g. udp://127.0.0.1:5000 (start `manta ingest` on it first)")
    sp.add_argument("--speed", type=float, default=1.0, help="1.0 = real time")
    sp = sub.add_parser("broadcast", help="serve a file as a live HTTP-TS, HLS, RTMP or RTSP broadcast on "
                                          "127.0.0.1 (to try those protocols)")
    sp.add_argument("file")
    sp.add_argument("--protocol", choices=("http-ts", "hls", "rtmp", "rtsp", "srt"), default="hls")
    sp.add_argument("--port", type=int, default=8554)
    sp.add_argument("--speed", type=float, default=1.0, help="1.0 = real time")
    sp = common(sub.add_parser("demo", help="up + ingest a generated demo bulletin + ask"), server=True)
    sp.add_argument("--question", action="append", help="ask this instead of the demo questions")
    sp.add_argument("--keep", action="store_true", help="keep serving after answering")
    sp.add_argument("--timeout", type=float, default=600.0)
    sp = common(sub.add_parser("eval", help="ask a JSONL question set; score answers and cited times"),
                server=True)
    sp.add_argument("questions", help="question file, one JSON object a line (see eval/questions.jsonl)")
    sp.add_argument("--media-dir", help="where its media files lie (default $MANTA_MEDIA_DIR or ../shared/media)")
    sp.add_argument("--url", help="ask this running service (default: start an empty one in this process)")
    sp.add_argument("--modes", default="manta,baseline", help="retrieval modes to compare, comma-separated")
    sp.add_argument("--type", dest="types", action="append",
                    help="only questions of this type (repeatable): said, shown, when, last_n, "
                         "cross_stream, absent, overview, who, language, at_time, paraphrase")
    sp.add_argument("--split", choices=("dev", "test"),
                    help="only the questions of this split (see eval/README.md; tune on dev only)")
    sp.add_argument("--json", help="write every result and the summary here")
    sp.add_argument("--markdown", help="write the summary tables here")
    sp.add_argument("--timeout", type=float, default=900.0,
                    help="seconds to wait for ingest, and for each answer")
    monitor.add_parsers(sub, common)  # watch, watches, unwatch, alerts
    return p


COMMANDS = {"up": cmd_up, "ingest": cmd_ingest, "ask": cmd_ask, "status": cmd_status,
            "stop": cmd_stop, "demo": cmd_demo, "replay": cmd_replay, "broadcast": cmd_broadcast, "eval": cmd_eval,
            **monitor.COMMANDS}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        # One line, never wrapped at the terminal's width: a path in it stays whole to copy.
        err.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a user sees one line; MANTA_DEBUG=1 shows the trace
        if os.environ.get("MANTA_DEBUG"):
            raise
        err.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
