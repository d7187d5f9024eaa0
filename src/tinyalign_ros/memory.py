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
The process's memory: its peak resident size, and giving freed heap back to the OS.

A robot has other processes to feed: training, personalization and the benchmarks report the peak
they reached and trim the heap between phases.
"""

from __future__ import annotations


def peak_rss_mb() -> float:
    """Return the process's peak resident memory so far, in MiB (Linux reports KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def release_memory() -> None:
    """
    Give freed heap memory back to the OS between phases.

    Training and LLM scoring allocate and free many differently sized tensors; glibc keeps the
    freed pages in its arenas, so without a trim the phases' peaks stack up in the process's
    resident size (a robot has other processes to feed).
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
