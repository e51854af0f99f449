"""`merge-job run` for a person at a terminal.

The plan table first, then one line per running merge redrawn in place (n/N, index, size,
segments before -> target, elapsed, progress from the index's merge statistics), warnings
and errors printed above it, and at the end a summary table, totals and the exit code in
words. `--quiet` leaves the summary (and warnings and errors).

It is a logging handler: everything it shows comes from the events the job logs anyway
(`merge_started`, `merge_finished`, `plan_skip`, `merge_left_running`, `run_summary`, ...)
plus the plan, so the job itself does not know whether a person is watching. The only
requests it adds are read-only `GET /<index>/_stats/merge,segments`: the progress of a running
merge while it runs, and the size of a merged index once at the end (docs/iam.md).
Used only for `run` with LOG_FORMAT=auto on a terminal; elsewhere the JSON lines stay as
they are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from structlog.types import EventDict, WrappedLogger

from merge_job import units
from merge_job.config import Settings
from merge_job.decisions import Plan
from merge_job.errors import ExitCode
from merge_job.progress import MergeStats, Progress, StatsReader, progress_between
from merge_job.report import plan_table

# How often a running merge's statistics are read: often enough to move, rarely enough to
# cost the cluster nothing noticeable (one small GET per running merge).
POLL_INTERVAL_S = 1.0
# run_summary reasons the closing line names: why a run stopped before its work was done.
_STOP_REASONS = ("deadline", "sigterm", "health_gate", "credentials_refused", "permission_denied")
# Events the display itself shows; they are not repeated as log lines.
_SHOWN_BY_THE_VIEW = frozenset(
    {
        "config",
        "cluster",
        "plan_merge",
        "plan_skip",
        "merge_started",
        "merge_finished",
        "merge_left_running",
        "run_summary",
    }
)


def merge_target(settings: Settings, plan: Plan | None = None, index: str = "") -> str:
    """What a merge aims at: its rule's target with a rules file, else the run's."""
    rule = next((i.rule for i in plan.merges if i.index == index), "") if plan else ""
    settings = settings.for_rule(rule)
    if settings.only_expunge_deletes:
        return "expunge deletes"
    return f"{settings.max_num_segments} seg"


# --- what the view knows ---------------------------------------------------------------


@dataclass
class RunningMerge:
    number: int
    index: str
    size: int | None
    segments_before: int | None
    started: float
    first_stats: MergeStats | None = None
    progress: Progress | None = None


@dataclass
class Finished:
    number: int | None
    index: str
    result: str  # merged, failed, timed_out, gone, skipped
    detail: str = ""
    segments_before: int | None = None
    segments_after: int | None = None
    size_before: int | None = None
    size_after: int | None = None
    duration_s: float | None = None


@dataclass
class _State:
    plan: Plan | None = None
    started: int = 0
    running: dict[str, RunningMerge] = field(default_factory=dict)
    finished: dict[str, Finished] = field(default_factory=dict)
    left_running: dict[str, str | None] = field(default_factory=dict)
    summary: dict[str, Any] | None = None


def _max_segments(per_copy: Any) -> int | None:
    if isinstance(per_copy, Mapping) and per_copy:
        return max(int(v) for v in per_copy.values())
    return None


class RunView:
    """The terminal display of one `merge-job run`; fed by log events and the plan."""

    def __init__(
        self,
        settings: Settings,
        stream: TextIO,
        quiet: bool = False,
        stats_reader: Callable[[], StatsReader] | None = None,
        clock: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ) -> None:
        self.settings = settings
        self.quiet = quiet
        self.console = Console(file=stream, highlight=False, soft_wrap=False)
        self.clock = clock
        self.started = clock() if started is None else started
        self.level = logging.getLevelName(settings.log_level.upper())
        self._make_reader = stats_reader
        self._reader: StatsReader | None = None
        self._reader_failed = False
        self._state = _State()
        self._lock = threading.RLock()
        self._live: Live | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._closed = False

    # -- the target: "x of N" -------------------------------------------------------

    @property
    def target(self) -> str:
        return merge_target(self.settings)

    # -- inputs ---------------------------------------------------------------------

    def show_plan(self, plan: Plan) -> None:
        """Called with the plan before any merge starts: print the plan table."""
        with self._lock:
            self._state.plan = plan
        if not self.quiet:
            # As `merge-job plan` prints it: long lines are the terminal's to wrap.
            self.console.print(Text(plan_table(plan).rstrip("\n")), soft_wrap=True)
        if plan.merges and not self.quiet:
            self._start_live()

    def observe(self, event: Mapping[str, Any]) -> None:
        """Update the display from one log event (our own or a library's)."""
        name = event.get("event")
        with self._lock:
            state = self._state
            if name == "merge_started":
                index = str(event.get("index"))
                state.started += 1
                state.running[index] = RunningMerge(
                    number=state.started,
                    index=index,
                    size=event.get("store_bytes"),
                    segments_before=_max_segments(event.get("segments_before")),
                    started=self.clock(),
                )
            elif name == "merge_finished":
                index = str(event.get("index"))
                running = state.running.pop(index, None)
                finished = Finished(
                    number=running.number if running else None,
                    index=index,
                    result=str(event.get("status")),
                    detail=str(event.get("detail") or ""),
                    segments_before=_max_segments(event.get("segments_before")),
                    segments_after=_max_segments(event.get("segments_after")),
                    # merge_started's size: merge_finished's is read after the merge.
                    size_before=running.size if running else None,
                    duration_s=event.get("duration_s"),
                )
                state.finished[index] = finished
                if not self.quiet:
                    self.console.print(self._finished_line(finished))
            elif name == "plan_skip" and event.get("stage") == "execute":
                index = str(event.get("index"))
                running = state.running.pop(index, None)
                state.finished[index] = Finished(
                    number=running.number if running else None,
                    index=index,
                    result="skipped",
                    detail=f"{event.get('reason')}: {event.get('detail') or ''}".rstrip(": "),
                )
            elif name == "merge_left_running":
                index = str(event.get("index"))
                state.running.pop(index, None)
                state.left_running[index] = event.get("task_id")
            elif name == "run_summary":
                state.summary = dict(event)
        if self._live is not None:
            self._live.refresh()

    def wants_line(self, event: Mapping[str, Any], levelno: int) -> bool:
        """Whether a log event is printed as a line above the display."""
        if levelno >= logging.WARNING:
            return levelno >= self.level and event.get("event") != "merge_finished"
        if self.quiet:
            return False
        # LOG_LEVEL=debug: the details too, except what the display already shows.
        return self.level <= logging.DEBUG and event.get("event") not in _SHOWN_BY_THE_VIEW

    def print_line(self, text: str) -> None:
        self.console.print(Text(text))

    # -- the live display -----------------------------------------------------------

    def _start_live(self) -> None:
        if self._live is not None:
            return
        self._live = Live(
            get_renderable=self._render_live,
            console=self.console,
            refresh_per_second=4,
            transient=True,  # the summary replaces it
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()
        if self._make_reader is not None:
            self._poller = threading.Thread(target=self._poll, name="progress", daemon=True)
            self._poller.start()

    def _total(self) -> int:
        plan = self._state.plan
        return len(plan.merges) if plan is not None else 0

    def _render_live(self) -> RenderableType:
        with self._lock:
            running = sorted(self._state.running.values(), key=lambda r: r.number)
            finished = list(self._state.finished.values())
        total = self._total()
        done = sum(1 for f in finished if f.result == "merged")
        failed = sum(1 for f in finished if f.result in ("failed", "timed_out"))
        head = Text(
            f"merging: {done} merged, {failed} failed, {len(running)} running, "
            f"{max(total - len(finished) - len(running), 0)} waiting of {total}"
            f" · {units.duration(self.clock() - self.started)}",
            style="bold",
        )
        grid = Table.grid(padding=(0, 2))
        for _ in range(6):
            grid.add_column(no_wrap=True)
        grid.add_column()
        for merge in running:
            bar: RenderableType = Text("")
            note = "reading merge stats"
            if merge.progress is not None:
                progress = merge.progress
                bar = ProgressBar(total=1.0, completed=progress.fraction, width=12)
                note = (
                    f"{progress.fraction:.0%} merged ({units.size(progress.done_bytes)} of "
                    f"{units.size(progress.total_bytes)})"
                )
                if progress.running:
                    note += f", {progress.running} rewriting {units.size(progress.running_bytes)}"
            elif self._reader_failed:
                note = "no merge stats"
            grid.add_row(
                f"{merge.number}/{total}",
                escape(merge.index),
                units.size(merge.size),
                f"{merge.segments_before if merge.segments_before is not None else '?'} → "
                f"{merge_target(self.settings, self._state.plan, merge.index)}",
                units.duration(self.clock() - merge.started),
                bar,
                note,
            )
        return Group(head, grid)

    def _poll(self) -> None:
        while not self._stop.wait(POLL_INTERVAL_S):
            with self._lock:
                running = list(self._state.running.values())
            for merge in running:
                stats = self._read(merge.index)
                if stats is None:
                    continue
                with self._lock:
                    if merge.first_stats is None:
                        merge.first_stats = stats
                    total = merge.size or stats.segment_bytes
                    merge.progress = progress_between(merge.first_stats, stats, total)

    def _read(self, index: str) -> MergeStats | None:
        """One stats read; any failure only turns progress off (the run is unaffected)."""
        if self._reader_failed or self._make_reader is None:
            return None
        try:
            if self._reader is None:
                self._reader = self._make_reader()
            return self._reader(index)
        except Exception:  # decoration only: never let progress break or slow the run
            self._reader_failed = True
            return None

    # -- the end --------------------------------------------------------------------

    def _finished_line(self, finished: Finished) -> Text:
        total = self._total()
        number = f"{finished.number}/{total} " if finished.number else ""
        if finished.result == "merged":
            return Text(
                f"✔ {number}{finished.index} ({units.size(finished.size_before)}) merged: "
                f"{finished.segments_before} → {finished.segments_after} segments in "
                f"{units.duration(finished.duration_s)}"
            )
        return Text(f"✘ {number}{finished.index} {finished.result}: {finished.detail}")

    def finish(self, exit_code: int) -> None:
        """Stop the live display and print the summary and what the exit code means."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._live is not None:
            self._live.stop()
        if self._poller is not None:
            self._poller.join(timeout=self.settings.request_timeout.total_seconds() + 1)
        with self._lock:
            state = self._state
            summary = state.summary
            for finished in state.finished.values():
                if finished.result == "merged" and finished.size_after is None:
                    stats = self._read(finished.index)
                    finished.size_after = stats.segment_bytes if stats is not None else None
            if state.plan is not None and summary is not None:
                if state.plan.merges:
                    self.console.print(self._summary_table(state.plan, state))
                else:
                    self.console.print(Text("merge-job run: nothing to merge"))
                self.console.print(self._totals(state.plan, state, summary))
        words = ExitCode(exit_code).meaning if exit_code in set(ExitCode) else "unknown exit code"
        reason = (summary or {}).get("reason")
        if reason in _STOP_REASONS:
            words += f" (reason: {reason})"
        self.console.print(Text(f"exit {exit_code}: {words}", style="bold"))

    def _summary_table(self, plan: Plan, state: _State) -> Table:
        table = Table(title="merge-job run", title_justify="left", show_edge=False)
        for column in ("index", "result", "segments", "size", "time"):
            table.add_column(column, no_wrap=column != "result")
        for item in plan.merges:
            done = state.finished.get(item.index)
            if done is not None:
                result = done.result.replace("_", " ")
                if done.detail and done.result != "merged":
                    result = f"{result}: {done.detail}"
                segments = (
                    f"{done.segments_before} → {done.segments_after}"
                    if done.segments_before is not None and done.segments_after is not None
                    else ""
                )
                size = (
                    f"{units.size(done.size_before)} → {units.size(done.size_after)}"
                    if done.size_before is not None
                    else ""
                )
                seconds = units.duration(done.duration_s) if done.duration_s is not None else ""
            elif item.index in state.left_running:
                task = state.left_running[item.index]
                result = f"still running{f' (task {task})' if task else ''}"
                segments, size, seconds = f"{item.max_segments_per_copy} → ?", "", ""
            else:
                # Not reached: the deadline, a signal or a failed gate came first.
                result = "not started"
                segments = f"{item.max_segments_per_copy} → ?"
                size, seconds = units.size(item.store_bytes), ""
            table.add_row(escape(item.index), escape(result), segments, size, seconds)
        return table

    def _totals(self, plan: Plan, state: _State, summary: Mapping[str, Any]) -> Text:
        reasons: Counter[str] = Counter(
            item.reason.value for item in plan.skips if item.reason is not None
        )
        reasons.update(
            f.detail.split(":", 1)[0] for f in state.finished.values() if f.result == "skipped"
        )
        skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
        reclaimed = sum(
            f.size_before - f.size_after
            for f in state.finished.values()
            if f.result == "merged" and f.size_before is not None and f.size_after is not None
        )
        lines = [
            f"merged {summary.get('merged', 0)}, failed {summary.get('failed', 0)}, "
            f"skipped {summary.get('skipped', 0)}{f' ({skipped})' if skipped else ''}, "
            f"not started {len(summary.get('not_started') or ())}, "
            f"still running {len(summary.get('still_running') or {})}",
            f"reclaimed {units.size(reclaimed)}"
            f" (merged indices' size before - after), "
            f"wall time {units.duration(self.clock() - self.started)}",
        ]
        for rule, counts in (summary.get("rules") or {}).items():  # with a rules file
            lines.append(f"rule {rule}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return Text("\n".join(lines))


class TerminalHandler(logging.Handler):
    """Routes log records to the view: every event updates it, some print a line."""

    def __init__(self, view: RunView) -> None:
        super().__init__()
        self.view = view

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if line:
                self.view.print_line(line)
        except Exception:  # logging must never raise into the job
            self.handleError(record)


def view_processor(view: RunView) -> Callable[[WrappedLogger, str, EventDict], str]:
    """The last processor of the terminal formatter: feeds the view and returns the line
    to print above the display ("" for none)."""

    def render(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        view.observe(event_dict)
        levelno = logging.getLevelName(str(event_dict.get("level", "info")).upper())
        if not isinstance(levelno, int) or not view.wants_line(event_dict, levelno):
            return ""
        return _line(event_dict)

    return render


def _line(event: Mapping[str, Any]) -> str:
    """One readable line: level, event, index, then the message-like fields, then the rest."""
    rest = {
        k: v
        for k, v in event.items()
        if k not in {"timestamp", "level", "event", "logger", "index", "detail", "error"}
        and v not in (None, "", [], {})
    }
    parts = [str(event.get("level", "")).upper(), str(event.get("event", ""))]
    if event.get("index"):
        parts.append(str(event["index"]))
    for key in ("error", "detail"):
        if event.get(key):
            parts.append(f"— {event[key]}")
    parts.extend(f"{k}={v}" for k, v in rest.items())
    return " ".join(parts)
