"""The exception hierarchy of hepatrial (one module, as scikit-learn and lifelines have).

Every error hepatrial raises on purpose derives from :class:`HepatrialError`; the command line
maps each class to an exit code in one place (:mod:`hepatrial.cli._errors`). Errors about
what a user gave (a value, a file, a protocol) are also ``ValueError``; lookups that find
nothing are also ``LookupError``. Messages name the record or row, the field and the reason.
This module imports nothing of ours.

::

    HepatrialError
    ├── InputError (ValueError)                 bad input: a value, a row, a file
    │   ├── ScoreInputError                      a score's input (hepatrial.scores)
    │   ├── AnalyteError                         analyte registry (unit, range)
    │   │   ├── UnknownAnalyteError (KeyError)
    │   │   ├── UnitError
    │   │   └── RangeError
    │   ├── ProtocolError                        protocol TOML / import map
    │   ├── AnalysisInputError                   data handed to hepatrial.analysis
    │   ├── FileFormatError                      a CSV the CLI reads (score, grade, import)
    │   └── StoreError                           a write refused by the store's rules
    │       ├── ChangeReasonRequired             a change without a reason
    │       ├── RecordLocked                     a write to a locked visit/casebook/trial
    │       └── ConcurrentEditError              a save based on an out-of-date version
    ├── NotFoundError (LookupError)             no such protocol, participant, batch, user
    ├── PermissionDenied                        the user's role or site does not allow it
    ├── AuthenticationFailed                    wrong password (e-signature), locked account
    ├── ImportRefused                           an import refused as a whole (rejects listed)
    ├── AuditIntegrityError                     audit trail problems (verify)
    │   └── AuditTrailImmutable (RuntimeError)   an attempt to change a history/ledger row
    └── ConfigurationError (RuntimeError)       the store cannot be configured or opened
"""

from __future__ import annotations

__all__ = [
    "AnalysisInputError",
    "AnalyteError",
    "AuditIntegrityError",
    "AuditTrailImmutable",
    "AuthenticationFailed",
    "ChangeReasonRequired",
    "ConcurrentEditError",
    "ConfigurationError",
    "FileFormatError",
    "HepatrialError",
    "ImportRefused",
    "InputError",
    "NotFoundError",
    "PermissionDenied",
    "ProtocolError",
    "RangeError",
    "RecordLocked",
    "ScoreInputError",
    "StoreError",
    "UnitError",
    "UnknownAnalyteError",
]


class HepatrialError(Exception):
    """Base of every error hepatrial raises on purpose."""


class InputError(HepatrialError, ValueError):
    """Bad input: the message names the record or row, the field and the reason."""


class ScoreInputError(InputError):
    """A score input is impossible (≤ 0, infinite, not a number, unknown category)."""


class AnalyteError(InputError):
    """A lab value refused by the analyte registry."""


class UnknownAnalyteError(AnalyteError, KeyError):
    """The analyte code is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnitError(AnalyteError):
    """The unit is not one the analyte can be given in."""


class RangeError(AnalyteError):
    """The value is outside the analyte's hard (physiological) limits."""


class ProtocolError(InputError):
    """A protocol or import map is invalid (the message lists each key path and reason)."""


class AnalysisInputError(InputError):
    """Data handed to an analysis function cannot be analysed as asked."""


class FileFormatError(InputError):
    """A file read by a command is malformed (header, encoding, a row)."""


class StoreError(InputError):
    """A write was refused by the store's rules: the message names the record, field, value."""


class ChangeReasonRequired(StoreError):
    """A change or deletion of saved data was attempted without a reason for change."""


class RecordLocked(StoreError):
    """A write to a locked visit, casebook or trial (unlock with a reason first)."""


class ConcurrentEditError(StoreError):
    """A save based on an out-of-date version of the record (someone else changed it)."""


class NotFoundError(HepatrialError, LookupError):
    """No such protocol, participant, visit, batch, user or file."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PermissionDenied(HepatrialError):
    """The acting user's role or sites do not allow the action."""


class AuthenticationFailed(HepatrialError):
    """The password was wrong (e.g. re-entered to sign) or the account is locked/inactive."""


class ImportRefused(HepatrialError):
    """An import was refused as a whole; nothing was written (the rejects are listed)."""


class AuditIntegrityError(HepatrialError):
    """The audit trail is not intact."""


class AuditTrailImmutable(AuditIntegrityError, RuntimeError):
    """An attempt to update or delete a history (audit trail) or ledger row."""


class ConfigurationError(HepatrialError, RuntimeError):
    """The store cannot be configured or opened as asked."""
