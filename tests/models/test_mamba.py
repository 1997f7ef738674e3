"""The Mamba block and the stream model built on it: exactness, an independent cross-check, O(1) state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from manta_models.statespace.mamba import HAVE_KERNELS, MambaConfig, MambaStack, MambaState
from manta_models.statespace.stream_model import (BUNDLED, StreamModel, StreamModelConfig, StreamStepper,
                                       load_stream_model, save_stream_model)


def _perturbed(cfg: MambaConfig, seed: int = 0) -> MambaStack:
    """Random weights away from the initialisation, so agreement is not an accident of symmetry."""
    torch.manual_seed(seed)
    model = MambaStack(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("cfg", [MambaConfig(d_model=32, n_layers=2),
                                 MambaConfig(d_model=48, n_layers=3, d_state=8, d_conv=3, expand=1)])
def test_recurrent_steps_equal_the_parallel_forward(cfg):
    model = _perturbed(cfg)
    x = torch.randn(3, 40, cfg.d_model)
    with torch.no_grad():
        y, final = model(x)
        state = model.initial_state(3)
        ys = []
        for t in range(x.shape[1]):
            out, state = model.step(x[:, t], state)
            ys.append(out)
    assert torch.allclose(torch.stack(ys, 1), y, atol=1e-5, rtol=0)
    assert torch.allclose(state.ssm, final.ssm, atol=1e-5, rtol=0)
    assert torch.allclose(state.conv, final.conv, atol=1e-6, rtol=0)


def test_a_forward_continued_from_a_state_equals_one_long_forward():
    """What a restarted stream relies on: state in, state out, same numbers as never stopping."""
    model = _perturbed(MambaConfig(d_model=32))
    x = torch.randn(2, 30, 32)
    with torch.no_grad():
        y, _ = model(x)
        y1, s1 = model(x[:, :11])
        y2, _ = model(x[:, 11:], s1)
    assert torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-6, rtol=0)


@pytest.mark.skipif(HAVE_KERNELS, reason="transformers 5.17 sends CPU tensors to the causal-conv1d CUDA kernel "
                                         "when that package is installed (seen on a lent H100); CPU CI runs this")
def test_transformers_mamba_gives_the_same_outputs_from_the_same_weights():
    """An independent implementation (transformers' MambaModel, torch path) agrees with ours."""
    from transformers import MambaConfig as HFMambaConfig
    from transformers import MambaModel

    cfg = MambaConfig(d_model=32, n_layers=2)
    model = _perturbed(cfg, seed=3)
    hf_cfg = HFMambaConfig(vocab_size=4, hidden_size=cfg.d_model, state_size=cfg.d_state,
                           num_hidden_layers=cfg.n_layers, conv_kernel=cfg.d_conv, expand=cfg.expand,
                           time_step_rank=cfg.rank, use_bias=False, use_conv_bias=True,
                           layer_norm_epsilon=cfg.eps, residual_in_fp32=True)
    hf = MambaModel(hf_cfg).eval()
    missing, unexpected = hf.load_state_dict(model.state_dict(), strict=False)
    assert missing == ["embeddings.weight"] and unexpected == []  # every Mamba weight was taken
    x = torch.randn(2, 25, cfg.d_model)
    with torch.no_grad():
        ours, _ = model(x)
        theirs = hf(inputs_embeds=x).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours - theirs).abs().max()


def test_ten_thousand_steps_leave_the_state_size_unchanged():
    model = _perturbed(MambaConfig(d_model=32))
    state = model.initial_state(1)
    shapes, nbytes = (state.conv.shape, state.ssm.shape), state.nbytes
    with torch.no_grad():
        for _ in range(10_000):
            _, state = model.step(torch.randn(1, 32), state)
    assert (state.conv.shape, state.ssm.shape) == shapes and state.nbytes == nbytes
    assert nbytes == 4 * 2 * 1 * 64 * (4 + 16)  # layers x batch x d_inner x (d_conv + d_state) floats
    assert torch.isfinite(state.ssm).all()


@pytest.mark.skipif(not (HAVE_KERNELS and torch.cuda.is_available()),
                    reason="mamba-ssm/causal-conv1d kernels need CUDA and the gpu extra; "
                           "checked on a lent GPU instead (docs/BENCHMARKS.md)")
