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
The base-adapter recipe: synthesize a corpus, cache its features, train, evaluate, write the adapter.

``tinyalign align`` runs this end to end; the adapter shipped in ``assets/base_adapter`` is its
output for the embedded model pair. Every choice that shapes the result is an argument with the
shipped value as default, and all of it goes into the adapter's metadata, so the run can be repeated.

Held-out synthetic speech uses sentences *and* voices that are never trained on (the sentence split
is seeded; the voices are :data:`tinyalign_ros.synth.HELDOUT_VOICES`).

Under torchrun (see ``docs/distributed.md``) rank 0 synthesizes the corpus, every rank encodes its
share of the features, all train together, and rank 0 alone scores and writes the adapter.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
import functools
import json
from pathlib import Path
import random
import time
from typing import Any, Callable

import torch

from .config import TrainConfig, TrainError
from .distributed import Dist
from .examples import build_vocab, encode_examples, Example, index_examples
from .trainer import Progress, summarize, train, TrainResult
from ..adapter import load_adapter, save_adapter
from ..audio import load_audio
from ..augment import AugmentConfig
from ..corpus import build_corpus, CorpusConfig, coverage_draw, COVERAGE_SOURCE, LLM_SOURCE, read_corpus, SOURCES
from ..data import Item, load_dataset
from ..encoder import WhisperEncoder
from ..evaluate import evaluate
from ..llm import LLM
from ..projector import new_projector, Projector, ProjectorConfig
from ..synth import HELDOUT_VOICES, synthesize_corpus, UNSEEN_ENGINE_VOICES


RECIPE_FILE = Path(__file__).parents[1] / 'assets' / 'recipes' / 'align.yaml'


@functools.lru_cache(maxsize=1)
def _shipped() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(RECIPE_FILE.read_text(encoding='utf-8'))


def _default(section: str, key: str) -> Any:
    """Read a default from the shipped recipe file, so the YAML is the one home of every value."""
    return field(default_factory=lambda: copy.deepcopy(_shipped()[section][key]))


@dataclass
class AlignRecipe:
    """
    The knobs of the base-adapter run; every default is read from ``assets/recipes/align.yaml``.

    Half the training voices are flite's (built from recordings of real speakers); the festival
    engine and three espeak-ng voices are never trained on (the held-out families).
    """

    mix: dict[str, int] = _default('recipe', 'mix')  # utterances per text source
    train_voices: list[str] = _default('recipe', 'train_voices')
    train_rates: list[int] = _default('recipe', 'train_rates')
    train_pitches: list[int] = _default('recipe', 'train_pitches')
    augment: bool = _default('recipe', 'augment')  # one drawn condition per training utterance
    test_rates: list[int] = _default('recipe', 'test_rates')
    test_pitches: list[int] = _default('recipe', 'test_pitches')
    n_test: int = _default('recipe', 'n_test')  # utterances per held-out family
    n_eval: int = _default('recipe', 'n_eval')  # of which scored at the end
    seed: int = _default('recipe', 'seed')
    # Draws of the training mix. Each round is a new seeded sample of sentences (from the same
    # training split: the held-out sentences and voices stay held out), voices, rates, pitches and
    # conditions; round 0 is the first adapter's corpus, so a run with [0, 1] reuses its audio and
    # features and adds as many new utterances again.
    rounds: list[int] = _default('recipe', 'rounds')
    max_train_utterances: int | None = None  # use only the first N synthesized utterances
    score_cascade: bool = True  # also transcribe the held-out sets with Whisper (slow, the same every run)

    def __post_init__(self) -> None:
        if not self.rounds or len(set(self.rounds)) != len(self.rounds) or min(self.rounds) < 0:
            raise ValueError(f'rounds must be distinct non-negative integers, got {self.rounds}')
        known = [*SOURCES, LLM_SOURCE, COVERAGE_SOURCE]
        unknown = sorted(set(self.mix) - set(known))
        if unknown:
            raise ValueError(f'mix names unknown text sources {unknown}; known: {known}')


