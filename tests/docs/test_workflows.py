"""The GitHub workflows are valid (actionlint) and run only the project's own scripts.

They cannot run on our CI machines, so these checks are what keeps them working: actionlint
(scripts/install-tools.sh builds the pinned version) type-checks expressions, contexts and
the shell of every `run:` step. Without actionlint these tests skip, unless
MERGE_JOB_REQUIRE_DOCKER=1 (CI), where a missing tool is a failure.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from testing.chart import run, tool
from testing.paths import REPO

WORKFLOWS = REPO / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
# What a `run:` step may start: the project's scripts, and setting the job's PATH.
OWN_ENTRY_POINTS = (".ci/run", "scripts/")


def actionlint(*paths: Path) -> Any:
    return run([tool("actionlint"), "-no-color", "-oneline", *map(str, paths)])


def steps(workflow: Path) -> list[dict[str, Any]]:
    document = yaml.safe_load(workflow.read_text())
    return [step for job in document["jobs"].values() for step in job["steps"]]


def test_both_workflows_exist() -> None:
    assert [path.name for path in WORKFLOW_FILES] == ["ci.yml", "release.yml"]


def test_actionlint_accepts_the_workflows() -> None:
    result = actionlint(*WORKFLOW_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """The check above can fail: an unknown context and a bad `on:` event are reported."""
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    text = (WORKFLOWS / "release.yml").read_text()
    text = text.replace("secrets.REGISTRY_PASSWORD", "secret.REGISTRY_PASSWORD")
    text = text.replace("tags:", "tagz:")
    broken.write_text(text)
    result = actionlint(broken)
    assert result.returncode != 0
    assert "secret" in result.stdout
    assert "tagz" in result.stdout


@pytest.mark.parametrize("workflow", WORKFLOW_FILES, ids=lambda path: path.name)
def test_run_steps_call_only_the_projects_scripts(workflow: Path) -> None:
    """Every command of every `run:` step is one of the project's scripts (or adds the tool
    cache to the job's PATH): what CI and a release do is defined in the repository, where
    it is tested, not in the workflow file."""
    commands = [
        line.strip()
        for step in steps(workflow)
        if "run" in step
        for line in step["run"].splitlines()
        if line.strip()
    ]
    assert commands, f"{workflow.name} runs nothing"
    for command in commands:
        words = shlex.split(command)
        if words[:1] == ["echo"] and command.endswith('>>"$GITHUB_PATH"'):
            continue
        scripts = [word for word in words if word.startswith(OWN_ENTRY_POINTS)]
        assert scripts, f"{workflow.name}: `{command}` runs none of the project's scripts"
        assert words[: words.index(scripts[0])][-1:] == ["bash"], command
        assert (REPO / scripts[0]).is_file(), f"{workflow.name}: {scripts[0]} does not exist"


def test_ci_workflow_runs_the_ci_entry_point() -> None:
    [command] = [step["run"] for step in steps(WORKFLOWS / "ci.yml") if "run" in step]
    assert command.split()[-2:] == ["bash", ".ci/run"]


def test_release_workflow_passes_the_registry_and_signing_secrets() -> None:
    workflow = WORKFLOWS / "release.yml"
    [release] = [step for step in steps(workflow) if "scripts/release.sh" in step.get("run", "")]
    env = release["env"]
    for name in ("REGISTRY_USERNAME", "REGISTRY_PASSWORD", "COSIGN_PRIVATE_KEY", "COSIGN_PASSWORD"):
        assert env[name] == f"${{{{ secrets.{name} }}}}", name
    assert env["COSIGN_KEY"] == "env://COSIGN_PRIVATE_KEY"  # cosign's key reference
    trigger = yaml.safe_load(workflow.read_text())[True]  # YAML 1.1 reads the key `on` as True
    assert trigger == {"push": {"tags": ["v*"]}}
