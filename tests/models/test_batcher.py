"""The shared services' batching: many streams' requests become one model call, live before files,
each stream bounded, a model error confined to its batch. Plain threads, a fake model; no Ray."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from manta_models.serving.batcher import FILE, LIVE, BatcherClosed, MicroBatcher, Stale
from streaming.interfaces import StaleRequest
from manta_models.perception.torch_batch import bucket


class Gate:
    """A model that waits for the test to let each batch through, and records what it saw."""

    def __init__(self):
        self.batches: list[list] = []
        self.open = threading.Event()
        self.open.set()

    def __call__(self, items):
        self.open.wait(10)
        self.batches.append(list(items))
        return [x * 10 for x in items]


def test_each_caller_gets_its_own_result_from_shared_batches():
    model = Gate()
    b = MicroBatcher(model, max_batch=8, max_wait_s=0.05, name="t")
    futures = [b.submit(i, key=f"stream{i % 4}") for i in range(20)]
    assert [f.result(5) for f in futures] == [i * 10 for i in range(20)]
    st = b.stats()
    assert st.items == 20 and st.batches < 20 and st.max_batch_seen <= 8  # batched, never past the cap
    b.close()


def test_live_requests_leave_before_files_queued_earlier():
    model = Gate()
    b = MicroBatcher(model, max_batch=2, max_wait_s=0.0, max_in_flight=10, name="t")
    model.open.clear()
    first = b.submit(0, key="busy")  # occupies the worker
    time.sleep(0.1)
    files = [b.submit(100 + i, key="file", priority=FILE) for i in range(4)]
    live = [b.submit(200 + i, key="live", priority=LIVE) for i in range(2)]
    model.open.set()
    for f in [first, *files, *live]:
        f.result(5)
    order = [x for batch in model.batches for x in batch]
    assert order.index(200) < order.index(100) and order.index(201) < order.index(100)
    b.close()


def test_a_stream_past_its_in_flight_bound_waits_and_others_do_not():
    model = Gate()
    model.open.clear()
    b = MicroBatcher(model, max_batch=4, max_wait_s=0.0, max_in_flight=2, name="t")
    held = [b.submit(i, key="greedy") for i in range(2)]
    with pytest.raises(TimeoutError):
        b.submit(99, key="greedy", timeout=0.05)
    other = b.submit(7, key="polite", timeout=0.05)  # another stream is not held back
    model.open.set()
    assert [f.result(5) for f in held] == [0, 10] and other.result(5) == 70
    assert b.submit(3, key="greedy", timeout=1).result(5) == 30  # the bound frees as answers come
    b.close()


def test_a_model_error_fails_its_batch_only():
    calls = []

    def flaky(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return [x + 1 for x in items]

    b = MicroBatcher(flaky, max_batch=4, max_wait_s=0.0, name="t")
    with pytest.raises(RuntimeError, match="out of memory"):
        b(1, key="a")
    assert b(2, key="b") == 3
    b.close()


def test_a_model_that_answers_the_wrong_count_is_an_error_not_a_mixup():
    b = MicroBatcher(lambda items: items[:-1], max_batch=4, max_wait_s=0.0, name="t")
    with pytest.raises(RuntimeError, match="results for"):
        b(1)
    b.close()


def test_close_answers_every_waiting_caller():
    model = Gate()
    model.open.clear()
    b = MicroBatcher(model, max_batch=1, max_wait_s=0.0, max_in_flight=5, name="asr")
    running = b.submit(1, key="s")
    time.sleep(0.1)
    waiting = b.submit(2, key="s")
    threading.Timer(0.2, model.open.set).start()
    b.close()
    assert running.result(5) == 10  # the batch in the model finishes
    with pytest.raises(BatcherClosed):
        waiting.result(5)
    with pytest.raises(BatcherClosed, match="asr is not serving"):
        b.submit(3)


def test_a_request_that_waited_past_stale_s_is_dropped_unanswered():
    """Provisional text: audio that waited behind a busy model is old; the model is not run for it."""
    ran = []

    def slow(items):
        ran.extend(items)
        time.sleep(0.4)
        return items

    b = MicroBatcher(slow, max_batch=1, max_wait_s=0.0, stale_s=0.2, name="provisional")
    first = b.submit("first", key="a")
    time.sleep(0.05)  # "first" is running now
    late = b.submit("late", key="b")
    assert first.result(timeout=5) == "first"
    with pytest.raises(Stale):
        late.result(timeout=5)
    assert isinstance(Stale("x"), StaleRequest)  # what a stream's provisional worker catches
    assert b.submit("fresh", key="b").result(timeout=5) == "fresh"  # the stream's slot was freed
    assert ran == ["first", "fresh"] and b.stats().stale == 1
    b.close()


def test_validation():
    for kw in ({"max_batch": 0}, {"max_wait_s": -1}, {"max_in_flight": 0}):
        with pytest.raises(ValueError):
            MicroBatcher(lambda x: x, **kw)


def test_batches_are_padded_to_powers_of_two():
    assert [bucket(n) for n in (1, 2, 3, 5, 64, 65)] == [1, 2, 4, 8, 64, 128]


def test_batched_whisper_decodes_each_window_as_it_would_alone():
    """A tiny randomly initialised transformers Whisper (the real classes, no weights to download):
    one batched encoder pass and decode give each window exactly the tokens it gets alone, and the
    same greedy tokens as transformers' own generate."""
    torch = pytest.importorskip("torch")
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from manta_models.perception.torch_batch import WhisperBatch, WindowRequest

    cfg = WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=51865,
                        num_mel_bins=80, max_source_positions=1500, max_target_positions=448)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg).eval()
    start = (50258, 50259, 50359, 50363)
    batch = WhisperBatch(model, start, eos_id=None)
    rng = np.random.default_rng(1)
    reqs = [WindowRequest(rng.standard_normal((80, 3000)).astype(np.float32), max_new_tokens=n) for n in (2, 6, 4)]
    together = batch(reqs)
    assert [len(t) for t in together] == [2, 6, 4]
    assert together == [batch([r])[0] for r in reqs]
    with torch.inference_mode():
        ids = torch.tensor([start])
        enc = model.model.encoder(torch.from_numpy(reqs[1].features[None])).last_hidden_state
        ref = []
        for _ in range(6):  # greedy decoding without a cache, the plainest reference
            logits = model.proj_out(model.model.decoder(input_ids=ids, encoder_hidden_states=enc).last_hidden_state)
            nxt = int(logits[0, -1].argmax())
            ref.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    assert together[1] == ref
