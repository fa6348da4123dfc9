# The two commands of the README. Both do all set-up first (scripts/setup_env.sh, a no-op when done).
PY := .venv/bin/python

.PHONY: setup test demo
setup:
	scripts/setup_env.sh

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) tools/run_demo.py
