"""The Pub/Sub side of a local run or a test: the topic events are published to, and a push
subscription that hands them to a served sms_events, as Eventarc does when deployed.

Against the official emulator (PUBSUB_EMULATOR_HOST): the client libraries find it by
themselves. The subscription's retry policy is the deployed one (SPEC 10.7) unless a test
asks for shorter delays.
"""

from __future__ import annotations

import contextlib
import datetime as dt

from google.api_core import exceptions as gexc
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
from google.protobuf import duration_pb2

RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 10, 600
ACK_DEADLINE_SECONDS = 120


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(dt.timedelta(seconds=seconds))
    return duration


def push_events(
    project: str,
    topic: str,
    push_url: str,
    *,
    subscription: str | None = None,
    retry_min_seconds: float = RETRY_MIN_SECONDS,
    retry_max_seconds: float = RETRY_MAX_SECONDS,
) -> str:
    """Create the topic and a push subscription to ``push_url`` (sms_events's URL), unless
    they exist; the subscription's path."""
    publisher = PublisherClient()
    subscriber = SubscriberClient()
    topic_path = publisher.topic_path(project, topic)
    subscription_path: str = subscriber.subscription_path(project, subscription or f"{topic}-push")
    with contextlib.suppress(gexc.AlreadyExists):
        publisher.create_topic(request={"name": topic_path})
    request = {
        "name": subscription_path,
        "topic": topic_path,
        "push_config": {"push_endpoint": push_url},
        "ack_deadline_seconds": ACK_DEADLINE_SECONDS,
        "retry_policy": {
            "minimum_backoff": _duration(retry_min_seconds),
            "maximum_backoff": _duration(retry_max_seconds),
        },
        "message_retention_duration": _duration(3 * 86400),
    }
    try:
        subscriber.create_subscription(request=request)
    except gexc.AlreadyExists:
        pass
    finally:
        subscriber.close()
    return subscription_path
