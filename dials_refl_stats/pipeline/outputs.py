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
from dials_refl_stats.pipeline.interrupts import stop_if_terminated

#: Loggers that ``dials.util.log.config`` attaches handlers to.
DIALS_LOGGERS = ("dials", "dxtbx", "py.warnings", "xfel")  # xfel: DIALS 3.13+


def check_targets(targets: Mapping[str, str | None], inputs: Sequence[str]) -> None:
    """``Sorry`` unless every named output can be written (before any work is done)."""
    seen: dict[str, str] = {}
    protected = _inputs_named_like(targets, inputs)
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
        if os.path.exists(real) and not os.path.isfile(real):
            raise Sorry(
                f"output.{name}={path}: not a regular file (a device, pipe or socket would be "
                f"replaced: outputs are renamed into place); output.{name}=None writes none"
            )
        if not os.path.isdir(directory):
            raise Sorry(f"output.{name}={path}: directory {directory} does not exist")
        if len(os.fsencode(os.path.basename(real))) > _name_max(directory):
            raise Sorry(f"output.{name}={path}: file name too long")
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


def _inputs_named_like(targets: Mapping[str, str | None], inputs: Sequence[str]) -> set[str]:
    """Real paths of the inputs with a target's file name (only they can be the same file
    as a target). 10^6 inputs are searched as one string first: most runs have none."""
    names = {os.path.basename(p) for p in targets.values() if p}
    if not names:
        return set()
    joined = "\n" + "\n".join(inputs) + "\n"
    if not any(f"{os.sep}{n}\n" in joined or f"\n{n}\n" in joined for n in names):
        if joined.count("\n") == len(inputs) + 1:  # no input holds a newline
            return set()
    endings = tuple(os.sep + n for n in names)
    return {os.path.realpath(p) for p in inputs if p.endswith(endings) or p in names}


def _name_max(directory: str) -> int:
    """The longest file name ``directory``'s file system takes (bytes)."""
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


#: Characters of a target's suffix kept on its temporary (longer ones are left off).
TEMPORARY_SUFFIX_MAX = 16


class OutputFiles:
    """The outputs of one run: temporaries now, renamed into place by :meth:`commit`."""

    def __init__(self, targets: Mapping[str, str | None], inputs: Sequence[str] = ()):
        check_targets(targets, inputs)
        self.targets = {k: v for k, v in targets.items() if v}
        self._temporaries: dict[str, str] = {}
        self._handed: set[str] = set()

    def prepare(self) -> None:
        """Make every target's temporary now, before any work: a directory where no file
        can be made (``/proc``, a full or read-only file system) is a ``Sorry`` here."""
        for name in self.targets:
            self._make(name)

    def temporary(self, name: str) -> str:
        """The temporary path of output ``name`` (beside its target), to be written: only
        the outputs asked for here are renamed into place."""
        self._handed.add(name)
        return self._make(name)

    def _make(self, name: str) -> str:
        """Output ``name``'s temporary file (its target's suffix, when short; named after
        the target within the file system's name length), made once."""
        if name in self._temporaries:
            return self._temporaries[name]
        target = self.targets[name]
        directory = os.path.dirname(os.path.abspath(target))
        base = os.path.basename(target)
        suffix = os.path.splitext(base)[1]
        suffix = suffix if len(suffix) <= TEMPORARY_SUFFIX_MAX else ""
        room = _name_max(directory) - len(os.fsencode(suffix)) - 10  # ".", ".", 8 random
        stem = os.fsencode(base)[: max(room, 0)].decode(errors="ignore")
        try:
            fd, path = tempfile.mkstemp(prefix=f".{stem}.", suffix=suffix, dir=directory)
        except OSError as error:
            raise Sorry(
                f"output.{name}={target}: cannot make a file in {directory} "
                f"({error.strerror or error.__class__.__name__})"
            ) from None
        os.close(fd)
        self._temporaries[name] = path
        return path

    def commit(self) -> None:
        """Rename every temporary into place, all or none: the targets are checked
        again first (one may have changed during the run); should a rename still fail,
        the outputs already renamed are removed and a ``Sorry`` names the target."""
        stop_if_terminated()
        written = [(n, p) for n, p in self._temporaries.items() if n in self._handed]
        for name, _ in written:
            target = self.targets[name]
            if os.path.exists(target) and not os.path.isfile(target):
                raise Sorry(f"output.{name}={target}: is no longer a regular file")
        renamed: list[str] = []
        for name, path in written:
            target = self.targets[name]
            try:
                os.chmod(path, 0o644)
                os.replace(path, target)
            except OSError as error:
                for done in renamed:
                    with contextlib.suppress(OSError):
                        os.unlink(done)
                raise Sorry(
                    f"output.{name}={target}: cannot be written "
                    f"({error.strerror or error.__class__.__name__}); no output was kept"
                ) from None
            renamed.append(target)
            del self._temporaries[name]
        self.discard()  # temporaries made but never written

    def discard(self) -> None:
        """Remove every temporary (after a failure)."""
        for path in self._temporaries.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._temporaries.clear()


@contextlib.contextmanager
def run_outputs(outputs: OutputFiles, verbosity: int) -> Iterator[OutputFiles]:
    """The run's ``outputs`` (targets checked when they were made): temporaries made,
    the log to its temporary, every output committed on success only."""
    before = {n: set(logging.getLogger(n).handlers) for n in DIALS_LOGGERS}
    try:
        outputs.prepare()
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
