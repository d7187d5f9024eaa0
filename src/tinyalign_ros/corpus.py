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
The text an assistant's projector learns to read: questions, commands, conversation and prose.

A projector learns the word prior of its training text. Trained on 19th-century prose alone it
hears "How many" as "However"; trained on a narrow template list it hears "capital of France" as
"cup of friends". So the corpus is built for breadth first, from natural sentences that exist
offline, with templates only for the shapes natural text lacks (questions and robot commands):

- ``wordnet``: the example sentences of WordNet's glosses (Debian's ``wordnet-base``), everyday
  vocabulary in short sentences;
- ``fortunes``: sentences of Debian's ``fortunes`` (quotes, jokes, proverbs): conversational English;
- ``lj``: the LJ Speech transcripts (``../shared/data/text``), long formal sentences;
- ``questions``, ``commands``, ``chat``: template grammars whose slots are filled from WordNet's most
  frequent nouns, verbs and adjectives (ranked by WordNet's sense-tagged counts), numbers spelled
  out, times, names, rooms and places. Each template has an id, and a seeded share of templates is
  held out whole, so held-out sentences test new *shapes*, not only new slot fillers.

Every sentence is written as people write (cased, punctuated, a question ends in "?"), because that
is what the LLM reads best. Numbers are words ("five minutes"): that is what is spoken. The build is
deterministic for a seed; :func:`build_corpus` writes one text file per source and split and a
``summary.json`` with counts and vocabulary coverage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
import json
from pathlib import Path
import random
import re
from typing import Any, Callable, Iterable, Sequence

WORDNET_DIR = Path('/usr/share/wordnet')
FORTUNES_DIR = Path('/usr/share/games/fortunes')
SOURCES = ('wordnet', 'fortunes', 'lj', 'questions', 'commands', 'chat')


class CorpusError(RuntimeError):
    """A text source is missing or yields nothing usable."""


@dataclass
class CorpusConfig:
    """How the corpus is built (the defaults are the shipped base adapter's)."""

    seed: int = 0
    min_words: int = 2
    max_words: int = 20
    heldout_share: float = 0.03  # natural sentences held out at random
    heldout_templates: float = 0.12  # templates held out whole
    n_questions: int = 24000
    n_commands: int = 14000
    n_chat: int = 4000


def build_corpus(out_dir: str | Path, lj_text: str | Path | None, config: CorpusConfig | None = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build every source, split it, write ``<source>.train.txt`` / ``<source>.heldout.txt``; return the summary."""
    config = config or CorpusConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    natural: dict[str, list[str]] = {
        'wordnet': wordnet_examples(),
        'fortunes': fortune_sentences(),
        'lj': read_lines(lj_text) if lj_text else [],
    }
    summary: dict[str, Any] = {'config': asdict(config), 'sources': {}}
    splits: dict[str, tuple[list[str], list[str]]] = {}
    for name, sentences in natural.items():
        sentences = _unique(s for s in (tidy(x) for x in sentences) if _fits(s, config))
        rng_source = random.Random(f'{config.seed}-{name}')
        rng_source.shuffle(sentences)
        n_held = int(len(sentences) * config.heldout_share)
        splits[name] = (sentences[n_held:], sentences[:n_held])
    grammar = Grammar(random.Random(config.seed + 1))
    for name, n in (('questions', config.n_questions), ('commands', config.n_commands), ('chat', config.n_chat)):
        templates = grammar.templates(name)
        ids = sorted(templates)
        n_held = max(1, int(len(ids) * config.heldout_templates))
        held_ids = set(random.Random(f'{config.seed}-{name}-held').sample(ids, n_held))
        train_: list[str] = []
        held: list[str] = []
        for i in range(n):
            tid = ids[i % len(ids)] if i < len(ids) else rng.choice(ids)
            sentence = tidy(templates[tid]())
            if _fits(sentence, config):
                (held if tid in held_ids else train_).append(sentence)
        splits[name] = (_unique(train_), _unique(held))
        summary['sources'][name + '_templates'] = {'total': len(ids), 'heldout': sorted(held_ids)}
    train_all: set[str] = set()
    for name, (train_, held) in splits.items():
        held = [s for s in held if s not in train_all and s not in set(train_)]
        train_all.update(train_)
        (out / f'{name}.train.txt').write_text('\n'.join(train_) + '\n', encoding='utf-8')
        (out / f'{name}.heldout.txt').write_text('\n'.join(held) + '\n', encoding='utf-8')
        summary['sources'][name] = {'train': len(train_), 'heldout': len(held)}
        log(f'{name}: {len(train_)} training sentences, {len(held)} held out')
    summary['distinct_train_sentences'] = len(train_all)
    summary['coverage'] = coverage(train_all)
    (out / 'summary.json').write_text(json.dumps(summary, indent=1) + '\n', encoding='utf-8')
    return summary


def read_corpus(folder: str | Path, source: str, split: str = 'train') -> list[str]:
    """Read the sentences of one source and split of a built corpus."""
    path = Path(folder) / f'{source}.{split}.txt'
    if not path.is_file():
        raise CorpusError(f'{path} not found: build the corpus first (`tinyalign corpus --out {folder}`)')
    return [line for line in path.read_text(encoding='utf-8').splitlines() if line.strip()]


# -- natural sources ------------------------------------------------------------------------------
_QUOTED = re.compile(r'"([^"]{8,200})"')
_SENTENCE_END = re.compile(r'(?<=[.!?])\s+(?=[A-Z"])')
_ALLOWED = re.compile(r"^[A-Za-z0-9 ,.;:!?'\-]+$")


def wordnet_examples(root: Path = WORDNET_DIR) -> list[str]:
    """Collect the quoted example sentences of WordNet's glosses (``data.noun`` etc.)."""
    files = [root / f'data.{pos}' for pos in ('noun', 'verb', 'adj', 'adv')]
    if not any(f.is_file() for f in files):
        raise CorpusError(f'WordNet not found in {root}: `apt-get install wordnet-base`')
    out: list[str] = []
    for f in files:
        if not f.is_file():
            continue
        for line in f.read_text(encoding='latin-1').splitlines():
            if line.startswith(' ') or '|' not in line:
                continue
            out.extend(_QUOTED.findall(line.split('|', 1)[1]))
    return out


def fortune_sentences(root: Path = FORTUNES_DIR) -> list[str]:
    """Sentences of the fortune files (one entry per ``%``-separated block, split into sentences)."""
    if not root.is_dir():
        raise CorpusError(f'fortunes not found in {root}: `apt-get install fortunes`')
    out: list[str] = []
    for f in sorted(root.iterdir()):
        if f.suffix or not f.is_file() or f.name.startswith('.'):
            continue  # .dat indexes and .u8 links
        text = f.read_text(encoding='utf-8', errors='replace')
        for block in text.split('\n%\n'):
            lines = [ln for ln in block.splitlines() if not ln.lstrip().startswith(('--', '-- '))]
            joined = ' '.join(' '.join(lines).split())
            out.extend(_SENTENCE_END.split(joined))
    return out


def read_lines(path: str | Path) -> list[str]:
    return [line.strip() for line in Path(path).read_text(encoding='utf-8').splitlines() if line.strip()]


def tidy(sentence: str) -> str:
    """One line as people write it: single spaces, straight quotes stripped, capital first letter, an end mark."""
    s = ' '.join(sentence.replace('``', '').replace("''", '').split()).strip(' "')
    if not s:
        return s
    s = s[0].upper() + s[1:]
    if s[-1] not in '.!?':
        s = s.rstrip(',;:') + '.'
    return s


def _fits(sentence: str, config: CorpusConfig) -> bool:
    n = len(sentence.split())
    return config.min_words <= n <= config.max_words and bool(_ALLOWED.match(sentence)) \
        and not re.search(r'\d', sentence) and sentence.count("'") <= 3


def _unique(sentences: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(sentences))


# -- coverage -----------------------------------------------------------------------------------------
def coverage(sentences: Iterable[str], top_n: int = 10000) -> dict[str, Any]:
    """Share of the ``top_n`` most frequent English words (wordfreq) that the corpus contains."""
    words = Counter(w for s in sentences for w in re.findall(r"[a-z']+", s.lower()))
    result: dict[str, Any] = {'distinct_words': len(words)}
    try:
        from wordfreq import top_n_list
    except ImportError:  # the coverage report is informative; the corpus does not depend on it
        result['top_words'] = None
        return result
    top = [w for w in top_n_list('en', top_n) if re.fullmatch(r"[a-z']+", w)]
    for n in (1000, 5000, len(top)):
        hit = sum(1 for w in top[:n] if w in words)
        result[f'top{n}_covered'] = round(hit / n, 4)
    return result


def token_coverage(sentences: Iterable[str], tokenize: Callable[[str], list[int]],
                   top_ids: int = 10000) -> dict[str, float]:
    """Share of the LLM's first ``top_ids`` token ids (BPE merge order ~ frequency) that the corpus uses."""
    seen = {i for s in sentences for i in tokenize(' ' + s)}
    return {f'first{top_ids}_tokens_covered': round(sum(1 for i in range(top_ids) if i in seen) / top_ids, 4),
            'distinct_tokens': len(seen)}


# -- sentences the LLM writes around the words the other sources lack ---------------------------------
LLM_SOURCE = 'llm'
# What the LLM is asked per word. (Asked for questions too, it wrote mostly "What's <word>?": a
# sentence shape the projector would learn as a prior, as it did from the question templates.)
WRITING_REQUEST = 'Write one short, simple sentence that uses the word "{word}".'
# The LLM writes in this precision (its replies, and so the source, depend on it).
WRITING_DTYPE = 'bfloat16'
# Replies that talk about the request instead of using the word ("A sentence using the word ...").
_META = re.compile(r'\b(word|sentence|example|question)s?\b', re.IGNORECASE)


def coverage_gaps(sentences: Iterable[str], top_n: int = 20000, min_count: int = 3) -> list[str]:
    """
    Return the frequent English words (wordfreq's ``top_n``) the sentences hold fewer than ``min_count`` times.

    A word the projector hears once or twice in training it does not learn; these are the words the
    LLM source writes sentences around. In frequency order, so any prefix is the most useful part.
    """
    try:
        from wordfreq import top_n_list
    except ImportError as error:
        raise CorpusError('the LLM source needs the wordfreq package (requirements.lock)') from error
    counts = Counter(w for s in sentences for w in re.findall(r"[a-z']+", s.lower()))
    return [w for w in top_n_list('en', top_n) if re.fullmatch(r'[a-z]{3,}', w) and counts[w] < min_count]


# The mix's coverage source: no new text, a draw from all the training sentences that favours the
# frequent English words a uniform draw plays too rarely for the projector to learn them.
COVERAGE_SOURCE = 'coverage'


def coverage_draw(sentences: Sequence[str], n: int, top_n: int = 30000, per_word: int = 2,
                  max_pool_count: int = 20, seed: int = 0) -> list[str]:
    """
    Draw up to ``n`` sentences so that each frequent word the pool holds rarely is heard ``per_word`` times.

    Why: a uniform draw of a round plays a word about as often as the pool holds it, so a frequent
    English word that only 2 of 95,000 sentences contain (" spider" was heard once in the 84,300
    utterances of the first five draws) is almost never heard and never learnt. The words are wordfreq's ``top_n``
    that fewer than ``max_pool_count`` pool sentences contain (the others a uniform draw already
    plays), taken in frequency order, so any prefix of the draw serves the most useful words first.
    Each needs ``per_word`` sentences (seeded choice among those that contain it; sentences drawn for
    other words count). Deterministic for a pool and a seed.
    """
    try:
        from wordfreq import top_n_list
    except ImportError as error:
        raise CorpusError('the coverage source needs the wordfreq package (requirements.lock)') from error
    pool = _unique(sentences)
    rank = {w: i for i, w in enumerate(w for w in top_n_list('en', top_n) if re.fullmatch(r'[a-z]{2,}', w))}
    words_of = [set(re.findall(r"[a-z']+", s.lower())) & rank.keys() for s in pool]
    holding: dict[str, list[int]] = {}
    for i, words in enumerate(words_of):
        for w in words:
            holding.setdefault(w, []).append(i)
    rng = random.Random(f'{seed}-{COVERAGE_SOURCE}')
    heard: Counter[str] = Counter()
    chosen: list[int] = []
    taken: set[int] = set()
    for word in sorted((w for w, held in holding.items() if len(held) < max_pool_count), key=rank.__getitem__):
        need = per_word - heard[word]
        if need <= 0:
            continue
        candidates = [i for i in holding[word] if i not in taken]
        for i in rng.sample(candidates, min(need, len(candidates), n - len(chosen))):
            chosen.append(i)
            taken.add(i)
            heard.update(words_of[i])
        if len(chosen) >= n:
            break
    return [pool[i] for i in chosen]


def llm_sentences(words: list[str], write: Callable[[list[str]], list[str]], config: CorpusConfig | None = None,
                  batch: int = 32, log: Callable[[str], None] = print) -> list[str]:
    """
    Ask the LLM (``write``: requests -> replies) for one sentence per word; keep the replies that use it.

    A reply is kept when its first sentence, tidied, fits the corpus's rules (length, characters, no
    digits), contains the word as a whole word and does not talk about the request itself.
    """
    config = config or CorpusConfig()
    out: list[str] = []
    for start in range(0, len(words), batch):
        chunk = words[start:start + batch]
        requests = [WRITING_REQUEST.format(word=w) for w in chunk]
        for word, reply in zip(chunk, write(requests)):
            first = _SENTENCE_END.split(' '.join(reply.split()))[0] if reply.strip() else ''
            sentence = tidy(first)
            if sentence and _fits(sentence, config) and not _META.search(sentence) \
                    and re.search(rf'\b{re.escape(word)}\b', sentence, re.IGNORECASE):
                out.append(sentence)
        log(f'llm source: {min(start + batch, len(words))}/{len(words)} words asked, {len(out)} sentences kept')
    return _unique(out)


def add_llm_source(out_dir: str | Path, write: Callable[[list[str]], list[str]], config: CorpusConfig | None = None,
                   top_n: int = 20000, min_count: int = 3, log: Callable[[str], None] = print) -> dict[str, Any]:
    """
    Add the LLM source to a built corpus: ``llm.train.txt`` / ``llm.heldout.txt``, and its summary entry.

    The words are the gaps of the corpus's own training sentences (:func:`coverage_gaps`); a share of
    the words (``heldout_share``) is held out whole, with their sentences. Deterministic for a seed and
    an LLM (greedy replies).
    """
    config = config or CorpusConfig()
    out = Path(out_dir)
    summary_path = out / 'summary.json'
    if not summary_path.is_file():
        raise CorpusError(f'{out} holds no built corpus: run `tinyalign corpus --out {out}` first')
    existing = [s for source in SOURCES for s in read_corpus(out, source, 'train')]
    words = coverage_gaps(existing, top_n, min_count)
    held_words = set(random.Random(f'{config.seed}-{LLM_SOURCE}-held').sample(
        words, int(len(words) * config.heldout_share)))
    sentences = llm_sentences(words, write, config, log=log)
    held = [s for s in sentences if set(re.findall(r'[a-z]+', s.lower())) & held_words]
    taken = set(held) | set(existing)
    train_ = [s for s in sentences if s not in taken]
    (out / f'{LLM_SOURCE}.train.txt').write_text('\n'.join(train_) + '\n', encoding='utf-8')
    (out / f'{LLM_SOURCE}.heldout.txt').write_text('\n'.join(held) + '\n', encoding='utf-8')
    summary = json.loads(summary_path.read_text(encoding='utf-8'))
    summary['sources'][LLM_SOURCE] = {'train': len(train_), 'heldout': len(held), 'words_asked': len(words),
                                      'top_n': top_n, 'min_count': min_count}
    summary['coverage_with_llm'] = coverage(existing + train_)
    summary_path.write_text(json.dumps(summary, indent=1) + '\n', encoding='utf-8')
    log(f'{LLM_SOURCE}: {len(train_)} training sentences, {len(held)} held out, from {len(words)} words')
    return summary


def write_llm_source(out_dir: str | Path, llm_path: str | Path | None = None, seed: int = 0,
                     top_n: int = 20000, threads: int | None = None,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Load the whole LLM (in :data:`WRITING_DTYPE`: the replies depend on it) and add its source to a corpus."""
    from .llm import LLM

    writer = LLM(llm_path, dtype=WRITING_DTYPE, threads=threads)
    return add_llm_source(out_dir, writer.write_many, CorpusConfig(seed=seed), top_n=top_n, log=log)


# -- template grammars ----------------------------------------------------------------------------------
def spell_number(n: int) -> str:
    """0-999999 in words ("three hundred and twelve" is written without "and", as Americans say it)."""
    from num2words import num2words

    return num2words(n).replace(' and ', ' ').replace(',', '')


class Grammar:
    """Question, command and chat templates over broad slot lists; each template is a callable."""

    ROOMS = ['kitchen', 'living room', 'bedroom', 'bathroom', 'garage', 'hallway', 'office', 'lab', 'workshop',
             'dining room', 'basement', 'garden', 'front door', 'back door', 'lobby', 'storage room', 'elevator',
             'charging station', 'loading dock', 'meeting room', 'reception', 'warehouse', 'corridor', 'balcony']
    FURNITURE = ['table', 'desk', 'shelf', 'counter', 'chair', 'bed', 'sofa', 'floor', 'tray', 'cart', 'bench',
                 'cabinet', 'drawer', 'box', 'sink', 'windowsill', 'top shelf', 'bottom shelf', 'conveyor']
    COLOURS = ['red', 'blue', 'green', 'yellow', 'black', 'white', 'orange', 'purple', 'pink', 'brown', 'grey',
               'silver', 'gold']
    NAMES = ['Alice', 'Bob', 'Maria', 'James', 'Sarah', 'David', 'Emma', 'Michael', 'Olivia', 'Daniel', 'Sophie',
             'Thomas', 'Anna', 'Peter', 'Laura', 'John', 'Grace', 'Lucas', 'Chloe', 'Samuel', 'Emily', 'Henry',
             'Lily', 'Jack', 'Mia', 'Oscar', 'Ruby', 'Leo', 'Hannah', 'Noah', 'Zoe', 'Ethan', 'Nina', 'Omar',
             'Priya', 'Chen', 'Fatima', 'Carlos', 'Yuki', 'Ivan', 'Amara', 'Kofi', 'Elena', 'Raj', 'Mei']
    PLACES = ['France', 'Spain', 'Italy', 'Germany', 'Japan', 'China', 'India', 'Brazil', 'Canada', 'Mexico',
              'Egypt', 'Kenya', 'Australia', 'Russia', 'England', 'Ireland', 'Greece', 'Norway', 'Sweden',
              'Poland', 'Peru', 'Chile', 'Argentina', 'Turkey', 'Nigeria', 'Portugal', 'Thailand', 'Vietnam',
              'Paris', 'London', 'Tokyo', 'Rome', 'Berlin', 'Madrid', 'Moscow', 'Cairo', 'Sydney', 'Toronto',
              'New York', 'Chicago', 'Boston', 'Texas', 'California', 'Florida', 'Africa', 'Europe', 'Asia',
              'South America', 'the ocean', 'the desert', 'the forest', 'the mountains', 'the city', 'space']
    UNITS = ['meters', 'centimeters', 'feet', 'inches', 'steps', 'degrees', 'seconds', 'minutes', 'hours',
             'kilograms', 'grams', 'liters', 'percent', 'miles', 'kilometers', 'days', 'weeks', 'years']
    DAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday', 'today', 'tomorrow',
            'tonight', 'this morning', 'this afternoon', 'this evening', 'next week', 'yesterday', 'the weekend']
    MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October',
              'November', 'December', 'spring', 'summer', 'autumn', 'winter']

    def __init__(self, rng: random.Random) -> None:
        import inflect

        self.rng = rng
        self.inflect = inflect.engine()
        nouns, verbs, adjs = wordnet_frequent_lemmas()
        self.nouns, self.verbs, self.adjs = nouns[:2500], verbs[:900], adjs[:900]

    # slot fillers
    def noun(self) -> str:
        return self.rng.choice(self.nouns)

    def nouns_(self) -> str:
        return self.inflect.plural_noun(self.noun()) or self.noun()

    def a(self, word: str) -> str:
        return self.inflect.a(word)

    def verb(self) -> str:
        return self.rng.choice(self.verbs)

    def adj(self) -> str:
        return self.rng.choice(self.adjs)

    def num(self, low: int = 1, high: int = 100) -> str:
        return spell_number(self.rng.randint(low, high))

    def pick(self, options: list[str]) -> str:
        return self.rng.choice(options)

    def time(self) -> str:
        h = spell_number(self.rng.randint(1, 12))
        return self.pick([f"{h} o'clock", f'half past {h}', f'quarter to {h}', f'{h} thirty', f'{h} fifteen',
                          f'{h} forty five', f'{h} in the morning', f'{h} in the afternoon', 'noon', 'midnight'])

    def object_(self) -> str:
        return self.pick([self.noun(), f'{self.pick(self.COLOURS)} {self.noun()}', f'{self.adj()} {self.noun()}'])

    def templates(self, kind: str) -> dict[str, Callable[[], str]]:
        n, o, r, p = self.noun, self.object_, lambda: self.pick(self.ROOMS), lambda: self.pick(self.PLACES)
        if kind == 'questions':
            table: list[Callable[[], str]] = [
                lambda: f'What is {self.a(n())}?',
                lambda: f'What is the capital of {p()}?',
                lambda: f'What does the word {n()} mean?',
                lambda: f'What colour is {self.a(n())}?',
                lambda: f'What is the {self.adj()} {n()} called?',
                lambda: f'How many {self.nouns_()} are in the {r()}?',
                lambda: f'How many legs does {self.a(n())} have?',
                lambda: (f'How many {self.pick(self.UNITS)} are in '
                         f'{self.a(self.pick(["hour", "day", "week", "year", "meter", "mile", "minute"]))}?'),
                lambda: f'How much is {self.num(1, 20)} plus {self.num(1, 20)}?',
                lambda: f'What is {self.num(1, 12)} times {self.num(1, 12)}?',
                lambda: f'How far is {p()} from {p()}?',
                lambda: f'How do I {self.verb()} {self.a(n())}?',
                lambda: f'How do you make {self.a(n())}?',
                lambda: f'How old is the {n()}?',
                lambda: f'Where is the {n()}?',
                lambda: f'Where do {self.nouns_()} live?',
                lambda: f'Where can I find {self.a(o())}?',
                lambda: f'Where is {p()}?',
                lambda: f'When does the {n()} open?',
                lambda: f'When is the next {n()}?',
                lambda: f'When did {self.pick(self.NAMES)} leave the {r()}?',
                lambda: f'Who invented the {n()}?',
                lambda: f'Who is in the {r()}?',
                lambda: f'Who wrote the book about the {n()}?',
                lambda: f'Which {n()} is {self.adj()}er, the {n()} or the {n()}?',
                lambda: f'Which way is the {r()}?',
                lambda: f'Which {n()} should I take?',
                lambda: f'Why is the {n()} {self.adj()}?',
                lambda: f'Why do {self.nouns_()} {self.verb()}?',
                lambda: f'Can you {self.verb()} the {o()}?',
                lambda: f'Can you tell me about {self.a(n())}?',
                lambda: f'Could you help me find my {n()}?',
                lambda: (f'Is it {self.pick(["cold", "warm", "raining", "sunny", "windy", "late", "safe", "open"])} '
                         f'{self.pick(["outside", "in " + p(), "now", "today"])}?'),
                lambda: f'Is the {n()} {self.adj()}?',
                lambda: f'Is there {self.a(n())} in the {r()}?',
                lambda: f'Are the {self.nouns_()} ready?',
                lambda: f'Do you know where {self.pick(self.NAMES)} is?',
                lambda: f'Do {self.nouns_()} eat {self.nouns_()}?',
                lambda: f'Does the {n()} need {self.a(n())}?',
                lambda: f'What time is it in {p()}?',
                lambda: f'What day is it {self.pick(self.DAYS)}?',
                lambda: f'What is the weather like in {p()} {self.pick(self.DAYS)}?',
                lambda: f'What is the opposite of {self.adj()}?',
                lambda: f'What is bigger, {self.a(n())} or {self.a(n())}?',
                lambda: f'What happens in {self.pick(self.MONTHS)}?',
                lambda: f'What should I do with the {o()}?',
                lambda: f'Have you seen my {n()}?',
                lambda: f'Will it {self.verb()} {self.pick(self.DAYS)}?',
            ]
        elif kind == 'commands':
            table = [
                lambda: f'Move forward {self.num(1, 20)} {self.pick(["meters", "steps", "feet", "centimeters"])}.',
                lambda: f'Go back {self.num(1, 10)} {self.pick(["meters", "steps", "feet"])}.',
                lambda: f'Turn {self.pick(["left", "right"])} {self.num(5, 180)} degrees.',
                lambda: f'Turn {self.pick(["left", "right", "around"])}.',
                lambda: f'Go to the {r()}.',
                lambda: f'Please go to the {r()} and wait there.',
                lambda: f'Drive to the {r()} and come back.',
                lambda: f'Navigate to the {r()}, then stop.',
                lambda: f'Follow {self.pick(self.NAMES + ["me"])}.',
                lambda: f'Stop {self.pick(["now", "right there", "moving", "following me", "the arm", "recording"])}.',
                lambda: f'Pick up the {o()}.',
                lambda: f'Pick up the {o()} from the {self.pick(self.FURNITURE)}.',
                lambda: f'Put the {o()} on the {self.pick(self.FURNITURE)}.',
                lambda: f'Place the {o()} next to the {n()}.',
                lambda: f'Bring me the {o()} from the {r()}.',
                lambda: f'Give the {o()} to {self.pick(self.NAMES)}.',
                lambda: f'Open the {self.pick(["door", "drawer", "gripper", "window", "box", "cabinet", "gate"])}.',
                lambda: f'Close the {self.pick(["door", "drawer", "gripper", "window", "box", "cabinet", "gate"])}.',
                lambda: f'Grab the {o()} and hold it.',
                lambda: f'Push the {n()} to the {self.pick(["left", "right", "wall", "corner"])}.',
                lambda: f'Look at the {o()}.',
                lambda: f'Find the {o()}.',
                lambda: f'Clean the {self.pick(self.FURNITURE + self.ROOMS)}.',
                lambda: f'Set a timer for {self.num(1, 60)} {self.pick(["seconds", "minutes", "hours"])}.',
                lambda: f'Remind me to {self.verb()} the {n()} at {self.time()}.',
                lambda: f'Wake me up at {self.time()}.',
                lambda: (f'Cancel the '
                         f'{self.pick(["timer", "alarm", "reminder", "last command", "task", "mission"])}.'),
                lambda: 'What is your battery level?',
                lambda: (f'Report your '
                         f'{self.pick(["status", "position", "battery", "temperature", "speed", "location"])}.'),
                lambda: f'Show me the {self.pick(["map", "camera", "battery status", "route", "last error", "logs"])}.',
                lambda: f'Slow down{self.pick([".", ", please.", " a little."])}',
                lambda: f'Speed up to {self.num(1, 10)} {self.pick(["meters per second", "kilometers per hour"])}.',
                lambda: f'Raise the arm {self.num(1, 50)} centimeters.',
                lambda: f'Lower the {self.pick(["arm", "gripper", "volume", "speed", "tray"])}.',
                lambda: (f'Rotate the {self.pick(["gripper", "arm", "camera", "base", "head"])} '
                         f'{self.num(5, 180)} degrees.'),
                lambda: 'Go to the charging station.',
                lambda: 'Return to base.',
                lambda: f'Take a picture of the {o()}.',
                lambda: f'Count the {self.nouns_()} on the {self.pick(self.FURNITURE)}.',
                lambda: f'Tell {self.pick(self.NAMES)} that the {n()} is ready.',
                lambda: f'Call {self.pick(self.NAMES)}.',
                lambda: f'Play some {self.pick(["music", "jazz", "rock", "quiet music", "news", "radio"])}.',
                lambda: (f'Turn {self.pick(["on", "off"])} the '
                         f'{self.pick(["lights", "fan", "heater", "camera", "radio", "television", "alarm"])}.'),
                lambda: f'Wait here for {self.num(1, 30)} {self.pick(["seconds", "minutes"])}.',
            ]
        elif kind == 'chat':
            fixed = ['Hello!', 'Hi there.', 'Good morning.', 'Good night.', 'Thank you very much.', 'Thanks a lot.',
                     'How are you today?', 'What is your name?', 'Who are you?', 'What can you do?', 'Never mind.',
                     'That is right.', 'No, that is wrong.', 'Yes, please.', 'No, thank you.', 'Sorry, say that again.',
                     'I do not understand.', 'Can you repeat that?', 'Tell me a joke.', 'Tell me a story.',
                     'I am tired.', 'I am hungry.', 'See you later.', 'Goodbye.', 'Well done.', 'That was great.',
                     'Please be quiet.', 'Speak louder, please.', 'What did you say?', 'Let me think about it.']
            table = [lambda s=s: s for s in fixed] + [
                lambda: f'My name is {self.pick(self.NAMES)}.',
                lambda: f'I like {self.nouns_()}.',
                lambda: f'I need {self.a(n())}.',
                lambda: f'I think the {n()} is {self.adj()}.',
                lambda: f'The {n()} is in the {r()}.',
                lambda: f'We are going to {p()} {self.pick(self.DAYS)}.',
                lambda: f'It is {self.time()}.',
                lambda: f'{self.pick(self.NAMES)} is coming {self.pick(self.DAYS)}.',
                lambda: f'I have {self.num(2, 20)} {self.nouns_()}.',
                lambda: f'Please {self.verb()} the {n()}.',
            ]
        else:
            raise CorpusError(f'no templates of kind {kind!r}')
        return {f'{kind}{i:03d}': fn for i, fn in enumerate(table)}


def wordnet_frequent_lemmas(root: Path = WORDNET_DIR) -> tuple[list[str], list[str], list[str]]:
    """Single-word nouns, verbs and adjectives ranked by WordNet's sense-tagged counts (``cntlist.rev``)."""
    path = root / 'cntlist.rev'
    if not path.is_file():
        raise CorpusError(f'{path} not found: `apt-get install wordnet-base`')
    counts: dict[str, Counter] = {'1': Counter(), '2': Counter(), '3': Counter(), '5': Counter()}
    for line in path.read_text(encoding='latin-1').splitlines():
        parts = line.split()
        if len(parts) != 3 or '%' not in parts[0]:
            continue
        lemma, _, rest = parts[0].partition('%')
        pos = rest[:1]
        if pos in counts and re.fullmatch(r'[a-z]{3,}', lemma):
            counts[pos][lemma] += int(parts[2])
    adj = counts['3'] + counts['5']
    return ([w for w, _ in counts['1'].most_common()], [w for w, _ in counts['2'].most_common()],
            [w for w, _ in adj.most_common()])


__all__ = ['CorpusConfig', 'CorpusError', 'build_corpus', 'read_corpus', 'wordnet_examples', 'fortune_sentences',
           'tidy', 'coverage', 'token_coverage', 'coverage_gaps', 'llm_sentences', 'add_llm_source',
           'write_llm_source', 'LLM_SOURCE', 'COVERAGE_SOURCE', 'coverage_draw', 'spell_number', 'Grammar',
           'wordnet_frequent_lemmas', 'SOURCES']
