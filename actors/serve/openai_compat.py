"""OpenAI-compatible chat completions, so existing OpenAI clients and tools can ask Manta.

The last user message is the question. Which streams to search goes in the documented extra field
``streams`` (with the openai client: ``extra_body={"streams": [...]}``), like ``start``/``end``
(media seconds) and ``modality``. OpenAI's sampling fields are accepted and ignored: answers are
greedy so the same question over the same evidence gives the same answer. Manta's own fields
(citations, evidence, timings) come back under ``manta`` in the response and in the last chunk.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from actors.serve.fanout import Ask

MODEL_ID = "manta"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return " ".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send fields Manta does not use
    model: str = Field(MODEL_ID, max_length=200)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=200)
    stream: bool = False
    streams: list[str] | None = Field(None, max_length=1000, description="stream ids (default all)")
    start: float | None = Field(None, ge=0)
    end: float | None = Field(None, ge=0)
    modality: Literal["any", "said", "shown", "seen"] | None = None

    @field_validator("messages")
    @classmethod
    def _has_question(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        users = [m for m in v if m.role == "user" and m.text().strip()]
        if not users:
            raise ValueError("messages must contain a user message with text: the question")
        if len(users[-1].text()) > 2000:
            raise ValueError("the question (last user message) is longer than 2000 characters")
        return v

    def ask(self) -> Ask:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError("end must not be before start")
        question = [m for m in self.messages if m.role == "user" and m.text().strip()][-1].text().strip()
        return Ask(question, self.streams, self.start, self.end, modality=self.modality)


def completion(result: dict) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": MODEL_ID,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": result["answer"]}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "manta": _extra(result)}


def _extra(result: dict) -> dict:
    return {k: result[k] for k in ("found", "citations", "evidence", "warnings", "timings", "model")}


class ChunkWriter:
    """``chat.completion.chunk`` SSE lines for one answer."""

    def __init__(self):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _line(self, delta: dict, finish: str | None = None, extra: dict | None = None) -> str:
        body: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                "model": MODEL_ID,
                                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if extra is not None:
            body["manta"] = extra
        return f"data: {json.dumps(body)}\n\n"

    def role(self) -> str:
        return self._line({"role": "assistant", "content": ""})

    def text(self, piece: str) -> str:
        return self._line({"content": piece})

    def finish(self, result: dict, sent: bool) -> str:
        """What the tokens did not say (all of a quote-only answer; after a generated sentence, the
        quote it rests on), the stop reason and Manta's fields; then the terminator."""
        answer = result["answer"]
        rest = ("\n" + answer.split("\n", 1)[1] if "\n" in answer else "") if sent else answer
        out = self._line({"content": rest}) if rest else ""
        return out + self._line({}, "stop", _extra(result)) + "data: [DONE]\n\n"
