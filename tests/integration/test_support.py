"""The test harness with a Docker engine: the reaper removes stale containers and keeps
a live session's."""

from __future__ import annotations

import contextlib

import pytest

from testing.containers import (
    CONTAINER_LABEL,
    dead_pid,
    owner_labels,
    remove_stale_containers,
    require_docker,
)
from testing.node import opensearch_images


@pytest.mark.integration
def test_reaper_removes_stale_containers_and_keeps_live_sessions_ones() -> None:
    require_docker()
    import docker

    client = docker.from_env()
    image = opensearch_images()[0]
    stale_labels = {**owner_labels(), CONTAINER_LABEL: str(dead_pid())}
    started = []
    try:
        for labels in (stale_labels, owner_labels()):
            started.append(
                client.containers.run(
                    image,
                    entrypoint="sleep",
                    command="120",
                    labels=labels,
                    network_mode="none",
                    detach=True,
                )
            )
        stale, live = started
        removed = remove_stale_containers()
        assert stale.name in removed
        assert live.name not in removed
        names = {c.name for c in client.containers.list(all=True)}
        assert stale.name not in names
        assert live.name in names
    finally:
        for container in started:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
