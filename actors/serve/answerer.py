"""The answer model as its own Serve deployment, composed into the API through a handle.

Separate so it scales on its own (``num_gpus`` for a bigger model, more replicas under load)
while the API replica stays light; the API streams tokens from it through the handle.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from ray import serve

from streaming.settings import Settings

from actors.logs import configure_logging, prepare_environment

log = logging.getLogger("manta.answerer")


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=16)
class Answerer:
    def __init__(self, settings: dict[str, Any] | None = None):
        prepare_environment(local=False)
        configure_logging()
        from manta_models.answering.llm import load_answer_model
        from manta_models.packaged import ModelError

        s = Settings.load(settings)
        self.error: str | None = None
        self.model = None
        try:
            self.model = load_answer_model(
                s.answer_model, cache_dir=s.cache_dir, threads=s.torch_threads,
                remote_model=s.answer_model_name, api_key=os.environ.get("MANTA_ANSWER_API_KEY"),
                timeout_s=s.answer_timeout_s)
        except ModelError as exc:
            # The API keeps answering with quotes; each answer says there is no sentence. Why goes
            # to the log only: the reason may name a path or an internal URL (answer_model).
            self.error = "answer model unavailable; the answerer's log says why"
            log.error("answer model unavailable: %s", exc,
                      extra={"fields": {"event": "answer_model_unavailable", "spec": s.answer_model}})

    def info(self) -> dict:
        m = self.model
        return {"name": m.name if m else None, "context_tokens": m.context_tokens if m else 0,
                "error": self.error}

    def stream(self, messages: list[dict], max_tokens: int) -> Iterator[str]:
        if self.model is None:
            raise RuntimeError(self.error or "answer_model is off")
        yield from self.model.stream(messages, max_tokens)
