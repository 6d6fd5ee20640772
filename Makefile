# Both targets build or reuse the Python 3.10 environment first (scripts/bootstrap.sh).
.PHONY: demo test env

env:
	@./scripts/bootstrap.sh

demo: env
	.venv/bin/resformer-deploy demo

test: env
	.venv/bin/python -m pytest -q
