"""Speaker embeddings: who is speaking, as a 256-d unit vector per piece of speech.

The weights are resemblyzer's GE2E encoder (``pretrained.pt`` in the ``resemblyzer`` 0.1.4 wheel,
Apache-2.0). The package itself is never imported: its ``audio`` module imports librosa (and with
it numba) and webrtcvad, none of which Manta installs. So the small network (a 3-layer LSTM, a
linear layer, ReLU, L2 norm) and the 40-channel mel spectrogram are re-declared here from
resemblyzer 0.1.4's published code (``voice_encoder.py``, ``audio.py``, ``hparams.py``), the mel
filters reproducing librosa's defaults (Slaney mel scale and area normalisation, a periodic Hann
window, centre padding by reflection). Its ``preprocess_wav`` is skipped except for the volume
normalisation: its webrtcvad trimming is Manta's VAD's job, and the caller sends speech.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from manta_models.packaged import ModelError
from streaming.records import SAMPLE_RATE

N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
RATE, MIN_COVERAGE = 1.3, 0.75  # embed_utterance's defaults
TARGET_DBFS = -30.0  # resemblyzer's audio_norm_target_dBFS (increase only)
MIN_SECONDS = 0.5  # shorter audio says too little about a voice to be worth a vector
DIM = 256


def weights_path() -> Path:
    """``pretrained.pt`` inside the installed resemblyzer package (found, not imported)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("speaker model 'resemblyzer' needs the resemblyzer package: "
                         "python3 -m pip install --no-deps resemblyzer==0.1.4")
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise ModelError(f"resemblyzer's weights are missing: {path}")
    return path


def available() -> bool:
    try:
        weights_path()
    except ModelError:
        return False
    return True


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mels = f / f_sp
    log_part = f >= min_log_hz
    mels[log_part] = min_log_hz / f_sp + np.log(f[log_part] / min_log_hz) / logstep
    return mels


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    freqs = f_sp * m
    log_part = m >= min_log_mel
    freqs[log_part] = min_log_hz * np.exp(logstep * (m[log_part] - min_log_mel))
    return freqs


def mel_filters() -> np.ndarray:
    """(40, 201) triangular filters as ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)``."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0],
                                   _hz_to_mel(np.array([SAMPLE_RATE / 2]))[0], N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((N_MELS, len(fft_freqs)))
    for i in range(N_MELS):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:N_MELS + 2] - mel_f[:N_MELS]))[:, None]  # Slaney: equal area
    return weights.astype(np.float32)


_FILTERS = mel_filters()
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """(frames, 40) power mel spectrogram (not log), as resemblyzer's ``wav_to_mel_spectrogram``."""
    padded = np.pad(wav, N_FFT // 2, mode="reflect")  # librosa's center=True, as resemblyzer had it
    n = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2
    return (power.astype(np.float32) @ _FILTERS.T).astype(np.float32)


def normalise_volume(wav: np.ndarray) -> np.ndarray:
    """Raise (never lower) the level to -30 dBFS, as resemblyzer's ``normalize_volume``."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if rms <= 0:
        return wav
    change_db = TARGET_DBFS - 20 * np.log10(rms)
    return wav * np.float32(10 ** (change_db / 20)) if change_db > 0 else wav


def partial_slices(n_samples: int) -> list[slice]:
    """Mel-frame slices of the 1.6 s partials of ``embed_utterance`` (rate 1.3, min coverage 0.75);
    a slice may reach past the audio (the audio is zero-padded to it)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((SAMPLE_RATE / RATE) / HOP))
    steps = max(1, n_frames - PARTIAL_FRAMES + step + 1)
    slices = [slice(i, i + PARTIAL_FRAMES) for i in range(0, steps, step)]
    last = slices[-1]
    coverage = (n_samples - last.start * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(slices) > 1:
        slices = slices[:-1]
    return slices


class SpeakerEncoder:
    """GE2E speaker vectors of 16 kHz mono float32 clips; cosine similarity is the dot product."""

    dim = DIM

    def __init__(self, *, device: str = "cpu", threads: int | None = None, path: Path | None = None):
        import torch
        from torch import nn

        if threads:  # as every other wrapper: a stream's share of the CPU, not all of it
            torch.set_num_threads(threads)
        self.path = Path(path) if path is not None else weights_path()

        class _Net(nn.Module):  # resemblyzer.VoiceEncoder's layers, same names, so its state loads
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
                self.linear = nn.Linear(256, DIM)
                self.relu = nn.ReLU()

            def forward(self, mels):
                _, (hidden, _) = self.lstm(mels)
                raw = self.relu(self.linear(hidden[-1]))
                return raw / torch.norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

        try:
            checkpoint = torch.load(self.path, map_location="cpu", weights_only=False)
            net = _Net()
            # strict=False as resemblyzer loads it: the checkpoint also holds GE2E's loss scalars.
            net.load_state_dict(checkpoint["model_state"], strict=False)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load the speaker model from {self.path}: {exc}") from exc
        self._torch, self.device = torch, torch.device(device)
        self.net = net.to(self.device).eval()

    def embed(self, clips: list[np.ndarray]) -> np.ndarray:
        """(len(clips), 256) unit vectors; every clip's partials go through the LSTM in one call.
        A clip shorter than ``MIN_SECONDS`` (or silent) gets a zero row: no voice to speak of."""
        if not isinstance(clips, (list, tuple)):
            raise TypeError("clips must be a list of 1-d float32 arrays")
        out = np.zeros((len(clips), DIM), dtype=np.float32)
        mels, owner = [], []
        for i, clip in enumerate(clips):
            wav = np.asarray(clip, dtype=np.float32)
            if wav.ndim != 1:
                raise ValueError(f"clip {i} is not mono 1-d audio (shape {wav.shape})")
            if len(wav) < MIN_SECONDS * SAMPLE_RATE or not np.any(wav):
                continue
            wav = normalise_volume(wav)
            slices = partial_slices(len(wav))
            stop = slices[-1].stop * HOP
            if stop >= len(wav):
                wav = np.pad(wav, (0, stop - len(wav)))
            mel = mel_spectrogram(wav)
            for s in slices:
                mels.append(mel[s])
                owner.append(i)
        if not mels:
            return out
        with self._torch.no_grad():
            partial = self.net(self._torch.from_numpy(np.stack(mels)).to(self.device)).cpu().numpy()
        owner_arr = np.array(owner)
        for i in np.unique(owner_arr):
            mean = partial[owner_arr == i].mean(axis=0)
            out[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return out
