"""Output files of a run: checked before any work, written to temporaries, renamed together.

A run either leaves every output it names in place (log, JSON, plot, report) or none:
:class:`OutputFiles` checks the targets first (directory exists and is writable, not a
directory, no target twice, no input overwritten), hands out temporary paths beside
them, and renames them all into place in :meth:`OutputFiles.commit`; anything else
removes the temporaries. The DIALS log goes to a temporary file too, and the handlers
``dials.util.log.config`` adds are removed at the end of the run, so that programs
called in-process one after another each log only their own lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from typing import Iterator, Mapping, Sequence

from dials_refl_stats.output import plot_format
from dials_refl_stats.pipeline.errors import Sorry

#: Loggers that ``dials.util.log.config`` attaches handlers to.
DIALS_LOGGERS = ("dials", "dxtbx", "py.warnings")


def check_targets(targets: Mapping[str, str | None], inputs: Sequence[str]) -> None:
    """``Sorry`` unless every named output can be written (before any work is done)."""
    seen: dict[str, str] = {}
    names = {os.path.basename(p) for p in targets.values() if p}
    endings = tuple(os.sep + n for n in names)  # an input of a target's name: same file?
    protected = {os.path.realpath(p) for p in inputs if p.endswith(endings) or p in names}
    for name, path in targets.items():
        if not path:
            continue
        real = os.path.realpath(path)
        directory = os.path.dirname(real) or "."
        if real in seen:
            raise Sorry(f"output.{name}={path}: the same file as output.{seen[real]}")
        if real in protected:
            raise Sorry(f"output.{name}={path}: would overwrite an input file")
        if os.path.isdir(real):
            raise Sorry(f"output.{name}={path}: is a directory")
        if not os.path.isdir(directory):
            raise Sorry(f"output.{name}={path}: directory {directory} does not exist")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise Sorry(f"output.{name}={path}: directory {directory} is not writable")
        if os.path.exists(real) and not os.access(real, os.W_OK):
            raise Sorry(f"output.{name}={path}: file exists and is not writable")
        if name == "plot":
            try:
                plot_format(path)
            except ValueError as error:
                raise Sorry(f"output.plot={path}: {str(error).split(': ', 1)[-1]}") from None
        seen[real] = name


class OutputFiles:
    """The outputs of one run: temporaries now, renamed into place by :meth:`commit`."""

    def __init__(self, targets: Mapping[str, str | None], inputs: Sequence[str] = ()):
        check_targets(targets, inputs)
        self.targets = {k: v for k, v in targets.items() if v}
        self._temporaries: dict[str, str] = {}

    def temporary(self, name: str) -> str:
        """A temporary path beside output ``name``'s target (same suffix)."""
        target = self.targets[name]
        directory = os.path.dirname(os.path.abspath(target))
        base = os.path.basename(target)
        suffix = os.path.splitext(base)[1]
        fd, path = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix, dir=directory)
        os.close(fd)
        self._temporaries[name] = path
        return path

    def commit(self) -> None:
        """Rename every written temporary into place."""
        for name, path in self._temporaries.items():
            os.chmod(path, 0o644)
            os.replace(path, self.targets[name])
        self._temporaries.clear()

    def discard(self) -> None:
        """Remove every temporary (after a failure)."""
        for path in self._temporaries.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._temporaries.clear()


@contextlib.contextmanager
def run_outputs(
    targets: Mapping[str, str | None], inputs: Sequence[str], verbosity: int
) -> Iterator[OutputFiles]:
    """Check ``targets``, log to a temporary, commit all outputs on success only."""
    outputs = OutputFiles(targets, inputs)
    before = {n: set(logging.getLogger(n).handlers) for n in DIALS_LOGGERS}
    try:
        from dials.util import log

        logfile = outputs.temporary("log") if "log" in outputs.targets else None
        log.config(verbosity=verbosity, logfile=logfile)
        yield outputs
        _remove_handlers(before)
        outputs.commit()
    finally:
        _remove_handlers(before)
        outputs.discard()


def _remove_handlers(before: Mapping[str, set]) -> None:
    for name, kept in before.items():
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if handler not in kept:
                logger.removeHandler(handler)
                handler.close()
