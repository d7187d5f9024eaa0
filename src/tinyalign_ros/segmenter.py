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
Streaming utterance segmentation with the Silero VAD bundled in faster-whisper.

A microphone topic delivers audio in chunks of any size (10 ms to 1 s are typical). The
assistant needs whole utterances: Whisper hallucinates on silence, and the LLM should answer a
finished question, not half of one. :class:`Segmenter` is fed those chunks and returns each
utterance once its speaker has been quiet for ``end_silence_s``.

How the VAD runs incrementally: Silero scores 512-sample windows (32 ms at 16 kHz), each seen
with the last 64 samples of the previous window, and carries an LSTM state (``h``, ``c``) from
window to window. faster-whisper runs it over a whole file in one ONNX call; here the same call
is made on every run of complete windows that has arrived, passing the state and the 64-sample
context along. The probabilities are then identical to scoring the whole stream at once (the
tests check this), each sample is scored exactly once, and the cost is a few milliseconds per
second of audio, independent of how the stream is chunked.

Sample bookkeeping uses absolute sample indices since the start of the stream, so an utterance's
audio is exactly the contiguous input from its first to its last sample, whatever the chunking.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
from tinyalign_ros.audio import SAMPLE_RATE

WINDOW = 512  # samples per Silero window at 16 kHz
CONTEXT = 64  # samples of the previous window Silero sees in front of each window
STATE_SHAPE = (1, 1, 128)
# Chunks are processed in slices of at most this many samples so a huge chunk cannot make the
# buffer grow past the configured bound before the VAD has a chance to cut or drop audio.
SLICE = 8000
# max_buffer_s must exceed max_utterance_s by this much: one utterance plus one VAD window plus
# one slice have to fit.
BUFFER_SLACK_S = 1.0


class SegmenterError(ValueError):
    """Invalid segmenter configuration or input chunk."""


@dataclass
class SegmenterConfig:
    """
    When speech starts and ends, and how much audio an utterance and the buffer may hold.

    threshold: Silero speech probability at or above which a window is speech. A window ends
        speech only below ``threshold - 0.15`` (hysteresis, as Silero recommends), so a
        probability hovering around the threshold does not chop words.
    min_speech_s: utterances whose detected speech is shorter are discarded (coughs, clicks).
    max_utterance_s: longest utterance audio (padding included). Speech still going on at that
        length is force-cut; the piece is marked ``truncated=True`` and the next piece starts
        at the very next sample. If the limit falls in a short pause, the utterance simply
        ends at the pause.
    padding_s: audio kept before the detected start and after the detected end, because the VAD
        reacts a window late and word edges are quiet.
    end_silence_s: silence that ends an utterance; must be >= ``padding_s``.
    max_buffer_s: upper bound on the audio held in memory.
    """

    threshold: float = 0.5
    min_speech_s: float = 0.3
    max_utterance_s: float = 20.0
    padding_s: float = 0.2
    end_silence_s: float = 0.6
    max_buffer_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ('threshold', 'min_speech_s', 'max_utterance_s', 'padding_s',
                     'end_silence_s', 'max_buffer_s'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SegmenterError(f'{name} must be a number, got {value!r}')
            if not math.isfinite(value):
                raise SegmenterError(f'{name} must be finite, got {value!r}')
        if not 0.0 < self.threshold < 1.0:
            raise SegmenterError(f'threshold must be in (0, 1), got {self.threshold}')
        if self.min_speech_s < 0 or self.padding_s < 0:
            raise SegmenterError('min_speech_s and padding_s must be >= 0')
        if self.end_silence_s <= 0:
            raise SegmenterError(f'end_silence_s must be > 0, got {self.end_silence_s}')
        if self.padding_s > self.end_silence_s:
            raise SegmenterError(
                f'padding_s ({self.padding_s}) must not exceed end_silence_s '
                f'({self.end_silence_s}): the padding after speech is taken from that silence'
            )
        if self.max_utterance_s <= self.padding_s + self.min_speech_s:
            raise SegmenterError(
                f'max_utterance_s ({self.max_utterance_s}) must exceed padding_s + min_speech_s '
                f'({self.padding_s + self.min_speech_s}) so a cut piece can hold speech'
            )
        if self.max_buffer_s < self.max_utterance_s + BUFFER_SLACK_S:
            raise SegmenterError(
                f'max_buffer_s ({self.max_buffer_s}) must be at least max_utterance_s + '
                f'{BUFFER_SLACK_S:g} ({self.max_utterance_s + BUFFER_SLACK_S}) to hold one '
                'whole utterance'
            )


@dataclass
class Utterance:
    """
    One segment of speech.

    ``start_s``/``end_s`` are the stream times (seconds since the segmenter started or was reset)
    of the first sample of ``audio`` and of the sample after its last, so ``audio`` is exactly
    the input between them. ``speech_start_s``/``speech_end_s`` are where the VAD found speech,
    inside that span by up to ``padding_s``. ``truncated`` marks a piece force-cut at
    ``max_utterance_s``.
    """

    audio: np.ndarray
    start_s: float
    end_s: float
    index: int
    truncated: bool = False
    speech_start_s: float = 0.0
    speech_end_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


class StreamingVad:
    """Silero VAD (faster-whisper's ONNX model) run window by window with carried state."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        # One shared, cached ONNX session; the model itself is stateless (state is passed in).
        self._session = get_vad_model().session
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros(STATE_SHAPE, np.float32)
        self._c = np.zeros(STATE_SHAPE, np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of each 512-sample window; ``len(samples)`` must be a multiple."""
        windows = samples.reshape(-1, WINDOW)
        previous = np.concatenate([self._context[None], windows[:-1, -CONTEXT:]], axis=0)
        batch = np.concatenate([previous, windows], axis=1).astype(np.float32, copy=False)
        probs, self._h, self._c = self._session.run(
            None, {'input': batch, 'h': self._h, 'c': self._c}
        )
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)


