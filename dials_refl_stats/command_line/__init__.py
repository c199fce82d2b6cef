"""The programs (``dials.<name>`` console scripts).

Imported before numpy when a program starts, to set two numpy defaults for these
short runs over large tables (a user's own setting is kept):

* ``OPENBLAS_NUM_THREADS=1``: nothing here uses multithreaded linear algebra, and idle
  OpenBLAS worker threads spinning for work (``sched_yield``) cost 0.1-0.5 s of CPU;
* ``NUMPY_MADVISE_HUGEPAGE=0``: numpy asks for transparent huge pages for large arrays,
  and the kernel's zeroing of 2 MB pages for the many short-lived 10^6-row temporaries
  cost 0.5-1.5 s of system time per run on a 10^6-row table (4 kB pages: ~0.3 s).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
