"""Amazon SES v2 `SendEmail` (raw MIME) through boto3."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from chatmesh.services.mail.message import OutgoingEmail, to_mime_bytes
from chatmesh.services.mail.providers import PermanentSendError, TransientSendError
from chatmesh.services.mail.settings import MailSettings

if TYPE_CHECKING:
    from types_boto3_sesv2 import SESV2Client

# SES error codes worth retrying; everything else in a 4xx is permanent.
_SES_TRANSIENT = frozenset(
    {"TooManyRequestsException", "LimitExceededException", "ThrottlingException"}
)


class SesProvider:
    """SES v2 `SendEmail` with the raw MIME message (so our headers go out as is),
    through boto3 in a thread. Retries are ours (the queue's), not botocore's."""

    name = "ses"

    def __init__(self, settings: MailSettings) -> None:
        kwargs: dict[str, Any] = {
            "region_name": settings.ses_region,
            "config": BotoConfig(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=15,
            ),
        }
        if settings.ses_endpoint_url:
            kwargs["endpoint_url"] = settings.ses_endpoint_url
        if settings.ses_access_key_id:
            kwargs["aws_access_key_id"] = settings.ses_access_key_id
            kwargs["aws_secret_access_key"] = settings.ses_secret_access_key
        self._client: SESV2Client = boto3.session.Session().client("sesv2", **kwargs)

    async def send(self, email: OutgoingEmail) -> str:
        sender, recipient, raw = to_mime_bytes(email)
        try:
            response = await asyncio.to_thread(
                self._client.send_email,
                FromEmailAddress=sender,
                Destination={"ToAddresses": [recipient]},
                Content={"Raw": {"Data": raw}},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            detail = f"ses {status} {code}"
            if code in _SES_TRANSIENT or status >= 500:
                raise TransientSendError(detail) from None
            raise PermanentSendError(detail) from None
        except (BotoCoreError, OSError) as exc:
            raise TransientSendError(f"ses: {type(exc).__name__}") from None
        return response["MessageId"]

    async def close(self) -> None:
        self._client.close()
