"""Test signals for the codecs, the workload sources and the benchmarks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["K_SIGNAL_RATE", "speech_like_signal"]

#: Sample rate of :func:`speech_like_signal`, Hz.
K_SIGNAL_RATE = 48_000


def speech_like_signal(seconds: float, *, seed: int = 1) -> npt.NDArray[np.int16]:
    """A deterministic speech-like 48 kHz mono int16 signal of ``seconds``.

    Voiced syllables: the harmonics (up to 4 kHz) of a pitch that wanders between about 90
    and 170 Hz, weighted by two formant peaks drawn afresh for every 250 ms syllable
    (F1 300-800 Hz, F2 900-2300 Hz, like changing vowels); each syllable rises and falls
    (sine-squared envelope) and one in five is a pause. Breath and fricative noise at
    about -40 dB below the voice runs throughout. Peak level -6 dBFS.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * K_SIGNAL_RATE)
    t = np.arange(n) / K_SIGNAL_RATE
    f0 = 130.0 + 30.0 * np.sin(2 * np.pi * 0.4 * t) + 10.0 * np.sin(2 * np.pi * 2.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / K_SIGNAL_RATE
    syllable = (t * 4.0).astype(np.int64)
    count = int(syllable[-1]) + 1 if n else 1
    f1 = rng.uniform(300.0, 800.0, count)[syllable]
    f2 = rng.uniform(900.0, 2300.0, count)[syllable]
    voiced = (rng.random(count) >= 0.2)[syllable]
    voice = np.zeros(n)
    for k in range(1, 31):
        fk = k * f0
        weight = (np.exp(-(((fk - f1) / 150.0) ** 2)) + np.exp(-(((fk - f2) / 200.0) ** 2))
                  + 0.05) / k
        voice += np.where(fk < 4000.0, weight, 0.0) * np.sin(k * phase)
    envelope = np.sin(np.pi * ((t * 4.0) % 1.0)) ** 2 * voiced
    voice *= envelope
    voice /= max(float(np.max(np.abs(voice))), 1e-9)
    signal = 0.5 * voice + 0.005 * rng.standard_normal(n)
    return np.clip(np.rint(signal * 32767.0), -32768, 32767).astype(np.int16)
