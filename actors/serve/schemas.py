"""The HTTP API's request bodies and how each is checked (FastAPI answers 422 with the reason)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from actors.serve.fanout import Ask


def _once_each(streams: list[str] | None) -> list[str] | None:
    """A stream named twice is asked once, in the order first named: each name costs a call to
    its actor, and the same evidence twice would crowd out other streams'."""
    return list(dict.fromkeys(streams)) if streams is not None else None


class StreamRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(..., min_length=1, max_length=4096, description="path or URL")
    name: str | None = Field(None, max_length=63)
    pace: Literal["fast", "realtime"] | None = Field(
        None, description="recorded files only: 'realtime' replays at broadcast speed")


class SimilarRequest(BaseModel):
    """Frames like an example: one a stream showed (``stream`` + ``at``) or an uploaded ``image``."""

    model_config = ConfigDict(extra="forbid")
    stream: str | None = Field(None, min_length=1, max_length=63)
    at: float | None = Field(None, ge=0, description="media seconds of the example frame")
    image: str | None = Field(None, description="base64 PNG or JPEG (the whole body is at most max_body_mb)")
    streams: list[str] | None = Field(None, max_length=1000, description="where to look (default all)")
    k: int = Field(10, ge=1, le=100)

    @field_validator("streams")
    @classmethod
    def _streams(cls, v: list[str] | None) -> list[str] | None:
        return _once_each(v)

    @model_validator(mode="after")
    def _one_example(self):
        if (self.image is None) == (self.stream is None):
            raise ValueError("give either 'image' or 'stream' with 'at'")
        if self.stream is not None and self.at is None:
            raise ValueError("'at' (media seconds) is required with 'stream'")
        return self


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., max_length=2000)
    streams: list[str] | None = Field(None, max_length=1000)
    start: float | None = Field(None, ge=0, description="media seconds")
    end: float | None = Field(None, ge=0, description="media seconds")
    k: int | None = Field(None, ge=1, le=100, description="evidence items to return")
    level: Literal["micro", "meso", "macro"] = Field(
        "micro", description="micro segments (≈3 s), or meso (≈30 s) / macro (≈180 s) summaries")
    modality: Literal["any", "said", "shown", "seen"] | None = Field(
        None, description="said (speech), shown (on-screen text, subtitles), seen (picture); "
                          "None guesses from the question")
    wall_start: float | None = Field(None, ge=0, description="epoch seconds: ingested at or after")
    wall_end: float | None = Field(None, ge=0, description="epoch seconds: ingested at or before")
    retrieval: Literal["manta", "baseline"] = Field(
        "manta", description="baseline: fixed 30 s chunks, one level, dense top-k (for comparison)")
    generate: bool = Field(True, description="false: answer with the best quote, no answer model")
    stream: bool = Field(False, description="true: Server-Sent Events (evidence, token…, done)")

    @field_validator("streams")
    @classmethod
    def _streams(cls, v: list[str] | None) -> list[str] | None:
        return _once_each(v)

    @field_validator("question")
    @classmethod
    def _question(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question must not be empty")
        return v.strip()

    @model_validator(mode="after")
    def _span(self):
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError("end must not be before start")
        if self.wall_start is not None and self.wall_end is not None and self.wall_end < self.wall_start:
            raise ValueError("wall_end must not be before wall_start")
        return self

    def ask(self) -> Ask:
        return Ask(self.question, self.streams, self.start, self.end, self.wall_start, self.wall_end,
                   self.k, self.modality, self.retrieval, self.generate)


class WatchRequest(BaseModel):
    """A standing question: alert when something said, shown or seen matches ``text``."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., min_length=1, max_length=500, description="a phrase, or a condition in plain words")
    streams: list[str] | None = Field(
        None, max_length=1000, description="stream ids, names or glob patterns ('cam-*'); none: every stream, "
                                           "those added later too")
    modality: Literal["any", "said", "shown", "seen"] = "any"
    threshold: float | None = Field(None, gt=0, le=1, description="score needed (default: watch_threshold)")
    cooldown_s: float | None = Field(None, ge=0, le=86400, description="media seconds of quiet after an alert")
    webhook_url: str | None = Field(None, max_length=2048, description="http(s) URL that gets each alert as a "
                                                                       "signed POST")
    verify: bool = Field(False, description="the answer model confirms each alert (yes/no on the evidence) "
                                            "before it is raised; needs answer_model")

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must not be empty")
        return " ".join(v.split())

    @field_validator("streams")
    @classmethod
    def _patterns(cls, v: list[str] | None) -> list[str] | None:
        for p in v or ():
            if not p.strip() or len(p) > 128:
                raise ValueError("each stream pattern must be 1 to 128 characters")
        return _once_each(v) or None

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.lower().startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return v
