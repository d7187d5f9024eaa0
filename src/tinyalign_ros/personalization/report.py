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
The picture of a personalization run: its training curve and the before/after metrics, next to the adapter.

The JSON record of a run (``run.json`` in the work folder, the adapter's metadata) is written by the
job; this module draws the PNG a person looks at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


PLOT_NAME = 'personalization.png'


def plot_run(path: Path, curve: Sequence[tuple[int, float, float]], before: dict[str, float],
             after: dict[str, float], title: str) -> Path:
    """Write a PNG: training loss by step, and before/after metrics side by side."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    try:
        if curve:
            left.plot([c[0] for c in curve], [c[2] for c in curve], color='tab:blue')
        left.set_xlabel('step')
        left.set_ylabel('training loss (smoothed)')
        left.set_title('training curve')
        names = [k for k in ('wer_nearest', 'wer_repeat', 'wer_canary', 'wer_cascade', 'nll_audio')
                 if k in before or k in after]
        x = np.arange(len(names))
        right.bar(x - 0.2, [before.get(k, 0.0) for k in names], 0.4, label='before')
        right.bar(x + 0.2, [after.get(k, 0.0) for k in names], 0.4, label='after')
        right.set_xticks(x, names, rotation=20)
        right.set_title('held-out metrics (lower is better)')
        right.legend()
        fig.suptitle(title[:120], fontsize=9)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f'.{path.name}.tmp.png')
        fig.savefig(tmp, dpi=80)
        tmp.replace(path)
    finally:
        plt.close(fig)
    return path
