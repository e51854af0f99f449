# Short names for the scripts under scripts/ (CI and the docs name the scripts themselves).
# Extra pytest arguments go in ARGS: make test ARGS="-k plan".

.PHONY: demo test lint lock e2e

# A throwaway OpenSearch, seeded, planned and merged, then removed (needs Docker).
demo:
	./scripts/demo.sh

# Lint, types, then the whole test suite (what CI runs).
test:
	./scripts/test.sh $(ARGS)

# ruff check, ruff format --check, mypy.
lint:
	./scripts/lint.sh

# Re-lock after editing pyproject.toml and refresh requirements/ (scripts/lock.sh --upgrade
# upgrades every package).
lock:
	./scripts/lock.sh

# The end-to-end suites (tests/e2e): the image, IRSA, a real single-node Kubernetes and
# Argo CD (scripts/e2e/; root on Linux).
e2e:
	./scripts/test.sh tests/e2e $(ARGS)
