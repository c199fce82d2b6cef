"""Engines that run batches of files: this process, local processes, a Dask cluster.

Each engine maps :func:`~dials_refl_stats.pipeline.execute.process_batch` over batches
and yields the results as they complete; the driver merges them. Because ``merge`` is
associative and commutative, the order does not change the result.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import json
import logging
import os
import pickle
import time
import uuid
from typing import Any, Callable, Iterable

from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.execute import (
    MergeStack,
    RunPartial,
    process_batch,
    pruned,
    serial_engine,
)
from dials_refl_stats.pipeline.interrupts import (
    ignore_interrupts,
    interrupts_ignored,
    stop_if_terminated,
)
from dials_refl_stats.reflections import ReflectionLoadError

Engine = Callable[..., Iterable[RunPartial]]


def make_engine(mp: Any) -> Engine:
    """The engine the ``mp`` phil scope asks for."""
    if mp.method == "dask":
        return functools.partial(
            dask_engine,
            address=mp.dask.scheduler_address,
            scheduler_file=mp.dask.scheduler_file,
            n_workers=mp.nproc,
            timeout=mp.dask.timeout,
        )
    if mp.nproc > 1:
        return functools.partial(process_engine, n_workers=mp.nproc)
    return serial_engine


#: Batches submitted per local worker at a time (results are held until merged).
IN_FLIGHT = 2


def start_method() -> str | None:
    """``fork`` (workers start at once, sharing the driver's imports) where the platform
    has it and this process runs no other thread: a thread holding a lock at the fork
    (a Dask client's event loop, say) would leave it held for ever in the worker. Else
    ``forkserver`` (or the platform's default): workers forked from a clean process."""
    import multiprocessing
    import threading

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else None


def process_engine(batches, statistic, plan, reader, skip_errors, hints=None, *, n_workers: int):
    """Batches on ``n_workers`` local processes (:func:`start_method`); each task gets
    the driver's hint (``hints()``, :class:`~.execute.Hints`) when handed out.

    A worker merges its tasks' partials itself and sends them once they cover
    :data:`FLUSH_FILES` files, and at the end (each worker takes one of the run's
    last tasks, :func:`_held_partial`): the driver receives each task's file records,
    and few partials (exact medians and plot samples bounded once per worker, not once
    per task)."""
    import concurrent.futures
    import multiprocessing

    if len(batches) <= 1:
        yield from serial_engine(batches, statistic, plan, reader, skip_errors, hints)
        return
    context = multiprocessing.get_context(start_method())
    # the statistic and plan reach each worker once, when it starts (a task carries only
    # its files: with 10^5 experiments the geometry alone is ~4 MB)
    task = functools.partial(_started_batch, reader=reader, skip_errors=skip_errors)
    waiting = iter(batches)
    running: set = set()
    pool = concurrent.futures.ProcessPoolExecutor(
        n_workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(Packed(statistic, plan), context.Barrier(n_workers)),
    )

    number: dict = {}  # future -> batch number (batches are handed out in order)
    numbers = itertools.count()

    def hint() -> Any:
        return hints() if hints is not None else None

    def submit() -> None:  # a few batches per worker in flight, not all of them
        for batch in itertools.islice(waiting, IN_FLIGHT * n_workers - len(running)):
            future = pool.submit(task, batch, hint())
            number[future] = next(numbers)
            running.add(future)

    finished = False
    try:
        submit()
        held_asked = False
        while running:
            done, _ = concurrent.futures.wait(
                running, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in sorted(done, key=number.get):  # dropped here once merged
                running.discard(future)
                if future.exception() is not None:
                    # every earlier batch was handed out: once they are done, the
                    # failure of the first file in order stops the run, as serially
                    concurrent.futures.wait(running)
                    failed = [f for f in (future, *running) if f.exception() is not None]
                    _raise_first(min(failed, key=number.get))
                del number[future]  # the result is dropped once merged: no reference
                yield future.result()
                submit()  # after the merge: with its hint
            if not running and not held_asked:  # every batch done: what the workers hold
                held_asked = True
                for future in [pool.submit(_held_partial, hint()) for _ in range(n_workers)]:
                    number[future] = next(numbers)
                    running.add(future)
        finished = True
    finally:
        # on a failure (or the driver's own error, or an interruption): nothing more
        # starts and the workers are stopped (Python 3.11's executor was seen to hang in
        # a graceful shutdown after cancelled batches); its shutdown forgets them
        processes = list((getattr(pool, "_processes", None) or {}).values())
        call_queue = getattr(pool, "_call_queue", None)
        result_queue = getattr(pool, "_result_queue", None)
        pool.shutdown(wait=finished, cancel_futures=True)
        if not finished:
            _stop_workers(processes, call_queue, result_queue)


def _raise_first(future: Any) -> None:
    """The failed batch's error; a worker process that ended (killed, say) as one line."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        future.result()
    except BrokenProcessPool:
        raise WorkerError(
            "a worker process ended during the run (killed, or out of memory?): "
            "no result is written; run again"
        ) from None


def _stop_workers(processes: list, call_queue: Any, result_queue: Any) -> None:
    """Stop a process pool's workers at once, and let the executor's threads end, which
    Python 3.11's would not (its exit then waited for them for ever, seen on Ctrl-C):
    batches still in the pipe to the workers keep its feeder thread from finishing, and
    a worker stopped while sending a result leaves its manager thread waiting for the
    rest, which comes once no process holds the pipe's writing end any more.

    ``SIGKILL``: a worker cannot block or handle it (with ``SIGTERM`` one worker of a
    failed run was seen to live on, waiting for the results pipe's lock that the other,
    stopped mid-send, held: the run then waited for ever; ~1 run in 2000 of
    ``fuzz_many_files.py`` on two busy cores). Workers hold nothing to clean up."""
    if call_queue is not None:
        call_queue.cancel_join_thread()
    for process in processes:
        process.kill()
    for process in processes:
        process.join()
    writer = getattr(result_queue, "_writer", None)
    if writer is not None:
        with contextlib.suppress(OSError):
            writer.close()


def dask_engine(
    batches,
    statistic,
    plan,
    reader,
    skip_errors,
    hints=None,
    *,
    address: str | None,
    scheduler_file: str | None,
    n_workers: int,
    timeout: float = 30,
):
    """Batches on a Dask cluster; partials merged in a tree on the workers (``hints``
    unused: the driver holds no merged partial to draw them from).

    With neither a scheduler address nor a scheduler file, a local cluster of
    ``n_workers`` worker processes is started for the run. ``timeout`` seconds bound the
    wait for the scheduler file, for the connection, and for a worker while the
    scheduler has none (:func:`_result_while_workers`).
    """
    try:
        import dask.bag
        from distributed import Client, LocalCluster
    except ImportError:
        raise Sorry("mp.method=dask needs dask and distributed (pip install dask distributed)")
    # distributed logs to stderr (e.g. stale worker directories purged, at INFO; a lost
    # scheduler, at ERROR on its client's logger, which has a level of its own): workflows
    # keep stderr empty, and failures reach the user as one Sorry line
    quiet = [logging.getLogger(n) for n in ("distributed", "distributed.client", "asyncio")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    failed = True
    try:
        cluster = None
        where = address or scheduler_file or "a local cluster"
        try:
            if not address and scheduler_file:
                address = _scheduler_file_address(scheduler_file, timeout)
            if address:
                client = Client(address, timeout=f"{timeout}s")
            else:
                # the workers keep to the driver's log level, and leave Ctrl-C to it
                with _environment(DASK_LOGGING__DISTRIBUTED="error"), interrupts_ignored():
                    cluster = LocalCluster(
                        n_workers=n_workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        host="127.0.0.1",
                        silence_logs=logging.CRITICAL,  # a failed task is the driver's Sorry
                    )
                client = Client(cluster)
                address = cluster.scheduler_address
        except (OSError, TimeoutError, ValueError) as error:
            raise Sorry(f"cannot connect to the Dask scheduler ({where}): {error}") from None
        try:
            packed = Packed(statistic, plan)
            task = functools.partial(_packed_batch, packed, reader=reader, skip_errors=skip_errors)
            merge = functools.partial(_packed_merge, packed)
            bag = dask.bag.from_sequence(batches, npartitions=len(batches) or 1)
            total = bag.map(task).fold(merge, merge, initial=RunPartial(None))
            yield _result_while_workers(client, client.compute(total), address, timeout)
            failed = False
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    finally:
        # a failed run leaves futures with exceptions nobody retrieves: asyncio reports
        # them when they are collected (at exit, after the Sorry line), so collect them
        # now, and keep its logger quiet after a failure (the process is ending)
        gc.collect()
        for logger, level in zip(quiet, levels):
            if not (failed and logger.name == "asyncio"):
                logger.setLevel(level)


#: Reads of a scheduler file that is not (yet) a scheduler's JSON: a scheduler starting
#: with the run may be writing it (``distributed`` itself reads it 10 times).
SCHEDULER_FILE_READS = 10

#: Seconds between checks of a scheduler file's existence, and of a run's workers.
DASK_POLL = 0.5


def _scheduler_file_address(path: str, timeout: float) -> str:
    """The scheduler's address in a scheduler file (``dask scheduler --scheduler-file``,
    dask-jobqueue, dask-mpi). A ``Sorry`` if the file has not appeared within ``timeout``
    seconds (``distributed`` would wait for ever), cannot be read, or holds no address
    (``distributed`` fails with a TypeError)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            raise Sorry(f"Dask scheduler file {path} does not exist (waited {timeout:g} s)")
        time.sleep(min(DASK_POLL, timeout))
    for _ in range(SCHEDULER_FILE_READS):
        try:
            with open(path, encoding="utf-8") as stream:
                content = json.load(stream)
        except OSError as error:
            raise Sorry(
                f"cannot read the Dask scheduler file {path}: {error.strerror or error}"
            ) from None
        except ValueError:  # not JSON (nor text), or not yet written out
            content = None
        address = content.get("address") if isinstance(content, dict) else None
        if isinstance(address, str) and address:
            return address
        time.sleep(0.05)
    raise Sorry(
        f"{path} is not a Dask scheduler file (JSON with the scheduler's address, as "
        "'dask scheduler --scheduler-file' writes)"
    )


def _result_while_workers(client: Any, future: Any, address: str, timeout: float) -> RunPartial:
    """The result of ``future``, or a ``Sorry`` once the scheduler at ``address`` has had no
    worker for ``timeout`` seconds (all died, or none ever came) while the run is
    unfinished: Dask would wait for ever. Also a ``Sorry`` if the scheduler is lost (the
    client cancels the run once it cannot reconnect). The run is cancelled on failure."""
    from distributed import CancelledError, wait

    try:
        from distributed import KilledWorker
    except ImportError:  # older distributed
        from distributed.scheduler import KilledWorker

    finished = False
    without_workers_since: float | None = None
    try:
        while True:
            try:
                wait(future, timeout=DASK_POLL)
            except TimeoutError:
                pass
            except CancelledError:
                raise Sorry(f"lost the Dask scheduler at {address} (run cancelled)") from None
            else:
                try:
                    result = future.result()  # a task's error is raised as it is
                except KilledWorker as error:
                    raise Sorry(
                        f"Dask gave up on a task after the workers running it died "
                        f"({error}); the workers' logs tell why (a memory limit?)"
                    ) from None
                finished = True
                return result
            stop_if_terminated()  # a SIGTERM that Dask's own code swallowed
            try:
                has_workers = bool(client.nthreads())
            except OSError as error:
                raise Sorry(f"lost the Dask scheduler at {address}: {error}") from None
            now = time.monotonic()
            if has_workers:
                without_workers_since = None
            elif without_workers_since is None:
                without_workers_since = now
            elif now - without_workers_since >= timeout:
                raise Sorry(
                    f"no Dask workers for {timeout:g} s at {address}; start workers for "
                    "this scheduler, or raise mp.dask.timeout"
                )
    finally:
        if not finished and client.status == "running":
            with contextlib.suppress(OSError, TimeoutError):
                future.cancel()


@contextlib.contextmanager
def _environment(**values: str):
    """Environment variables set while the block runs (worker processes inherit them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class WorkerError(ReflectionLoadError):
    """A Dask worker cannot read a task (a module missing there). A ``Sorry`` that
    pickles under its own name (libtbx's hides its module, so Dask could not send it
    back as a ``Sorry``)."""

    skippable = False


class Packed:
    """A run's statistic and selection plan, pickled once on the driver and read inside
    the tasks. A worker that cannot read them (this package or DIALS missing there, for
    the experiments' geometry) then fails the task with a :class:`WorkerError`, which
    ends the run with one line; read by Dask itself, the same failure kills the worker
    while it receives the task, and Dask hands the task to the next worker for ever."""

    def __init__(self, statistic: Any, plan: Any) -> None:
        self.data = pickle.dumps((statistic, plan), protocol=pickle.HIGHEST_PROTOCOL)
        self.token = uuid.uuid4().hex

    def load(self) -> tuple[Any, Any]:
        """The statistic and the plan (read once per worker process and run)."""
        loaded = _LOADED[0]  # one read: worker threads may replace it meanwhile
        if loaded is not None and loaded[0] == self.token:
            return loaded[1]
        try:
            value = pickle.loads(self.data)
        except Exception as error:  # noqa: BLE001 - any failure to read: one line
            raise WorkerError(
                f"a Dask worker cannot read the task ({type(error).__name__}: {error}); "
                "install this package, and DIALS for the experiments' geometry, where "
                "the workers run"
            ) from None
        _LOADED[0] = (self.token, value)
        return value


#: The last run's (token, (statistic, plan)) read in this worker process.
_LOADED: list = [None]


def _packed_batch(
    packed: Packed, batch, hint=None, *, reader: str, skip_errors: bool
) -> RunPartial:
    statistic, plan = packed.load()
    return process_batch(batch, statistic, plan, reader, skip_errors, hint)


#: The run's packed statistic and plan in a local worker process (:func:`_start_worker`).
_STARTED: list = [None]


def _start_worker(packed: Packed, barrier: Any) -> None:
    """Initializer of a local worker process: interrupts left to the main process, and
    the run's statistic and plan kept for its tasks, with the barrier of its last."""
    ignore_interrupts()
    _STARTED[0] = packed
    _BARRIER[0] = barrier
    _HELD[0] = None


#: A local worker sends the partials it merged once they cover this many files (its
#: memory stays bounded: a per-still statistic holds ~100 bytes a still), and at the
#: end of the run.
FLUSH_FILES = 1 << 14


class Held:
    """What a local worker merged of its tasks' partials and not sent yet."""

    def __init__(self, statistic: Any):
        self.statistic = statistic
        self.stack = MergeStack(statistic, fan_in=2)  # a few partials held at once
        self.n_files = 0

    def add(self, result: RunPartial) -> None:
        if result.partial is not None:
            self.stack.add(result.partial)
        self.n_files += len(result.records)

    def partial(self, hint: Any) -> Any:
        """The merged partial, less what ``hint`` prunes."""
        return pruned(self.statistic, self.stack.result(), hint)


#: The local worker's barrier of the run's last tasks (one per worker), and its
#: :class:`Held` partials.
_BARRIER: list = [None]
_HELD: list = [None]


def _started_batch(batch, hint=None, *, reader: str, skip_errors: bool) -> RunPartial:
    """A batch's file records; its partial merged into what this worker holds, which
    goes with the records once it covers :data:`FLUSH_FILES` files."""
    packed = _STARTED[0]
    result = _packed_batch(packed, batch, hint, reader=reader, skip_errors=skip_errors)
    if _HELD[0] is None:
        _HELD[0] = Held(packed.load()[0])
    _HELD[0].add(result)
    partial = _take_held(hint) if _HELD[0].n_files >= FLUSH_FILES else None
    return RunPartial(partial, result.records)


def _take_held(hint: Any) -> Any:
    """What this worker holds (merged, less what ``hint`` prunes), now given up."""
    held, _HELD[0] = _HELD[0], None
    return held.partial(hint) if held is not None else None


#: Seconds a worker waits for the others at the end of a run (they are all idle then).
HELD_TIMEOUT = 600


def _held_partial(hint=None) -> RunPartial:
    """One of the run's last tasks (one per worker, handed out once every batch is
    done): what this worker holds. The barrier keeps any worker from taking two."""
    import threading

    try:
        _BARRIER[0].wait(timeout=HELD_TIMEOUT)
    except threading.BrokenBarrierError:
        raise WorkerError("the local workers did not all end the run; run again") from None
    return RunPartial(_take_held(hint), [])


def _packed_merge(packed: Packed, first: RunPartial, second: RunPartial) -> RunPartial:
    from dials_refl_stats.pipeline.execute import merge_runs

    return merge_runs(packed.load()[0], first, second)