# The held-out families: unseen espeak-ng voices (clean), the unseen engine (festival, clean), and
# held-out commands in noise and rooms spoken by both (the robot's everyday condition).
NOISY = AugmentConfig(p_clean=0.0, p_noise=1.0, snr_db=(5.0, 20.0), p_reverb=0.6, p_gain=0.3, p_band=0.2)


# Seed offset between rounds of the training mix (larger than any source index, so no two
# (round, source) pairs share a seed).
ROUND_SEED_STEP = 1000


class RecipeError(ValueError):
    """A recipe file that cannot describe a run (unknown keys, bad values)."""


def load_recipe(path: str | Path | None = None) -> tuple[AlignRecipe, dict[str, Any], dict[str, Any]]:
    """
    Read a recipe YAML (default: the shipped one): the recipe, and the training and projector settings.

    The training and projector settings come back as dicts because the encoder and LLM widths that
    complete a :class:`ProjectorConfig` are only known once the models are loaded.
    """
    import yaml

    path = Path(path) if path is not None else RECIPE_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8')) or {}
    except (OSError, yaml.YAMLError) as error:
        raise RecipeError(f'cannot read recipe {path}: {error}') from error
    unknown = sorted(set(data) - {'recipe', 'train', 'projector'})
    if unknown:
        raise RecipeError(f'{path}: unknown sections {unknown}')
    fields_ = set(AlignRecipe.__dataclass_fields__)
    bad = sorted(set(data.get('recipe') or {}) - fields_)
    if bad:
        raise RecipeError(f'{path}: unknown recipe settings {bad}')
    train_ = dict(data.get('train') or {})
    projector = dict(data.get('projector') or {})
    try:
        TrainConfig.from_dict(train_)
        ProjectorConfig.from_dict(projector)
        recipe = AlignRecipe(**(data.get('recipe') or {}))
    except (TypeError, ValueError, TrainError) as error:
        raise RecipeError(f'{path}: {error}') from error
    return recipe, train_, projector


def build_corpora(text: Path, work_dir: Path, recipe: AlignRecipe, workers: int = 2, progress: bool = True,
                  log: Callable[[str], None] = print) -> tuple[list[list[Path]], dict[str, Path]]:
    """
    Build the text corpus and synthesize (or reuse) the training mix and the held-out families.

    A mix that draws on the LLM source needs it written first (`tinyalign align` does, with the whole
    LLM, before training loads only its embedding table).

    Returns the training manifests (per round, one per text source) and the held-out manifests by family.
    """
    text_dir = work_dir / 'text'
    if not (text_dir / 'summary.json').is_file():
        build_corpus(text_dir, text, CorpusConfig(seed=recipe.seed), log=log)
    if recipe.mix.get(LLM_SOURCE, 0) > 0 and not (text_dir / f'{LLM_SOURCE}.train.txt').is_file():
        raise RecipeError(f'the mix draws on the {LLM_SOURCE!r} source, which needs the LLM to write it first: '
                          f'`tinyalign corpus --out {text_dir} --llm-source`')
    train_manifests: list[list[Path]] = []
    sentences_of = {source: read_corpus(text_dir, source, 'train') for source, n in recipe.mix.items()
                    if n > 0 and source != COVERAGE_SOURCE}
    # The coverage source draws from every training sentence the corpus holds (read once for all rounds).
    pool = [s for other in (*SOURCES, LLM_SOURCE) if (text_dir / f'{other}.train.txt').is_file()
            for s in read_corpus(text_dir, other, 'train')] if recipe.mix.get(COVERAGE_SOURCE, 0) > 0 else []
    for round_ in recipe.rounds:
        train_manifests.append([])
        for k, (source, n) in enumerate(sorted(recipe.mix.items())):
            if n <= 0:
                continue
            if source == COVERAGE_SOURCE:
                sentences = coverage_draw(pool, n, seed=recipe.seed + ROUND_SEED_STEP * round_)
                n = len(sentences)
            else:
                sentences = sentences_of[source]
            folder = source if round_ == 0 else f'{source}.r{round_}'
            train_manifests[-1].append(Path(synthesize_corpus(
                sentences, work_dir / 'train' / folder, list(recipe.train_voices), rates=recipe.train_rates,
                pitches=recipe.train_pitches, n=n, seed=recipe.seed + 100 + k + ROUND_SEED_STEP * round_,
                workers=workers, progress=progress, augment_config=AugmentConfig() if recipe.augment else None)))
    held = _heldout_sentences(text_dir, recipe.seed)
    commands = read_corpus(text_dir, 'commands', 'heldout')
    families = {
        'espeak_unseen_voices': (held, list(HELDOUT_VOICES), None),
        'festival_unseen_engine': (held, list(UNSEEN_ENGINE_VOICES), None),
        'noisy_commands': (commands, [*HELDOUT_VOICES, *UNSEEN_ENGINE_VOICES], NOISY),
    }
    test_manifests = {}
    for k, (family, (sentences, voices, aug)) in enumerate(families.items()):
        test_manifests[family] = Path(synthesize_corpus(
            sentences, work_dir / 'test' / family, voices, rates=recipe.test_rates, pitches=recipe.test_pitches,
            n=recipe.n_test, seed=recipe.seed + 1 + k, workers=workers, progress=progress, augment_config=aug))
    return train_manifests, test_manifests


