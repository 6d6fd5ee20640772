# Both targets build or reuse the Python 3.10 environment first (scripts/bootstrap.sh).
.PHONY: demo test env

# float32 results depend on which SIMD kernels the CPU runs (AVX-512 on a Xeon, AVX2 on AMD EPYC
# Zen 2/3): scripts/test.sh also re-runs the float32 tests as AVX2 and SSE4 CPUs dispatch them.

env:
	@./scripts/bootstrap.sh

demo: env
	.venv/bin/resformer-deploy demo

test: env
	./scripts/test.sh