class _SampleBuffer:
    """Growable float32 buffer addressed by absolute sample index, with cheap front trimming."""

    def __init__(self, start: int = 0) -> None:
        self._data = np.zeros(4 * SLICE, np.float32)
        self._head = 0
        self._len = 0
        self.start = start

    def __len__(self) -> int:
        return self._len

    @property
    def end(self) -> int:
        return self.start + self._len

    def append(self, samples: np.ndarray) -> None:
        n = len(samples)
        if self._head + self._len + n > len(self._data):
            # Compact to the front; grow (doubling) only when that is not enough.
            size = len(self._data)
            while self._len + n > size:
                size *= 2
            data = np.zeros(size, np.float32) if size != len(self._data) else self._data
            data[:self._len] = self._data[self._head:self._head + self._len]
            self._data, self._head = data, 0
        tail = self._head + self._len
        self._data[tail:tail + n] = samples
        self._len += n

    def view(self, begin: int, end: int) -> np.ndarray:
        """Return samples ``[begin, end)`` by absolute index (a view; copy before keeping it)."""
        if not self.start <= begin <= end <= self.end:
            raise IndexError(f'samples [{begin}, {end}) not in buffer [{self.start}, {self.end})')
        offset = self._head - self.start
        return self._data[offset + begin:offset + end]

    def drop_before(self, index: int) -> None:
        """Forget every sample before absolute ``index``."""
        index = min(max(index, self.start), self.end)
        self._head += index - self.start
        self._len -= index - self.start
        self.start = index
        if self._len == 0:
            self._head = 0

    def shrink(self) -> None:
        """Give memory back after a long utterance grew the array."""
        if len(self._data) > 4 * SLICE and self._len < len(self._data) // 4:
            data = np.zeros(max(4 * SLICE, 2 * self._len), np.float32)
            data[:self._len] = self.view(self.start, self.end)
            self._data, self._head = data, 0


@dataclass
class _Active:
    """The utterance being collected (absolute sample indices)."""

    audio_start: int
    speech_start: int
    silence_start: int | None = None


