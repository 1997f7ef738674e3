"""ClipEncoder and Captioner on tiny, randomly initialised models built offline in tmp_path.

Nothing here is downloaded: configs, weights, a hand-written vocabulary and image processors are made in the
test and written with save_pretrained, then loaded back through the production classes. The models are
random, so these tests check loading and inference plumbing, never the quality of vectors or captions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from manta_models.packaged import ModelError

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

LETTERS = "abcdefghijklmnopqrstuvwxyz"
TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
VISION = dict(TOWER, image_size=32, patch_size=8)


def clip_tokenizer(folder, extra: tuple[str, ...] = ()):
    """A byte-level BPE tokenizer from a hand-written vocab.json and an empty merges.txt (one token a letter)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in [*LETTERS, *(c + "</w>" for c in LETTERS), *extra]:
        vocab[token] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    if extra:
        tok.add_special_tokens({"additional_special_tokens": list(extra)})
    return tok, vocab


def text_tower(vocab_size: int, positions: int = 32) -> dict:
    return dict(TOWER, vocab_size=vocab_size, max_position_embeddings=positions,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Folders holding a tiny CLIP, SigLIP, BLIP captioner, LLaVA chat VLM and (as a wrong model) BERT."""
    from transformers import (BertConfig, BertModel, BertTokenizer, BlipConfig, BlipForConditionalGeneration,
                              BlipImageProcessor, BlipProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel,
                              LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, SiglipConfig,
                              SiglipImageProcessor, SiglipModel)

    root = tmp_path_factory.mktemp("visual_models")
    torch.manual_seed(0)
    crop = dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})

    clip = root / "clip"
    tok, vocab = clip_tokenizer(root / "clip_vocab")
    CLIPModel(CLIPConfig(text_config=text_tower(len(vocab)), vision_config=VISION,
                         projection_dim=16)).save_pretrained(clip)
    tok.save_pretrained(clip)
    CLIPImageProcessor(**crop).save_pretrained(clip)

    siglip = root / "siglip"
    SiglipModel(SiglipConfig(text_config=text_tower(len(vocab), 16), vision_config=VISION)).save_pretrained(siglip)
    tok.save_pretrained(siglip)  # a real SigLIP folder has a SentencePiece tokenizer; any tokenizer will do here
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(siglip)

    blip = root / "blip"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "cat", "dog", "road"]
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    bert_tok = BertTokenizer(vocab=str(root / "vocab.txt"), bos_token="[DEC]")
    blip_text = dict(TOWER, vocab_size=len(words), max_position_embeddings=40, bos_token_id=5, pad_token_id=0,
                     sep_token_id=3, eos_token_id=3)
    BlipForConditionalGeneration(BlipConfig(text_config=blip_text, vision_config=VISION,
                                            projection_dim=16)).save_pretrained(blip)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=bert_tok).save_pretrained(blip)

    llava = root / "llava"
    tok, vocab = clip_tokenizer(root / "llava_vocab", extra=("<image>",))
    template = ("{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
                "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"
                "{% if add_generation_prompt %} answer{% endif %}")
    LlavaProcessor(image_processor=CLIPImageProcessor(**crop), tokenizer=tok, patch_size=8,
                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                   chat_template=template, image_token="<image>").save_pretrained(llava)
    llama = dict(text_tower(len(vocab), 128), model_type="llama", num_key_value_heads=2)
    LlavaForConditionalGeneration(LlavaConfig(
        vision_config=dict(VISION, model_type="clip_vision_model"), text_config=llama,
        image_token_index=vocab["<image>"], vision_feature_layer=-1)).save_pretrained(llava)

    bert = root / "bert"
    BertModel(BertConfig(**TOWER, vocab_size=len(words))).save_pretrained(bert)
    return {"clip": clip, "siglip": siglip, "blip": blip, "llava": llava, "bert": bert}


def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)  # 16:9-ish, cropped or squashed to 32 x 32
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    tiny = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)  # a few pixels: the channel axis must not be guessed
    return [noisy, red, tiny, noisy.copy()]


@pytest.mark.parametrize("kind, dim", [("clip", 16), ("siglip", 32)])
def test_encoder_vectors(models, kind, dim):
    """Loading and inference PLUMBING with a tiny random model, not quality: shapes, unit norms, determinism,
    distinct frames -> distinct vectors, and text vectors in the same space."""
    from manta_models.perception.clip import ClipEncoder

    enc = ClipEncoder(models[kind])
    assert enc.dim == dim
    vecs = enc.encode_frames(frames())
    assert vecs.shape == (4, dim) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vecs[0], vecs[3], atol=1e-6)  # the same frame twice
    np.testing.assert_allclose(enc.encode_frames(frames()[:1])[0], vecs[0], atol=1e-5)  # alone vs in a batch
    assert np.abs(vecs[0] - vecs[1]).max() > 1e-3 and np.abs(vecs[1] - vecs[2]).max() > 1e-3
    assert enc.encode_frames([]).shape == (0, dim)

    texts = enc.encode_text(["a red car", "a photo of a dog on the road " * 20])  # the long one is truncated
    assert texts.shape == (2, dim) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert np.abs(texts[0] - texts[1]).max() > 1e-3
    cosines = texts @ vecs.T  # text-to-frame search is an inner product
    assert cosines.shape == (2, 4) and np.all(np.isfinite(cosines)) and np.all(np.abs(cosines) <= 1 + 1e-5)
    assert enc.encode_text([]).shape == (0, dim)


def test_encoder_rejects_bad_inputs(models):
    """Input validation PLUMBING with a tiny random model, not quality: wrong frames and texts raise ValueError."""
    from manta_models.perception.clip import ClipEncoder

    enc = ClipEncoder(models["clip"])
    for bad in [np.zeros((32, 32, 3), np.uint8), [np.zeros((32, 32), np.uint8)], [np.zeros((8, 8, 3))]]:
        with pytest.raises(ValueError):
            enc.encode_frames(bad)
    for bad in ["a cat", ["a cat", 3]]:
        with pytest.raises(ValueError, match="list of str"):
            enc.encode_text(bad)


@pytest.mark.parametrize("kind", ["blip", "llava"])
def test_captioner(models, kind):
    """Loading and generation PLUMBING with a tiny random model, not quality: one stripped string per frame,
    for an image-only captioner (BLIP) and a chat VLM driven through its chat template (LLaVA)."""
    from manta_models.perception.captioner import Captioner

    cap = Captioner(models[kind])
    out = cap.caption(frames(), max_new_tokens=5)
    assert len(out) == 4 and all(isinstance(c, str) and c == c.strip() for c in out)
    assert out[0] == out[3]  # greedy: the same frame gets the same caption
    assert cap.caption([]) == []
    with pytest.raises(ValueError):
        cap.caption([np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError):
        cap.caption(frames(), max_new_tokens=0)


def test_clear_model_errors(models, tmp_path):
    """Loading PLUMBING with tiny random models, not quality: a missing folder, a folder without config.json
    and a folder holding the wrong kind of model each raise ModelError saying so."""
    from manta_models.perception.captioner import Captioner
    from manta_models.perception.clip import ClipEncoder

    (tmp_path / "empty").mkdir()
    for cls in (ClipEncoder, Captioner):
        with pytest.raises(ModelError, match="does not exist"):
            cls(tmp_path / "missing")
        with pytest.raises(ModelError, match="no config.json"):
            cls(tmp_path / "empty")
        with pytest.raises(ModelError, match="not a"):
            cls(models["bert"])
    # A BLIP captioner's config maps to the contrastive BlipModel, whose projections its folder lacks.
    with pytest.raises(ModelError, match="weights are missing"):
        ClipEncoder(models["blip"])
    with pytest.raises(ModelError, match="not a captioning"):
        Captioner(models["clip"])


def test_backends_plug_into_a_streams_visual_stage(models):
    """Plumbing with tiny random models, not quality: a CLIP backend makes sampled frames searchable by
    text (evidence kind "frame"), a captioner adds searchable captions, both with their media times."""
    from manta_models.perception.captioner import Captioner
    from manta_models.perception.clip import ClipEncoder
    from streaming.records import VideoFrame
    from streaming.ingest.visual import VisualStage

    def embed(texts):  # stands in for MiniLM, which is not what this test is about
        out = np.zeros((len(texts), 8), np.float32)
        out[:, 0] = 1.0
        return out

    stage = VisualStage(embed, 8, clip=ClipEncoder(models["clip"]), captioner=Captioner(models["blip"]),
                        caption_interval_s=5.0)
    for i, image in enumerate(frames()[:2] * 3):
        stage.on_frame(VideoFrame(np.ascontiguousarray(np.resize(image, (36, 64, 3))), float(i), 0.0))
    hits = stage.search_frames_by_text("a photo of a dog", 3, None, None)
    assert len(hits) == 3 and all(0.0 <= f.t <= 5.0 for f, _ in hits)
    assert stage.search_frames_by_text("dog", 10, 2.0, 3.0)  # time filters apply
    captions = [it for it in stage.items.items() if getattr(it, "kind", "") == "caption"]
    assert [c.t0 for c in captions] == [0.0, 5.0]  # one caption per interval, at its frame's time
    assert stage.shown() == []  # captions are what is seen, not on-screen text
