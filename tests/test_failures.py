"""How Firestore's failures are told apart: a lost race, an outage that may pass, or a bug."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from sms import errors
from sms.repository.database import classified


def raised_by(exc: BaseException, commit: bool = True) -> BaseException:
    """What leaves the classifier when ``exc`` is raised inside it."""
    try:
        with classified(commit=commit):
            raise exc
    except BaseException as out:
        return out
    raise AssertionError("nothing was raised")


def wrapped(
    message: str, *, cause: BaseException | None = None, context: BaseException | None = None
) -> ValueError:
    """A ValueError as the transaction API raises it, on top of another failure."""
    error = ValueError(message)
    error.__cause__ = cause
    error.__context__ = context
    return error


@pytest.mark.parametrize(
    "exc",
    [
        gexc.ServiceUnavailable("down"),
        gexc.DeadlineExceeded("slow"),
        gexc.Aborted("contention"),
        gexc.InternalServerError("oops"),
        gexc.ResourceExhausted("quota"),
        wrapped("Failed to commit transaction in 1 attempts.", cause=gexc.Aborted("x")),
        wrapped("cannot be rolled back", context=gexc.DeadlineExceeded("begin timed out")),
    ],
)
def test_failures_that_may_pass_become_backend_unavailable(exc: BaseException) -> None:
    assert isinstance(raised_by(exc), errors.BackendUnavailable)


@pytest.mark.parametrize(
    "exc",
    [
        gexc.AlreadyExists("mark exists"),
        gexc.FailedPrecondition("version moved"),
        gexc.NotFound("gone"),
        wrapped("cannot be rolled back", context=gexc.AlreadyExists("mark exists")),
    ],
)
def test_precondition_failures_of_a_commit_are_lost_races(exc: BaseException) -> None:
    assert isinstance(raised_by(exc, commit=True), errors.LostRace)


def test_precondition_failures_outside_a_commit_are_not_races() -> None:
    exc = gexc.FailedPrecondition("the query needs an index")
    assert raised_by(exc, commit=False) is exc


@pytest.mark.parametrize(
    "exc",
    [
        gexc.InvalidArgument("value too large"),
        gexc.PermissionDenied("no role"),
        ValueError("a bug"),
        wrapped("cannot be rolled back", context=gexc.PermissionDenied("no role")),
    ],
)
def test_other_failures_go_up_unchanged(exc: BaseException) -> None:
    assert raised_by(exc) is exc
