"""The platform's SQS-compatible queue (ElasticMQ), used through boto3.

Labs and learner programs ask for a client here instead of assembling one::

    from opslab.runtime import sqs

    queue = sqs.client()  # reads OPSLAB_SQS_URL (set by .opslab/env and in every grading run)
    queue = sqs.client(sqs.endpoint(settings))  # or from the settings, inside opslab

ElasticMQ checks no signature, so the credentials are fixed dummies; the region and account only
appear in queue ARNs (``arn:aws:sqs:us-east-1:000000000000:<queue>``, used by RedrivePolicy).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opslab.primitives.errors import ConfigError
from opslab.settings import Settings

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"
"""The region boto3 signs for and ElasticMQ writes into queue ARNs."""
ACCOUNT_ID = "000000000000"
"""The account id in queue ARNs and URLs."""
ACCESS_KEY_ID = "opslab"
SECRET_ACCESS_KEY = "opslab"
"""A dummy, like the key id: ElasticMQ verifies no credentials."""
URL_VARIABLE = "OPSLAB_SQS_URL"


def endpoint(settings: Settings) -> str:
    """The SQS API's URL on this platform."""
    return f"http://127.0.0.1:{settings.ports.sqs}"


def queue_arn(name: str) -> str:
    """The ARN ElasticMQ gives queue ``name`` (what a RedrivePolicy's deadLetterTargetArn names)."""
    return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"


def environment(settings: Settings) -> dict[str, str]:
    """What boto3 and the AWS CLI need to reach the platform's queue with no further arguments."""
    return environment_for(endpoint(settings))


def environment_for(url: str) -> dict[str, str]:
    """The same, for the SQS API at ``url`` (a grader passes it on to the programs it runs)."""
    return {
        URL_VARIABLE: url,
        "AWS_ENDPOINT_URL_SQS": url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


def client(
    endpoint_url: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config: Config | None = None,
) -> SQSClient:
    """A boto3 SQS client for the platform's queue.

    ``endpoint_url`` defaults to OPSLAB_SQS_URL in ``environ`` (default: this process's environment).
    ``config`` is a botocore Config (timeouts, retries); botocore's defaults otherwise, whose 60 s
    read timeout leaves room for long polls (WaitTimeSeconds up to 20).
    """
    env = os.environ if environ is None else environ
    url = endpoint_url or env.get(URL_VARIABLE)
    if not url:
        raise ConfigError(
            f"no SQS endpoint: {URL_VARIABLE} is not set",
            fix="run `make up`, then `source .opslab/env` (or pass the endpoint URL)",
        )
    import boto3  # noqa: PLC0415 - a quarter of a second to import; only SQS users pay it

    # A session of its own: boto3's default session is shared and not safe across threads.
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY, region_name=REGION
    )
    return session.client("sqs", endpoint_url=url, config=config)
