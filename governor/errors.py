"""The governor's own exceptions. Each message names what went wrong and how to fix it.

Callers (the CLI, the service) map them to exit codes and status; causes are always chained.
"""

from __future__ import annotations

# Error text can echo server responses; bound it so a huge HTML page or a token never floods a log.
MAX_DETAIL = 300


def bounded(text: object, limit: int = MAX_DETAIL) -> str:
    """`text` (or an exception, or anything with a str()) on one line, cut to `limit` characters."""
    one_line = " ".join(str(text).split())
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."


class GovernorError(Exception):
    """Base of every error the governor raises on purpose."""


class BudgetError(GovernorError):
    """A budgets file is unreadable, not YAML, or has an invalid field.

    Carries the file, the 1-based line and the dotted field path so the message points at the fix.
    """

    def __init__(self, path: str, line: int | None, field: str, problem: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")


class UsageError(GovernorError):
    """A flag or argument is unusable as given (a URL that is not http(s), for one)."""


class SourceError(GovernorError):
    """A metrics source answered, but not in a way the governor can use (bad status, bad body)."""


class SourceUnreachable(SourceError):
    """A metrics source could not be reached at all (refused, DNS, TLS, timeout)."""


class InventoryTooLarge(SourceError):
    """The inventory would exceed a configured bound; the message names the flag to raise."""


class HistoryError(GovernorError):
    """The local history database cannot be opened or written."""


class AlertPushError(GovernorError):
    """Alertmanager refused or could not be reached for an alert push."""
