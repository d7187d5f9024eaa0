"""Speech synthesis with espeak-ng and sox.

Synthetic speech is how the project gets training data for the base adapter and speech for its
always-on tests without committing any recording: espeak-ng speaks, sox converts to 16 kHz mono.
"""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000


class SynthError(RuntimeError):
    """espeak-ng or sox is missing or failed."""


def require_tools() -> None:
    """Fail with an actionable message when the synthesis tools are not installed."""
    missing = [tool for tool in ('espeak-ng', 'sox') if shutil.which(tool) is None]
    if missing:
        raise SynthError(
            f'missing {", ".join(missing)}: install with `apt-get install espeak-ng sox` '
            '(`make setup` does it for you)'
        )


def synthesize(text: str, voice: str = 'en-us', rate: int = 160, pitch: int = 50) -> np.ndarray:
    """Speak ``text`` and return float32 mono samples at 16 kHz.

    ``rate`` is in words per minute and ``pitch`` in espeak's 0-99 scale; both vary the speaker
    so a corpus is not a single monotone voice.
    """
    require_tools()
    if not text.strip():
        raise SynthError('cannot synthesize empty text')
    espeak = subprocess.run(
        ['espeak-ng', '-v', voice, '-s', str(int(rate)), '-p', str(int(pitch)), '--stdout', text],
        capture_output=True, check=False,
    )
    if espeak.returncode != 0 or not espeak.stdout:
        raise SynthError(f'espeak-ng failed for voice {voice!r}: {espeak.stderr.decode(errors="replace").strip()}')
    sox = subprocess.run(
        ['sox', '-t', 'wav', '-', '-t', 'wav', '-r', str(SAMPLE_RATE), '-c', '1', '-b', '16', '-'],
        input=espeak.stdout, capture_output=True, check=False,
    )
    if sox.returncode != 0:
        raise SynthError(f'sox failed: {sox.stderr.decode(errors="replace").strip()}')
    samples, sr = sf.read(io.BytesIO(sox.stdout), dtype='float32')
    assert sr == SAMPLE_RATE
    return samples
