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
Audio input: files and raw PCM from ROS topics, turned into float32 mono 16 kHz.

Everything downstream (VAD, Whisper encoder, personalisation data) speaks one format: float32
mono at 16 kHz in [-1, 1]. Robots do not: microphones publish interleaved S16LE at 44.1 kHz, the
two ``audio_common`` flavours deliver ``uint8[]`` bytes or typed arrays, and recordings are WAV or
FLAC at any rate. This module is the single place where that variety is converted and checked, so
a wrong ``sample_format`` parameter fails here with a message that names the fix instead of
turning into noise that Whisper happily transcribes.

Length limits are checked from the byte or sample count *before* decoding: a malformed or hostile
message of hundreds of megabytes is refused without allocating a float copy of it.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
import math
import numbers
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
SAMPLE_FORMATS = ('S16LE', 'S32LE', 'F32LE', 'U8', 'S8')
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
RESAMPLE_QUALITY = 'HQ'
# Float audio is nominally within [-1, 1]; processing can overshoot a little, so only values far
# beyond any real signal (40 dB over full scale) are refused. Larger ones are a wrong format or a
# broken producer, and past about 1e18 Whisper's power spectrum overflows to NaN and the assistant
# answers "" without an error.
MAX_FLOAT_AMPLITUDE = 100.0

PcmData = Union[bytes, bytearray, memoryview, array.array, np.ndarray, list]


class AudioError(ValueError):
    """Audio that cannot be used: bad format, bad values, wrong size or unreadable file."""


class EmptyAudioError(AudioError):
    """No samples (or fewer than the caller needs)."""


class NonFiniteAudioError(AudioError):
    """NaN or infinite samples, usually a float stream decoded with the wrong sample format."""


class AmplitudeError(AudioError):
    """Float samples far outside [-1, 1]: not a correctly decoded audio signal."""


class AudioTooLongError(AudioError):
    """More audio than the configured maximum."""


class AudioFormatError(AudioError):
    """Unknown sample format, impossible layout (byte count, channels) or sample rate."""


class AudioFileError(AudioError):
    """A missing or unreadable audio file."""


@dataclass(frozen=True)
class _Format:
    """How one PCM sample format is stored and scaled to [-1, 1]."""

    dtype: np.dtype
    scale: float
    offset: float = 0.0

    @property
    def width(self) -> int:
        return self.dtype.itemsize


_FORMATS: dict[str, _Format] = {
    'S16LE': _Format(np.dtype('<i2'), 1.0 / 32768.0),
    'S32LE': _Format(np.dtype('<i4'), 1.0 / 2147483648.0),
    'F32LE': _Format(np.dtype('<f4'), 1.0),
    'U8': _Format(np.dtype('u1'), 1.0 / 128.0, offset=128.0),
    'S8': _Format(np.dtype('i1'), 1.0 / 128.0),
}

# PortAudio sample format codes, as published by the mgonzs13 flavour of audio_common.
_PORTAUDIO: dict[int, str] = {1: 'F32LE', 2: 'S32LE', 8: 'S16LE', 16: 'S8', 32: 'U8'}
_PORTAUDIO_UNSUPPORTED: dict[int, str] = {4: 'paInt24', 0x80000000: 'paCustomFormat'}


def normalize_format(sample_format: str) -> str:
    """Return the canonical name of ``sample_format`` (case-insensitive), or raise."""
    if not isinstance(sample_format, str):
        raise AudioFormatError(
            f'sample_format must be a string such as "S16LE", got {type(sample_format).__name__}'
        )
    name = sample_format.strip().upper()
    if name not in _FORMATS:
        raise AudioFormatError(
            f'unknown sample_format {sample_format!r}: use one of {", ".join(SAMPLE_FORMATS)}'
        )
    return name


def format_from_portaudio(code: int) -> str:
    """Map a PortAudio sample format code (1, 2, 8, 16, 32) to a sample format name."""
    if isinstance(code, bool) or not isinstance(code, numbers.Integral):
        raise AudioFormatError(f'PortAudio format code must be an integer, got {code!r}')
    if int(code) in _PORTAUDIO:
        return _PORTAUDIO[int(code)]
    known = ', '.join(f'{k}={v}' for k, v in _PORTAUDIO.items())
    hint = _PORTAUDIO_UNSUPPORTED.get(int(code))
    what = f' ({hint} is not supported)' if hint else ''
    raise AudioFormatError(f'unknown PortAudio format code {code}{what}: supported are {known}')