def test_cuda_kernels_match_the_torch_path():  # pragma: no cover - GPU only
    model = _perturbed(MambaConfig(d_model=64))
    x = torch.randn(2, 64, 64)
    with torch.no_grad():
        ref, ref_state = model(x)
        gpu = model.cuda()
        y, st = gpu(x.cuda())
        state = gpu.initial_state(2)
        for t in range(x.shape[1]):
            _, state = gpu.step(x[:, t].cuda(), state)
    assert torch.allclose(y.cpu(), ref, atol=1e-4)
    assert torch.allclose(state.ssm.cpu(), ref_state.ssm, atol=1e-4)


# -- the stream model -------------------------------------------------------------------------------

def _blocks(rng: np.random.Generator, cfg: StreamModelConfig, drop: tuple[str, ...] = ()) -> dict:
    out = {}
    for b, d in cfg.blocks.items():
        v = rng.standard_normal(d).astype(np.float32)
        out[b] = None if b in drop else (v if b == "stats" else v / np.linalg.norm(v))
    return out


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(1)
    cfg = StreamModelConfig(blocks={"said": 12, "shown": 12, "seen": 20, "stats": 10},
                            mamba=MambaConfig(d_model=16), dropout=0.0)
    return StreamModel(cfg).eval()


def test_stepper_surprise_matches_the_parallel_model(small_model):
    """Per-segment outputs of the streaming stepper equal a batch forward over the same inputs."""
    rng = np.random.default_rng(0)
    seq = [_blocks(rng, small_model.cfg, drop=("shown",) if i % 3 else ("said", "shown")) for i in range(12)]
    stepper = StreamStepper(small_model)
    outs = [stepper.step(b) for b in seq]
    assert outs[0].surprise is None and all(o.surprise is not None for o in outs[1:])
    assert outs[0].coherence is None and outs[1].coherence is not None  # said+seen present at i=1
    feats = {b: torch.tensor(np.stack([s[b] if s[b] is not None else np.zeros(d, np.float32) for s in seq]))[None]
             for b, d in small_model.cfg.blocks.items()}
    masks = {b: torch.tensor([s[b] is not None for s in seq])[None] for b in small_model.cfg.blocks}
    with torch.no_grad():
        h, _, _ = small_model(feats, masks)
        pred = small_model.predict(h[:, :-1], {b: f[:, :-1] for b, f in feats.items()},
                                   {b: m[:, :-1] for b, m in masks.items()})
        err = small_model.surprise(pred, {b: f[:, 1:] for b, f in feats.items()},
                                   {b: m[:, 1:] for b, m in masks.items()})[0]
    assert np.allclose([o.surprise for o in outs[1:]], err.numpy(), atol=1e-5)
    assert np.allclose(outs[-1].summary, torch.nn.functional.normalize(h[0, -1], dim=-1).numpy(), atol=1e-5)


def test_stepper_state_round_trip_resumes_exactly(small_model):
    rng = np.random.default_rng(1)
    seq = [_blocks(rng, small_model.cfg) for _ in range(10)]
    whole = StreamStepper(small_model)
    expected = [whole.step(b) for b in seq]
    first = StreamStepper(small_model)
    for b in seq[:6]:
        first.step(b)
    saved = {k: v.copy() for k, v in first.state_dict().items()}
    resumed = StreamStepper(small_model)
    resumed.load_state_dict(saved)
    for b, exp in zip(seq[6:], expected[6:]):
        got = resumed.step(b)
        assert got.surprise == pytest.approx(exp.surprise, abs=1e-6)
        assert np.allclose(got.summary, exp.summary, atol=1e-6)


def test_stepper_refuses_features_of_the_wrong_shape(small_model):
    stepper = StreamStepper(small_model)
    with pytest.raises(ValueError, match="said"):
        stepper.step({"said": np.zeros(5, np.float32), "stats": np.zeros(10, np.float32)})


def test_saved_model_loads_back_and_bad_files_are_model_errors(small_model, tmp_path):
    from manta_models.packaged import ModelError

    path = tmp_path / "m.pt"
    save_stream_model(small_model, path, {"note": "test"})
    loaded = load_stream_model(path)
    for a, b in zip(small_model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        load_stream_model(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="not found"):
        load_stream_model(tmp_path / "missing.pt")


def test_the_bundled_weights_were_made_by_the_training_script():
    model = load_stream_model("bundled")
    meta = model.meta
    assert meta["command"].startswith("python -m manta_models.train_stream")
    assert meta["curve"][-1]["predict"] < meta["curve"][0]["predict"]  # it learned something
    assert BUNDLED.stat().st_size < 5_000_000
    assert isinstance(model.backbone.initial_state(1), MambaState)
