# Copyright 2026 The tinyalign_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Audio augmentation: the conditions a robot hears that clean synthetic speech never has.

A projector trained on clean text-to-speech learns that speech is clean. A robot hears people at
other speeds and pitches, in rooms, over fans and motors, through cheap microphones. :func:`augment`
draws one such condition per call from an :class:`AugmentConfig` and applies it: tempo and pitch
(sox's WSOLA ``tempo`` and ``pitch``, which keep the other one fixed), room reverberation (sox's
``reverb``), band limiting (a telephone band or a low-pass microphone), additive noise at a drawn
signal-to-noise ratio (white, pink or brown noise, or mains hum with harmonics) and gain. sox does
the signal processing (it is already needed for synthesis); numpy draws the noise.

Everything is drawn from the ``rng`` given, so the same seed gives the same audio: corpora stay
deterministic and resumable, and a personalization run can make many views of one recording.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import random
import subprocess
from typing import Any

import numpy as np

from .strict import build

SAMPLE_RATE = 16000


class AugmentError(RuntimeError):
    """sox is missing or failed on an effect chain."""


@dataclass
class AugmentConfig:
    """Probabilities and ranges of each condition (the defaults are the base corpus' recipe)."""

    p_clean: float = 0.2  # leave this share of utterances untouched
    p_tempo: float = 0.5
    tempo: tuple[float, float] = (0.85, 1.2)
    p_pitch: float = 0.3
    pitch_cents: tuple[float, float] = (-300.0, 300.0)
    p_reverb: float = 0.35
    reverberance: tuple[float, float] = (15.0, 80.0)
    room_scale: tuple[float, float] = (20.0, 100.0)
    p_band: float = 0.2
    p_noise: float = 0.6
    snr_db: tuple[float, float] = (0.0, 30.0)
    p_gain: float = 0.5
    gain_db: tuple[float, float] = (-15.0, 5.0)
    # A quiet stretch put before the speech, so a word is not always heard at the window's first frames.
    # Off by default: the engines already start 10-230 ms into their audio, and on personalization's
    # views it did not help (docs/results.md, "What a personalization run learns").
    p_lead: float = 0.0
    lead_s: tuple[float, float] = (0.05, 0.4)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name.startswith('p_') and not 0.0 <= float(value) <= 1.0:
                raise ValueError(f'{name} must be a probability in [0, 1], got {value}')
            if isinstance(value, (tuple, list)):
                low, high = value
                if low > high:
                    raise ValueError(f'{name}: low end {low} above high end {high}')
        if self.tempo[0] <= 0:
            raise ValueError(f'tempo factors must be positive, got {self.tempo}')
        if self.lead_s[0] < 0:
            raise ValueError(f'lead_s must be >= 0 seconds, got {self.lead_s}')

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        return build(cls, {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}, ValueError,
                     'augmentation settings')


def augment(samples: np.ndarray, rng: random.Random, config: AugmentConfig | None = None) -> tuple[np.ndarray, str]:
    """
    Return one augmented view of 16 kHz mono float32 ``samples`` and a short description of it.

    The description (e.g. ``tempo1.12 reverb45/60 pink12dB``) goes into corpus manifests, so per-condition
    results can be read back later; ``clean`` means the input was returned as it was.
    """
    config = config or AugmentConfig()
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError(f'expected non-empty mono samples, got shape {samples.shape}')
    if rng.random() < config.p_clean:
        return samples, 'clean'
    effects: list[str] = []
    parts: list[str] = []
    if rng.random() < config.p_tempo:
        factor = rng.uniform(*config.tempo)
        effects += ['tempo', '-s', f'{factor:.3f}']
        parts.append(f'tempo{factor:.2f}')
    if rng.random() < config.p_pitch:
        cents = rng.uniform(*config.pitch_cents)
        # sox shifts pitch by resampling: bring the chain back to 16 kHz before any later filter.
        effects += ['pitch', f'{cents:.0f}', 'rate', str(SAMPLE_RATE)]
        parts.append(f'pitch{cents:+.0f}')
    if rng.random() < config.p_reverb:
        reverberance = rng.uniform(*config.reverberance)
        room = rng.uniform(*config.room_scale)
        effects += ['reverb', f'{reverberance:.0f}', '50', f'{room:.0f}']
        parts.append(f'reverb{reverberance:.0f}/{room:.0f}')
    if rng.random() < config.p_band:
        if rng.random() < 0.5:
            effects += ['sinc', '300-3400']
            parts.append('phone')
        else:
            cutoff = rng.randint(3000, 7000)
            effects += ['sinc', f'-{cutoff}']
            parts.append(f'lowpass{cutoff}')
    out = sox_effects(samples, effects) if effects else samples.copy()
    if config.p_lead and rng.random() < config.p_lead:
        seconds = rng.uniform(*config.lead_s)
        out = np.concatenate([quiet_like(out, int(seconds * SAMPLE_RATE), rng), out])
        parts.append(f'lead{seconds:.2f}s')
    if rng.random() < config.p_noise:
        snr = rng.uniform(*config.snr_db)
        kind = rng.choice(('white', 'pink', 'brown', 'hum'))
        out = add_noise(out, make_noise(kind, out.size, rng), snr)
        parts.append(f'{kind}{snr:.0f}dB')
    if rng.random() < config.p_gain:
        gain = rng.uniform(*config.gain_db)
        out = out * np.float32(10 ** (gain / 20))
        parts.append(f'gain{gain:+.0f}dB')
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0.99:  # a real microphone path would clip; keep the waveform, only scale it
        out = out * np.float32(0.99 / peak)
    return out.astype(np.float32), ' '.join(parts) or 'clean'


