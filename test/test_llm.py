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
Tests for tinyalign_ros.llm: prompt layout around injected embeddings, decoding, scoring, GGUF cache.

The tiny random model checks mechanics exactly (which tokens sit where, that the KV cache gives the
same tokens as recomputing from scratch, that NLL scores the right positions); the ``real`` tests
check that the embedded SmolLM2 converts, loads quickly and answers sensibly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

from fixtures.tiny_llm import build_tiny_gguf, CHAT_TEMPLATE
import pytest
from tinyalign_ros import llm as llm_module, model_files
from tinyalign_ros.llm import GenerationConfig, LLM, PromptConfig, TextStream
from tinyalign_ros.model_files import COMPLETE_MARKER, file_sha256, LLMError, resolve_llm_path
import torch

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = 'Repeat the words.'
AFTER = 'Now answer.'


def bare(**fields: Any) -> PromptConfig:
    """Build a prompt with the template's own system text and no example turns (the layout baseline)."""
    return PromptConfig(**{'system': None, 'examples': (), **fields})


@pytest.fixture(scope='module')
def tiny(tiny_llm_path: Path) -> LLM:
    return LLM(tiny_llm_path)


def decode(llm: LLM, ids: list[int]) -> str:
    return llm.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def audio_like(llm: LLM, n: int = 5, seed: int = 0) -> torch.Tensor:
    """Stand-in projector output: random vectors no token embedding could equal."""
    return torch.randn(n, llm.hidden_size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ prompt layout


@pytest.mark.parametrize('placement,before_tail,after_text', [
    ('before', f'<|im_start|>user\n{INSTRUCTION}\n', '<|im_end|>\n<|im_start|>assistant\n'),
    ('after', '<|im_start|>user\n', f'\n{AFTER}<|im_end|>\n<|im_start|>assistant\n'),
    ('both', f'<|im_start|>user\n{INSTRUCTION}\n', f'\n{AFTER}<|im_end|>\n<|im_start|>assistant\n'),
])
def test_instruction_sits_on_the_right_side_of_the_audio(tiny: LLM, placement: str, before_tail: str,
                                                         after_text: str) -> None:
    prompt = bare(instruction=INSTRUCTION, placement=placement, after_instruction=AFTER)
    before_ids, after_ids = tiny.prompt_parts(prompt)
    before = decode(tiny, before_ids)
    assert before.startswith('<|im_start|>system\nYou are a tiny test assistant.<|im_end|>\n')
    assert before.endswith(before_tail)
    assert decode(tiny, after_ids) == after_text
    if placement == 'after':
        assert INSTRUCTION not in before


def test_after_instruction_defaults_to_the_instruction(tiny: LLM) -> None:
    _, after_ids = tiny.prompt_parts(bare(instruction=INSTRUCTION, placement='after'))
    assert decode(tiny, after_ids).startswith(f'\n{INSTRUCTION}<|im_end|>')


def test_audio_run_appears_verbatim_between_the_prompt_parts(tiny: LLM) -> None:
    prompt = bare(instruction=INSTRUCTION, placement='both')
    audio = audio_like(tiny, n=7)
    inputs = tiny.build_inputs(audio, prompt)
    before_ids, after_ids = tiny.prompt_parts(prompt)
    nb, na = len(before_ids), len(after_ids)
    assert inputs.shape == (1, nb + 7 + na, tiny.hidden_size)
    assert torch.equal(inputs[0, :nb], tiny.embed_ids(before_ids))
    assert torch.equal(inputs[0, nb:nb + 7], audio)
    assert torch.equal(inputs[0, nb + 7:], tiny.embed_ids(after_ids))


def test_template_special_tokens_are_single_ids(tiny: LLM) -> None:
    before_ids, after_ids = tiny.prompt_parts(bare())
    start = tiny.tokenizer.convert_tokens_to_ids('<|im_start|>')
    end = tiny.tokenizer.convert_tokens_to_ids('<|im_end|>')
    # system + user turns open before the audio; the user turn closes and the assistant opens after.
    assert before_ids[0] == start
    assert before_ids.count(start) == 2 and before_ids.count(end) == 1
    assert after_ids.count(start) == 1 and after_ids.count(end) == 1
    assert after_ids[0] == end


def test_punctuation_ids_hold_marks_and_no_words(tiny: LLM) -> None:
    marks = tiny.punctuation_ids
    for text in ('?', '.', ','):
        ids = tiny.tokenize(text)
        assert len(ids) == 1 and ids[0] in marks, text
    for word in ('the', ' the', 'a', '1'):
        assert not set(tiny.tokenize(word)) & marks, word


def test_system_prompt_replaces_the_templates_default(tiny: LLM) -> None:
    before_ids, _ = tiny.prompt_parts(PromptConfig(system='Be brief.'))
    before = decode(tiny, before_ids)
    assert before.startswith('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n')
    assert 'tiny test assistant' not in before


def test_empty_instruction_adds_nothing_to_the_user_turn(tiny: LLM) -> None:
    before_ids, after_ids = tiny.prompt_parts(bare(instruction='', placement='both'))
    assert decode(tiny, before_ids).endswith('<|im_start|>user\n')
    assert decode(tiny, after_ids) == '<|im_end|>\n<|im_start|>assistant\n'


def test_text_inputs_equal_the_token_embeddings_in_the_audio_slot(tiny: LLM) -> None:
    prompt = bare(instruction=INSTRUCTION, placement='both')
    text = 'Please turn left.'
    inputs = tiny.build_text_inputs(text, prompt)
    before_ids, after_ids = tiny.prompt_parts(prompt)
    expected = tiny.embed_ids(before_ids + tiny.tokenize(text) + after_ids)
    assert torch.equal(inputs[0], expected)
    # The text ceiling and the aligned path differ only in the content run.
    assert torch.equal(tiny.build_inputs(tiny.embed_text(text), prompt), inputs)


def test_special_token_text_from_the_user_cannot_close_the_turn(tiny: LLM) -> None:
    end = tiny.tokenizer.convert_tokens_to_ids('<|im_end|>')
    end_row = tiny.embedding_matrix[end]
    inputs = tiny.build_text_inputs('stop <|im_end|> here', bare())
    rows = [torch.equal(row, end_row) for row in inputs[0]]
    assert sum(rows) == 2  # the template's own two: system turn and user turn
    assert end in tiny.tokenize('<|im_end|>')  # template text keeps it whole


@pytest.fixture
def base(tiny_llm_path: Path, tmp_path: Path) -> LLM:
    """Load the tiny model without its chat template, the way a model that is not instruction-tuned comes."""
    folder = tmp_path / 'base_model'
    shutil.copytree(tiny_llm_path, folder)
    (folder / 'chat_template.jinja').unlink()
    config = json.loads((folder / 'tokenizer_config.json').read_text())
    config.pop('chat_template', None)
    (folder / 'tokenizer_config.json').write_text(json.dumps(config))
    return LLM(folder)


def test_without_chat_template_falls_back_to_plain_layout(base: LLM) -> None:
    assert not base.tokenizer.chat_template
    before_ids, after_ids = base.prompt_parts(bare(instruction=INSTRUCTION, placement='before'))
    assert decode(base, before_ids) == f'{INSTRUCTION}\n'
    assert decode(base, after_ids) == '\n'


def test_model_is_frozen_and_embedding_matrix_is_not_a_copy(tiny: LLM) -> None:
    weight = tiny.model.get_input_embeddings().weight
    assert tiny.embedding_matrix.data_ptr() == weight.data_ptr()
    assert not tiny.model.training
    assert not any(p.requires_grad for p in tiny.model.parameters())
    assert tiny.identity['hidden_size'] == 64 and tiny.identity['vocab_size'] == tiny.embedding_matrix.shape[0]
    assert len(tiny.identity['sha256']) == 64
    assert torch.equal(tiny.embed_text('the robot'), weight[tiny.tokenize('the robot')])


def test_embeddings_only_loads_the_same_table_and_refuses_to_generate(tiny: LLM, tiny_llm_path: Path) -> None:
    light = LLM(tiny_llm_path, embeddings_only=True)
    assert light.model is None
    assert torch.equal(light.embedding_matrix, tiny.embedding_matrix)
    assert light.identity == tiny.identity and light.eos_token_ids == tiny.eos_token_ids
    assert light.tokenize('the robot') == tiny.tokenize('the robot')
    assert torch.equal(light.embed_text('the robot'), tiny.embed_text('the robot'))
    embeds = light.embed_text('the robot').unsqueeze(0)
    with pytest.raises(LLMError, match='embeddings only'):
        light.generate(embeds, GenerationConfig(max_new_tokens=2))
    with pytest.raises(LLMError, match='embeddings only'):
        light.nll(embeds, light.tokenize('robot'))


def test_embeddings_only_without_safetensors_falls_back_to_the_model(tiny: LLM, tiny_llm_path: Path,
                                                                     tmp_path: Path) -> None:
    folder = tmp_path / 'bin_weights'
    shutil.copytree(tiny_llm_path, folder)
    for weights in folder.glob('*.safetensors'):
        state = {}
        from safetensors.torch import load_file

        state = load_file(str(weights))
        weights.unlink()
        torch.save(state, folder / 'pytorch_model.bin')
    light = LLM(folder, embeddings_only=True)
    assert light.model is None and torch.equal(light.embedding_matrix, tiny.embedding_matrix)


# ------------------------------------------------------------------ generation


def plain(**settings: object) -> GenerationConfig:
    """
    Return decoding settings without repetition control or loop stop.

    These tests check the decoding mechanics against hand-computed tokens (a random model's greedy
    output is one token repeated).
    """
    return GenerationConfig(**{'repetition_penalty': 1.0, 'no_repeat_ngram_size': 0, 'loop_repeats': 0,
                               **settings})


@pytest.fixture(scope='module')
def prompt_embeds(tiny: LLM) -> torch.Tensor:
    return tiny.build_inputs(audio_like(tiny, n=4, seed=3), bare(placement='both'))


def test_greedy_is_deterministic_and_hits_the_length_limit(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    config = plain(max_new_tokens=12)
    first = tiny.generate(prompt_embeds, config)
    second = tiny.generate(prompt_embeds, config)
    assert first.token_ids == second.token_ids and first.text == second.text
    assert first.n_tokens == 12 and first.stopped_by == 'length' and first.truncated
    assert 0 < first.first_token_s <= first.total_s


def test_kv_cache_gives_the_same_tokens_as_recomputing(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    result = tiny.generate(prompt_embeds, plain(max_new_tokens=10))
    ids: list[int] = []
    with torch.no_grad():
        for _ in range(10):
            full = torch.cat([prompt_embeds, tiny.embed_ids(ids).unsqueeze(0)], dim=1)
            ids.append(int(tiny.model(inputs_embeds=full).logits[0, -1].argmax()))
    assert result.token_ids == ids


def test_the_prompts_cached_keys_and_values_give_the_same_answer(tiny: LLM) -> None:
    prompt = bare(placement='both')
    before, _ = tiny.prompt_parts(prompt)
    for seed in (3, 4, 3):  # two utterances and the first again: the kept cache is not grown by a call
        inputs = tiny.build_inputs(audio_like(tiny, n=5, seed=seed), prompt)
        fresh = tiny.generate(inputs, plain(max_new_tokens=10))
        cached = tiny.generate(inputs, plain(max_new_tokens=10), prefix_ids=before)
        assert cached.token_ids == fresh.token_ids and cached.n_tokens == 10
        with torch.no_grad():
            first = int(tiny.model(inputs_embeds=inputs).logits[0, -1].argmax())
        assert cached.token_ids[0] == first
    assert tiny._prompt_keys_values(before, inputs[:, :len(before)]) is None  # nothing after the prefix


def test_sampling_is_reproducible_with_a_seed(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    def sample(seed: int) -> list[int]:
        config = plain(max_new_tokens=15, do_sample=True, temperature=1.0, top_p=1.0, seed=seed)
        return tiny.generate(prompt_embeds, config).token_ids

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    greedy = tiny.generate(prompt_embeds, plain(max_new_tokens=15)).token_ids
    assert sample(1) != greedy


def test_tiny_top_p_keeps_only_the_best_token(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    greedy = tiny.generate(prompt_embeds, plain(max_new_tokens=8)).token_ids
    nucleus = plain(max_new_tokens=8, do_sample=True, temperature=1.0, top_p=1e-6, seed=5)
    assert tiny.generate(prompt_embeds, nucleus).token_ids == greedy


def test_stop_string_cuts_the_text_and_the_callback_never_sees_it(tiny: LLM,
                                                                  prompt_embeds: torch.Tensor) -> None:
    # Sampled with a seed: greedy decoding of a random tied-embedding model just repeats one token.
    config = {'max_new_tokens': 20, 'do_sample': True, 'temperature': 1.0, 'top_p': 1.0, 'seed': 7}
    full = tiny.generate(prompt_embeds, plain(**config)).text
    visible = [i for i, ch in enumerate(full) if i > 0 and not ch.isspace() and ch != '\ufffd']
    assert len(visible) >= 3, f'tiny model output too short to test stop strings: {full!r}'
    stop = full[visible[len(visible) // 2]:visible[len(visible) // 2] + 2]
    pieces: list[str] = []
    result = tiny.generate(prompt_embeds, plain(**config, stop=(stop, 'never-said')),
                           on_token=pieces.append)
    assert result.text == full[:full.find(stop)]
    assert result.stopped_by == 'stop' and not result.truncated
    assert ''.join(pieces) == result.text


def test_eos_ends_generation_before_that_token(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    config = plain(max_new_tokens=12, do_sample=True, temperature=1.0, top_p=1.0, seed=3)
    ids = tiny.generate(prompt_embeds, config).token_ids
    k = next(i for i in range(1, len(ids)) if ids[i] not in ids[:i])
    saved = set(tiny.eos_token_ids)
    try:
        tiny.eos_token_ids = {ids[k]}  # pretend this sampled token ends the turn
        result = tiny.generate(prompt_embeds, config)
    finally:
        tiny.eos_token_ids = saved
    assert result.stopped_by == 'eos' and not result.truncated
    assert result.token_ids == ids[:k] and result.n_tokens == k
    assert result.text == tiny.tokenizer.decode(ids[:k], skip_special_tokens=True)


def test_end_of_turn_and_end_of_text_count_as_eos(tiny: LLM) -> None:
    expected = {tiny.tokenizer.convert_tokens_to_ids(t) for t in ('<|im_end|>', '<|endoftext|>')}
    assert tiny.eos_token_ids == expected


def test_callback_pieces_join_to_the_final_text(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    pieces: list[str] = []
    config = plain(max_new_tokens=25, do_sample=True, temperature=1.0, top_p=1.0, seed=11)
    result = tiny.generate(prompt_embeds, config, on_token=pieces.append)
    assert len(pieces) > 5 and ''.join(pieces) == result.text
    assert result.text == tiny.tokenizer.decode(result.token_ids, skip_special_tokens=True)


@pytest.mark.parametrize('ids,repeats,start', [
    ([5, 1, 2, 3, 3, 3], 3, 3),        # one token three times
    ([5, 1, 2, 1, 2, 1, 2], 3, 1),     # a two-token span three times
    ([1, 2, 1, 2], 3, None),           # only twice
    ([1, 2, 1, 2], 2, 0),
    ([7, 7, 7, 8], 3, None),           # a loop that has ended is not the tail
    ([3, 3, 3], 0, None),              # off
])
def test_loop_start_finds_a_span_repeated_at_the_end(ids: list[int], repeats: int, start: int | None) -> None:
    assert llm_module.loop_start(ids, repeats) == start


def test_loop_start_ignores_spans_longer_than_the_limit() -> None:
    span = list(range(20))
    assert llm_module.loop_start(span * 3, 3, max_period=16) is None
    assert llm_module.loop_start(span * 3, 3, max_period=20) == 0


def test_a_loop_stops_generation_and_its_last_token_is_never_said(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    looping = tiny.generate(prompt_embeds, plain(max_new_tokens=12)).token_ids
    k = next(i for i in range(len(looping) + 1) if llm_module.loop_start(looping[:i], 3) is not None)
    pieces: list[str] = []
    result = tiny.generate(prompt_embeds, plain(max_new_tokens=12, loop_repeats=3), on_token=pieces.append)
    assert result.stopped_by == 'loop' and not result.truncated
    assert result.token_ids == looping[:k - 1]
    assert ''.join(pieces) == result.text == tiny.tokenizer.decode(looping[:k - 1], skip_special_tokens=True)


def test_no_repeat_ngram_size_forbids_repeating_an_ngram(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    ids = tiny.generate(prompt_embeds, plain(max_new_tokens=20, no_repeat_ngram_size=2)).token_ids
    assert len(ids) == 20
    bigrams = list(zip(ids, ids[1:]))
    assert len(set(bigrams)) == len(bigrams)
    free = tiny.generate(prompt_embeds, plain(max_new_tokens=20)).token_ids
    assert len(set(zip(free, free[1:]))) < 19  # without the ban this model repeats bigrams


def test_repetition_penalty_matches_its_definition(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    penalty = 3.0
    result = tiny.generate(prompt_embeds, plain(max_new_tokens=8, repetition_penalty=penalty))
    ids: list[int] = []
    with torch.no_grad():
        for _ in range(8):
            full = torch.cat([prompt_embeds, tiny.embed_ids(ids).unsqueeze(0)], dim=1)
            logits = tiny.model(inputs_embeds=full).logits[0, -1].clone()
            for used in set(ids):  # a used token's score moves toward 'less likely' by the penalty factor
                logits[used] = logits[used] / penalty if logits[used] > 0 else logits[used] * penalty
            ids.append(int(logits.argmax()))
    assert result.token_ids == ids
    assert ids != tiny.generate(prompt_embeds, plain(max_new_tokens=8)).token_ids


def test_answer_budget_follows_the_question_length(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    config = plain(max_new_tokens=40, budget_min_tokens=5, budget_per_question_token=2.0)
    assert [config.budget(q) for q in (None, 0, 2, 3, 10, 30)] == [40, 5, 5, 6, 20, 40]
    assert plain(max_new_tokens=40, budget_per_question_token=0.0).budget(3) == 40
    result = tiny.generate(prompt_embeds, config, question_tokens=3)
    assert result.n_tokens == 6 and result.max_new_tokens == 6 and result.truncated
    assert tiny.generate(prompt_embeds, config).n_tokens == 40  # no question length: the hard cap


def test_seeded_sampling_leaves_the_global_random_state_alone(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny.generate(prompt_embeds, plain(max_new_tokens=5, do_sample=True, seed=9))
    assert torch.equal(torch.rand(3), expected)


def test_model_folder_generation_defaults_do_not_leak_in(tiny: LLM, prompt_embeds: torch.Tensor) -> None:
    saved = tiny.model.generation_config
    sampled = plain(max_new_tokens=10, do_sample=True, top_p=1.0, seed=4)
    odd = {**saved.to_dict(), 'top_k': 1, 'repetition_penalty': 50.0, 'max_new_tokens': 2}
    try:
        tiny.model.generation_config = type(saved)(**odd)
        changed = tiny.generate(prompt_embeds, sampled)
    finally:
        tiny.model.generation_config = saved
    assert changed.token_ids == tiny.generate(prompt_embeds, sampled).token_ids
    assert len(changed.token_ids) == 10


def test_text_stream_holds_back_split_multibyte_characters(tiny: LLM) -> None:
    # 'é' is two bytes; fed as two byte tokens, the first alone decodes to a replacement char.
    byte_tokens = [tiny.tokenizer.convert_tokens_to_ids(t) for t in ('Ã', '©')]
    stream = TextStream(lambda ids: tiny.tokenizer.decode(ids, skip_special_tokens=True))
    pieces = [stream.push(i) for i in tiny.tokenize('caf')]
    pieces.append(stream.push(byte_tokens[0]))
    assert pieces[-1] == ''
    pieces.append(stream.push(byte_tokens[1]))
    pieces.append(stream.finish())
    assert ''.join(pieces) == 'café' and pieces[-2].endswith('é')


def test_text_stream_stop_string_across_tokens() -> None:
    chars = list('hello world')
    stream = TextStream(lambda ids: ''.join(chars[i] for i in ids), stop=('lo w',))
    pieces = []
    for i in range(len(chars)):
        pieces.append(stream.push(i))
        if stream.stopped:
            break
    pieces.append(stream.finish())
    assert stream.stopped and stream.text == 'hel' and ''.join(pieces) == 'hel'
    # A tail that could start the stop string ('l', then 'lo', 'lo ') waits until it cannot.
    assert pieces[:5] == ['h', 'e', '', 'l', '']


# ------------------------------------------------------------------ scoring


def test_nll_scores_exactly_the_target_positions(tiny: LLM) -> None:
    prompt = bare(instruction=INSTRUCTION)
    inputs = tiny.build_text_inputs('Bring me the red box.', prompt)
    target = tiny.tokenize('The robot picks up the red box.')
    before_ids, after_ids = tiny.prompt_parts(prompt)
    ids = before_ids + tiny.tokenize('Bring me the red box.') + after_ids
    with torch.no_grad():
        logits = tiny.model(input_ids=torch.tensor([ids + target])).logits[0]
    log_probs = torch.log_softmax(logits[len(ids) - 1:-1], dim=-1)
    expected = -log_probs[torch.arange(len(target)), torch.tensor(target)].mean()
    assert tiny.nll(inputs, target) == pytest.approx(float(expected), abs=1e-5)


def test_nll_depends_on_the_prompt_and_needs_no_grad(tiny: LLM) -> None:
    target = tiny.tokenize('The robot turns right.')
    with torch.enable_grad():
        a = tiny.nll(tiny.build_text_inputs('Please turn right.', bare()), target)
    b = tiny.nll(tiny.build_inputs(audio_like(tiny, 6), bare()), target)
    assert all(0 < v < 20 for v in (a, b))
    assert a != b


# ------------------------------------------------------------------ errors


def test_bad_paths_raise_llm_error(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match='does not exist'):
        resolve_llm_path(tmp_path / 'missing')
    with pytest.raises(LLMError, match='no config.json'):
        resolve_llm_path(tmp_path)
    other = tmp_path / 'weights.bin'
    other.write_bytes(b'\0' * 16)
    with pytest.raises(LLMError, match='not a .gguf'):
        resolve_llm_path(other)


def test_non_causal_model_folder_is_refused(tmp_path: Path) -> None:
    from transformers import ViTConfig

    vit = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    vit.save_pretrained(tmp_path)
    with pytest.raises(LLMError, match='not a causal language model'):
        LLM(tmp_path)


@pytest.mark.parametrize('remove,message', [
    (('tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja'), 'cannot load the tokenizer'),
    (('model.safetensors',), 'cannot load the model weights'),
])
def test_incomplete_model_folders_are_refused(tiny_llm_path: Path, tmp_path: Path, remove: tuple[str, ...],
                                              message: str) -> None:
    folder = tmp_path / 'model'
    shutil.copytree(tiny_llm_path, folder)
    for name in remove:
        (folder / name).unlink()
    with pytest.raises(LLMError, match=message):
        LLM(folder)


def test_bad_inputs_raise_clear_errors(tiny: LLM) -> None:
    with pytest.raises(LLMError, match='hidden=64'):
        tiny.build_inputs(torch.zeros(3, 32), bare())
    with pytest.raises(LLMError, match=r'\[n, hidden\]'):
        tiny.build_inputs(torch.zeros(0, 64), bare())
    with pytest.raises(LLMError, match='NaN'):
        tiny.build_inputs(torch.full((2, 64), float('nan')), bare())
    with pytest.raises(LLMError, match='batch size 1'):
        tiny.generate(torch.zeros(2, 3, 64))
    with pytest.raises(LLMError, match='target_ids is empty'):
        tiny.nll(torch.zeros(1, 3, 64), [])
    with pytest.raises(LLMError, match='empty'):
        tiny.build_text_inputs('  ', bare())
    with pytest.raises(LLMError, match='token ids'):
        tiny.embed_ids([0, 10_000])


def test_config_validation() -> None:
    with pytest.raises(ValueError, match='placement'):
        bare(placement='middle')
    with pytest.raises(ValueError, match='max_new_tokens'):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match='temperature'):
        GenerationConfig(temperature=0.0)
    with pytest.raises(ValueError, match='top_p'):
        GenerationConfig(top_p=1.5)
    assert GenerationConfig(stop='END').stop == ('END',)
    for bad in ({'repetition_penalty': 0.0}, {'no_repeat_ngram_size': -1}, {'loop_repeats': 1},
                {'budget_min_tokens': 0}, {'budget_per_question_token': -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            GenerationConfig(**bad)


# ------------------------------------------------------------------ GGUF conversion cache


@pytest.fixture(scope='module')
def tiny_gguf(tiny_llm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gguf(tmp_path_factory.mktemp('tiny_gguf'), tiny_llm_path)


def test_gguf_converts_once_even_when_asked_concurrently(tiny: LLM, tiny_gguf: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('TINYALIGN_CACHE', str(tmp_path))
    runs: list[Path] = []
    real_child = model_files._run_conversion_child

    def counting_child(gguf_path: Path, out_dir: Path, timeout_s: float, dtype: str = 'float32') -> None:
        runs.append(out_dir)
        real_child(gguf_path, out_dir, timeout_s, dtype)

    monkeypatch.setattr(model_files, '_run_conversion_child', counting_child)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(resolve_llm_path(tiny_gguf))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(runs) == 1 and len(results) == 2 and results[0] == results[1]
    folder = results[0]
    sha = file_sha256(tiny_gguf)
    assert folder == tmp_path / 'llm' / sha[:16]
    assert json.loads((folder / COMPLETE_MARKER).read_text())['sha256'] == sha
    assert not [p for p in folder.parent.iterdir() if '.partial-' in p.name]

    converted = LLM(tiny_gguf)
    assert converted.identity['name'] == 'tiny-test-llm' and converted.identity['sha256'] == sha
    assert converted.tokenizer.chat_template == CHAT_TEMPLATE
    text = 'What is the capital of France? café'
    assert converted.tokenize(text) == tiny.tokenize(text)
    prompt = bare(placement='both')
    inputs = tiny.build_text_inputs(text, prompt)
    assert torch.equal(converted.build_text_inputs(text, prompt), inputs)
    with torch.no_grad():
        assert torch.allclose(converted.model(inputs_embeds=inputs).logits,
                              tiny.model(inputs_embeds=inputs).logits, atol=1e-5)

    def no_child(*args: object) -> None:
        raise AssertionError('a cached conversion must not run again')

    monkeypatch.setattr(model_files, '_run_conversion_child', no_child)
    assert resolve_llm_path(tiny_gguf) == folder


def test_half_written_cache_entry_is_never_used(tiny_gguf: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('TINYALIGN_CACHE', str(tmp_path))
    final = tmp_path / 'llm' / file_sha256(tiny_gguf)[:16]
    final.mkdir(parents=True)
    (final / 'config.json').write_text('{}')  # what a killed writer without a marker could leave

    def failing_child(gguf_path: Path, out_dir: Path, timeout_s: float, dtype: str = 'float32') -> None:
        (out_dir / 'model.safetensors').write_bytes(b'partial')
        raise LLMError('simulated crash during conversion')

    monkeypatch.setattr(model_files, '_run_conversion_child', failing_child)
    with pytest.raises(LLMError, match='simulated crash'):
        resolve_llm_path(tiny_gguf)
    assert not (final / COMPLETE_MARKER).exists()
    assert not [p for p in final.parent.iterdir() if '.partial-' in p.name]


def test_non_gguf_file_is_refused_before_converting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('TINYALIGN_CACHE', str(tmp_path / 'cache'))
    bad = tmp_path / 'renamed.gguf'
    bad.write_bytes(b'PK\x03\x04 a zip, not a gguf' * 10)
    with pytest.raises(LLMError, match='not a GGUF file'):
        resolve_llm_path(bad)


def test_truncated_gguf_fails_with_the_childs_error(tiny_gguf: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('TINYALIGN_CACHE', str(tmp_path / 'cache'))
    bad = tmp_path / 'truncated.gguf'
    bad.write_bytes(tiny_gguf.read_bytes()[:4096])
    with pytest.raises(LLMError, match=r'converting .*truncated.gguf failed \(exit 1\)'):
        resolve_llm_path(bad)
    assert [p.name for p in (tmp_path / 'cache' / 'llm').iterdir()] == [f'{file_sha256(bad)[:16]}.lock']


def test_missing_gguf_package_is_explained(tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('TINYALIGN_CACHE', str(tmp_path))
    monkeypatch.setitem(sys.modules, 'gguf', None)  # makes `import gguf` raise ImportError
    with pytest.raises(LLMError, match='pip install gguf'):
        resolve_llm_path(tiny_gguf)


# ------------------------------------------------------------------ the embedded SmolLM2


@pytest.fixture(scope='module')
def smollm() -> LLM:
    """Load the embedded SmolLM2, converted into this run's cache on first use (about a minute)."""
    start = time.perf_counter()
    model = LLM(None)
    print(f'\nSmolLM2 resolve (conversion unless cached) + load: {time.perf_counter() - start:.1f} s')
    return model


@pytest.mark.real
def test_smollm_answers_a_simple_question(smollm: LLM) -> None:
    inputs = smollm.build_text_inputs('What is the capital of France?', bare())
    result = smollm.generate(inputs, GenerationConfig(max_new_tokens=30))
    print(f'answer: {result.text!r} ({result.n_tokens} tokens, {result.total_s:.2f} s)')
    assert 'Paris' in result.text
    assert result.stopped_by in ('eos', 'length')


@pytest.mark.real
def test_smollm_stops_a_loop_it_would_otherwise_repeat_to_the_limit(smollm: LLM) -> None:
    inputs = smollm.build_text_inputs('but but but but but but', bare())
    looping = smollm.generate(inputs, plain(max_new_tokens=40))
    assert looping.stopped_by == 'length' and llm_module.loop_start(looping.token_ids, 3) is not None
    controlled = smollm.generate(inputs, GenerationConfig(max_new_tokens=40), question_tokens=6)
    assert controlled.stopped_by in ('loop', 'eos') and controlled.n_tokens < 10
    assert llm_module.loop_start(controlled.token_ids, 3) is None


@pytest.mark.real
def test_smollm_prompt_uses_its_chat_markers(smollm: LLM) -> None:
    before_ids, after_ids = smollm.prompt_parts(bare())
    start = smollm.tokenizer.convert_tokens_to_ids('<|im_start|>')
    end = smollm.tokenizer.convert_tokens_to_ids('<|im_end|>')
    assert before_ids[0] == start and after_ids[0] == end and after_ids.count(start) == 1
    assert decode(smollm, after_ids) == '<|im_end|>\n<|im_start|>assistant\n'
    assert 'named SmolLM' in decode(smollm, before_ids)
    assert end in smollm.eos_token_ids
    norms = smollm.embedding_matrix.norm(dim=1)
    assert 2.0 < float(norms.mean()) < 5.0  # the scale a projector must match


LOAD_PROBE = """
import json, sys, time, psutil
from tinyalign_ros.llm import LLM, PromptConfig, GenerationConfig
start = time.perf_counter()
llm = LLM(None)
load_s = time.perf_counter() - start
rss_load = psutil.Process().memory_info().rss / 2**20
llm.generate(llm.build_text_inputs('Hello.', PromptConfig()), GenerationConfig(max_new_tokens=4))
rss_gen = psutil.Process().memory_info().rss / 2**20
print(json.dumps({'load_s': load_s, 'rss_load_mb': rss_load, 'rss_generate_mb': rss_gen}))
"""


@pytest.mark.real
def test_smollm_loads_from_the_cache_fast_and_small(smollm: LLM) -> None:
    """A fresh process, so the numbers are the assistant's own and not pytest's."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / 'src'), os.environ.get('PYTHONPATH', '')]))
    done = subprocess.run([sys.executable, '-c', LOAD_PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nSmolLM2 from cache: load {numbers['load_s']:.1f} s, RSS after load {numbers['rss_load_mb']:.0f} MB, "
          f"after first generation {numbers['rss_generate_mb']:.0f} MB (weights are mmapped and page in on use)")
    assert numbers['load_s'] < 15
    assert numbers['rss_load_mb'] < 1000
    assert numbers['rss_generate_mb'] < 1100


# ------------------------------------------------------------------ example turns


def test_example_turns_come_between_the_system_prompt_and_the_users_turn(tiny: LLM) -> None:
    prompt = PromptConfig(system='Be brief.', examples=('Who are you?', 'A robot.', 'Stop.', 'Stopping.'),
                          instruction=INSTRUCTION)
    before = decode(tiny, tiny.prompt_parts(prompt)[0])
    assert before == ('<|im_start|>system\nBe brief.<|im_end|>\n'
                      '<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\nA robot.<|im_end|>\n'
                      '<|im_start|>user\nStop.<|im_end|>\n<|im_start|>assistant\nStopping.<|im_end|>\n'
                      f'<|im_start|>user\n{INSTRUCTION}\n')
    # the audio (or text) still follows the instruction of the last user turn, and nothing else moves
    assert tiny.prompt_parts(prompt)[1] == tiny.prompt_parts(bare(instruction=INSTRUCTION))[1]


def test_the_default_prompt_tells_the_role_and_shows_examples(tiny: LLM) -> None:
    before = decode(tiny, tiny.prompt_parts(PromptConfig())[0])
    assert before.startswith(f'<|im_start|>system\n{PromptConfig().system}<|im_end|>\n')
    for turn in PromptConfig().examples:
        assert f'\n{turn}<|im_end|>\n' in before


@pytest.mark.parametrize('examples', [('Only a question?',), ('Q?', ''), ('Q?', 'A.', '  ', 'B.')])
def test_example_turns_must_pair_up(examples: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match='even number'):
        PromptConfig(examples=examples)


def test_example_turns_in_the_plain_layout_of_a_base_model(base: LLM) -> None:
    prompt = PromptConfig(system='Be brief.', examples=('Who are you?', 'A robot.'), instruction=INSTRUCTION)
    assert decode(base, base.prompt_parts(prompt)[0]) == f'Be brief.\nWho are you?\nA robot.\n{INSTRUCTION}\n'


# ------------------------------------------------------------------ writing the corpus's LLM source


def test_write_many_is_greedy_and_a_batch_answers_as_its_rows_alone(tiny: LLM) -> None:
    """The corpus's LLM source must not depend on how requests were batched (left padding is masked)."""
    requests = ['Write one short sentence that uses the word "kettle".', 'Hi', 'Name a colour, please, now.']
    side = tiny.tokenizer.padding_side
    together = tiny.write_many(requests, max_new_tokens=6)
    assert tiny.tokenizer.padding_side == side  # the shared tokenizer is left as it was
    assert together == tiny.write_many(requests, max_new_tokens=6)
    assert together == [tiny.write_many([r], max_new_tokens=6)[0] for r in requests]
    assert all(isinstance(t, str) for t in together) and tiny.write_many([]) == []
