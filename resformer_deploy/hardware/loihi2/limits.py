"""Loihi 2 resource limits and the memory model used by the mapper (every number has a source).

Confidence words: *published* (stated by Intel or in Lava's public source), *proxy* (a published
Loihi 1 figure used as a conservative stand-in for an unpublished Loihi 2 one), *estimate* (our
own modelling choice; no public figure exists).

Memory model (per neuro core; everything must fit ``CORE_MEMORY_BYTES``):

* neuron state: ``NEURON_STATE_BYTES[kind]`` per neuron -- LIF 8 B (u and v 24-bit each plus
  per-layer parameters amortised), graded relay / residual-junction neuron 4 B (one 24-bit
  accumulator), DSSA product neuron 6 B (two 24-bit operand registers).
* convolution synapses use weight sharing (Loihi 2 convolutional synapse encoding; lava-dl 0.3
  "convolutional network compression"): a core holding output channels ``c0..c1`` stores their
  kernels once, ``(c1 - c0) * (Cin/groups) * kh * kw`` bytes (8-bit weights), plus
  ``AXON_IN_BYTES`` of routing/config per fan-in axon.
* every other connection (dense Affine/Linear, identity/junction/delay synapses, the DSSA
  synaptic lowering's selector, reduce and bias-term synapses) is stored per synapse,
  ``SYNAPSE_BYTES`` each (8-bit weight + ~8-bit compressed index), plus ``AXON_IN_BYTES`` per
  fan-in axon.
* output routing tables are not counted in the memory budget; they are bounded separately by
  ``MAX_FANOUT_ROUTES_PER_CORE`` (one route per (source neuron, destination core) pair).
"""
import math

from resformer_deploy.fixed_point.formats import WEIGHT_EXP_RANGE  # noqa: F401  (re-exported for the DRC)

# ---- per chip -------------------------------------------------------------------------------
# source: Intel "Loihi 2" technology brief (2021): 128 neuro cores per chip; Lava
#         lava/magma/compiler/subcompilers/constants.py NUM_VIRTUAL_CORES_L2 = 128. [published]
NEURO_CORES_PER_CHIP = 128
# source: Intel Loihi 2 brief (2021): 6 embedded x86 (Lakemont) cores per chip. [published]
EMBEDDED_CORES_PER_CHIP = 6
# source: Lava constants.py MAX_EMBEDDED_CORES_PER_CHIP = 3 (cores Lava allocates C processes to).
#         One fused DSSA product = one embedded-core program (our assumption). [published/estimate]
USABLE_EMBEDDED_CORES_PER_CHIP = 3
# source: Intel Loihi 2 brief (2021): up to 1 M neurons per chip. [published]
MAX_NEURONS_PER_CHIP = 1_048_576
# source: Intel Loihi 2 brief (2021): up to 120 M synapses per chip. [published]
MAX_SYNAPSES_PER_CHIP = 120_000_000

# ---- per neuro core -------------------------------------------------------------------------
# source: 1 M neurons / 128 cores (Loihi 2 brief, even spread); real capacity depends on the
#         neuron program's state size (memory model above). [estimate from published]
MAX_NEURONS_PER_CORE = 8192
# source: the Loihi 2 brief's table is recalled as ~192 KB per core shared by synapses, neuron
#         state and routing (Intel, "Taking Neuromorphic Computing to the Next Level with
#         Loihi 2", technology brief, 2021; not verified against the datasheet); one secondary
#         source says 128 KB and Loihi 1 had 128 KB synaptic memory (Davies et al., IEEE Micro 2018).
#         We use the conservative 128 KiB for synapses + neuron state. [proxy/conservative]
CORE_MEMORY_BYTES = 128 * 1024
# source: Loihi 1: 4096 fan-in axons per core (Davies et al., IEEE Micro 2018, Table 1; also
#         quoted in spikingjelly#543). Used as a conservative proxy for Loihi 2. [proxy]
MAX_FANIN_AXONS_PER_CORE = 4096
# source: Loihi 1: 4096 fan-out axons per core (Davies et al., IEEE Micro 2018). Used as a
#         conservative proxy for Loihi 2 output axon routes. [proxy]
MAX_FANOUT_ROUTES_PER_CORE = 4096
# source: Lava lava/proc/dense/models.py: DelayDense supports 0..62 step delays (6-bit field,
#         errors above 63, lava-dl netx clips to 62). [published]
MAX_SYNAPTIC_DELAY = 62
# source: Lava bit-accurate models: 8-bit weight mantissa with a shared weight_exp per
#         connection (num_weight_bits <= 8). [published]
WEIGHT_MANTISSA_BITS = 8
# WEIGHT_EXP_RANGE: imported from the quantizer's formats (resformer_deploy/fixed_point/formats.py, cited there)
# source: Lava fixed-point graded models use <= 24-bit payloads (precision=24); the brief
#         advertises up to 32 bits, Abreu et al. 2025 (arXiv:2503.18002) quantise to 24. [published]
GRADED_PAYLOAD_BITS = 24

