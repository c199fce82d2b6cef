"""The programs (``dials.<name>`` console scripts).

Imported before numpy when a program starts: OpenBLAS's worker threads are not started
(unless the user asks for them). Nothing here uses multithreaded linear algebra, and
idle OpenBLAS threads spinning for work cost 0.1-0.5 s of CPU per run on a shared
machine (tens of thousands of ``sched_yield`` calls).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