def _heldout_sentences(text_dir: Path, seed: int) -> list[str]:
    """Held-out sentences of every source, interleaved so each family hears all kinds of text."""
    rng = random.Random(seed)
    per_source = []
    for source in SOURCES:
        sentences = read_corpus(text_dir, source, 'heldout')
        rng.shuffle(sentences)
        per_source.append(sentences)
    out = []
    for row in zip(*per_source):
        out.extend(row)
    return out


def align(text: Path, work_dir: Path, out: Path, encoder: WhisperEncoder, llm: LLM,
          recipe: AlignRecipe | None = None, train_config: TrainConfig | None = None,
          projector_config: ProjectorConfig | None = None, real_data: Path | None = None,
          log: Callable[[str], None] = print, progress: bool = True, init: Path | None = None,
          dist: Dist | None = None) -> dict[str, Any]:
    """
    Run the whole recipe and write the adapter to ``out``; returns its metadata.

    ``init`` continues from an existing adapter (its projector config wins over
    ``projector_config``); its token vocabulary is extended with the corpus' tokens.

    With ``dist`` (a torchrun process group) every rank calls this; the ranks other than 0 log
    nothing, write only their share of the feature cache, and return an empty dict after training.
    """
    recipe = recipe or AlignRecipe()
    train_config = train_config or TrainConfig()
    dist = dist or Dist()
    if not dist.is_main:
        log, progress = (lambda _msg: None), False
    start = time.perf_counter()
    manifests = None
    if dist.is_main:  # one writer for the corpus; the other ranks wait, then read its manifests
        manifests = build_corpora(text, work_dir / 'corpus', recipe, progress=progress, log=log)
    dist.barrier()
    train_manifests, test_manifests = dist.broadcast_object(manifests)
    t_synth = time.perf_counter() - start
    # Interleave the sources (a seeded shuffle): the first items are validated on and encoded
    # first, and any prefix of the list (--max-utterances) is a sample of the whole mix. Each round
    # is shuffled on its own and the rounds follow each other, so the first round's order (and its
    # validation items, never trained on) is the same whatever rounds follow.
    train_items = []
    for manifests_of_round in train_manifests:
        items = [item for m in manifests_of_round for item in load_dataset(m)]
        random.Random(recipe.seed).shuffle(items)
        train_items.extend(items)
    train_items = train_items[: recipe.max_train_utterances]
    test_sets = {family: load_dataset(m)[: recipe.n_eval] for family, m in test_manifests.items()}
    log(f'corpus: {len(train_items)} training utterances, held out: '
        + ', '.join(f'{k} {len(v)}' for k, v in test_sets.items()) + f' ({t_synth:.0f} s)')

    examples = index_examples(train_items, encoder, llm)
    if dist.enabled:
        t_feats = _encode_shard(examples, train_items, encoder, dist, log)
        projector = _new_or_continued(examples, encoder, llm, init, projector_config, log)
        result = train(projector, examples, encoder, llm, train_config, progress=_train_log(log),
                       checkpoint_dir=out.with_name(out.name + '.checkpoint'),
                       checkpoint_meta={'encoder': encoder.identity, 'llm': llm.identity}, dist=dist)
        if not dist.is_main:
            return {}
        return _score_and_save(result, examples, encoder, llm, train_config, recipe, test_sets, real_data, out, init,
                               log, {'synthesis': t_synth, 'features': t_feats}, start)
    # Encode in a separate process; training starts on the first cached batches and each epoch
    # takes in whatever has been encoded since (the validation items come first in the list). A
    # thread would share the trainer's GIL: measured on 2 cores, a background thread encoded about
    # 1-2 utterances/s beside training, a separate process about 10.
    t_feats: dict[str, float] = {}
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(threads - 1)  # leave a core to the encoder while it runs
    worker = _start_encoder_process(encoder, [Path(item.audio) for item in train_items])

    def feats_done() -> bool:
        if worker.is_alive():
            return False
        t_feats.setdefault('done', time.perf_counter() - start - t_synth)
        return True

    projector = _new_or_continued(examples, encoder, llm, init, projector_config, log)
    meta_base = {'encoder': encoder.identity, 'llm': llm.identity}
    train_log = _train_log(log)

    def on_progress(p: Progress) -> None:
        # torch's thread count is per calling thread, so the core is handed back from here (the
        # training thread) once the encoder is done.
        if feats_done() and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        train_log(p)

    try:
        result = train(projector, examples, encoder, llm, train_config, progress=on_progress,
                       checkpoint_dir=out.with_name(out.name + '.checkpoint'), checkpoint_meta=meta_base)
    finally:
        if worker.is_alive():
            worker.terminate()  # the cache is written atomically, so a killed encoder leaves no debris
        worker.join()
        feats_done()
        torch.set_num_threads(threads)
    return _score_and_save(result, examples, encoder, llm, train_config, recipe, test_sets, real_data, out, init, log,
                           {'synthesis': t_synth, 'features': t_feats.get('done', -1.0)}, start)


