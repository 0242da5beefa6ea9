"""boto3 clients for the ``nrfprov aws`` commands, and the translation of SDK failures into ours.

boto3 is an optional extra (``pip install 'nrfprov[aws]'``) and is imported only here, when a command
needs AWS. Clients use botocore's ``standard`` retry mode, which retries throttling and transient
errors with exponential backoff [botocore docs, "Retries"]; what still fails after the attempts
becomes a typed error naming the cause and the fix.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from nrfprov.aws.handler import error_code, quiet_sdk_loggers
from nrfprov.errors import AwsError, AwsSetupError, AwsUnreachable, NrfprovError

EXTRA_HINT = "install the AWS extra: pip install 'nrfprov[aws]'"
CREDENTIALS_HINT = (
    "set AWS_PROFILE to a profile from `aws configure`, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(and AWS_SESSION_TOKEN for temporary credentials)"
)
REGION_HINT = "pass --region (e.g. --region eu-west-1) or set AWS_REGION / AWS_DEFAULT_REGION"
#: Attempts per call, the first included (botocore standard mode default: 3).
MAX_ATTEMPTS = 5

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "SlowDown",
})
AUTH_CODES = frozenset({
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
    "SignatureDoesNotMatch", "InvalidSignatureException", "AccessDenied", "AccessDeniedException",
    "UnauthorizedException",
})


def import_boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise AwsSetupError("the nrfprov aws commands need boto3, which is not installed", hint=EXTRA_HINT) from exc
    return boto3


@dataclass
class Clients:
    """The AWS clients the commands use.

    ``iot_templates`` is an IoT client of its own for the provisioning-template calls, so a test can
    stub exactly those (moto implements no provisioning templates) while every other call goes to
    a real server.
    """

    region: str
    cloudformation: Any
    iot: Any
    iot_templates: Any
    lambda_: Any
    logs: Any

    @classmethod
    def create(cls, *, region: str | None = None, profile: str | None = None,
               endpoint_url: str | None = None, max_attempts: int = MAX_ATTEMPTS) -> Clients:
        boto3 = import_boto3()
        import botocore.exceptions
        from botocore.config import Config

        quiet_sdk_loggers()
        # botocore reads AWS_DEFAULT_REGION only; AWS_REGION is what the other AWS SDKs and tools use.
        region = region or os.environ.get("AWS_REGION") or None
        try:
            session = boto3.Session(profile_name=profile, region_name=region)
        except botocore.exceptions.ProfileNotFound as exc:
            raise AwsSetupError(f"AWS profile {profile!r} does not exist", hint=CREDENTIALS_HINT) from exc
        if not session.region_name:
            raise AwsSetupError("no AWS region is configured", hint=REGION_HINT)
        if session.get_credentials() is None:
            raise AwsSetupError("no AWS credentials found", hint=CREDENTIALS_HINT)
        cfg = Config(retries={"mode": "standard", "total_max_attempts": max_attempts}, connect_timeout=10,
                     read_timeout=60)
        kw: dict[str, Any] = {"config": cfg}
        if endpoint_url:
            kw["endpoint_url"] = endpoint_url

        def make(service: str) -> Any:
            return session.client(service, **kw)

        return cls(session.region_name, make("cloudformation"), make("iot"), make("iot"), make("lambda"),
                   make("logs"))


P = ParamSpec("P")
R = TypeVar("R")


def translate(exc: BaseException, *, max_attempts: int = MAX_ATTEMPTS) -> NrfprovError | None:
    """Our error for an SDK exception, or None if ``exc`` is not one."""
    try:
        import botocore.exceptions as bx
    except ImportError:
        return None
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return AwsSetupError(f"no usable AWS credentials: {exc}", hint=CREDENTIALS_HINT)
    if isinstance(exc, bx.NoRegionError):
        return AwsSetupError("no AWS region is configured", hint=REGION_HINT)
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
                        bx.ConnectionClosedError)):
        return AwsUnreachable(f"AWS did not answer: {exc}",
                              hint="check the network, --region and --endpoint-url; the command is safe to repeat")
    if isinstance(exc, bx.ClientError):
        code = error_code(exc)
        op = getattr(exc, "operation_name", "") or "a call"
        message = str(exc.response.get("Error", {}).get("Message", "")) or code
        if code in THROTTLING_CODES:
            retries = exc.response.get("ResponseMetadata", {}).get("RetryAttempts")
            attempts = retries + 1 if isinstance(retries, int) else max_attempts
            return AwsError(f"AWS kept throttling {op} ({code}) after {attempts} attempts",
                            code=code, operation=op,
                            hint="wait a minute and run the same command again: it picks up where it stopped")
        if code in AUTH_CODES:
            return AwsError(f"AWS refused {op}: {code}: {message}", code=code, operation=op,
                            hint="check that the credentials are valid and allowed to manage IoT, IAM, Lambda, "
                            "CloudWatch Logs and CloudFormation (docs/aws.md, 'Permissions')")
        return AwsError(f"AWS refused {op}: {code}: {message}", code=code, operation=op)
    if isinstance(exc, bx.WaiterError):
        return AwsError(f"gave up waiting: {exc}", operation="wait",
                        hint="run `nrfprov aws status` to see where it stands")
    if isinstance(exc, bx.BotoCoreError):
        return AwsError(f"AWS SDK error: {exc}")
    return None


def aws_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: SDK exceptions leave a public function as our typed errors, chained."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except NrfprovError:
            raise
        except Exception as exc:
            ours = translate(exc)
            if ours is None:
                raise
            raise ours from exc

    return wrapper
