# Both targets build or reuse the Python 3.10 environment first (scripts/bootstrap.sh).
.PHONY: demo test env

# float32 results depend on which SIMD kernels the CPU runs (AVX-512 on this Xeon, AVX2 on AMD
# EPYC Zen 2/3). These variables make torch (ATen), oneDNN and MKL dispatch as such CPUs do,
# so the float32 tests are checked against every rounding CI may meet, on any machine.
AVX2 = ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
SSE4 = ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2

env:
	@./scripts/bootstrap.sh

demo: env
	.venv/bin/resformer-deploy demo

test: env
	$(AVX2) .venv/bin/python -m pytest -q -m float32_rounding
	$(SSE4) .venv/bin/python -m pytest -q -m float32_rounding
	.venv/bin/python -m pytest -q
