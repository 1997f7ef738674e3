"""How the CLI talks to a running Manta and shows what comes back: the HTTP client, its one-line
errors, status tables, and answers (streamed as the answer model writes them)."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streaming.answer.extractive import clock
from streaming.settings import TOKEN_ENV

console = Console()
err = Console(stderr=True)


class CliError(Exception):
    """Shown to the user as one line, exit status 1 (2 when the service is unreachable).
    ``status``: the HTTP status the service answered with, when that was the error."""

    def __init__(self, message: str, code: int = 1, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


# -- HTTP client -----------------------------------------------------------------------------------

class Client:
    def __init__(self, base_url: str, timeout: float = 30.0, token: str | None = None):
        """``token``: the API token (default MANTA_API_TOKEN), sent as a bearer token."""
        self.base = base_url.rstrip("/")
        token = token or os.environ.get(TOKEN_ENV, "").strip()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base, timeout=timeout, trust_env=False, headers=headers)

    def call(self, method: str, path: str, **kw) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.ConnectError:
            raise CliError(f"Manta is not running at {self.base} (start it with: manta up)", 2) from None
        except httpx.TimeoutException:
            raise CliError(f"Manta at {self.base} did not answer in time", 2) from None
        self.check(r)
        return r.json()

    def check(self, r: httpx.Response) -> None:
        """CliError for an error answer; a 401 says how to give the token."""
        if r.status_code == 401:
            raise CliError(f"Manta at {self.base} wants its API token: set {TOKEN_ENV} (or api_token_file "
                           "in the config) to the token it was started with", status=401)
        self.raise_for(r)

    @staticmethod
    def raise_for(r: httpx.Response) -> None:
        if r.status_code < 400:
            return
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        if isinstance(detail, list):  # FastAPI validation errors
            detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}"
                               for d in detail)
        raise CliError(f"{r.status_code}: {detail}", status=r.status_code)


# -- rendering -------------------------------------------------------------------------------------

def status_table(streams: list[dict], total: dict | None = None) -> Table:
    """One row per stream; with ``total`` (from GET /v1/streams), a caption for the whole service."""
    caption = None
    if total:
        waiting = f" · {total['waiting']} waiting for a sender" if total.get("waiting") else ""
        caption = (f"{total['ingesting']} of {total['streams']} ingesting{waiting} · total RTF {total['rtf']:.2f} "
                   f"· worst lag {total['max_lag_s']:.1f} s · {total.get('degraded', 0)} degraded "
                   f"· {total['failed']} failed")
    table = Table(title="Manta streams", caption=caption, expand=False)
    for col in ("id", "state", "media", "searchable", "lag s", "RTF", "quality", "segments", "source / error"):
        table.add_column(col, overflow="fold")
    for s in streams:
        note = s.get("last_error") or (f"waiting for {s['waiting_for']}" if s.get("waiting_for") else "") \
            or s.get("source", "")
        level = s.get("degraded") or 0
        # A degraded stream says what it sheds, so a user knows why frames or OCR thinned out.
        quality = "full" if not level else f"-{level}: {(s.get('degradation') or {}).get('reason', '')}"
        table.add_row(escape(s.get("id", "?")), s.get("state", "?"),
                      clock(s.get("media_seconds") or 0), clock(s.get("committed_seconds") or 0),
                      f"{s.get('lag_s') or 0:.1f}", f"{s.get('rtf') or 0:.2f}", escape(quality),
                      str(s.get("segments", 0)), escape(note or ""))
    return table


def segment_link(base_url: str, c: dict) -> str:
    return f"{base_url}/v1/streams/{c['stream']}/segments?start={c['start']:.2f}&end={c['end']:.2f}"


def print_answer(result: dict, base_url: str, answered: bool = False) -> None:
    """The answer (unless it was already streamed), its clickable citations, then the evidence."""
    if not answered:
        console.print(escape(result["answer"]), style="bold")
    for c in result.get("citations", []):
        console.print(f"  source: [link={segment_link(base_url, c)}]{escape(c['stream'])} "
                      f"{clock(c['start'])}–{clock(c['end'])}[/link]")
    for w in result.get("warnings", []):
        err.print(f"[yellow]warning:[/yellow] {w}", soft_wrap=True)
    if not result.get("evidence"):
        return
    in_context = {(e["stream"], e["start"], e["end"], e["text"]) for e in result.get("context", [])}
    table = Table(show_header=True, header_style="dim")
    for col in ("score", "stream", "span", "from", "ctx", "text"):
        table.add_column(col, overflow="fold")
    for e in result["evidence"]:
        span = f"[link={segment_link(base_url, e)}]{clock(e['start'])}–{clock(e['end'])}[/link]"
        used = "✓" if (e["stream"], e["start"], e["end"], e["text"]) in in_context else ""
        table.add_row(f"{e['score']:.2f}", escape(e["stream"]), span, e.get("kind", "speech"), used,
                      escape(e["text"]))
    console.print(table)
    t = result.get("timings")
    if t:
        console.print(f"[dim]retrieval {t['retrieval_ms']:.0f} ms · rerank {t['rerank_ms']:.0f} ms · "
                      f"selection {t['selection_ms']:.0f} ms · generation {t['generation_ms']:.0f} ms"
                      f"{' · ' + result['model'] if result.get('model') else ''}[/dim]")


def stream_answer(client: "Client", body: dict) -> dict:
    """POST /v1/query with SSE: print the answer as the model writes it; returns the final answer."""
    result: dict = {}
    printed = False
    try:
        with client.http.stream("POST", "/v1/query", json=body | {"stream": True}) as r:
            if r.status_code >= 400:
                r.read()
                client.raise_for(r)
            event = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "token":
                    console.print(escape(json.loads(line[6:])["text"]), end="", style="bold")
                    printed = True
                elif line.startswith("data: ") and event == "done":
                    result = json.loads(line[6:])
    except httpx.ConnectError:
        raise CliError(f"Manta is not running at {client.base} (start it with: manta up)", 2) from None
    except httpx.TimeoutException:
        raise CliError(f"Manta at {client.base} did not answer in time", 2) from None
    if printed:  # the tokens were the sentence; the quote it rests on came with the answer
        console.print()
        rest = result.get("answer", "").split("\n", 1)
        if len(rest) == 2:
            console.print(escape(rest[1]))
    if not result:
        raise CliError("the answer stream ended early")
    print_answer(result, client.base, answered=printed)
    return result
