"""Pub/Sub, through the official google-cloud-pubsub client: the only module that imports it.

A publication is one message on SMS_EVENTS_TOPIC whose data is {"tenant": ..., "events":
[ids]} for one tenant (a request's events are all its tenant's). The client is made on first
use, so a function that publishes nothing pays nothing; it batches nothing (a request waits
for its own publication, and no longer than it is given).
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from typing import Any

from sms import logs

# How long the client keeps trying one publication in the background after the request
# stopped waiting for it (the sweeper announces what is still undelivered after that).
BACKGROUND_SECONDS = 30.0


class PubSubTransport:
    name = "pubsub"

    def __init__(self, project: str, topic: str) -> None:
        self._project = project
        self._topic = topic
        self._client: Any = None
        self._lock = threading.Lock()

    def _publisher(self) -> Any:
        with self._lock:
            if self._client is None:
                # Imported when first used: the client costs import time a cold start need
                # not pay before its first event.
                from google.cloud.pubsub_v1 import PublisherClient, types  # noqa: PLC0415

                self._client = PublisherClient(batch_settings=types.BatchSettings(max_messages=1))
            return self._client

    @property
    def topic_path(self) -> str:
        return f"projects/{self._project}/topics/{self._topic}"

    def publish(self, refs: dict[str, list[str]], timeout: float) -> bool:
        from google.api_core import retry as retries  # noqa: PLC0415

        try:
            client = self._publisher()
            futures = [
                client.publish(
                    self.topic_path,
                    json.dumps({"tenant": tenant, "events": ids}).encode(),
                    retry=retries.Retry(timeout=BACKGROUND_SECONDS),
                    timeout=BACKGROUND_SECONDS,
                    tenant=tenant,
                )
                for tenant, ids in refs.items()
            ]
            done, waiting = concurrent.futures.wait(futures, timeout=timeout)
            failed = [f for f in done if f.exception() is not None]
        except Exception as exc:
            logs.event("WARNING", f"events not published ({self.topic_path}): {exc!r}")
            return False
        if waiting or failed:
            if waiting:
                why = f"{len(waiting)} still waiting after {timeout:g} s"
            else:
                why = repr(failed[0].exception())
            logs.event(
                "WARNING",
                f"events not published yet ({self.topic_path}: {why}): the sweeper will",
            )
            return False
        return True
