#!/usr/bin/env bash
# The test suite (`make test`): the whole suite, and beside it the float32 tests (marker
# float32_rounding) once more with the SIMD kernels AVX2 and SSE4 CPUs dispatch to (ATen, oneDNN,
# MKL), so every rounding CI may meet is checked on any machine. The re-runs are a few CPU-bound
# tests; the main suite leaves a core idle much of the time (Lava and Ray start processes and
# wait), so they run beside it, each in its own pytest base directory and without the cache.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
work="$(mktemp -d "${TMPDIR:-/tmp}/resformer-f32.XXXXXX")"
trap 'rm -rf "$work"' EXIT

(
  ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
    "$PY" -m pytest -q -p no:cacheprovider --basetemp="$work/avx2" -m float32_rounding && \
  ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 \
    "$PY" -m pytest -q -p no:cacheprovider --basetemp="$work/sse4" -m float32_rounding
) > "$work/float32.log" 2>&1 &
f32=$!

"$PY" -m pytest -q
main=$?
wait "$f32"
reruns=$?
echo "--- float32 re-runs (AVX2, then SSE4 kernels), run beside the suite:"
cat "$work/float32.log"
if [ "$main" -ne 0 ] || [ "$reruns" -ne 0 ]; then
  echo "test suite: exit $main; float32 re-runs: exit $reruns" >&2
  exit 1
fi
