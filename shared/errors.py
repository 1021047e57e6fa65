"""The one exception tree of Kansli.

Every error Kansli raises on purpose is a :class:`KansliError`; each class carries the exit code the
CLI ends with when it reaches the top::

    KansliError                      1  something went wrong
    ├── UsageError                   2  the command line was wrong
    │   ├── UnknownRobotError        2    no robot by that name
    │   └── ParameterError           2    a robot parameter is missing or has the wrong type
    ├── ConfigError                  4  settings, schedule files or installation are wrong
    │   └── BrowserNotFoundError     4    no Chromium to drive
    ├── AlreadyRunningError          5  the robot is running elsewhere; this run was refused
    ├── InputError                   1  bad input data: a business error, never retried
    │   └── TemplateFieldError       1    a document template needs a field the data lacks
    ├── TargetError                  1  the target system misbehaved: retried with backoff
    │   ├── TargetUnavailableError   1    it did not answer, or answered 5xx
    │   ├── SessionExpiredError      1    the login is gone; log in again and retry
    │   ├── UncertainSubmitError     1    a submit had no visible outcome: reconciled, then retried
    │   └── LoginError               1    the credentials were refused: never retried
    ├── FormMismatchError            1  the robot no longer fits the target's form: never retried
    ├── SystemicFailureError         1  items in a row failed alike (target down): the run stopped early
    ├── RunCancelledError          130  Ctrl-C or SIGTERM ended the run
    └── AuditError                   1  the audit trail failed verification or could not be written

Messages must never contain secrets or personal identity numbers: they reach logs, reports and the
console. Build them from field names, row numbers and masked values.
"""

from __future__ import annotations


class KansliError(Exception):
    """Base of every error Kansli raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(KansliError):
    """The command line was wrong: an unknown option, a bad value."""

    exit_code = 2


class UnknownRobotError(UsageError):
    """No robot by that name was discovered."""


class ParameterError(UsageError):
    """A robot parameter is missing or does not validate."""


class ConfigError(KansliError):
    """Settings, schedule files or the installation are wrong."""

    exit_code = 4


class BrowserNotFoundError(ConfigError):
    """No Chromium executable could be found or started."""


class AlreadyRunningError(KansliError):
    """Another run of the same robot holds its lock."""

    exit_code = 5


class InputError(KansliError):
    """Bad input data. A business error: retrying cannot help."""


class TemplateFieldError(InputError):
    """A document template references fields the data does not provide."""


class TargetError(KansliError):
    """The target system misbehaved. Retried with backoff."""


class TargetUnavailableError(TargetError):
    """The target did not answer in time, or answered with a server error."""


class SessionExpiredError(TargetError):
    """The target's session ended; log in again, then retry."""


class UncertainSubmitError(TargetError):
    """A submit was sent but its outcome is unknown (no new page, no success sign in time).

    It may have been stored: the item machinery asks the robot's reconcile step before the retry,
    so :attr:`needs_reconcile` is set; without a reconcile step a retry may submit twice.
    """

    needs_reconcile = True


class LoginError(TargetError):
    """The target refused the credentials. Never retried: it would only lock the account."""


class SystemicFailureError(KansliError):
    """Several items in a row failed with the same application error: the run stops early.

    The target is down or the robot no longer fits it; going on would spend every remaining item's
    retries on the same failure. The items not yet taken stay pending for the next run.
    """

class FormMismatchError(KansliError):
    """The robot does not fit the page: a label the form lacks (or has twice), a field it cannot
    fill (disabled, read-only, hidden) or a value of the wrong kind for the field.

    Not bad data and not a misbehaving target: the robot (or the page) changed, and every item would
    fail the same way, so it is never retried. ``label``, ``path`` (the page's URL path) and
    ``closest`` (labels the page does offer) say what did not fit.
    """

    def __init__(self, message: str, *, label: str = "", path: str = "",
                 closest: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.label = label
        self.path = path
        self.closest = closest


class RunCancelledError(KansliError):
    """The run was interrupted by Ctrl-C or SIGTERM."""

    exit_code = 130


class AuditError(KansliError):
    """The audit trail could not be written or did not verify."""


#: Errors that a retry may cure. Everything else fails the item at once.
RETRYABLE: tuple[type[BaseException], ...] = (TargetError,)


def is_retryable(error: BaseException, *, can_reconcile: bool = True) -> bool:
    """True when retrying the failed step may help (a target error, not a login refusal).

    An error whose step may have had its effect (``needs_reconcile``, an uncertain submit) is retried
    only when the robot can look for that effect first (``can_reconcile``): else a retry might do it
    twice.
    """
    if getattr(error, "needs_reconcile", False) and not can_reconcile:
        return False
    return isinstance(error, RETRYABLE) and not isinstance(error, LoginError)
