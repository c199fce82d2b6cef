"""The single exception type of the reader."""

from __future__ import annotations

import os


class ReflectionFileError(Exception):
    """A reflection file could not be read; the message is one line naming the file."""

    def __init__(self, path: str | os.PathLike | None, problem: str) -> None:
        name = os.path.basename(os.fspath(path)) if path is not None else "<input>"
        problem = " ".join(str(problem).split())  # always exactly one line
        super().__init__(f"{name}: {problem}")
        self.path = None if path is None else os.fspath(path)
        self.problem = problem

    def __reduce__(self):  # picklable across processes despite the 2-argument init
        return (type(self), (self.path, self.problem))
