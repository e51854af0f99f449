"""merge-job: force-merge OpenSearch indices safely, on a schedule."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("merge-job")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
