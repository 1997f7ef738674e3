"""The cross-encoder reranker's loading and scoring path, with a TINY RANDOMLY INITIALISED BERT
sequence classifier saved to a temp folder: no reranker checkpoint exists on this machine (none ships
in a PyPI package), so this checks the plumbing — loading, pair tokenisation, batching, logit
reading, and that its scores drive the ranking — not ranking quality."""

from __future__ import annotations

import pytest

from manta_models.packaged import ModelError
from manta_models.answering.reranker import CrossEncoder
from streaming.records import Evidence
from streaming.answer.rerank import Candidate, rerank


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from manta_models.perception.embed import resolve_embedder

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(resolve_embedder("minilm"), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_tiny_cross_encoder_scores_every_pair_deterministically(tiny_reranker):
    enc = CrossEncoder(tiny_reranker)
    texts = [f"segment number {i} about the harbour bridge" for i in range(37)]  # > one batch
    scores = enc.score("when does the bridge close?", texts)
    assert len(scores) == 37 and all(isinstance(s, float) for s in scores)
    assert enc.score("when does the bridge close?", texts) == scores
    assert len(set(round(s, 6) for s in scores)) > 1  # the pairs really went through the model
    with pytest.raises(ValueError):
        enc.score("  ", texts)


def test_cross_encoder_scores_order_the_candidates(tiny_reranker):
    enc = CrossEncoder(tiny_reranker)
    cands = [Candidate(Evidence("s", float(i), i + 1.0, f"text {i} bridge", 0.5)) for i in range(6)]
    scores = enc.score("bridge", [c.evidence.text for c in cands])
    ranked = rerank("bridge", cands, cross_scores=scores)
    by_cross = sorted(range(6), key=lambda i: -scores[i])
    assert [r.candidate for r in ranked] == [cands[i] for i in by_cross]


def test_wrong_reranker_folders_fail_clearly(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        CrossEncoder(tmp_path / "missing")
    with pytest.raises(ModelError, match="config.json"):
        CrossEncoder(tmp_path)
