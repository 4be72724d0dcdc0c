"""User-facing errors. Each renders as one line that names the file and, where known, the key."""

from __future__ import annotations

from pathlib import Path


class TownletError(Exception):
    """An error caused by user input (a file, a flag, a command). The CLI prints it as one line."""

    exit_code = 1


class UsageError(TownletError):
    """Bad arguments or input files: exit status 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file failed to load or validate."""

    def __init__(self, file: str | Path, key: str, message: str, line: int | None = None) -> None:
        self.file = str(file)
        self.key = key
        self.message = message
        self.line = line
        where = self.file if line is None else f"{self.file}:{line}"
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
