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
The shipped base adapter on the embedded models and real human speech (CI runs these).

The thresholds are loose bounds around what the adapter measured (docs/results.md: projector-alone
WER 0.463 on the 32 recordings), so a broken adapter, a wrong vocabulary binding or a changed
window policy fails here while ordinary numeric noise does not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tinyalign_ros.adapter import read_metadata
from tinyalign_ros.data import load_dataset
from tinyalign_ros.encoder import WhisperEncoder
from tinyalign_ros.evaluate import evaluate
from tinyalign_ros.llm import GenerationConfig, LLM
from tinyalign_ros.pipeline import BASE_ADAPTER, Pipeline

pytestmark = [pytest.mark.real, pytest.mark.shared_data]

IDS = ('LJ001-0002', 'LJ001-0009', 'LJ001-0016', 'LJ001-0027')


@pytest.fixture(scope='module')
def pipeline(real_whisper_path: Path) -> Pipeline:
    pipeline = Pipeline(WhisperEncoder(real_whisper_path, cpu_threads=1), LLM(None))
    pipeline.load_adapter(BASE_ADAPTER)  # refuses an adapter made for other models
    return pipeline


def test_the_shipped_adapter_belongs_to_the_embedded_models(pipeline: Pipeline) -> None:
    meta = read_metadata(BASE_ADAPTER)
    assert meta['encoder']['sha256'] == pipeline.encoder.identity['sha256']
    assert meta['llm']['sha256'] == pipeline.llm.identity['sha256']
    assert pipeline.adapter_id == meta['adapter_id'] and pipeline.projector is not None
    assert (BASE_ADAPTER / 'adapter.safetensors').stat().st_size < 10 * 2 ** 20  # a few MB, in the repo


def test_the_projector_alone_reads_real_speech(pipeline: Pipeline, shared_data: Path) -> None:
    items = [item for item in load_dataset(shared_data / 'ljspeech') if item.id in IDS]
    assert len(items) == len(IDS)
    result = evaluate(items, pipeline.encoder, pipeline.llm, pipeline.projector, ('nearest',))
    assert result.metrics['wer_nearest'] < 0.7, result.metrics  # 1.0 = nothing aligned


def test_the_aligned_answer_uses_the_projected_speech(pipeline: Pipeline, shared_data: Path) -> None:
    from tinyalign_ros.audio import load_audio

    audio = load_audio(shared_data / 'ljspeech' / 'wavs' / 'LJ001-0009.wav')
    response = pipeline.respond(audio, generation=GenerationConfig(max_new_tokens=8))
    assert response.mode == 'aligned' and response.text.strip()
    assert response.latency_ms['project'] > 0


def test_the_shipped_adapter_injects_the_llms_own_row_of_each_token_read(pipeline: Pipeline,
                                                                         shared_data: Path) -> None:
    import torch
    from tinyalign_ros.audio import load_audio

    features = pipeline.encoder.features(load_audio(shared_data / 'ljspeech' / 'wavs' / 'LJ001-0009.wav'))
    ids, embeds = pipeline.read(pipeline.projector, features)
    assert len(ids) > 5 and embeds.shape[0] == len(ids)
    # top_k 1: the LLM repeated real recordings more faithfully from the row read than from a mix of
    # the two best rows (docs/results.md, "The search's limits").
    assert pipeline.projector.config.top_k == 1
    rows = pipeline.llm.embed_ids(ids).float().to(embeds.device)
    torch.testing.assert_close(embeds.float(), rows)
