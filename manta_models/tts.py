"""Offline text-to-speech through the eSpeak NG library bundled by ``espeakng-loader``.

eSpeak NG sounds robotic but is tiny, needs no model weights and runs anywhere,
which is what a self-contained demo source needs.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

__all__ = ["synthesize", "MIN_WPM", "MAX_WPM"]

# espeakRATE_MINIMUM / espeakRATE_MAXIMUM in speak_lib.h.
MIN_WPM = 80
MAX_WPM = 450

# Constants from eSpeak NG's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # otherwise a missing data dir calls exit() on our process
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_EE_OK = 0

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events)
_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

# eSpeak keeps global state (voice, rate, callback), so one lock serialises
# initialisation and every synthesis that touches it.
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_sample_rate = 0
_chunks: list[np.ndarray] = []


def _on_audio(wav: ctypes.POINTER(ctypes.c_short), numsamples: int, _events: int) -> int:
    # NULL wav marks the end; numsamples may be 0 mid-stream, which is not the end.
    if wav and numsamples > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
    return 0  # continue synthesis


# Module-level so the C side never calls a garbage-collected trampoline.
_CALLBACK = _CALLBACK_TYPE(_on_audio)


def _load() -> ctypes.CDLL:
    """Load and initialise eSpeak NG once per process; caller holds ``_lock``."""
    global _lib, _sample_rate
    if _lib is not None:
        return _lib
    try:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_path = espeakng_loader.get_data_path()
    except (ImportError, OSError, RuntimeError) as exc:
        raise RuntimeError(
            f"eSpeak NG is unavailable ({exc}); install the 'espeakng-loader' package"
        ) from exc

    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int

    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT
    )
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed (returned {rate}) with data at {data_path}")
    lib.espeak_SetSynthCallback(_CALLBACK)
    _sample_rate = rate
    _lib = lib
    return lib


def synthesize(
    text: str, voice: str = "en-us", words_per_minute: int = 150
) -> tuple[np.ndarray, int]:
    """Speak ``text``; return float32 mono samples in [-1, 1] and eSpeak's sample rate."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    if not isinstance(voice, str) or not voice.strip():
        raise ValueError("voice must be a non-empty string such as 'en-us'")
    if isinstance(words_per_minute, bool) or not isinstance(words_per_minute, int):
        raise ValueError("words_per_minute must be an int")
    if not MIN_WPM <= words_per_minute <= MAX_WPM:
        raise ValueError(
            f"words_per_minute must be in {MIN_WPM}..{MAX_WPM}, got {words_per_minute}"
        )
    payload = text.encode("utf-8") + b"\0"

    with _lock:
        lib = _load()
        if lib.espeak_SetVoiceByName(voice.encode("utf-8")) != _EE_OK:
            raise ValueError(f"unknown eSpeak NG voice {voice!r}")
        lib.espeak_SetParameter(_PARAM_RATE, words_per_minute, 0)
        _chunks.clear()
        try:
            status = lib.espeak_Synth(
                payload, len(payload), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            # Synchronous mode already returned after synthesis; this is a cheap guard.
            lib.espeak_Synchronize()
            if status != _EE_OK:
                raise RuntimeError(f"espeak_Synth failed with status {status}")
            pcm = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
        finally:
            _chunks.clear()
        rate = _sample_rate

    return (pcm.astype(np.float32) / 32768.0), rate


# The demo bulletin's voice: 130 wpm measured clearly more intelligible to Whisper than 150.
DEMO_VOICE, DEMO_WPM = "en-us", 130
DEMO_VOICE_ID = f"espeak-ng:{DEMO_VOICE}:{DEMO_WPM}"


def demo_speaker():
    """``(speak, voice_id)`` for :func:`streaming.tools.demo.ensure_demo_media`."""
    return (lambda text: synthesize(text, DEMO_VOICE, DEMO_WPM)), DEMO_VOICE_ID