class Segmenter:
    """
    Turn a chunked 16 kHz float32 stream into :class:`Utterance` objects.

    ``feed`` returns the utterances completed by the chunk (usually none), ``flush`` ends the
    stream and returns the one still open. Not thread-safe: feed it from one thread.
    """

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config or SegmenterConfig()
        cfg = self.config
        self._threshold = cfg.threshold
        self._neg_threshold = max(cfg.threshold - 0.15, 0.01)
        self._pad = round(cfg.padding_s * SAMPLE_RATE)
        self._min_speech = round(cfg.min_speech_s * SAMPLE_RATE)
        self._max_len = round(cfg.max_utterance_s * SAMPLE_RATE)
        self._end_silence = round(cfg.end_silence_s * SAMPLE_RATE)
        self._vad = StreamingVad()
        self.reset()

    # ----------------------------------------------------------------------------- state
    def reset(self) -> None:
        """Start a new stream: times restart at 0 and nothing buffered is kept."""
        self._vad.reset()
        self._buffer = _SampleBuffer()
        self._vad_pos = 0        # first sample not yet scored by the VAD (multiple of WINDOW)
        self._emitted_end = 0    # end of the last emitted utterance; audio is never reused
        self._active: _Active | None = None
        self._received = 0
        self._emitted = 0
        self._index = 0

    @property
    def buffered_s(self) -> float:
        """Seconds of audio held in memory now."""
        return len(self._buffer) / SAMPLE_RATE

    @property
    def dropped_s(self) -> float:
        """Seconds of input discarded without being part of an emitted utterance."""
        return (self._received - self._emitted - len(self._buffer)) / SAMPLE_RATE

    @property
    def received_s(self) -> float:
        """Seconds of input fed since the start (or the last reset)."""
        return self._received / SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        """Tell whether an utterance is open (useful for a 'listening' indicator)."""
        return self._active is not None

    # ----------------------------------------------------------------------------- input
    def feed(self, chunk: np.ndarray) -> list[Utterance]:
        """Add 16 kHz mono float samples; return the utterances they complete."""
        samples = self._check_chunk(chunk)
        out: list[Utterance] = []
        for begin in range(0, len(samples), SLICE):
            part = samples[begin:begin + SLICE]
            self._buffer.append(part)
            self._received += len(part)
            n_windows = (self._received - self._vad_pos) // WINDOW
            if n_windows:
                end = self._vad_pos + n_windows * WINDOW
                probs = self._vad(self._buffer.view(self._vad_pos, end))
                for i, prob in enumerate(probs):
                    utterance = self._step(float(prob), self._vad_pos + i * WINDOW)
                    if utterance is not None:
                        out.append(utterance)
                self._vad_pos = end
            self._trim()
        return out

    def flush(self) -> list[Utterance]:
        """
        End the stream: emit the open utterance (if long enough) and clear the buffer.

        The sample clock keeps running, so later utterances keep increasing times; call
        :meth:`reset` to restart it.
        """
        out: list[Utterance] = []
        active = self._active
        if active is not None:
            end = self._received
            speech_end = active.silence_start if active.silence_start is not None else end
            cap = active.audio_start + self._max_len
            utterance = self._close(min(speech_end + self._pad, end, cap), speech_end,
                                    truncated=speech_end > cap)
            if utterance is not None:
                out.append(utterance)
        self._vad.reset()
        self._active = None
        self._buffer.drop_before(self._received)
        self._buffer.shrink()
        self._vad_pos = self._received
        return out

    # ----------------------------------------------------------------------------- logic
    def _check_chunk(self, chunk: np.ndarray) -> np.ndarray:
        arr = np.asarray(chunk)
        if arr.dtype.kind != 'f':
            raise SegmenterError(
                f'chunks must be float samples at 16 kHz, got dtype {arr.dtype}: convert PCM '
                'with tinyalign_ros.audio.pcm_to_float()'
            )
        if arr.ndim != 1:
            raise SegmenterError(f'chunks must be mono (1-D), got shape {arr.shape}')
        arr = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            raise SegmenterError('chunk contains NaN/Inf samples')
        return arr

    def _step(self, prob: float, start: int) -> Utterance | None:
        """Advance the speech state machine by one scored window ``[start, start + WINDOW)``."""
        end = start + WINDOW
        active = self._active
        if active is None:
            if prob >= self._threshold:
                audio_start = max(start - self._pad, self._buffer.start, self._emitted_end)
                self._active = _Active(audio_start=audio_start, speech_start=start)
            return None
        if prob >= self._threshold:
            active.silence_start = None
        elif prob < self._neg_threshold and active.silence_start is None:
            active.silence_start = start
        if active.silence_start is not None and end - active.silence_start >= self._end_silence:
            # end_silence >= padding, so the padding after speech has been received.
            return self._close(active.silence_start + self._pad, active.silence_start,
                               truncated=False)
        cap = active.audio_start + self._max_len
        if end >= cap:
            if active.silence_start is not None:
                # The cap falls in a pause shorter than end_silence: end the utterance at that
                # pause (it is not cut through speech, so not truncated).
                return self._close(min(active.silence_start + self._pad, cap),
                                   active.silence_start, truncated=False)
            utterance = self._close(cap, cap, truncated=True)
            # The speaker goes on: the next piece starts exactly where this one stopped.
            self._active = _Active(audio_start=cap, speech_start=cap)
            return utterance
        return None

    def _close(self, audio_end: int, speech_end: int, truncated: bool) -> Utterance | None:
        """Finish the open utterance; return it unless its speech is too short."""
        active = self._active
        assert active is not None
        self._active = None
        if speech_end - active.speech_start < max(self._min_speech, 1):
            return None
        audio = self._buffer.view(active.audio_start, audio_end).copy()
        self._emitted += len(audio)
        self._emitted_end = audio_end
        utterance = Utterance(
            audio=audio,
            start_s=active.audio_start / SAMPLE_RATE,
            end_s=audio_end / SAMPLE_RATE,
            index=self._index,
            truncated=truncated,
            speech_start_s=active.speech_start / SAMPLE_RATE,
            speech_end_s=speech_end / SAMPLE_RATE,
        )
        self._index += 1
        return utterance

    def _trim(self) -> None:
        """Drop audio that can no longer belong to an utterance, bounding memory."""
        if self._active is not None:
            keep = self._active.audio_start
        else:
            # Unscored samples and the padding in front of a speech start that may come next.
            keep = max(self._vad_pos - self._pad, self._emitted_end)
        self._buffer.drop_before(keep)
        if self._active is None:
            self._buffer.shrink()
