"""Every repository path the docs, comments and configuration name exists: files move
(tests by tier, scripts under scripts/e2e), and a stale path sends a reader nowhere."""

from __future__ import annotations

import re
import subprocess

from testing.paths import REPO

PATH_RE = re.compile(
    r"(?<![\w/.-])((?:tests|testing|scripts|merge_job|benchmarks|docs|charts|environments|\.ci)"
    r"/[\w./-]*\w\.(?:py|sh|md|ya?ml|json|gotmpl|txt|tpl))\b"
)
# Paths of the layout merge-job replaces (the blog post's repository), named as such.
NOT_OURS = {"environments/values.yaml"}


def tracked_text_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    # Recorded answers and results are data, not references.
    return [f for f in listed if "fixtures/" not in f and not f.endswith((".json", ".lock"))]


def test_every_path_named_in_the_repository_exists() -> None:
    missing: dict[str, list[str]] = {}
    checked = 0
    for name in tracked_text_files():
        try:
            text = (REPO / name).read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        for path in PATH_RE.findall(text):
            checked += 1
            if path not in NOT_OURS and not (REPO / path).exists():
                missing.setdefault(path, []).append(name)
    assert checked > 100  # the pattern finds the references it is there for
    assert missing == {}
