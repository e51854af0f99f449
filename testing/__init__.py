"""Support code shared by the tests, the demo and the benchmarks.

Importing any of it first sets testcontainers' defaults for machines without a registry:
testcontainers reads its configuration when it is imported, so they must come before it.
"""

import os

# Testcontainers reads its configuration at import time, so these defaults go first.
# Ryuk (the reaper container) cannot be pulled without a registry; containers are removed
# by the fixtures instead (on teardown, and stale ones from a killed run at session start:
# testing/containers.py).
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
# Inside a container-like machine testcontainers would dial the bridge gateway; tests
# only ever talk to loopback, so ports are mapped and reached on 127.0.0.1.
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
# How long a node may take to turn green (tries, one a second). OpenSearch 3.x starts in
# ~30 s on an idle 2-core machine, but minutes when the machine is busy; 120 s is too tight.
os.environ.setdefault("TC_MAX_TRIES", "600")
