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

"""Dataset loading, manifest writing, selection and splitting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tinyalign_ros.data import DatasetError, Item, load_dataset, select, split, write_manifest


def _wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(160, dtype=np.float32), 16000, subtype='PCM_16')
    return path


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text(''.join(line + '\n' for line in lines), encoding='utf-8')
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Write a folder with three wavs and a manifest pointing at them with relative paths."""
    folder = tmp_path / 'corpus'
    for name in ('a', 'b', 'c'):
        _wav(folder / 'wavs' / f'{name}.wav')
    _write_lines(folder / 'manifest.jsonl', [
        json.dumps({'id': 'a', 'audio': 'wavs/a.wav', 'text': 'first one'}),
        '',
        json.dumps({'id': 'b', 'audio': 'wavs/b.wav', 'text': None, 'voice': 'en-us'}),
        json.dumps({'id': 'c', 'audio': 'wavs/c.wav', 'text': 'ünïcode “quotes”'}),
    ])
    return folder


def test_manifest_loads_relative_paths_from_any_cwd(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative audio is resolved against the manifest, not the cwd
    items = load_dataset(corpus / 'manifest.jsonl')
    assert [i.id for i in items] == ['a', 'b', 'c']
    assert items[0].audio == corpus / 'wavs' / 'a.wav'
    assert items[0].audio.is_absolute()
    assert items[1].text is None  # unlabeled speech
    assert items[1].meta == {'voice': 'en-us'}
    assert items[2].text == 'ünïcode “quotes”'
    assert load_dataset(corpus) == items  # a folder holding manifest.jsonl


def test_manifest_round_trip_keeps_fields_and_relative_paths(corpus: Path, tmp_path: Path) -> None:
    items = load_dataset(corpus)
    outside = _wav(tmp_path / 'elsewhere' / 'x.wav')
    items.append(Item('x', outside, 'outside', {'rate': 160}))
    path = write_manifest(items, corpus / 'manifest.jsonl')
    records = [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines()]
    assert records[0] == {'id': 'a', 'audio': 'wavs/a.wav', 'text': 'first one'}
    assert records[1] == {'id': 'b', 'audio': 'wavs/b.wav', 'text': None, 'voice': 'en-us'}
    assert records[3]['audio'] == str(outside)  # outside the folder: absolute
    assert load_dataset(path) == items
    assert sorted(p.name for p in corpus.iterdir()) == ['manifest.jsonl', 'wavs']  # no temp file left


def test_write_manifest_into_folder_and_failure_keeps_old_file(corpus: Path) -> None:
    old = (corpus / 'manifest.jsonl').read_text(encoding='utf-8')
    items = load_dataset(corpus)
    with pytest.raises(DatasetError, match="duplicate id 'a'"):
        write_manifest(items + [items[0]], corpus)
    assert (corpus / 'manifest.jsonl').read_text(encoding='utf-8') == old
    assert write_manifest(items[:1], corpus) == corpus / 'manifest.jsonl'
    assert [i.id for i in load_dataset(corpus)] == ['a']
    with pytest.raises(DatasetError, match='bad id'):
        write_manifest([Item('../evil', items[0].audio, 'x')], corpus / 'other.jsonl')


def test_manifest_accepts_absolute_audio(tmp_path: Path) -> None:
    wav = _wav(tmp_path / 'audio' / 'z.wav')
    (tmp_path / 'm').mkdir()
    manifest = _write_lines(tmp_path / 'm' / 'list.jsonl', [json.dumps({'id': 'z', 'audio': str(wav), 'text': 't'})])
    assert load_dataset(manifest)[0].audio == wav


def _bad_manifest(tmp_path: Path, lines: list[str]) -> Path:
    _wav(tmp_path / 'wavs' / 'a.wav')
    return _write_lines(tmp_path / 'manifest.jsonl', lines)


GOOD = json.dumps({'id': 'a', 'audio': 'wavs/a.wav', 'text': 'x'})


@pytest.mark.parametrize('bad_line, message', [
    ('{"id": "b", "audio": ', 'malformed JSON'),
    ('["a list"]', 'expected a JSON object'),
    (json.dumps({'id': 'b', 'audio': 'wavs/a.wav'}), 'missing key.*text'),
    (json.dumps({'audio': 'wavs/a.wav', 'text': 'x'}), 'missing key.*id'),
    (json.dumps({'id': '', 'audio': 'wavs/a.wav', 'text': 'x'}), 'empty or non-string id'),
    (json.dumps({'id': 7, 'audio': 'wavs/a.wav', 'text': 'x'}), 'empty or non-string id'),
    (json.dumps({'id': 'a', 'audio': 'wavs/a.wav', 'text': 'x'}), "duplicate id 'a' \\(first on line 1\\)"),
    (json.dumps({'id': 'sub/b', 'audio': 'wavs/a.wav', 'text': 'x'}), 'bad id'),
    (json.dumps({'id': 'sub\\b', 'audio': 'wavs/a.wav', 'text': 'x'}), 'bad id'),
    (json.dumps({'id': '..', 'audio': 'wavs/a.wav', 'text': 'x'}), 'bad id'),
    (json.dumps({'id': 'has space', 'audio': 'wavs/a.wav', 'text': 'x'}), 'bad id'),
    (json.dumps({'id': 'b:c', 'audio': 'wavs/a.wav', 'text': 'x'}), 'bad id'),
    (json.dumps({'id': 'b', 'audio': 'wavs/missing.wav', 'text': 'x'}), 'audio file not found.*missing.wav'),
    (json.dumps({'id': 'b', 'audio': '', 'text': 'x'}), 'non-empty path'),
    (json.dumps({'id': 'b', 'audio': 'wavs/a.wav', 'text': 3}), 'string or null'),
])
def test_manifest_errors_name_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    manifest = _bad_manifest(tmp_path, [GOOD, '', bad_line])
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset(manifest)
    assert f'{manifest}:3:' in str(err.value)


def test_missing_and_empty_datasets(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match='no such dataset'):
        load_dataset(tmp_path / 'nothing')
    with pytest.raises(DatasetError, match='no manifest.jsonl or metadata.csv'):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match='no items'):
        load_dataset(_write_lines(tmp_path / 'manifest.jsonl', ['', '  ']))


