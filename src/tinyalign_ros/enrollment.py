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
What an operator reads aloud at enrollment, chosen to teach the projector the most per second.

A personalization learns the operator's voice from the sounds and words they read. Sentences that
repeat the same few sounds teach little; sentences that cover every English phoneme and the words
people actually say to a robot (go, stop, turn, bring, left, right, how many...) teach the projector
what it will hear later. :data:`ENROLLMENT_PROMPTS` is such a set: 30 short sentences, cased and
punctuated as people write them, picked from :data:`CANDIDATES` by :func:`select_prompts` (greedy
coverage of espeak-ng phonemes and of :data:`COMMAND_WORDS`) and frozen here so the list does not
depend on the installed espeak-ng. :func:`coverage` measures any list the same way (a prompts file
given to the node can be checked with it).
"""

from __future__ import annotations

from functools import lru_cache
import re
import shutil
import subprocess
from typing import Iterable, Sequence

# Words people say to a robot assistant most often: motion, manipulation, places, numbers, questions.
COMMAND_WORDS: tuple[str, ...] = (
    'go', 'stop', 'turn', 'left', 'right', 'forward', 'back', 'move', 'come', 'follow', 'wait', 'bring',
    'take', 'pick', 'put', 'open', 'close', 'lift', 'drop', 'find', 'show', 'tell', 'check', 'clean',
    'charge', 'battery', 'door', 'room', 'kitchen', 'table', 'box', 'cup', 'one', 'two', 'three', 'four',
    'five', 'ten', 'meter', 'slowly', 'what', 'where', 'how', 'many', 'when', 'who', 'why', 'please',
    'yes', 'no', 'now', 'here', 'there', 'up', 'down', 'on', 'off',
)

# Sentences written for this project; the selection below picks from them.
CANDIDATES: tuple[str, ...] = (
    'Please go forward two meters, then stop.',
    'Turn left at the door and wait there.',
    'Turn right, then come back here slowly.',
    'Bring me the blue cup from the kitchen table.',
    'Pick up the box and put it on the shelf.',
    'Open the door to the garage, please.',
    'Close the window; the noise is too loud.',
    'How many boxes are on the table?',
    'Where did you leave my yellow jacket?',
    'What is the battery level now?',
    'When does the charging finish?',
    'Who is waiting in the lobby?',
    'Why did you stop in the hallway?',
    'Lift the tray up, then put it down gently.',
    'Drop the old toys in the green bin.',
    'Find my phone; I think it is under the couch.',
    'Show me the map of the third floor.',
    'Tell me the temperature in the workshop.',
    'Check whether the oven is switched off.',
    'Clean the floor near the washing machine.',
    'Charge your battery before the evening shift.',
    'Follow me to the measuring station.',
    'Move one meter back and look at the pump.',
    'Count from one to ten, then say yes or no.',
    'Switch on the lights in room five.',
    'Usually the judge arrives at four thirty.',
    'The vision system should avoid the chairs.',
    'Could you push the cart through the hall?',
    'Thank you; that is enough for this morning.',
    'Hold the ladder while Joe climbs up.',
    'Measure the width of the beige carpet.',
    'Is there anyone at the front entrance?',
    'Good morning, how are you today?',
    'Go to sleep until I call you again.',
    'Wake up and start the patrol at nine.',
    'The rubber wheel is worn; order a new one.',
    'Rotate ninety degrees and face the wall.',
    'Put the heavy books on the bottom shelf.',
    'Remind me to call the zoo at noon.',
    'Raise the arm higher and open the gripper.',
    'Drive through the gate and park by the fence.',
    'Fetch three bottles of water, please.',
    'Keep away from the stairs on the left.',
    'Bring the red toolbox to the loading dock.',
    'Stop! Somebody is standing behind you.',
    'Take a picture of the broken pipe.',
    'Which shoes should I wear in the rain?',
    'Look down, there is a cable on the ground.',
)

# What select_prompts(CANDIDATES, 30) returned with espeak-ng 1.51 (en-us), frozen: every one of
# the 57 phonemes of the candidates and 55 of the 57 command words in 223 words (the node's former
# built-in list of 20: 56 phonemes, 33 command words).
ENROLLMENT_PROMPTS: tuple[str, ...] = (
    'Please go forward two meters, then stop.',
    'Charge your battery before the evening shift.',
    'How many boxes are on the table?',
    'Turn right, then come back here slowly.',
    'Pick up the box and put it on the shelf.',
    'The vision system should avoid the chairs.',
    'Count from one to ten, then say yes or no.',
    'Usually the judge arrives at four thirty.',
    'Bring me the blue cup from the kitchen table.',
    'Look down, there is a cable on the ground.',
    'Open the door to the garage, please.',
    'Why did you stop in the hallway?',
    'Check whether the oven is switched off.',
    'Fetch three bottles of water, please.',
    'Where did you leave my yellow jacket?',
    'Follow me to the measuring station.',
    'Move one meter back and look at the pump.',
    'What is the battery level now?',
    'Drop the old toys in the green bin.',
    'Stop! Somebody is standing behind you.',
    'Take a picture of the broken pipe.',
    'Switch on the lights in room five.',
    'Turn left at the door and wait there.',
    'When does the charging finish?',
    'Clean the floor near the washing machine.',
    'Find my phone; I think it is under the couch.',
    'Tell me the temperature in the workshop.',
    'Good morning, how are you today?',
    'Show me the map of the third floor.',
    'Lift the tray up, then put it down gently.',
)


_PHONEME = re.compile(r"[',%=_:!]")  # stress, syllable and length marks of espeak's -x output


def espeak_available() -> bool:
    return shutil.which('espeak-ng') is not None


@lru_cache(maxsize=4096)
def phonemes(text: str, voice: str = 'en-us') -> tuple[str, ...]:
    """espeak-ng's phoneme mnemonics of ``text`` (stress and length marks removed)."""
    out = subprocess.run(['espeak-ng', '-q', '-x', '--sep=_', '-v', voice, text], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    found = []
    for word in out.split():
        found += [p for p in (_PHONEME.sub('', part) for part in word.split('_')) if p]
    return tuple(found)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def coverage(sentences: Iterable[str], reference: Sequence[str] = CANDIDATES) -> dict[str, object]:
    """Which phonemes (of those in ``reference``) and which command words ``sentences`` contain."""
    sentences = list(sentences)
    all_phonemes = {p for s in reference for p in phonemes(s)}
    have_phonemes = {p for s in sentences for p in phonemes(s)}
    have_words = set().union(*(words(s) for s in sentences)) if sentences else set()
    return {
        'phonemes': len(have_phonemes & all_phonemes), 'phonemes_total': len(all_phonemes),
        'missing_phonemes': sorted(all_phonemes - have_phonemes),
        'command_words': len(have_words & set(COMMAND_WORDS)), 'command_words_total': len(COMMAND_WORDS),
        'missing_command_words': sorted(set(COMMAND_WORDS) - have_words),
        'n': len(sentences), 'words': sum(len(s.split()) for s in sentences),
    }


def select_prompts(candidates: Sequence[str], n: int, max_words: int = 10) -> list[str]:
    """
    Pick ``n`` prompts by greedy coverage of phonemes and command words.

    Each pick adds the most not-yet-covered phonemes and command words (a phoneme
    counts up to 1.5 times a new command word, being what the voice is made of), ties broken by the shorter sentence,
    then by the candidates' order; once everything is covered, the rarest phonemes count again.
    """
    pool = [s for s in candidates if len(s.split()) <= max_words]
    if n > len(pool):
        raise ValueError(f'asked for {n} prompts from {len(pool)} candidates of at most {max_words} words')
    counts: dict[str, int] = {}
    covered_words: set[str] = set()
    chosen: list[str] = []
    for _ in range(n):
        def gain(sentence: str) -> tuple[float, int]:
            ph = set(phonemes(sentence))
            score = sum(3.0 / (1 + counts.get(p, 0)) for p in ph)
            score += 2.0 * len((words(sentence) & set(COMMAND_WORDS)) - covered_words)
            return score, -len(sentence.split())

        best = max((s for s in pool if s not in chosen), key=gain)
        chosen.append(best)
        for p in set(phonemes(best)):
            counts[p] = counts.get(p, 0) + 1
        covered_words |= words(best) & set(COMMAND_WORDS)
    return chosen


__all__ = ['ENROLLMENT_PROMPTS', 'CANDIDATES', 'COMMAND_WORDS', 'coverage', 'phonemes', 'select_prompts',
           'espeak_available']
