"""A stand-in for `opensearchpy.OpenSearch` in unit tests of the client adapter and the CLI.

`ClusterClient` only calls `client.transport.perform_request(method, path, params)`, so
the fake is a transport that records each call and answers it with `answer(method, path)`:
an exception is raised, anything else is the response body. Integration tests never use
it: they run against a real node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Answer = Callable[[str, str], Any]  # (method, path) -> body, or an exception to raise


class FakeTransport:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str]] = []

    def perform_request(self, method: str, path: str, params: Any = None, **_: Any) -> Any:
        self.calls.append((method, path))
        outcome = self.answer(method, path)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class FakeOpenSearch:
    """What `ClusterClient` needs of an OpenSearch client: a transport."""

    def __init__(self, answer: Answer) -> None:
        self.transport = FakeTransport(answer)

    @classmethod
    def scripted(cls, outcomes: list[Any]) -> FakeOpenSearch:
        """Answers the requests, whatever they are, with `outcomes` in order."""
        return cls(lambda method, path: outcomes.pop(0))
