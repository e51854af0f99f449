"""The OpenSearch client and a thin adapter over the few API calls merge-job makes.

Retries: the transport never retries (max_retries=0). `ClusterClient.get` retries safe
GETs with tenacity (bounded attempts and time, exponential backoff with jitter, only on
connection errors and 429/502/503/504, honouring Retry-After). The force-merge POST is
retried only on 429, which means the cluster rejected it without starting anything.
"""

from __future__ import annotations

import os
import time
import urllib.parse
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import opensearchpy
import requests
import structlog
import urllib3
from opensearchpy import OpenSearch, RequestsHttpConnection
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from merge_job.cluster_state import (
    ALL_INDICES_READS,
    INDEX_STATS_PARAMS,
    PLANNING_REQUESTS,
    RUNNING,
    ClusterSnapshot,
    ShardCopy,
    TaskStatus,
    parse_copies,
    parse_merge_tasks,
    parse_snapshot,
    parse_task_status,
    parse_version,
    unreadable_indices,
)
from merge_job.config import Settings
from merge_job.engines import require_supported
from merge_job.errors import (
    AccessDeniedError,
    CredentialsRefusedError,
    IndexClosedError,
    IndexGoneError,
    PermissionDeniedError,
    permission_message,
    refused_action,
    refused_message,
    service_message,
)
from merge_job.gate_reads import (
    NODE_LOAD_REQUEST,
    NodeLoad,
    explain_request,
    parse_explain,
    parse_node_loads,
)

log = structlog.get_logger(__name__)

RETRYABLE_STATUSES = (429, 502, 503, 504)
MAX_ATTEMPTS = 5
MAX_RETRY_SECONDS = 120.0
MAX_RETRY_AFTER_SECONDS = 60.0
LONG_POLL_GRACE_S = 30.0


def retryable_status_error(
    status: int, error: str, retry_after: float | None
) -> opensearchpy.TransportError:
    """429/502/503/504 as the transport raises it: the request may be retried (after
    Retry-After, if given). opensearch-py raises the plain TransportError for these
    statuses too; ours carries Retry-After in `info`."""
    return opensearchpy.TransportError(status, error, {"retry_after": retry_after})


def is_retryable_status(err: BaseException) -> bool:
    return isinstance(err, opensearchpy.TransportError) and err.status_code in RETRYABLE_STATUSES


def retry_after(err: BaseException) -> float | None:
    """The Retry-After of a retryable status, in seconds, when the server sent one."""
    info = getattr(err, "info", None)
    value = info.get("retry_after") if isinstance(info, dict) else None
    return float(value) if isinstance(value, int | float) else None


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from OpenSearch, fall back to backoff


