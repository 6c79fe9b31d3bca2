"""The targets beside the API: the sweeper answers JSON whatever fails, and a function that
cannot serve (no project) stops at start instead of serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import flask
import pytest

from conftest import PROJECT, ROOT
from sms import bootstrap, errors
from sms.carriers.log import LogCarrier
from sms.config import Settings
from sms.devtools.emulator import free_port
from sms.jobs import Jobs


class FirestoreOut:
    """A store whose every call finds Firestore unreachable, as the repository reports it."""

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise errors.BackendUnavailable(
                "Firestore at 127.0.0.1:1 (the emulator) could not be used"
            )

        return call


def sweep(method: str) -> flask.Response:
    settings = Settings(project=PROJECT, request_deadline_seconds=1)
    app = bootstrap.build(settings, store=FirestoreOut(), carrier=LogCarrier())
    jobs = Jobs(app, sweep_deadline_seconds=2)  # a sweep gives up on Firestore after 2 s
    with flask.Flask(__name__).test_request_context("/", method=method):
        return jobs.sweep(flask.request)


def test_the_sweeper_target_answers_a_json_503_while_firestore_is_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer = sweep("POST")

    assert answer.status_code == 503
    assert answer.get_json() == {"message": errors.ServiceUnavailable.message}
    assert answer.headers["Retry-After"] == "1"
    [line] = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text]
    assert (line["severity"], line["outcome"]) == ("WARNING", "unavailable")
    assert "127.0.0.1:1 (the emulator) could not be used" in line["error"]


def test_the_sweeper_target_takes_post_only() -> None:
    answer = sweep("GET")

    assert (answer.status_code, answer.get_json()) == (405, {"message": "Method Not Allowed"})
    assert answer.headers["Allow"] == "POST"


@pytest.mark.parametrize("target", ["sms_api", "sms_sweeper", "sms_events"])
def test_with_no_project_the_function_stops_at_start_and_names_the_setting(target: str) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")
    }
    done = subprocess.run(
        [sys.executable, "-m", "sms.serving", f"--target={target}", "--host=127.0.0.1",
         f"--port={free_port()}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip

    assert done.returncode != 0
    assert "the function cannot start: GOOGLE_CLOUD_PROJECT is not set" in done.stderr
    assert "Traceback" not in done.stderr
