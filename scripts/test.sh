#!/usr/bin/env bash
# The test suite (`make test`), as four pytest runs side by side on the 2 cores:
#   shard "ray": tests/engines, every test that starts Ray (they check for Ray processes machine-wide,
#     so no other shard starts one);
#   shard "lava": the other tests that start Lava runtimes and CLI subprocesses (each watches only its
#     own processes and /dev/shm segments). These two shards wait on other processes much of the
#     time: as one shard they kept 1.27 of 2 cores busy and were the critical path (~470 s of a
#     7 min 52 s - 8 min 3 s run, benchmarks/RESULTS.md "Speed (issue 27)");
#   shards "models" (trained and demo models, the CLI and API in process) and "compute" (every other
#     test: PyTorch, the emulator, exporters), the latter followed by the
#     float32 tests (marker float32_rounding) once more with the SIMD kernels AVX2 and SSE4 CPUs
#     dispatch to (ATen, oneDNN, MKL), so every rounding CI may meet is checked on any machine.
# Each shard gets one core's worth of threads (OpenMP, MKL): with two threads each, the shards'
# OpenMP pools spin against each other and the pair was no faster than one run (18 min 54 s, as
# the suite alone); with one each, 12 min 34 s on a 2-core Intel Xeon (benchmarks/RESULTS.md, "Speed (issue 27)"). Each run has its own
# pytest base directory and no cache; the lava shard streams to the terminal, the other shards' logs
# follow it.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
# the linter and the type checker first (seconds, not minutes): a finding fails the run before any test
# starts. Their settings: ruff.toml, mypy.ini; their versions: pyproject.toml's test extra.
echo "--- ruff check (ruff.toml)"
if ! .venv/bin/ruff check --quiet .; then
  echo "test suite: ruff check found the problems above (fix them, or run .venv/bin/ruff check . to see them)" >&2
  exit 1
fi
echo "--- mypy (mypy.ini)"
if ! .venv/bin/mypy; then
  echo "test suite: mypy found the type errors above (.venv/bin/mypy repeats the check)" >&2
  exit 1
fi
# the target tests that start no process (the emulator, the reference interpreter, the registry) and
# tests/fixed_point (its Lava runs watch only their own processes) run in the compute shard
# (benchmarks/RESULTS.md, "processes shard profile"); the other tests run in the shards ray and lava
RAY_TESTS=(tests/engines)
LAVA_TESTS=(tests/targets/test_artifact.py tests/targets/test_lava_backend.py
            tests/targets/test_lava_conv.py tests/targets/test_lava_lifecycle.py tests/targets/test_lava_network.py
            tests/targets/test_loihi2_hardware.py tests/targets/test_plugin_target.py
            tests/cli/test_bad_input_catalogue.py tests/data/test_imagenet_classes.py tests/cli/test_deploy.py)
PROCESS_TESTS=("${RAY_TESTS[@]}" "${LAVA_TESTS[@]}")
# the compute tests of trained and demo models, the CLI and the API (the shard "models"; "compute": the rest)
MODEL_TESTS=(tests/model tests/cli tests/api)
# the re-runs collect only the files that mark a test float32_rounding: collecting the whole suite
# (importing every test module) costs ~11 CPU-s per run, these files ~3
FLOAT32_FILES=($(grep -rlE --include='*.py' 'mark\.float32_rounding' tests | sort))
work="$(mktemp -d "${TMPDIR:-/tmp}/resformer-tests.XXXXXX")"
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
pytest() { "$PY" -m pytest -q -p no:cacheprovider "$@"; }

ignore=()
for p in "${PROCESS_TESTS[@]}"; do ignore+=(--ignore="$p"); done
# the compute tests are one core's work for ~7 min: two halves, side by side with the shards that wait
pytest --basetemp="$work/models" "${ignore[@]}" "${MODEL_TESTS[@]}" > "$work/models.log" 2>&1 &
models=$!
for p in "${MODEL_TESTS[@]}"; do ignore+=(--ignore="$p"); done
(
  pytest --basetemp="$work/compute" "${ignore[@]}" tests
  suite=$?
  echo "--- float32 re-runs (AVX2, then SSE4 kernels):"
  ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
    pytest --basetemp="$work/avx2" -m float32_rounding "${FLOAT32_FILES[@]}"
  avx2=$?
  ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 \
    pytest --basetemp="$work/sse4" -m float32_rounding "${FLOAT32_FILES[@]}"
  sse4=$?
  [ "$suite" -eq 0 ] || exit 1
  [ "$avx2" -eq 0 ] && [ "$sse4" -eq 0 ] || exit 2
) > "$work/compute.log" 2>&1 &
compute=$!

pytest --basetemp="$work/ray" "${RAY_TESTS[@]}" > "$work/ray.log" 2>&1 &
ray=$!

echo "--- shard lava: ${LAVA_TESTS[*]}"
pytest --basetemp="$work/lava" "${LAVA_TESTS[@]}"
lava=$?
wait "$ray"
rayed=$?
wait "$models"
modelled=$?
wait "$compute"
computed=$?
echo "--- shard ray: ${RAY_TESTS[*]}"
cat "$work/ray.log"
echo "--- shard models: ${MODEL_TESTS[*]} (but the lava shard's)"
cat "$work/models.log"
echo "--- shard compute: every other test, then the float32 re-runs"
cat "$work/compute.log"
if [ "$lava" -ne 0 ] || [ "$rayed" -ne 0 ] || [ "$modelled" -ne 0 ] || [ "$computed" -ne 0 ]; then
  echo "test suite: lava shard exit $lava; ray shard exit $rayed; models shard exit $modelled;" \
       "compute shard exit $computed" \
       "(1: its tests failed, 2: the float32 re-runs failed)" >&2
  exit 1
fi
