# The two commands of the README. Both do all set-up first (scripts/setup_env.sh, a no-op when done).
PY := .venv/bin/python

.PHONY: setup test demo
setup:
	scripts/setup_env.sh

# The tests also check the TensorFlow checkpoint converter against TensorFlow, hence the convert extra. One
# pytest-xdist worker per core; a test file's tests share a worker, so a module's fixture is made once, and the
# files are handed out in the order tests/conftest.py gives (slowest first), not by their number of tests.
test:
	DEEPCEE_EXTRAS=sim,survey,data,test,convert scripts/setup_env.sh
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder tests

demo: setup
	$(PY) tools/run_demo.py