def sox_effects(samples: np.ndarray, effects: list[str]) -> np.ndarray:
    """Run a sox effect chain over float32 samples (raw 32-bit float in and out, no temp files)."""
    cmd = ['sox', '-D', '-t', 'f32', '-r', str(SAMPLE_RATE), '-c', '1', '-',
           '-t', 'f32', '-r', str(SAMPLE_RATE), '-c', '1', '-', *effects]
    try:
        done = subprocess.run(cmd, input=np.ascontiguousarray(samples, dtype='<f4').tobytes(),
                              capture_output=True, check=False)
    except FileNotFoundError as error:
        raise AugmentError('sox is not installed: `apt-get install sox`') from error
    if done.returncode != 0:
        raise AugmentError(f'sox {" ".join(effects)} failed: {done.stderr.decode(errors="replace").strip()}')
    out = np.frombuffer(done.stdout, dtype='<f4').astype(np.float32)
    if out.size == 0:
        raise AugmentError(f'sox {" ".join(effects)} returned no audio')
    return out


def make_noise(kind: str, n: int, rng: random.Random) -> np.ndarray:
    """Unit-RMS noise of ``n`` samples: 'white', 'pink' (1/f), 'brown' (1/f^2) or 'hum' (mains + harmonics)."""
    gen = np.random.default_rng(rng.getrandbits(64))
    if kind == 'hum':
        t = np.arange(n) / SAMPLE_RATE
        base = rng.choice((50.0, 60.0))
        noise = sum(gen.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * base * h * t + gen.uniform(0, 2 * np.pi))
                    for h in range(1, 8))
        noise = noise + 0.05 * gen.standard_normal(n)  # fans and electronics under the hum
    else:
        exponent = {'white': 0.0, 'pink': 1.0, 'brown': 2.0}[kind]
        spectrum = np.fft.rfft(gen.standard_normal(n))
        freqs = np.fft.rfftfreq(n, d=1.0 / SAMPLE_RATE)
        freqs[0] = freqs[1] if n > 1 else 1.0
        noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n=n)
    rms = float(np.sqrt(np.mean(noise ** 2))) or 1.0
    return (noise / rms).astype(np.float32)


def quiet_like(samples: np.ndarray, n: int, rng: random.Random, window: int = 320) -> np.ndarray:
    """
    Return ``n`` samples of white noise as loud as the quietest 20 ms of ``samples``: its noise floor.

    Digital silence would be a condition no microphone produces (and zeros before the speech made
    the projector read worse, docs/results.md); a recording's own floor is what precedes speech.
    """
    frames = samples[: samples.size // window * window].reshape(-1, window) if samples.size >= window else \
        samples.reshape(1, -1)
    floor = float(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)).min()) if frames.size else 0.0
    return (make_noise('white', n, rng) * np.float32(max(floor, 1e-5))).astype(np.float32)


def add_noise(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``noise`` in at ``snr_db`` relative to the speech's power (measured where it is active)."""
    power = samples.astype(np.float64) ** 2
    loud = power[power > 1e-4 * power.max()] if power.max() > 0 else power
    speech_rms = float(np.sqrt(loud.mean())) if loud.size else 0.0
    noise_rms = speech_rms / (10 ** (snr_db / 20))
    return (samples + noise[: samples.size] * np.float32(noise_rms)).astype(np.float32)


__all__ = ['AugmentConfig', 'AugmentError', 'augment', 'sox_effects', 'make_noise', 'add_noise']