def sample_width(sample_format: str) -> int:
    """Bytes per sample of one channel, e.g. 2 for S16LE."""
    return _FORMATS[normalize_format(sample_format)].width


def duration_s(samples: np.ndarray) -> float:
    """Seconds of 16 kHz audio in ``samples`` (frames along the first axis)."""
    return len(samples) / SAMPLE_RATE


def _check_channels(channels: int) -> int:
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise AudioFormatError(f'channels must be an integer >= 1, got {channels!r}')
    return int(channels)


def _check_rate(sample_rate: float) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise AudioFormatError(f'sample_rate must be a number in Hz, got {sample_rate!r}')
    if not math.isfinite(sample_rate) or sample_rate != int(sample_rate):
        raise AudioFormatError(f'sample_rate must be a whole number of Hz, got {sample_rate!r}')
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioFormatError(
            f'sample_rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz: '
            'check the audio_info topic or the sample_rate parameter'
        )
    return int(sample_rate)


def _check_length(n_frames: int, sample_rate: int, max_seconds: float | None) -> None:
    """Refuse too much audio from its size alone, before any decoding work."""
    if max_seconds is not None and n_frames / sample_rate > max_seconds:
        raise AudioTooLongError(
            f'audio is {n_frames / sample_rate:.2f} s, longer than the maximum of '
            f'{max_seconds:g} s'
        )


