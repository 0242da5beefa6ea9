"""Failures of the ``nrfprov aws`` commands, typed into the project's exit codes (nrfprov.errors).

2 usage/config: boto3 missing, no credentials, no region, a directory that already holds a claim
identity. 4 network: the AWS endpoint cannot be reached. 5 cloud rejected: AWS refused a call, kept
throttling after the retries, or the stack is in a state no deploy can change.
"""

from __future__ import annotations

from nrfprov.errors import ConfigError, NrfprovError, TransportError


class AwsSetupError(ConfigError):
    """Local setup is missing something before AWS is even asked (exit 2)."""


class AwsUnreachable(TransportError):
    """The AWS endpoint did not answer (exit 4)."""


class AwsError(NrfprovError):
    """AWS refused or could not do what the command needs (exit 5). ``code`` is AWS's error code."""

    exit_code = 5

    def __init__(self, message: str, *, code: str = "", operation: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.operation = operation


class StackStateError(AwsError):
    """The stack is in a state this command cannot work from (failed, or busy)."""

    def __init__(self, stack: str, status: str, reason: str, *, hint: str) -> None:
        super().__init__(f"stack {stack} is {status}" + (f": {reason}" if reason else ""), hint=hint)
        self.stack = stack
        self.status = status
        self.reason = reason


class ConflictError(AwsError):
    """A resource the stack would create already exists outside it."""
