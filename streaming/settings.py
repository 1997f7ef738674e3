"""Manta's configuration: one typed settings object for every layer.

Values come, highest priority first, from environment variables (``MANTA_<FIELD>``), then from the
``settings:`` mapping of serve_config.yaml (or keyword arguments), then the defaults below.
Environment first so an operator can override a checked-in config file without editing it.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


TOKEN_ENV = "MANTA_API_TOKEN"
WEBHOOK_SECRET_ENV = "MANTA_WEBHOOK_SECRET"
MIN_TOKEN_CHARS = 16


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "manta"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "manta"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MANTA_", extra="forbid", validate_default=True)

    # Service
    host: str = Field("127.0.0.1", description="HTTP bind address of the Serve API")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the Serve API")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Prometheus port of a local Ray's metrics (on 127.0.0.1); "
                                          "None: a free port, shown by GET /healthz as metrics_url")
    api_token_file: Path | None = Field(
        None, description="file holding the API token (else the MANTA_API_TOKEN variable): every route then "
                          "needs it as a bearer token; required to listen beyond loopback")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host header names the API answers besides loopback ones (a guard "
                                          "against DNS rebinding): the names clients use to reach it")
    source_allow: list[str] = Field(
        default_factory=list, description="networks (10.1.0.0/16) or host names sources may reach although "
                                          "they are private, link-local or loopback")
    media_roots: list[Path] = Field(
        default_factory=list, description="folders file sources must lie in; empty: any readable file while "
                                          "the API listens on loopback only, none once it listens beyond")
    ray_address: str | None = Field(None, description="join this Ray cluster; None starts a local one")
    namespace: str = Field("manta", description="Ray namespace of the stream actors")
    cache_dir: Path = Field(default_factory=_default_cache_dir,
                            description="assembled models and the generated demo")
    data_dir: Path = Field(default_factory=_default_data_dir,
                           description="segments and checkpoints of each stream (SQLite per stream)")
    stream_restarts: int = Field(3, ge=0, description="times Ray restarts a crashed stream actor")
    stream_num_cpus: float = Field(0.1, ge=0, description="Ray CPUs reserved per stream actor")
    spare_stream_workers: int = Field(
        4, ge=0, le=64, description="idle processes per node kept ready, stream actor code imported, so a "
        "stream added or restarted after a crash starts in one at once; 0: Ray starts a process per actor")
    torch_threads: int = Field(1, ge=1, description="intra-op threads for torch models in each actor")
    faiss_threads: int = Field(1, ge=1, description="OpenMP threads for FAISS searches in each actor")
    # Shared model services (manta_models/serving): one copy of each model batches every stream's requests
    service_max_batch: int = Field(32, ge=1, le=1024, description="requests one shared model call takes at most")
    service_max_wait_s: float = Field(0.01, ge=0, le=1,
                                      description="how long a shared service waits for more requests to batch")
    shared_models: bool = Field(True, description="stream actors use the 'models' Serve deployment and hold no "
                                "weights; false: each stream actor loads its own (the old way, kept to compare)")
    model_deployments: Literal["one", "per-model"] = Field(
        "one", description="one: every model in one 'models' deployment (a CPU box: one process, one copy); "
        "per-model: a deployment per model (models-speech, models-text, models-frames, …), each with its "
        "own replicas and GPU share (a GPU box: the services do not share one Python process)")
    model_replicas: int = Field(1, ge=1, le=1024, description="replicas of the 'models' deployment (one per node "
                                "at most; serve_config.yaml's deployments: can set autoscaling instead)")
    model_num_cpus: float = Field(0, ge=0, description="Ray CPUs reserved per model replica")
    model_num_gpus: float = Field(0, ge=0, description="GPUs (or a fraction) per model replica")

    # Speech recognition
    asr_model: str = Field("base", description="'base', 'tiny.en' or a local CTranslate2 Whisper folder")
    asr_backend: Literal["ctranslate2", "transformers"] = Field(
        "ctranslate2", description="ctranslate2: faster-whisper (bundled models, CTranslate2 folders); "
        "transformers: a local Hugging Face Whisper folder through torch (GPU machines without CUDA 12)")
    asr_device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses CUDA if present")
    asr_compute_type: str = Field("int8", description="CTranslate2 compute type (float16 on GPU)")
    asr_threads: int = Field(2, ge=1, description="CPU threads per recogniser")
    asr_beam_size: int = Field(1, ge=1, le=10, description="1 = greedy decoding")
    language: str | None = Field(None, description="ISO code; None detects once per stream")
    asr_max_buffer_s: float = Field(30.0, ge=2.0, le=30.0, description="longest audio held uncommitted")
    asr_min_piece_s: float = Field(20.0, ge=0.0, le=30.0, description="speech gathered per Whisper call")
    asr_live_max_buffer_s: float = Field(8.0, ge=2.0, le=30.0, description="same, live or paced")
    asr_live_min_piece_s: float = Field(1.5, ge=0.0, le=30.0, description="same, live or paced")
    asr_live_first_piece_s: float = Field(
        4.0, ge=0.0, le=30.0, description="live or paced: the first piece after a start or a gap is cut "
        "at this much speech (at most the buffer above), so a new stream's first words are final in "
        "seconds; 0 = no shorter first piece")
    asr_min_silence_s: float = Field(0.5, ge=0.1, description="pause that closes an utterance")
    asr_tail_hold_s: float = Field(1.5, ge=0.0, description="words this close to a forced cut wait")
    asr_temperature_fallback: bool = Field(
        False, description="retry doubtful windows by sampling (Whisper's default): slower, not repeatable")
    asr_check_every_s: float = Field(1.0, gt=0.0, description="how much new audio triggers a look")
    asr_live_fit_window: bool = Field(True, description="live or paced pieces: one Whisper window that "
                                      "encodes only the piece (>= 10 s) instead of 30 s, without a prompt: "
                                      "~2x cheaper (docs/BENCHMARKS.md, live-window)")
    # Provisional text (live and real-time-paced streams): searchable ~1-3 s after it is said, replaced
    # by the committed transcript above (streaming/ingest/provisional.py)
    asr_provisional_model: str = Field(
        "tiny.en", description="fast recogniser re-decoding what is not final yet: 'tiny.en', 'base', "
        "a local Whisper folder, or 'off'. English-only models skip streams detected as another language")
    provisional_every_s: float = Field(1.0, ge=0.25, le=10.0, description="how often it re-decodes")
    provisional_agreement: int = Field(1, ge=1, le=3, description="consecutive passes that must agree on a "
                                       "word before it is searchable (LocalAgreement-n); 1 trusts a pass, "
                                       "except a word touching the end of its audio (measured: faster, more "
                                       "words, 95 % confirmed; docs/BENCHMARKS.md)")
    provisional_stale_s: float = Field(2.0, gt=0.0, le=30.0, description="a provisional request that "
                                       "waited this long for the shared recogniser is dropped (its audio is old)")
    provisional_fit_window: bool = Field(True, description="encode only the held audio (at least 10 s) "
                                         "rather than Whisper's 30 s window: about 3x faster passes")
    provisional_threads: int = Field(1, ge=1, description="CPU threads of the provisional recogniser: it "
                                     "runs beside the final one, so together they should not exceed the cores")

    # Text embedding and micro segments
    embed_model: str = Field("minilm", description="'minilm' or a local sentence-transformers folder")
    micro_target_s: float = Field(3.0, ge=0.5, le=30.0, description="micro segment length")

    # Meso/macro levels, density, dedup (MANTA): D = wn·novelty + we·entropy + wc·coherence − wr·redundancy
    meso_min_s: float = Field(10.0, gt=0.0, description="a meso may close at a boundary after this")
    meso_target_s: float = Field(30.0, gt=0.0, description="a meso closes at this length")
    meso_max_s: float = Field(30.0, gt=0.0, description="no meso grows past this")
    macro_min_s: float = Field(60.0, gt=0.0, description="a macro may close at a boundary after this")
    macro_target_s: float = Field(180.0, gt=0.0, description="a macro closes at this length")
    macro_max_s: float = Field(300.0, gt=0.0, description="no macro grows past this")
    density_novelty: float = Field(1.0, ge=0.0, description="weight of novelty (Mamba surprise) in D")
    density_entropy: float = Field(0.5, ge=0.0, description="weight of word entropy in D")
    density_coherence: float = Field(0.25, ge=0.0, description="weight of said/seen coherence in D")
    density_redundancy: float = Field(1.0, ge=0.0, description="penalty for similarity to recent segments")
    dedup_threshold: float = Field(0.85, gt=0.0, le=1.0,
                                   description="cosine at which a repeat merges into its representative")

    # Pictures and the stream model
    frame_fps: float = Field(1.0, ge=0.0, le=30.0, description="frames sampled per second (0: none)")
    visual_model: Literal["efficientnet-lite0", "off"] = Field(
        "efficientnet-lite0", description="frame embeddings and ImageNet labels")
    ocr: Literal["rapidocr", "off"] = Field("rapidocr", description="on-screen text and bitmap subtitles")
    ocr_interval_s: float = Field(2.0, ge=0.0, description="least media time between OCR reads (cuts excepted)")
    ocr_side: int = Field(480, ge=160, le=2048, description="OCR detector's input size (shorter side, px)")
    subtitles: bool = Field(True, description="read subtitle tracks carried in the container")
    scene_threshold: float | None = Field(None, gt=0.0, lt=1.0, description="shot-cut score threshold (None: tuned default)")
    clip_model: str | None = Field(None, description="local CLIP/SigLIP folder: text-to-frame search")
    caption_model: str | None = Field(None, description="local captioning VLM folder (BLIP-type)")
    stream_model: str = Field("bundled", description="'bundled', 'off' or a file from train_stream")
    # Found, not imported (importing it would pull librosa): on when the package is installed.
    speaker_model: Literal["resemblyzer", "off"] = Field(
        default_factory=lambda: "resemblyzer" if importlib.util.find_spec("resemblyzer") else "off",
        description="voices told apart per micro segment: speaker labels S1, S2, … ('off': none)")
    surprise_threshold: float = Field(1.5, gt=0.0, description="z-score that proposes a boundary")
    boundary_signal: Literal["novelty", "surprise"] = Field(
        "novelty", description="feature change (measured better, bench/boundaries.py) or Mamba surprise")

    # Sources
    open_timeout_s: float = Field(5.0, gt=0.0, description="a source must answer within this")
    read_timeout_s: float = Field(5.0, gt=0.0, description="a live source silent this long reconnects")
    reconnect_initial_s: float = Field(0.5, gt=0.0, description="first reconnect delay (doubles)")
    reconnect_max_s: float = Field(30.0, gt=0.0, description="longest reconnect delay")
    listen_wait_s: float | None = Field(
        None, ge=0.0, description="a listener (udp://, rtp://, srt:// mode=listener) added before its sender "
                                  "starts waits this long for it, in state waiting (None: as long as the stream "
                                  "runs; 0: it fails after one open timeout with nothing received)")
    connect_retry_s: float = Field(
        30.0, ge=0.0, description="a pull source (rtsp, rtmp, http, HLS, srt caller, tcp) that cannot connect at "
                                  "first tries again with backoff this long, the reason in last_error, then fails "
                                  "(0: the first failure fails); a refused or malformed source fails at once")
    retention_hours: float | None = Field(
        None, gt=0, description="keep this many hours of each stream (media time before its newest)")
    retention_mb: float | None = Field(None, gt=0, description="disk budget per stream (its SQLite file)")
    live_retention_hours: float | None = Field(
        24.0, gt=0, description="live streams when retention_hours is unset: a live source never ends, so "
                                "without a limit it fills the disk (None: keep everything)")
    retention_every_s: float = Field(60.0, gt=0, description="media seconds between retention checks")
    pace: Literal["fast", "realtime"] = Field("fast", description="how recorded files are read")
    queue_seconds: float = Field(30.0, gt=0.0, description="decoded media buffered ahead of ASR")

    # Backpressure (live and real-time-paced streams only: a fast-read file is never degraded)
    degrade: bool = Field(True, description="shed frames, OCR, then ASR size when a stream falls behind")
    degrade_backlog_s: float = Field(10.0, gt=0.0, description="backlog (media s queued) that sheds a level")
    degrade_hold_s: float = Field(5.0, ge=0.0, description="how long the backlog must stay high per level")
    degrade_recover_s: float = Field(30.0, ge=0.0, description="how long it must stay low to step back")
    asr_fallback_model: str | None = Field(
        None, description="smaller Whisper ('tiny.en', a folder) used at the last degradation level")

    # Limits: what one client can make the service hold (each stream is a detached actor with a CPU share)
    max_streams: int = Field(64, ge=1, description="streams at once, stopped ones included; more are refused "
                             "(429) until one is removed (DELETE /v1/streams/{id}?remove=true)")
    max_body_mb: float = Field(16.0, gt=0, le=1024, description="largest request body (413 beyond): bounds "
                               "an uploaded image too (base64: about 3/4 of this decoded)")
    max_queued_requests: int = Field(256, ge=1, description="requests waiting for the API beyond "
                                     "max_ongoing_requests; Serve answers 503 past this")
    request_timeout_s: float = Field(120.0, gt=0, description="a request with no response by then gets 504 "
                                     "(a streamed answer, once started, runs on)")

    # Queries
    max_evidence: int = Field(5, ge=1, le=100, description="evidence items per answer")
    query_timeout_s: float = Field(10.0, gt=0.0, description="a stream slower than this is skipped")

    # Answer model (its API key, if any, comes only from MANTA_ANSWER_API_KEY, so it never shows in a dump)
    rerank_model: str | None = Field(
        None, description="local cross-encoder folder (e.g. ms-marco-MiniLM-L-6-v2): replaces the cosine in reranking")
    answer_model: str = Field(
        "smollm2", description="'smollm2' (bundled SmolLM2-135M-Instruct), 'off' (quotes only), a local "
                               "transformers folder, or an OpenAI-compatible base URL (http://host:8000/v1)")
    answer_model_name: str | None = Field(None, description="model name sent to an OpenAI-compatible URL")
    answer_max_tokens: int = Field(80, ge=1, le=2048, description="longest generated answer (tokens)")
    answer_context_tokens: int = Field(1024, ge=128,
                                       description="token budget of the evidence given to the answer model")
    answer_timeout_s: float = Field(60.0, gt=0.0, description="an answer model slower than this fails")
    # Monitoring: standing questions ("watches") checked on every committed segment and shown item
    watch_threshold: float = Field(0.6, gt=0.0, le=1.0, description="default score a watch needs to alert "
                                   "(cosine raised by the share of its words found: streaming/watch/matcher.py)")
    watch_cooldown_s: float = Field(60.0, ge=0.0, description="default media seconds after an alert in which "
                                    "the same watch stays quiet on that stream (one alert per event)")
    max_watches: int = Field(1000, ge=1, description="watches at once; more are refused (429)")
    webhook_secret_file: Path | None = Field(
        None, description="file holding the webhooks' HMAC secret (else MANTA_WEBHOOK_SECRET); unset: "
                          "webhooks are sent unsigned")
    webhook_attempts: int = Field(5, ge=1, le=20, description="tries per webhook delivery (backoff 1, 2, 4 … s)")
    webhook_timeout_s: float = Field(5.0, gt=0.0, le=60.0, description="a webhook receiver must answer in this")

    @field_validator("cache_dir", "data_dir", mode="after")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @field_validator("source_allow", mode="after")
    @classmethod
    def _allow_entries(cls, v: list[str]) -> list[str]:
        for entry in v:
            if not entry or any(c.isspace() for c in entry) or "/" in entry and not _is_network(entry):
                raise ValueError(f"source_allow entry '{entry}' is neither a network (10.0.0.0/8) nor a host name")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        # Checked here so a bad combination fails at deploy time, not when a stream starts.
        for piece, buffer in (("asr_min_piece_s", "asr_max_buffer_s"),
                              ("asr_live_min_piece_s", "asr_live_max_buffer_s")):
            if getattr(self, piece) > getattr(self, buffer):
                raise ValueError(f"{piece} must not exceed {buffer}")
        for level in ("meso", "macro"):
            lo, mid, hi = (getattr(self, f"{level}_{k}_s") for k in ("min", "target", "max"))
            if not lo <= mid <= hi:
                raise ValueError(f"need {level}_min_s <= {level}_target_s <= {level}_max_s")
        if self.degrade and self.degrade_backlog_s >= self.queue_seconds:
            raise ValueError("degrade_backlog_s must be below queue_seconds (the queue never holds more)")
        if self.request_timeout_s <= self.query_timeout_s:
            raise ValueError("request_timeout_s must exceed query_timeout_s (a request waits on its streams)")
        shortest = min(self.asr_max_buffer_s, self.asr_live_max_buffer_s)
        if self.asr_tail_hold_s >= shortest / 2:
            raise ValueError("asr_tail_hold_s must be less than half of the smaller ASR buffer")
        first = min(self.asr_live_first_piece_s, self.asr_live_max_buffer_s)
        if first and self.asr_tail_hold_s >= first / 2:
            raise ValueError("asr_tail_hold_s must be less than half of asr_live_first_piece_s (or set it to 0)")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return env_settings, init_settings, dotenv_settings, file_secret_settings

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None) -> "Settings":
        """Settings from env vars over ``overrides`` (a serve_config.yaml mapping) over defaults."""
        return cls(**(overrides or {}))

    @property
    def loopback_only(self) -> bool:
        """The API listens where only this machine can reach it."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: whatever it resolves to may be reachable from elsewhere

    def api_token(self) -> str | None:
        """The API token: MANTA_API_TOKEN, else the file ``api_token_file`` names; None when neither
        is set. Never a field of its own, so it never shows in a settings dump or a Serve config."""
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token and self.api_token_file is not None:
            try:
                token = self.api_token_file.expanduser().read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read api_token_file {self.api_token_file}: {exc.strerror}") from None
            if not token:
                raise ValueError(f"api_token_file {self.api_token_file} is empty")
        if token and len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"the API token must have at least {MIN_TOKEN_CHARS} characters "
                             "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return token or None

    def check_exposure(self) -> None:
        """Refuse to listen beyond loopback without a token: anyone who reaches the port could add
        sources, read every stream and delete their data."""
        if not self.loopback_only and self.api_token() is None:
            raise ValueError(f"refusing to listen on {self.host} without an API token: set {TOKEN_ENV} "
                             "(or api_token_file), or keep host 127.0.0.1")

    def webhook_secret(self) -> bytes | None:
        """The webhooks' signing secret: MANTA_WEBHOOK_SECRET, else ``webhook_secret_file``; never a
        field, so it never shows in a settings dump."""
        secret = os.environ.get(WEBHOOK_SECRET_ENV, "").strip()
        if not secret and self.webhook_secret_file is not None:
            try:
                secret = self.webhook_secret_file.expanduser().read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read webhook_secret_file {self.webhook_secret_file}: "
                                 f"{exc.strerror}") from None
        return secret.encode() if secret else None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"
