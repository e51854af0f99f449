"""The README and docs/ tables stay true to the code: settings, exit codes, layout."""

from __future__ import annotations

import re
from pathlib import Path

from merge_job.decisions import SkipReason
from merge_job.errors import ExitCode
from merge_job.options import OPTIONS
from testing.paths import REPO

README = REPO / "README.md"
CONTRACT = REPO / "docs" / "contract.md"


def readme_section(title: str, document: Path = README) -> str:
    """The section under the `##` or `###` heading `title`, up to the next heading."""
    text = document.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    next_sub = text.find("\n### ", start + 1)
    return text[start : min(i for i in (end, next_sub) if i != -1)]


def test_settings_table_lists_every_setting_with_its_flag() -> None:
    rows = re.findall(r"^\| ([A-Z_]+) \| (.+?) \|", readme_section("Settings", CONTRACT), re.M)
    documented = dict(rows)
    for option in OPTIONS:
        if option.env is None:
            continue
        assert option.env in documented, f"{option.env} missing from the contract's table"
        if option.flags:
            assert option.flags[0] in documented[option.env], option.env
    assert set(documented) <= {o.env for o in OPTIONS} | {"MERGE_BASIC_AUTH_PASSWORD"}


def test_exit_code_table_matches_the_code() -> None:
    """`| 0 | `ok` | <meaning> |`: every ExitCode, its name and its meaning word for word."""
    text = README.read_text()
    heading = re.search(r"^## Exit codes\n", text, re.M)
    assert heading is not None, "README has no '## Exit codes' section"
    start = heading.start()
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    rows = re.findall(r"^\| (\d+) \| `([a-z_]+)` \| (.+?) \|$", section, re.M)
    assert rows == [(str(int(code)), code.name.lower(), code.meaning) for code in ExitCode]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./scripts/test.sh" in README.read_text()
    assert "./scripts/test.sh" in ci


def test_layout_table_names_every_module_of_the_package() -> None:
    text = (README.parent / "docs" / "development.md").read_text()
    start = text.index("## How the code is laid out\n")
    section = text[start : text.index("\n## ", start + 1)]
    documented = set(re.findall(r"`merge_job/(\w+\.py)`", section))
    documented |= set(re.findall(r"`(\w+\.py)`", section))
    package = README.parent / "merge_job"
    modules = {p.name for p in package.glob("*.py")} - {"__init__.py"}
    assert modules - documented == set(), "modules missing from the layout table"
    assert documented - modules == set(), "the layout table names modules that do not exist"


def test_every_skip_reason_is_documented() -> None:
    contract = (README.parent / "docs" / "contract.md").read_text()
    never_merges = readme_section("How it decides")
    for reason in SkipReason:
        assert f"`{reason.value}`" in contract, reason
        if reason is not SkipReason.DELETED:  # only at execution time: the contract's
            assert f"`{reason.value}`" in never_merges, reason
