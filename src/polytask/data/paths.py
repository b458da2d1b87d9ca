"""Where polytask looks for data sets, and the error raised when one is absent."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from polytask.errors import PolytaskError

__all__ = ["DATA_ENV_VAR", "DatasetNotFoundError", "default_data_dir", "resolve_data_dir"]

#: Environment variable that overrides the default data directory.
DATA_ENV_VAR = "POLYTASK_DATA"


def default_data_dir() -> Path:
    """Return the data directory: ``$POLYTASK_DATA`` if set, else ``~/.cache/polytask/data``."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "polytask" / "data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """Return ``data_dir`` as a :class:`~pathlib.Path`, or :func:`default_data_dir` if None."""
    return default_data_dir() if data_dir is None else Path(data_dir).expanduser()


class DatasetNotFoundError(PolytaskError, FileNotFoundError):
    """A data set's raw file is missing.

    The message names the file that was expected, the directory it was looked for in,
    and the command that obtains it (``polytask data get NAME``).
    """

    def __init__(
        self,
        dataset: str,
        expected: str | os.PathLike[str],
        fetch_name: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        searched: list[Path] | None = None,
    ) -> None:
        self.dataset = dataset
        self.expected = Path(expected)
        self.fetch_name = fetch_name
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.searched = [Path(p) for p in searched] if searched else [self.expected.parent]
        where = " or ".join(str(p) for p in self.searched)
        msg = f"{dataset}: expected file {self.expected.name!r} in {where}, but it is not there."
        if fetch_name is not None:
            msg += f" Obtain it with: {self.command}"
        self.message = msg
        super().__init__(msg)
        self.filename = str(self.expected)

    @property
    def command(self) -> str | None:
        """The shell command that downloads the missing data into the right directory."""
        if self.fetch_name is None:
            return None
        cmd = f"polytask data get {self.fetch_name}"
        if self.data_dir is not None and _differs(self.data_dir, default_data_dir()):
            cmd = f"{DATA_ENV_VAR}={shlex.quote(str(self.data_dir))} {cmd}"
        return cmd

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # keep the error picklable (multiprocessing data loaders)
        args = (self.dataset, self.expected, self.fetch_name, self.data_dir, self.searched)
        return (type(self), args)


def _differs(a: Path, b: Path) -> bool:
    try:
        return a.resolve() != b.resolve()
    except OSError:
        return a != b