def _lj(tmp_path: Path, lines: list[str], wavs: list[str]) -> Path:
    for name in wavs:
        _wav(tmp_path / 'wavs' / f'{name}.wav')
    _write_lines(tmp_path / 'metadata.csv', lines)
    return tmp_path


def test_ljspeech_folder_uses_normalized_column_and_keeps_quotes(tmp_path: Path) -> None:
    folder = _lj(tmp_path, [
        'LJ001-0001|In 1845, Dr. Smith|In eighteen forty-five, Doctor Smith',
        'LJ001-0002|He said "no, the "|',  # empty normalized column: fall back to text
        'LJ001-0003|"It was," he wrote, "the end.',
    ], ['LJ001-0001', 'LJ001-0002', 'LJ001-0003'])
    items = load_dataset(folder)
    assert [i.id for i in items] == ['LJ001-0001', 'LJ001-0002', 'LJ001-0003']
    assert items[0].text == 'In eighteen forty-five, Doctor Smith'
    assert items[1].text == 'He said "no, the "'
    assert items[2].text == '"It was," he wrote, "the end.'  # unbalanced quotes: no CSV quoting
    assert items[2].audio == folder / 'wavs' / 'LJ001-0003.wav'
    assert load_dataset(folder / 'metadata.csv') == items


@pytest.mark.parametrize('lines, message', [
    (['A|x', 'B|y|z|w'], 'expected "id\\|text"'),
    (['A|x', 'just text'], 'expected "id\\|text"'),
    (['A|x', 'A|again'], "duplicate id 'A'"),
    (['A|x', 'B/C|y'], 'bad id'),
    (['A|x', '|y'], 'empty or non-string id'),
    (['A|x', 'B| |'], 'empty transcript'),
    (['A|x', 'MISSING|y'], 'audio file not found'),
])
def test_ljspeech_errors_name_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    folder = _lj(tmp_path, lines, ['A', 'B'])
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset(folder)
    assert f'{folder / "metadata.csv"}:2:' in str(err.value)


@pytest.mark.shared_data
def test_shared_ljspeech_loads(shared_data: Path) -> None:
    items = load_dataset(shared_data / 'ljspeech')
    assert len(items) == 32
    assert items[0].id == 'LJ001-0001' and items[0].text and items[0].audio.is_file()


def _items(n: int, tmp_path: Path) -> list[Item]:
    wav = _wav(tmp_path / 'one.wav')
    return [Item(f'u{i:02d}', wav, f'text {i}') for i in range(n)]


def test_select_keeps_requested_order_and_reports_unknown(tmp_path: Path) -> None:
    items = _items(5, tmp_path)
    assert [i.id for i in select(items, ['u03', 'u00'])] == ['u03', 'u00']
    with pytest.raises(DatasetError, match="unknown id.*'nope'.*'u99'"):
        select(items, ['u01', 'nope', 'u99'])
    with pytest.raises(DatasetError, match="more than once: 'u01'"):
        select(items, ['u01', 'u01'])


def test_split_by_count_is_seeded_and_order_independent(tmp_path: Path) -> None:
    items = _items(20, tmp_path)
    train, held = split(items, 5, seed=3)
    assert len(train) == 15 and len(held) == 5
    assert {i.id for i in train}.isdisjoint(i.id for i in held)
    assert [i.id for i in held] == sorted(i.id for i in held)  # original order kept
    assert split(items, 5, seed=3) == (train, held)
    assert split(list(reversed(items)), 5, seed=3)[1] == list(reversed(held))
    assert {i.id for i in split(items, 5, seed=4)[1]} != {i.id for i in held}
    assert split(items, 0) == (items, [])


def test_split_by_ids_and_errors(tmp_path: Path) -> None:
    items = _items(4, tmp_path)
    train, held = split(items, ['u02', 'u00'])
    assert [i.id for i in train] == ['u01', 'u03'] and [i.id for i in held] == ['u00', 'u02']
    with pytest.raises(DatasetError, match='nothing to train on'):
        split(items, 4)
    with pytest.raises(DatasetError, match='nothing to train on'):
        split(items, ['u00', 'u01', 'u02', 'u03'])
    with pytest.raises(DatasetError, match='>= 0'):
        split(items, -1)
    with pytest.raises(DatasetError, match="unknown id.*'zz'"):
        split(items, ['zz'])
    with pytest.raises(DatasetError, match='single string'):
        split(items, 'u00')