def validate(samples: np.ndarray, max_seconds: float | None = None,
             min_samples: int = 1) -> np.ndarray:
    """
    Check 16 kHz mono float audio and return it as contiguous float32.

    Non-finite values are refused rather than cleaned: they almost always mean the stream is
    decoded with the wrong format, and silently zeroing them would hide that.
    """
    arr = np.asarray(samples)
    if arr.dtype.kind != 'f':
        raise AudioFormatError(
            f'expected float samples in [-1, 1], got dtype {arr.dtype}: '
            'convert integer PCM with pcm_to_float()'
        )
    if arr.ndim != 1:
        raise AudioFormatError(
            f'expected mono samples (1-D), got shape {arr.shape}: downmix with to_mono_16k()'
        )
    if len(arr) < min_samples:
        what = 'no samples' if len(arr) == 0 else f'{len(arr)} samples'
        raise EmptyAudioError(f'audio has {what}, at least {min_samples} needed')
    _check_length(len(arr), SAMPLE_RATE, max_seconds)
    if not np.isfinite(arr).all():  # before the float32 cast, which turns 1e300 into Inf
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise NonFiniteAudioError(
            f'audio contains {bad} NaN/Inf samples: is sample_format right (F32LE vs S16LE)?'
        )
    _check_amplitude(arr)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_amplitude(samples: np.ndarray) -> None:
    """Refuse finite float samples whose size no real signal has (see MAX_FLOAT_AMPLITUDE)."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > MAX_FLOAT_AMPLITUDE:
        raise AmplitudeError(
            f'audio peaks at {peak:.3g}, but float samples must lie within [-1, 1] (up to '
            f'{MAX_FLOAT_AMPLITUDE:g} tolerated): is sample_format right, or is integer PCM being sent as float?'
        )


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """
    Downmix (mean over channels) and resample float audio to mono 16 kHz with soxr.

    ``samples`` is ``(frames,)`` or ``(frames, channels)``. Downmixing happens first so the
    resampler works on one channel only.
    """
    rate = _check_rate(sample_rate)
    arr = np.asarray(samples)
    if arr.dtype.kind != 'f':
        raise AudioFormatError(
            f'to_mono_16k() needs float samples, got dtype {arr.dtype}: use pcm_to_float()'
        )
    if arr.ndim == 2:
        if arr.shape[1] < 1:
            raise AudioFormatError('audio has zero channels')
        arr = arr[:, 0] if arr.shape[1] == 1 else arr.mean(axis=1, dtype=np.float32)
    elif arr.ndim != 1:
        raise AudioFormatError(f'expected (frames,) or (frames, channels), got {arr.shape}')
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if rate != SAMPLE_RATE and len(arr):
        if not np.isfinite(arr).all():
            raise NonFiniteAudioError('audio contains NaN/Inf samples; cannot resample it')
        arr = soxr.resample(arr, rate, SAMPLE_RATE, quality=RESAMPLE_QUALITY)
    return arr


def _as_byte_array(data: PcmData) -> np.ndarray:
    """View byte-like input (bytes, uint8[] message fields, lists of 0..255) as uint8."""
    if isinstance(data, list):
        if not data:
            return np.zeros(0, np.uint8)
        arr = np.asarray(data)
        if arr.ndim != 1 or arr.dtype.kind not in 'iu':
            raise AudioFormatError('a list of PCM bytes must hold integers 0..255')
        if arr.min() < 0 or arr.max() > 255:
            raise AudioFormatError('a list of PCM bytes must hold integers 0..255')
        return arr.astype(np.uint8)
    if isinstance(data, np.ndarray):
        if data.ndim != 1 or data.dtype.kind not in 'iu':
            raise AudioFormatError(
                f'PCM bytes must be a flat uint8 array, got {data.dtype} of shape {data.shape}'
            )
        return np.ascontiguousarray(data).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise AudioFormatError(
            f'cannot read PCM bytes from {type(data).__name__}: pass bytes, bytearray, '
            'memoryview, array.array or a numpy array'
        ) from exc


def _itemsize(data: PcmData) -> int:
    if isinstance(data, np.ndarray):
        return data.dtype.itemsize
    if isinstance(data, array.array):
        return data.itemsize
    return 1


def pcm_to_float(data: PcmData, sample_format: str, channels: int = 1,
                 sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """
    Decode interleaved PCM into float32 mono 16 kHz.

    Byte-like input (``bytes``, ``array('B')`` from a ROS ``uint8[]`` field, a uint8 array, a
    list of ints) is decoded as ``sample_format``. Already-typed input (``array('h')``, an int16
    or float32 ndarray) is handed to :func:`typed_array_to_float`, which checks that its type
    matches ``sample_format``.
    """
    fmt_name = normalize_format(sample_format)
    n_channels = _check_channels(channels)
    rate = _check_rate(sample_rate)
    if _itemsize(data) != 1:
        mono = _decode_typed(data, fmt_name, n_channels, rate, max_seconds)
    else:
        mono = _decode_bytes(data, fmt_name, n_channels, rate, max_seconds)
    return validate(to_mono_16k(mono, rate), max_seconds=max_seconds)


def typed_array_to_float(values: array.array | np.ndarray | list, sample_format: str,
                         channels: int = 1, sample_rate: int = SAMPLE_RATE,
                         max_seconds: float | None = None) -> np.ndarray:
    """
    Convert already-typed interleaved samples (e.g. ``int16[]`` as ``array('h')``).

    The mgonzs13 ``audio_common`` flavour sends typed arrays, so the values are samples, not
    bytes. Integer values must fit the format's range and float formats need float values: a
    mismatch means the format parameter is wrong, which is reported instead of guessed around.
    """
    fmt_name = normalize_format(sample_format)
    n_channels = _check_channels(channels)
    rate = _check_rate(sample_rate)
    mono = _decode_typed(values, fmt_name, n_channels, rate, max_seconds)
    return validate(to_mono_16k(mono, rate), max_seconds=max_seconds)


def _decode_bytes(data: PcmData, fmt_name: str, channels: int, rate: int,
                  max_seconds: float | None) -> np.ndarray:
    """Raw bytes -> float32 mono at the source rate, size checks first."""
    fmt = _FORMATS[fmt_name]
    frame_bytes = fmt.width * channels
    if isinstance(data, list):
        # A list costs O(n) to convert: refuse an oversized one from its length first.
        _check_length(len(data) // frame_bytes, rate, max_seconds)
    raw = _as_byte_array(data)
    if raw.size == 0:
        raise EmptyAudioError('PCM data is empty')
    if raw.size % frame_bytes:
        raise AudioFormatError(
            f'{raw.size} bytes is not a whole number of {fmt_name} frames of {channels} '
            f'channel(s) ({frame_bytes} bytes each): check sample_format and channels'
        )
    _check_length(raw.size // frame_bytes, rate, max_seconds)
    return _scale_and_downmix(raw.view(fmt.dtype), fmt, channels)


def _decode_typed(values: array.array | np.ndarray | list, fmt_name: str, channels: int,
                  rate: int, max_seconds: float | None) -> np.ndarray:
    """Typed samples -> float32 mono at the source rate, checking the type fits the format."""
    fmt = _FORMATS[fmt_name]
    n_values = len(values)
    if n_values == 0:
        raise EmptyAudioError('sample array is empty')
    if n_values % channels:
        raise AudioFormatError(
            f'{n_values} samples is not a whole number of frames of {channels} channel(s)'
        )
    _check_length(n_values // channels, rate, max_seconds)
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise AudioFormatError(f'expected a flat (interleaved) sample array, got {arr.shape}')
    if fmt.dtype.kind == 'f':
        if arr.dtype.kind != 'f':
            raise AudioFormatError(
                f'{fmt_name} needs float samples, got {arr.dtype}: is sample_format right?'
            )
    elif arr.dtype.kind not in 'iu':
        raise AudioFormatError(
            f'{fmt_name} needs integer samples, got {arr.dtype}: is sample_format right?'
        )
    elif not np.can_cast(arr.dtype, fmt.dtype, casting='safe'):
        info = np.iinfo(fmt.dtype)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            raise AudioFormatError(
                f'sample values {lo}..{hi} do not fit {fmt_name} ({info.min}..{info.max}): '
                'is sample_format right?'
            )
    return _scale_and_downmix(arr, fmt, channels)


def _scale_and_downmix(values: np.ndarray, fmt: _Format, channels: int) -> np.ndarray:
    samples = values.astype(np.float32)
    if fmt.offset:
        samples -= np.float32(fmt.offset)
    if fmt.scale != 1.0:
        samples *= np.float32(fmt.scale)
    if fmt.dtype.kind == 'f' and not np.isfinite(samples).all():
        raise NonFiniteAudioError(
            'PCM data decodes to NaN/Inf: the stream is probably not F32LE (try S16LE)'
        )
    if fmt.dtype.kind == 'f':
        _check_amplitude(samples)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return samples


def load_audio(path: str | Path, max_seconds: float | None = 30.0) -> np.ndarray:
    """
    Read a WAV/FLAC (anything libsndfile reads) file as validated float32 mono 16 kHz.

    The header is read first so an overlong recording is refused before its samples are loaded.
    """
    file = Path(path)
    if not file.is_file():
        raise AudioFileError(f'audio file not found: {file}')
    try:
        info = sf.info(str(file))
        _check_length(info.frames, int(info.samplerate), max_seconds)
        data, rate = sf.read(str(file), dtype='float32', always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(f'cannot read audio file {file}: {exc}') from exc
    if data.shape[0] == 0:
        raise EmptyAudioError(f'audio file {file} has no samples')
    return validate(to_mono_16k(data, int(rate)), max_seconds=max_seconds)


class PcmStream:
    """
    Stateful converter for one continuous PCM stream (one ROS topic).

    Resampling every message on its own clicks at message boundaries and drifts by a fraction
    of a sample per message (1024 frames at 44.1 kHz are 371.5 output samples), so a stream keeps
    one soxr resampler across messages. At 16 kHz no state is needed at all.
    """

    def __init__(self, sample_format: str, channels: int = 1,
                 sample_rate: int = SAMPLE_RATE) -> None:
        self.sample_format = normalize_format(sample_format)
        self.channels = _check_channels(channels)
        self.sample_rate = _check_rate(sample_rate)
        self._resampler: soxr.ResampleStream | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the resampler history, e.g. after a gap in the stream."""
        self._resampler = None
        if self.sample_rate != SAMPLE_RATE:
            self._resampler = soxr.ResampleStream(
                self.sample_rate, SAMPLE_RATE, 1, dtype='float32', quality=RESAMPLE_QUALITY
            )

    def convert(self, data: PcmData) -> np.ndarray:
        """
        Decode one message (bytes or typed array) into float32 mono 16 kHz samples.

        While the resampler fills its filter it may return fewer samples than it was given, even
        none; :meth:`finish` returns what it still holds.
        """
        if _itemsize(data) != 1:
            mono = _decode_typed(data, self.sample_format, self.channels, self.sample_rate, None)
        else:
            mono = _decode_bytes(data, self.sample_format, self.channels, self.sample_rate, None)
        if self._resampler is None:
            return mono
        return self._resampler.resample_chunk(mono)

    def finish(self) -> np.ndarray:
        """Return the resampler's buffered tail at the end of the stream and start afresh."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        self.reset()
        return tail
