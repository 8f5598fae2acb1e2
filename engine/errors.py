"""One error tree for outcall. Adapters translate library errors into these at the boundary."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.dispositions import Disposition


class OutcallError(Exception):
    """Base of every error outcall raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (hint: {self.hint})" if self.hint else base


class ConfigError(OutcallError):
    """Settings, trunk or model configuration is wrong; names the setting and the fix."""


class DialplanError(OutcallError):
    """A dialplan cannot be loaded or validated. Carries file:line:col where known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        col: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.line = line
        self.col = col

    def location(self) -> str:
        parts = [self.path or "<dialplan>"]
        if self.line is not None:
            parts.append(str(self.line))
            parts.append(str(self.col if self.col is not None else 1))
        return ":".join(parts)


class ImportRowError(OutcallError):
    """One row of a call list could not be imported (others still are)."""

    def __init__(self, message: str, *, row: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.row = row


class TelephonyError(OutcallError):
    """A call could not be set up or was lost. `disposition` says how it ended for the campaign."""

    def __init__(
        self,
        message: str,
        *,
        disposition: Disposition,
        sip_code: int | None = None,
        q850_cause: int | None = None,
        reason: str | None = None,
        retryable: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.disposition = disposition
        self.sip_code = sip_code
        self.q850_cause = q850_cause
        self.reason = reason
        self.retryable = retryable


class ModelError(OutcallError):
    """A speech or language model is missing, corrupt, or failed while running."""