class _ExplicitVerifySession(requests.Session):
    """A session whose own `verify` is final when the job was told how to verify.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's CA bundle, and
    even turn verification back on after `verify=False`. Corporate images often set those
    variables, and then MERGE_CA_BUNDLE (or MERGE_VERIFY_TLS=false) would be silently
    ignored. Precedence: MERGE_CA_BUNDLE / MERGE_VERIFY_TLS, then REQUESTS_CA_BUNDLE, then
    CURL_CA_BUNDLE, then the bundled CAs. Proxies and the rest of the environment still
    apply.
    """

    def merge_environment_settings(  # type: ignore[override]
        self, url: str | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        return super().merge_environment_settings(url, proxies, stream, self.verify, cert)


def ca_source(settings: Settings) -> str:
    """Which certificates verify the server, in the order the client applies them.

    Reads the environment as requests does: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE apply
    when MERGE_CA_BUNDLE is not set."""
    environ = os.environ
    if not settings.verify_tls:
        return "MERGE_VERIFY_TLS=false: the server certificate is not checked"
    if settings.ca_bundle:
        return f"verified against MERGE_CA_BUNDLE={settings.ca_bundle}"
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if environ.get(variable):
            return (
                f"verified against {variable}={environ[variable]} from the environment "
                "(MERGE_CA_BUNDLE takes precedence when set)"
            )
    return "verified against the bundled public CAs (set MERGE_CA_BUNDLE for a private CA)"


class _Connection(RequestsHttpConnection):
    """Raises retryable HTTP statuses itself, so that the error carries Retry-After."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if kwargs.get("ca_certs") or not kwargs.get("verify_certs", True):
            # Same state, one method more (the parent builds its own requests.Session).
            self.session.__class__ = _ExplicitVerifySession

    def perform_request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
        allow_redirects: bool | None = True,
        ignore: Collection[int] = (),
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        status, response_headers, raw = super().perform_request(
            method,
            url,
            params,
            body,
            timeout=timeout,
            allow_redirects=allow_redirects,
            ignore=(*ignore, *RETRYABLE_STATUSES),
            headers=headers,
        )
        if status in RETRYABLE_STATUSES and status not in ignore:
            raise retryable_status_error(
                status, raw[:500], _parse_retry_after(response_headers.get("Retry-After"))
            )
        return status, response_headers, raw


def build_client(settings: Settings, http_auth: Any) -> OpenSearch:
    """An OpenSearch client: requests transport, our auth, TLS settings, no transport retry."""
    if not settings.verify_tls:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        warnings.filterwarnings("ignore", message=".*verify_certs=False.*")
    return OpenSearch(
        hosts=[settings.endpoint],
        http_auth=http_auth,
        connection_class=_Connection,
        verify_certs=settings.verify_tls,
        ca_certs=settings.ca_bundle,
        ssl_show_warn=False,
        timeout=settings.request_timeout.total_seconds(),
        max_retries=0,
        retry_on_timeout=False,
        http_compress=False,
    )


def _is_retryable(err: BaseException) -> bool:
    if isinstance(err, opensearchpy.SSLError):
        return False  # a certificate problem does not fix itself
    return isinstance(err, opensearchpy.ConnectionError) or is_retryable_status(err)


def _wait(state: RetryCallState) -> float:
    backoff = wait_random_exponential(multiplier=0.5, max=30)(state)
    outcome = state.outcome
    err = outcome.exception() if outcome is not None else None
    after = retry_after(err) if err is not None and is_retryable_status(err) else None
    if after is not None:
        return min(after, MAX_RETRY_AFTER_SECONDS)
    return float(backoff)


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    err = outcome.exception() if outcome is not None else None
    log.warning(
        "request_retry",
        attempt=state.attempt_number,
        error=str(err)[:300],
        wait_s=round(state.upcoming_sleep, 2),
    )


def _waited_in_vain(err: BaseException) -> bool:
    """A long poll's wait ran out before the task ended: not a failure, the task still runs.

    Versions answer it differently: 500 (OpenSearch 2.x), 504 (3.x, which would otherwise
    look like a gateway timeout and be retried); each with a `timeout_exception` body.
    """
    if not isinstance(err, opensearchpy.TransportError):
        return False
    return "timeout_exception" in str(err.error) + str(err.info)[:300]


def index_path(index: str, *rest: str) -> str:
    """`/<index>/...` with the index name percent-encoded (one concrete name, never a list)."""
    return "/" + "/".join([urllib.parse.quote(index, safe=""), *rest])


def is_cluster_block(err: opensearchpy.TransportError) -> bool:
    """True for `cluster_block_exception` (an index or cluster block, e.g. read-only)."""
    return "cluster_block_exception" in f"{err.error} {str(err.info)[:500]}"


class ClusterClient:
    """The API calls merge-job makes, each a single request (GETs retried)."""

    def __init__(
        self,
        client: OpenSearch,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        max_retry_seconds: float = MAX_RETRY_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        endpoint: str = "",
        sigv4: bool = False,
    ) -> None:
        self.client = client
        # Only to say what to check when the cluster refuses our credentials.
        self.endpoint = endpoint
        self.sigv4 = sigv4
        self._max_attempts = max_attempts
        self._max_retry_seconds = max_retry_seconds
        self._sleep = sleep

    def _retrying(self, retry_on: Callable[[BaseException], bool]) -> Retrying:
        return Retrying(
            retry=retry_if_exception(retry_on),
            stop=stop_after_attempt(self._max_attempts) | stop_after_delay(self._max_retry_seconds),
            wait=_wait,
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )

    def _request(
        self,
        retry_on: Callable[[BaseException], bool],
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request with bounded retries where `retry_on` allows them.

        Raises PermissionDeniedError (exit 3) on a 403 that names the refused action, else
        CredentialsRefusedError (exit 3) on 401/403, wherever in the run it comes: neither
        gets better by polling; other opensearchpy errors as is.
        """
        try:
            return self._retrying(retry_on)(
                self.client.transport.perform_request, method, path, params=dict(params or {})
            )
        except (opensearchpy.AuthenticationException, opensearchpy.AuthorizationException) as err:
            if is_cluster_block(err):
                # 403 from an index block, not from our credentials: the caller reports
                # the index as failed with the server's reason; the run goes on.
                raise
            said = service_message(err.info)
            refused = refused_action(said) if err.status_code == 403 else None
            if refused is not None:
                # Our identity was accepted; the role lacks one permission, and the server
                # named it. Telling the user to check a password here would send them the
                # wrong way.
                raise PermissionDeniedError(
                    permission_message(self.endpoint, refused, said), refused.action
                ) from None
            raise CredentialsRefusedError(
                refused_message(self.endpoint, err.status_code, said, sigv4=self.sigv4)
            ) from None

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET with bounded retries; raises opensearchpy errors when retries run out."""
        return self._request(_is_retryable, "GET", path, params)

    # -- planning --------------------------------------------------------------

    def planning_responses(self) -> dict[str, Any]:
        """The raw responses of PLANNING_REQUESTS (fixed count, whatever the index count).

        The root comes first, alone: an endpoint that is unreachable, refuses our
        credentials or is not a supported engine (UnsupportedEngineError, exit 3) is then
        told from one request. The rest
        go out side by side: each is one small read, and one after another they cost a
        round trip each before the first merge. An index with `index.blocks.metadata`
        makes the stats and aliases APIs refuse the whole request (403
        cluster_block_exception), so those two wait for the cluster state and, when it
        shows one, name every index but the blocked ones. Errors are raised in catalogue
        order.
        """
        root_path, root_params = PLANNING_REQUESTS["root"]
        root = self.get(root_path, root_params)
        # An engine the job does not support may refuse a later planning request, or
        # answer it in a shape the planner misreads: refused here, before any other request.
        require_supported(parse_version(root), self.endpoint)
        with ThreadPoolExecutor(len(PLANNING_REQUESTS), thread_name_prefix="planning") as pool:

            def send(key: str, prefix: str = "") -> Future[Any]:
                path, params = PLANNING_REQUESTS[key]
                return pool.submit(self.get, prefix + path, params)

            independent = set(PLANNING_REQUESTS) - {"root", *ALL_INDICES_READS}
            sent = {key: send(key) for key in PLANNING_REQUESTS if key in independent}
            if sent["metadata"].exception() is None:
                unreadable = unreadable_indices(sent["metadata"].result() or {})
                prefix = (
                    index_path(",".join(["*", *(f"-{i}" for i in unreadable)]))
                    if unreadable
                    else ""
                )
                for key in ALL_INDICES_READS:
                    sent[key] = send(key, prefix)
            # "metadata" comes before ALL_INDICES_READS in the catalogue: when it failed,
            # its error is raised before the reads that were never sent are looked up.
            return {"root": root} | {
                key: sent[key].result() for key in PLANNING_REQUESTS if key != "root"
            }

    def snapshot(self) -> ClusterSnapshot:
        return parse_snapshot(self.planning_responses())

    def ism_policies(self, patterns: Sequence[str]) -> dict[str, str]:
        """Index -> ISM policy id for the selected indices a policy manages (one request).

        A refused or failed explain (no permission, an engine without the API) is a
        warning: planning then knows of no ISM-managed index and goes on.
        """
        path, params = explain_request(patterns)
        try:
            return parse_explain(self.get(path, params))
        except (opensearchpy.TransportError, AccessDeniedError) as err:
            log.warning(
                "ism_explain_failed",
                error=str(err)[:300],
                detail="no index is skipped as ism_managed in this run",
            )
            return {}

    # -- execution -------------------------------------------------------------

    def health(self) -> str:
        return str(self.get("/_cluster/health").get("status", "unknown"))

    def index_copies(self, index: str) -> tuple[ShardCopy, ...]:
        """Current per-copy segment counts of one index.

        Raises IndexGoneError (deleted) or IndexClosedError.
        """
        try:
            body = self.get(
                index_path(index, "_stats", "segments,docs,store"),
                INDEX_STATS_PARAMS,
            )
        except opensearchpy.NotFoundError:
            raise IndexGoneError(index) from None
        except opensearchpy.TransportError as err:
            if "index_closed_exception" in str(err.error) or "closed" in str(err.info)[:200]:
                raise IndexClosedError(index) from None
            raise
        copies = parse_copies(body).get(index)
        if copies is None:
            # Filtered stats omit an index whose shards have no started copy.
            return ()
        return copies

    def copies_of(self, indices: Sequence[str]) -> dict[str, tuple[ShardCopy, ...]]:
        """Per-copy stats of several indices in one GET (`/<a>,<b>/_stats/...`).

        Each name is percent-encoded on its own; index names cannot hold a comma, a
        wildcard or date math, so the list names exactly these indices. Deleted or closed
        ones, and ones with no started copy, are left out of the answer (never an error).
        """
        path = "/" + ",".join(urllib.parse.quote(i, safe="") for i in indices)
        body = self.get(
            path + "/_stats/segments,docs,store",
            {**INDEX_STATS_PARAMS, "ignore_unavailable": "true"},
        )
        return parse_copies(body)

    def refresh(self, index: str) -> None:
        """POST /<index>/_refresh (idempotent, so retried like a GET).

        A search-idle shard keeps showing its pre-merge segments until a refresh; this
        changes no data, only what searches (and segment stats) see.
        """
        try:
            self._request(_is_retryable, "POST", index_path(index, "_refresh"))
        except opensearchpy.NotFoundError:
            raise IndexGoneError(index) from None

    def forcemerge(
        self, index: str, params: Mapping[str, str], timeout_s: float | None = None
    ) -> Any:
        """POST /<index>/_forcemerge. Retried only on 429 (rejected, nothing started)."""
        query: dict[str, Any] = dict(params)
        if timeout_s is not None:
            query["request_timeout"] = timeout_s  # read by the transport, not sent

        def rejected(err: BaseException) -> bool:
            # A flood-stage block also answers 429, but waiting does not lift it.
            return (
                isinstance(err, opensearchpy.TransportError)
                and err.status_code == 429
                and not is_cluster_block(err)
            )

        return self._request(rejected, "POST", index_path(index, "_forcemerge"), query)

    def task(self, task_id: str, wait_s: float = 0.0) -> TaskStatus | None:
        """The task's status, or None when it is unknown (404: node restarted, not stored).

        With `wait_s` > 0 this is a long poll: the server answers as soon as the task ends,
        or after `wait_s` with "not completed", so a finished merge is seen at once.
        """
        params: dict[str, Any] = {}
        if wait_s > 0:
            params = {
                "wait_for_completion": "true",
                "timeout": f"{max(1, round(wait_s * 1000))}ms",
                # read by the transport, not sent: the wait plus time to answer
                "request_timeout": wait_s + LONG_POLL_GRACE_S,
            }

        def retryable(err: BaseException) -> bool:
            return _is_retryable(err) and not (wait_s > 0 and _waited_in_vain(err))

        path = "/_tasks/" + urllib.parse.quote(task_id, safe=":")
        try:
            body = self._request(retryable, "GET", path, params)
        except opensearchpy.NotFoundError:
            return None
        except opensearchpy.TransportError as err:
            if wait_s > 0 and _waited_in_vain(err):
                return RUNNING  # waited; still running
            raise
        status = parse_task_status(body)
        # A task-based force-merge is authorized when its task runs, not when it is
        # submitted: the POST answers 200 with a task id and the task ends with the 403's
        # security_exception. That is a missing permission, like a refused request.
        refused = refused_action(status.error) if status.error else None
        if refused is not None and status.error is not None:
            raise PermissionDeniedError(
                permission_message(self.endpoint, refused, status.error), refused.action
            )
        return status

    def node_loads(self) -> dict[str, NodeLoad]:
        """Every node's heap, CPU and force-merge pool (the load gate's one read)."""
        path, params = NODE_LOAD_REQUEST
        return parse_node_loads(self.get(path, params))

    def merge_task_expressions(self) -> list[tuple[str, ...]]:
        """The index expressions of every running force-merge task."""
        path, params = PLANNING_REQUESTS["tasks"]
        return [t.index_expressions for t in parse_merge_tasks(self.get(path, params))]
