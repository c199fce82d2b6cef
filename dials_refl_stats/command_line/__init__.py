"""The programs (``dials.<name>`` console scripts).

Imported before numpy when a program starts, to set numpy and allocator defaults for
these short runs over large tables (a user's own setting is kept):

* ``OPENBLAS_NUM_THREADS=1``: nothing here uses multithreaded linear algebra, and idle
  OpenBLAS worker threads spinning for work (``sched_yield``) cost 0.1-0.5 s of CPU;
* ``NUMPY_MADVISE_HUGEPAGE=0``: numpy asks for transparent huge pages for large arrays,
  and the kernel's zeroing of 2 MB pages for the many short-lived 10^6-row temporaries
  cost 0.5-1.5 s of system time per run on a 10^6-row table (4 kB pages: ~0.3 s);
* glibc's ``malloc`` keeps freed memory for reuse (:func:`keep_freed_memory`).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

#: Blocks below this come from the heap (glibc's ``M_MMAP_THRESHOLD``; its largest).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the heap's top kept before it is given back (``M_TRIM_THRESHOLD``).
TRIM_THRESHOLD = 1 << 30
#: Environment variables by which a user tunes glibc's malloc: then nothing is changed.
MALLOC_SETTINGS = (
    "GLIBC_TUNABLES",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)


def keep_freed_memory() -> bool:
    """Have glibc's ``malloc`` reuse freed memory instead of returning it to the kernel
    (``mallopt``: blocks under :data:`MMAP_THRESHOLD` from the heap, which is trimmed
    only past :data:`TRIM_THRESHOLD` free at its top); whether it was set.

    By default glibc maps each large block anew and trims the heap as soon as it can, so
    a run's many temporaries of a few MB (per file batch, per task) fault in fresh zeroed
    pages again and again: 1-2.5 s of system time on 10^5 stills (``dials.intensity_per_frame``
    on 2 processes: 5.3 -> 4.7 s). Forked workers inherit it. Not on other C libraries,
    nor when the user tuned malloc (:data:`MALLOC_SETTINGS`).
    """
    if any(name in os.environ for name in MALLOC_SETTINGS):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):  # not glibc, or no confstr name
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, TRIM_THRESHOLD)
    )


MALLOC_TUNED = keep_freed_memory()
