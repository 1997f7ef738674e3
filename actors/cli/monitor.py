"""``manta watch``, ``watches``, ``unwatch`` and ``alerts``: standing questions and what they found.

Plain HTTP clients of a running service (/v1/watches, /v1/alerts, /v1/alerts/stream), like the
other commands. ``alerts --follow`` reads the alert stream (server-sent events) and, when the
connection drops, reconnects with ``Last-Event-ID`` so no alert is missed or shown twice.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator

import httpx
from rich.markup import escape
from rich.table import Table

from actors.cli.client import CliError, Client, console, err
from actors.cli.config import make_settings

MODALITIES = ("any", "said", "shown", "seen")
PAGE = 1000  # alerts per GET /v1/alerts (its most)
RECONNECT_S = (0.5, 1.0, 2.0, 5.0)  # waits before reconnecting the alert stream, the last repeating
READ_TIMEOUT_S = 45.0  # the service sends a keepalive every 15 s: three missed is a dead connection


def _client(args) -> Client:
    settings = make_settings(args)
    return Client(settings.url, token=settings.api_token())


def _call(client: Client, method: str, path: str, missing: str, **kw):
    """``client.call``, with a 404 said as ``missing`` (an old service without the monitoring API
    answers 404 to every path of it)."""
    try:
        return client.call(method, path, **kw)
    except CliError as exc:
        if exc.status == 404:
            raise CliError(missing) from None
        raise


def _no_api(client: Client) -> str:
    return f"Manta at {client.base} has no monitoring API (/v1/watches): it is older than this CLI"


def span(seconds: float) -> str:
    """Media seconds as m:ss (h:mm:ss from an hour on)."""
    whole = int(max(0.0, seconds or 0.0))
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def alert_line(a: dict) -> str:
    """One alert as a line of rich markup: id, span, stream, watch, quote, score (and a failed webhook)."""
    line = (f"[dim]#{a.get('id', '?')}[/dim] {span(a.get('start', 0))}–{span(a.get('end', 0))} "
            f"[bold]{escape(str(a.get('stream', '?')))}[/bold] [cyan]{escape(str(a.get('watch_text', '')))}[/cyan]"
            f" “{escape(str(a.get('quote') or a.get('text') or ''))}” {float(a.get('score') or 0):.2f}")
    hook = a.get("webhook") or {}
    if hook.get("state") == "failed":
        line += f" [yellow](webhook failed: {escape(str(hook.get('last_error') or '?'))})[/yellow]"
    return line


# -- commands --------------------------------------------------------------------------------------

def cmd_watch(args) -> int:
    client = _client(args)
    body = {"text": args.text, "streams": args.stream or None, "modality": args.modality,
            "threshold": args.threshold, "cooldown_s": args.cooldown, "webhook_url": args.webhook,
            "verify": True if args.verify else None}
    body = {k: v for k, v in body.items() if v is not None}  # the service's defaults for the rest
    watch = _call(client, "POST", "/v1/watches", _no_api(client), json=body)["watch"]
    where = ", ".join(watch.get("streams") or []) or "every stream"
    console.print(f"watch [bold]{escape(watch['id'])}[/bold] on {escape(where)}: "
                  f"“{escape(watch.get('text', args.text))}”")
    return 0


def cmd_watches(args) -> int:
    client = _client(args)
    watches = _call(client, "GET", "/v1/watches", _no_api(client))["watches"]
    if not watches:
        console.print("no watches (add one with: manta watch \"text\")")
        return 0
    table = Table(title="Manta watches", expand=False)
    for col in ("id", "text", "streams", "modality", "threshold", "alerts"):
        table.add_column(col, overflow="fold")
    for w in watches:
        table.add_row(escape(w.get("id", "?")), escape(w.get("text", "")),
                      escape(", ".join(w.get("streams") or []) or "all"), w.get("modality", "any"),
                      f"{float(w.get('threshold') or 0):.2f}", str(w.get("alerts", 0)))
    console.print(table)
    return 0


def cmd_unwatch(args) -> int:
    client = _client(args)
    _call(client, "DELETE", f"/v1/watches/{args.id}", f"no watch {args.id} (see: manta watches)")
    console.print(f"watch {escape(args.id)} removed")
    return 0


def _wanted(a: dict, args) -> bool:
    return (not args.stream or a.get("stream") == args.stream) and (not args.watch or a.get("watch") == args.watch)


def cmd_alerts(args) -> int:
    client = _client(args)
    if args.follow:
        return follow(client, args)
    since = args.since
    shown = 0
    while True:  # every page after ``since``, oldest first
        params = {"since": since, "stream": args.stream, "watch": args.watch, "limit": PAGE}
        page = _call(client, "GET", "/v1/alerts", _no_api(client),
                     params={k: v for k, v in params.items() if v is not None})
        alerts = page.get("alerts", [])
        for a in alerts:
            console.print(alert_line(a), highlight=False)
        shown += len(alerts)
        if len(alerts) < PAGE or page.get("last_id") in (None, since):
            break
        since = page["last_id"]
    if not shown:
        console.print("no alerts" + (f" after #{args.since}" if args.since is not None else ""))
    return 0


# -- following the alert stream --------------------------------------------------------------------

def sse_events(lines: Iterator[str]) -> Iterator[tuple[str | None, str, str]]:
    """(id, event, data) for each event of a server-sent event stream; comments are skipped."""
    event_id, event, data = None, "message", []
    for line in lines:
        if not line:
            if data:
                yield event_id, event, "\n".join(data)
            event_id, event, data = None, "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            event_id = value
        elif field == "event":
            event = value
        elif field == "data":
            data.append(value)


def follow(client: Client, args) -> int:
    """Print alerts as they arrive until Ctrl+C (exit 0); reconnect after a drop from the last id."""
    last = args.since
    connected_once = False
    failures = 0
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
    try:
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                with client.http.stream("GET", "/v1/alerts/stream", headers=headers, timeout=timeout) as r:
                    if r.status_code >= 400:
                        r.read()
                        if r.status_code == 404:
                            raise CliError(_no_api(client), status=404)
                        client.check(r)
                    if failures:
                        err.print("[dim]reconnected[/dim]")
                    connected_once, failures = True, 0
                    for event_id, event, data in sse_events(r.iter_lines()):
                        if event_id is not None and event_id.isdigit():
                            last = int(event_id)
                        if event != "alert":
                            continue
                        a = json.loads(data)
                        last = a.get("id", last)
                        if _wanted(a, args):
                            console.print(alert_line(a), highlight=False)
                            sys.stdout.flush()
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if not connected_once:
                    raise CliError(f"Manta is not running at {client.base} (start it with: manta up)", 2) \
                        from exc
            except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError):
                pass  # a dropped connection: reconnect below
            except json.JSONDecodeError:
                raise CliError("the alert stream sent something that is not an alert") from None
            if failures == 0:
                err.print("[dim]alert stream ended; reconnecting…[/dim]")
            time.sleep(RECONNECT_S[min(failures, len(RECONNECT_S) - 1)])
            failures += 1
    except KeyboardInterrupt:
        return 0


# -- parsers ---------------------------------------------------------------------------------------

def _threshold(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise ValueError(text)
    return value


_threshold.__name__ = "threshold in (0, 1]"  # argparse names the type in its error


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError(text)
    return value


_seconds.__name__ = "seconds (>= 0)"


COMMANDS = {"watch": cmd_watch, "watches": cmd_watches, "unwatch": cmd_unwatch, "alerts": cmd_alerts}


def add_parsers(sub, common) -> None:
    """Add the monitoring commands (``COMMANDS``) to the ``manta`` subparsers."""
    sp = common(sub.add_parser("watch", help="alert when a stream says, shows or sees something"))
    sp.add_argument("text", help="what to watch for, in plain words")
    sp.add_argument("--stream", action="append",
                    help="only this stream: id, name or pattern like 'cam-*' (repeatable; default every stream)")
    sp.add_argument("--modality", choices=MODALITIES, help="said, shown (on-screen text), seen, or any (default)")
    sp.add_argument("--threshold", type=_threshold, help="score an item needs, in (0, 1] (default from settings)")
    sp.add_argument("--cooldown", type=_seconds, help="media seconds of quiet per stream after an alert "
                                                      "(default 60)")
    sp.add_argument("--webhook", help="also POST each alert to this http(s) URL")
    sp.add_argument("--verify", action="store_true", help="the answer model confirms each alert first (yes/no "
                                                          "on the evidence): for conditions that take judgement")
    common(sub.add_parser("watches", help="list the watches"))
    sp = common(sub.add_parser("unwatch", help="remove a watch"))
    sp.add_argument("id", help="the watch's id (see: manta watches)")
    sp = common(sub.add_parser("alerts", help="alerts the watches raised"))
    sp.add_argument("--since", type=int, help="only alerts after this alert id")
    sp.add_argument("--stream", help="only this stream's alerts")
    sp.add_argument("--watch", help="only this watch's alerts (its id)")
    sp.add_argument("--follow", "-f", action="store_true", help="print new alerts as they come, until Ctrl+C")
