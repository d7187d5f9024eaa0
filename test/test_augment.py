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
Augmentation: each condition really changes the audio the way it says.

The same seed gives the same audio, and the noise lands at the signal-to-noise ratio it was asked for.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from tinyalign_ros.augment import add_noise, augment, AugmentConfig, make_noise, sox_effects

SR = 16000


def _tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_same_seed_same_audio_and_description() -> None:
    x = _tone()
    a, da = augment(x, random.Random(7))
    b, db = augment(x, random.Random(7))
    assert da == db and np.array_equal(a, b)
    descriptions = {augment(x, random.Random(seed))[1] for seed in range(30)}
    assert len(descriptions) > 20 and 'clean' in descriptions  # varied, and some are left clean


def test_tempo_changes_duration_and_pitch_keeps_it() -> None:
    x = _tone(2.0)
    faster = sox_effects(x, ['tempo', '-s', '1.25'])
    assert abs(faster.size - x.size / 1.25) < 0.02 * x.size
    shifted = sox_effects(x, ['pitch', '300'])
    assert abs(shifted.size - x.size) < 0.01 * x.size
    spectrum = np.abs(np.fft.rfft(shifted))
    peak_hz = np.argmax(spectrum) * SR / shifted.size
    assert 250 < peak_hz < 275  # 220 Hz up three semitones is about 262 Hz


@pytest.mark.parametrize('snr_db', [0.0, 10.0, 25.0])
def test_noise_is_mixed_at_the_requested_snr(snr_db: float) -> None:
    x = _tone()
    noise = make_noise('pink', x.size, random.Random(1))
    y = add_noise(x, noise, snr_db)
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert abs(measured - snr_db) < 0.5


def test_noise_colours_differ_in_spectrum() -> None:
    rng = random.Random(0)
    n = SR * 2

    def low_share(kind: str) -> float:
        power = np.abs(np.fft.rfft(make_noise(kind, n, rng))) ** 2
        return float(power[: len(power) // 16].sum() / power.sum())

    assert low_share('white') < low_share('pink') < low_share('brown')
    hum = np.abs(np.fft.rfft(make_noise('hum', n, rng)))
    assert np.argmax(hum) * SR / n in (50.0, 60.0)


def test_never_clips_and_refuses_bad_settings() -> None:
    loud = np.full(SR, 0.95, dtype=np.float32)
    config = AugmentConfig(p_clean=0.0, p_gain=1.0, gain_db=(10.0, 10.0), p_noise=0.0, p_tempo=0.0, p_pitch=0.0,
                           p_reverb=0.0, p_band=0.0)
    y, description = augment(loud, random.Random(0), config)
    assert 'gain+10dB' in description and np.max(np.abs(y)) <= 0.99 + 1e-6
    with pytest.raises(ValueError, match='p_noise'):
        AugmentConfig(p_noise=1.5)
    with pytest.raises(ValueError, match='snr_db'):
        AugmentConfig(snr_db=(30.0, 0.0))
    with pytest.raises(ValueError, match='unknown'):
        AugmentConfig.from_dict({'p_nois': 0.1})
    with pytest.raises(ValueError, match='non-empty mono'):
        augment(np.zeros((2, 10), dtype=np.float32), random.Random(0))


def test_a_lead_puts_the_recordings_own_noise_floor_before_the_speech() -> None:
    rng = np.random.default_rng(0)
    floor = 0.003
    x = np.concatenate([rng.normal(0, floor, SR // 4), _tone(1.0) + rng.normal(0, floor, SR)]).astype(np.float32)
    only_lead = AugmentConfig(p_clean=0.0, p_tempo=0.0, p_pitch=0.0, p_reverb=0.0, p_band=0.0, p_noise=0.0,
                              p_gain=0.0, p_lead=1.0, lead_s=(0.2, 0.2))
    y, description = augment(x, random.Random(3), only_lead)
    assert description == 'lead0.20s' and y.size == x.size + int(0.2 * SR)
    np.testing.assert_array_equal(y[int(0.2 * SR):], x)  # the recording itself is untouched
    lead_rms = float(np.sqrt(np.mean(y[: int(0.2 * SR)] ** 2)))
    assert 0.5 * floor < lead_rms < 1.5 * floor  # as loud as the floor, far below the speech
    assert AugmentConfig().p_lead == 0.0  # off for the base corpus
    with pytest.raises(ValueError, match='lead_s'):
        AugmentConfig(lead_s=(-0.1, 0.2))


def test_a_pitch_shift_down_then_a_low_pass_near_nyquist_works() -> None:
    """Check that a later 7 kHz filter still sees a 16 kHz stream after sox shifts pitch by resampling."""
    x = _tone()
    config = AugmentConfig(p_clean=0.0, p_pitch=1.0, pitch_cents=(-300.0, -300.0), p_band=1.0, p_tempo=0.0,
                           p_reverb=0.0, p_noise=0.0, p_gain=0.0)
    for seed in range(12):
        y, description = augment(x, random.Random(seed), config)
        assert y.size > 0.9 * x.size and 'pitch-300' in description
