"""Errors that reach the user as one clear line, never as a traceback."""

from __future__ import annotations


class R3memError(Exception):
    """A problem the user can act on. `exit_code` follows DESIGN §1: 2 = usage or unusable archive."""

    exit_code = 2


class ArchiveError(R3memError):
    """The archive is missing, unreadable, locked or inconsistent."""


class ManifestDamaged(ArchiveError):
    """manifest.sqlite cannot be read as an r3mem manifest (damaged bytes); restore from an export."""


class ArchiveLocked(ArchiveError):
    """Another process holds the archive's writer lock."""


class NotFound(R3memError):
    """A document or passage id that the archive does not hold."""


class ModelError(R3memError):
    """A model or adapter could not be loaded."""


class BadParameter(R3memError):
    """An argument a caller gave is invalid. The library names it by its Python parameter name
    (`since`, `top_k`); the CLI shows it as the flag the user typed (`--since`, `--top-k`)."""

    def __init__(self, param: str, problem: str):
        self.param, self.problem = param, problem
        super().__init__(f"{param} {problem}")

    def shown_as(self, name: str) -> str:
        """The message with the parameter called `name` (e.g. its command-line flag)."""
        return f"{name} {self.problem}"