def _new_or_continued(examples: list[Example], encoder: WhisperEncoder, llm: LLM, init: Path | None,
                      projector_config: ProjectorConfig | None, log: Callable[[str], None]) -> Projector:
    """Build a fresh projector with an open head, or continue from the adapter ``init``."""
    vocab = build_vocab(examples, n_vocab=llm.embedding_matrix.shape[0])  # open vocabulary
    if init is not None:
        projector, init_meta = load_adapter(init, encoder.identity, llm.identity)
        projector.bind_llm(llm.embedding_matrix, vocab)
        log(f'continuing from adapter {init_meta.get("adapter_id", init)}')
    else:
        projector = new_projector(encoder, llm, vocab, projector_config)
    log(f'projector {projector.config.type}: {projector.n_parameters() / 1e6:.2f} M parameters, '
        f'token head over all {len(vocab)} LLM tokens')
    return projector


def _encode_shard(examples: list[Example], items: list[Item], encoder: WhisperEncoder, dist: Dist,
                  log: Callable[[str], None]) -> float:
    """
    Encode this rank's share of the training features, then wait for the other ranks; return the seconds.

    Shared out by cache key (an utterance synthesized twice has one key), so no two ranks ever write
    the same file. Every rank trains on every feature (the batches are drawn from all of them), so
    the cache must be on a filesystem all ranks see; :func:`train` names any feature it misses.
    """
    start = time.perf_counter()
    keys = sorted({ex.key for ex in examples})
    mine = set(keys[dist.rank::dist.world_size])
    by_id = {ex.id: ex for ex in examples}
    seen: set[str] = set()
    todo = []
    for item in items:
        ex = by_id.get(item.id)
        if ex is not None and ex.key in mine and ex.key not in seen:
            seen.add(ex.key)
            todo.append(item)
    log(f'encoding features: {len(todo)} of {len(keys)} on each of {dist.world_size} ranks')
    encode_examples(todo, examples, encoder)
    dist.barrier()
    return time.perf_counter() - start


