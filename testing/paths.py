"""Where things are in the repository, for tests, benchmarks and the demo alike."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
# Recorded API answers of real engines (tests/fixtures/record_states.py records them).
RESPONSES = TESTS / "fixtures" / "responses"
