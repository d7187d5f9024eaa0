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
they reached, trim the heap between phases and bound glibc's mmap threshold for long runs.
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


def bound_heap(mmap_threshold: int = 1 << 20) -> bool:
    """
    Ask glibc to serve allocations above ``mmap_threshold`` with mmap, returned to the OS on free.

    Training allocates batches of a different size every step; glibc's default raises its mmap
    threshold after the first large free (up to 32 MB), so those buffers then come from the heap and
    fragment it, and the process' resident memory creeps up over a long run. A fixed threshold
    stops that. Returns False (and changes nothing) where glibc is not the C library.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_mmap_threshold = -3  # from malloc.h
    return bool(mallopt(m_mmap_threshold, int(mmap_threshold)))