def _score_and_save(result: TrainResult, examples: list[Example], encoder: WhisperEncoder, llm: LLM,
                    train_config: TrainConfig, recipe: AlignRecipe, test_sets: dict[str, list[Item]],
                    real_data: Path | None, out: Path, init: Path | None, log: Callable[[str], None],
                    seconds: dict[str, float], start: float) -> dict[str, Any]:
    """Score the trained projector on the held-out families (and real recordings); write the adapter."""
    projector = result.projector
    log(f'trained {result.steps} steps in {result.seconds:.0f} s ({result.stopped_by}); '
        f'best validation WER {result.best_val_wer}')
    metrics: dict[str, Any] = {}
    readings = ('nearest', 'cascade') if recipe.score_cascade else ('nearest',)
    for family, items in test_sets.items():
        metrics[family] = evaluate(items, encoder, llm, projector, readings).to_dict()
        log(f'{family}: {json.dumps(metrics[family])}')
    if real_data is not None:
        real = evaluate(load_dataset(real_data), encoder, llm, projector, readings)
        metrics['real'] = real.to_dict()
        log(f'real recordings: {json.dumps(metrics["real"])}')
    meta = {
        'encoder': encoder.identity,
        'llm': llm.identity,
        'adapter_id': out.name,
        'initialized_from': str(init) if init is not None else None,
        'training': summarize(result, train_config),
        'data': {'corpus': 'assistant text corpus (tinyalign corpus), espeak-ng + flite, augmented',
                 'n_train_utterances': len(examples), 'voices': list(recipe.train_voices),
                 'heldout_voices': [*HELDOUT_VOICES, *UNSEEN_ENGINE_VOICES], 'recipe': asdict(recipe)},
        'metrics': metrics,
        'seconds': {'synthesis': round(seconds['synthesis'], 1), 'features': round(seconds['features'], 1),
                    'training': round(result.seconds, 1), 'total': round(time.perf_counter() - start, 1)},
    }
    save_adapter(out, projector, meta)
    return meta


def _start_encoder_process(encoder: WhisperEncoder, audio_paths: list[Path]) -> Any:
    """
    Encode ``audio_paths`` into ``encoder``'s feature cache in a child process.

    The process is spawned, so it shares neither the GIL nor torch's thread pool with the trainer.
    """
    import multiprocessing

    if encoder.cache is None:
        raise ValueError('the recipe needs an encoder with a feature cache')
    ctx = multiprocessing.get_context('spawn')
    worker = ctx.Process(target=_encode_worker, name='encode', daemon=True,
                         args=(str(encoder.path), encoder.device, encoder.compute_type, encoder.policy,
                               str(encoder.cache.dir), [str(p) for p in audio_paths]))
    worker.start()
    return worker


def _encode_worker(model_path: str, device: str, compute_type: str, policy: Any, cache_dir: str,
                   audio_paths: list[str], batch_size: int = 8) -> None:
    """Child process body: the same encoder settings, hence the same cache keys, one thread."""
    torch.set_num_threads(1)
    encoder = WhisperEncoder(model_path, device=device, compute_type=compute_type, cpu_threads=1, policy=policy,
                             cache_dir=cache_dir)
    for begin in range(0, len(audio_paths), batch_size):
        chunk = [load_audio(p) for p in audio_paths[begin: begin + batch_size]]
        encoder.features_batch(chunk, batch_size=batch_size)  # cached items are skipped


def _train_log(log: Callable[[str], None]) -> Callable[[Progress], None]:
    def report(p: Progress) -> None:
        if p.phase == 'evaluating' or p.step % 200 == 0:
            eta = f', eta {p.eta_s:.0f} s' if p.eta_s is not None else ''
            loss = f'{p.loss:.3f}' if p.loss is not None else '-'
            log(f'step {p.step}/{p.max_steps} loss {loss}{eta} {p.message}'.rstrip())

    return report


__all__ = ['AlignRecipe', 'align', 'build_corpora', 'load_recipe', 'RecipeError', 'NOISY', 'Item']