# ---- memory model (our estimates; see module docstring) -------------------------------------
# source: Lava CUBA LIF model: u, v 24-bit each (proc/lif/models.py) + amortised params. [estimate]
NEURON_STATE_BYTES = {"lif": 8, "junction": 4, "relay": 4, "product": 6}
# source: our choice: 8-bit weight + ~8-bit compressed index per stored synapse. [estimate]
SYNAPSE_BYTES = 2
# source: our choice: routing/config entry per fan-in axon (synapse list pointer). [estimate]
AXON_IN_BYTES = 4
# source: 8-bit weights (WEIGHT_MANTISSA_BITS) stored once per output channel in the shared
#         convolution encoding (lava-dl 0.3 "convolutional network compression"). [estimate]
CONV_WEIGHT_BYTES = 1

LIMITS = {
    "neuro_cores_per_chip": (NEURO_CORES_PER_CHIP, "published",
                             "Intel Loihi 2 brief 2021; Lava NUM_VIRTUAL_CORES_L2 = 128"),
    "embedded_cores_per_chip": (EMBEDDED_CORES_PER_CHIP, "published", "Intel Loihi 2 brief 2021"),
    "usable_embedded_cores_per_chip": (USABLE_EMBEDDED_CORES_PER_CHIP, "published",
                                       "Lava compiler constants MAX_EMBEDDED_CORES_PER_CHIP = 3"),
    "max_neurons_per_chip": (MAX_NEURONS_PER_CHIP, "published", "Intel Loihi 2 brief 2021 (1M)"),
    "max_synapses_per_chip": (MAX_SYNAPSES_PER_CHIP, "published", "Intel Loihi 2 brief 2021 (120M)"),
    "max_neurons_per_core": (MAX_NEURONS_PER_CORE, "estimate", "1M neurons / 128 cores (Loihi 2 brief)"),
    "core_memory_bytes": (CORE_MEMORY_BYTES, "proxy",
                          "conservative 128 KiB (brief ~192 KB shared, from memory; Loihi 1 128 KB)"),
    "max_fanin_axons_per_core": (MAX_FANIN_AXONS_PER_CORE, "proxy",
                                 "Loihi 1 figure, Davies et al. IEEE Micro 2018"),
    "max_fanout_routes_per_core": (MAX_FANOUT_ROUTES_PER_CORE, "proxy",
                                   "Loihi 1 figure, Davies et al. IEEE Micro 2018"),
    "max_synaptic_delay": (MAX_SYNAPTIC_DELAY, "published", "Lava proc/dense/models.py DelayDense (6-bit)"),
    "weight_mantissa_bits": (WEIGHT_MANTISSA_BITS, "published", "Lava bit-accurate Dense/LIF models"),
    "graded_payload_bits": (GRADED_PAYLOAD_BITS, "published", "Lava graded models precision=24"),
    "weight_exp_range": (list(WEIGHT_EXP_RANGE), "proxy", "Loihi 1 4-bit signed weight exponent (Davies et al. "
                                                           "2018); Lava applies any int"),
    "neuron_state_bytes": (NEURON_STATE_BYTES, "estimate", "memory model (u, v 24-bit; Lava LIF model)"),
    "synapse_bytes": (SYNAPSE_BYTES, "estimate", "8-bit weight + 8-bit index per stored synapse"),
    "axon_in_bytes": (AXON_IN_BYTES, "estimate", "config entry per fan-in axon"),
    "conv_weight_bytes": (CONV_WEIGHT_BYTES, "estimate", "shared 8-bit conv kernel per output channel"),
}


def limits_json() -> dict:
    return {k: {"value": v, "confidence": c, "source": s} for k, (v, c, s) in LIMITS.items()}


def chips_for(neuro_cores: int, embedded_programs: int = 0) -> int:
    return max(math.ceil(neuro_cores / NEURO_CORES_PER_CHIP),
               math.ceil(embedded_programs / USABLE_EMBEDDED_CORES_PER_CHIP), 1 if neuro_cores else 0)
