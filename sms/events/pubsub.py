"""Pub/Sub, through the official google-cloud-pubsub client: the only module that imports it.

A publication is one message on SMS_EVENTS_TOPIC whose data is {"tenant": ..., "events":
[ids]} for one tenant (a request's events are all its tenant's). It is one Publish call,
made at once and waited for at most the time given: no batching (a request waits for its
own publication anyway) and no retries behind the request's back (what does not go now is
announced by the sweeper). The client is made on first use, so a function that publishes
nothing pays nothing for it; with PUBSUB_EMULATOR_HOST set, it talks to the emulator.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from sms import logs


class PubSubTransport:
    name = "pubsub"

    def __init__(self, project: str, topic: str) -> None:
        self.topic_path = f"projects/{project}/topics/{topic}"
        self._client: Any = None
        self._lock = threading.Lock()

    def _publisher(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _client()
            return self._client

    def publish(self, refs: dict[str, list[str]], timeout: float) -> bool:
        """Announce each tenant's events in one message; whether all were taken in time."""
        try:
            client = self._publisher()
            for tenant, ids in refs.items():
                data = json.dumps({"tenant": tenant, "events": ids}).encode()
                client.publish(
                    topic=self.topic_path,
                    messages=[{"data": data, "attributes": {"tenant": tenant}}],
                    retry=None,
                    timeout=timeout,
                )
        except Exception as exc:  # a transport that fails loses nothing (sms.events.outbox)
            logs.event(
                "WARNING",
                f"events not published ({self.topic_path}: {type(exc).__name__}: {exc}): "
                "the sweeper will announce them",
            )
            return False
        return True


def _client() -> Any:
    """The Publish API's client: the emulator's where PUBSUB_EMULATOR_HOST names one."""
    # Imported when first used: a cold start need not pay for the client before an event.
    from google.pubsub_v1 import PublisherClient  # noqa: PLC0415

    emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not emulator:
        return PublisherClient()
    import grpc  # noqa: PLC0415
    from google.pubsub_v1.services.publisher.transports import (  # noqa: PLC0415
        PublisherGrpcTransport,
    )

    return PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator))
    )
