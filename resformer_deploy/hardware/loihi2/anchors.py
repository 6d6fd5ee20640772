"""Published figures the Loihi 2 cost estimate (estimate.py) is built on, each with its source and a
confidence word, as the core limits are kept (limits.py).

Confidence words: ``published`` (a Loihi 2 measurement printed by its authors), ``published-loihi1``
(a first-generation Loihi figure, used because Loihi 2 has none published), ``derived`` (computed
by us from a published file; the computation is named), ``estimate`` (our choice).

Not found with a public source, so left out (never invented): Loihi 2 per-operation energy and
time (Intel has not published a Loihi 2 counterpart of Davies et al. 2018, Table 2); Loihi 2
chip-to-chip link energy and latency; embedded (Lakemont) core time and energy per operation; the
numeric tables of Shrestha et al. 2024 (arXiv 2310.03251; not retrievable here); Hala Point power.
The two-neuron Oheo Gulch runs (PAIR_LIF) measure what a step costs when almost nothing runs: they
pin the per-step floors of time and dynamic energy and are a third idle static-power measurement
(estimate.calibrate).
"""
from dataclasses import dataclass
from typing import Dict


@dataclass(frozen=True)
class Anchor:
    value: float
    unit: str
    confidence: str
    source: str

    def to_json(self) -> dict:
        return {"value": self.value, "unit": self.unit, "confidence": self.confidence, "source": self.source}


DAVIES_2018 = ("Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro "
               "38(1) 2018, Table 2 (SPICE figures, 14 nm), as transcribed in SANA-FE's arch file "
               "(github SLAM-Lab/SANA-FE, loihi.yaml)")
LAVA_DL = "lava-nc/lava-dl @ d825ac5"
SNN_NB = f"{LAVA_DL} tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb (Oheo Gulch, printed outputs)"
SDNN_NB = f"{LAVA_DL} tutorials/lava/lib/dl/netx/pilotnet_sdnn/benchmark.ipynb (Oheo Gulch, printed outputs)"
GTS = f"{LAVA_DL} tests/lava/lib/dl/netx/gts/pilotnet_lif/*.npy (netx's recorded spikes of the same network.net)"

# ---- per operation (Loihi 1: the only published per-operation table) -------------------------
PER_OP: Dict[str, Anchor] = {
    "synaptic_op_energy": Anchor(23.6e-12, "J", "published-loihi1", DAVIES_2018 + ": synaptic spike op, min"),
    "synaptic_op_time": Anchor(3.5e-9, "s", "published-loihi1", DAVIES_2018 + ": synaptic spike op"),
    "neuron_update_energy": Anchor(81.0e-12, "J", "published-loihi1", DAVIES_2018 + ": neuron update, active"),
    "neuron_update_time": Anchor(8.4e-9, "s", "published-loihi1", DAVIES_2018 + ": neuron update, active"),
    "spike_within_tile_energy": Anchor(1.7e-12, "J", "published-loihi1", DAVIES_2018 + ": within-tile spike"),
    "spike_within_tile_time": Anchor(2.1e-9, "s", "published-loihi1", DAVIES_2018 + ": within-tile spike"),
    "tile_hop_energy": Anchor(4.0e-12, "J", "published-loihi1", DAVIES_2018 + ": cross-tile hop, N-S (E-W 3.0 pJ)"),
    "tile_hop_time": Anchor(6.5e-9, "s", "published-loihi1", DAVIES_2018 + ": cross-tile hop, N-S (E-W 4.1 ns)"),
    "barrier_sync_time": Anchor(299e-9, "s", "published-loihi1",
                                DAVIES_2018 + ": global barrier synchronisation of one chip"),
}

# ---- measured end-to-end results on Loihi 2 ---------------------------------------------------
PILOTNET_SNN: Dict[str, Anchor] = {
    "throughput_fps": Anchor(408.91, "1/s", "published", SNN_NB + ": 'Throughput : 408.91 fps'"),
    "steps_per_sample": Anchor(16, "steps", "published", SNN_NB + ": reset_interval=16, steps_per_sample"),
    "total_power": Anchor(0.679234, "W", "published", SNN_NB),
    "dynamic_power": Anchor(0.447156, "W", "published", SNN_NB),
    "static_power": Anchor(0.232078, "W", "published", SNN_NB + " (per chip, idle)"),
    "total_energy": Anchor(1.661103e-3, "J", "published", SNN_NB + ": total energy per inference"),
    "dynamic_energy": Anchor(1.093544e-3, "J", "published", SNN_NB + ": dynamic energy per inference"),
    "neuro_cores": Anchor(74, "cores", "published", SNN_NB + ": Intel compiler's per-core table, Total"),
}
PILOTNET_SDNN: Dict[str, Anchor] = {
    "throughput_fps": Anchor(16.87, "1/s", "published",
                             SDNN_NB + ": 16.87 fps, one step per frame; the notebook says the run is "
                                       "bottlenecked by sending input frames (so not a compute-time anchor)"),
    "total_power": Anchor(0.275709, "W", "published", SDNN_NB),
    "static_power": Anchor(0.281775, "W", "published", SDNN_NB + " (per chip, idle)"),
    "dynamic_energy": Anchor(-0.359587e-3, "J", "published",
                             SDNN_NB + ": negative (static drift); not usable as a dynamic-energy anchor"),
    "neuro_cores": Anchor(61, "cores", "published", SDNN_NB + ": Intel compiler's per-core table, Total"),
}

# Two-neuron network timed and metered on an Oheo Gulch board (Balafrej, Bahadi, Rouat, Alibart, 'Enhancing
# temporal learning in recurrent spiking networks for neuromorphic applications', Neuromorph. Comput. Eng.
# 2025, doi 10.1088/2634-4386/add293; data and script: github NECOTIS/TemporalLearningInRSNNs @ 3e64b51
# loihi_experiment/res.json (means of 100 runs of 10^7 steps each) and delay.py). Network (delay.py): a
# source LIF of 1 neuron driven by a bias to spike at 25, 50 or 100 Hz (dt = 1 ms: dv = 410/4096 with
# tau = 10 ms), a 1x1 Dense synapse of weight 128, a destination LIF of 1 neuron (vth 64, du = dv = 4095:
# it forgets each step, so one input spike of weight 128 makes one spike). Rows: synaptic delay 0 (Dense).
PAIR_SRC = ("Balafrej et al., Neuromorph. Comput. Eng. 2025 (doi 10.1088/2634-4386/add293); github "
            "NECOTIS/TemporalLearningInRSNNs @ 3e64b51 loihi_experiment/res.json + delay.py (Oheo Gulch "
            "ncl-ext-og-05, lava-nc 0.10.0; mean of 100 runs x 10^7 steps, synaptic delay 0)")
PAIR_STEPS_PER_RUN = 10_000_000
# source firing rate (Hz) -> {quantity: Anchor} (energies and time per run of PAIR_STEPS_PER_RUN steps)
PAIR_LIF: Dict[int, Dict[str, Anchor]] = {
    hz: {"dynamic_energy": Anchor(dyn, "J", "published", PAIR_SRC + f": {hz} Hz, dynamic_energy mean (std {sd} J)"),
         "static_power": Anchor(stat, "W", "published", PAIR_SRC + f": {hz} Hz, static_power mean"),
         "total_time": Anchor(t, "s", "published", PAIR_SRC + f": {hz} Hz, total_time mean")}
    for hz, dyn, sd, stat, t in ((25, 0.26722025399517835, 0.19993648346212567, 0.21460215555555556,
                                  11.637382776475679),
                                 (50, 0.3167534986598539, 0.18202477644958143, 0.21259630952380953,
                                  11.639218619837314),
                                 (100, 0.325827752621702, 0.18587004144986974, 0.2142557777777778,
                                  11.643384501700206))}
PAIR_LAYERS = (("src", "input", (1, 1, 1), None, None, None),  # a bias-driven neuron: fed by the host here
               ("dest", "dense", (1,), None, None, None))

# Intel compiler's per-core tables (both notebooks): layer -> (cores, neurons per core); the SDNN
# network is the same without the input layer (skip_layers=1), so 74 - 13 = 61 cores.
PILOTNET_INTEL_CORES = {"input": (13, 3168), "conv0": (25, 3072), "conv1": (13, 2160), "conv2": (3, 2688),
                        "conv3": (3, 2048), "conv4": (2, 2048), "fc0": (12, 8), "fc1": (1, 50), "fc2": (1, 10),
                        "fc3": (1, 1)}

# PilotNet SNN shapes (netx network.net, as the notebook prints them): (C, H, W), kernel, stride, padding
PILOTNET_LAYERS = (("input", "input", (3, 66, 200), None, None, None),
                   ("conv0", "conv", (24, 32, 99), 3, (2, 2), (0, 0)),
                   ("conv1", "conv", (36, 15, 49), 3, (2, 2), (0, 0)),
                   ("conv2", "conv", (48, 7, 24), 3, (2, 2), (0, 0)),
                   ("conv3", "conv", (64, 4, 22), 3, (2, 1), (1, 0)),  # stride/padding (y, x)
                   ("conv4", "conv", (64, 2, 20), 3, (1, 1), (0, 0)),
                   ("fc0", "dense", (100,), None, None, None),
                   ("fc1", "dense", (50,), None, None, None),
                   ("fc2", "dense", (10,), None, None, None),
                   ("fc3", "dense", (1,), None, None, None))

# Spikes each layer emitted over the 24 recorded steps of netx's ground truth for this network
# (derived: the .npy files' sums, benchmarks/loihi2_estimate.py --pilotnet-gts recomputes them).
PILOTNET_GTS_STEPS = 24
PILOTNET_GTS_SPIKES = {"input": 843085, "conv0": 166897, "conv1": 63672, "conv2": 23247, "conv3": 14567,
                       "conv4": 6770, "fc0": 226, "fc1": 49, "fc2": 8}
PILOTNET_GTS_SOURCE = GTS

# ---- systems ----------------------------------------------------------------------------------
SYSTEMS = {
    "Oheo Gulch": Anchor(1, "chips", "published", "Intel INRC system, single Loihi 2 chip board (Intel 2021)"),
    "Kapoho Point": Anchor(8, "chips", "published", "Intel Kapoho Point board, 8 Loihi 2 chips (Intel 2022)"),
    "Hala Point": Anchor(1152, "chips", "published",
                         "Intel Hala Point announcement (April 2024): 1,152 Loihi 2 chips, 1.15 B neurons"),
}


def anchors_json() -> dict:
    groups = {"per_operation": PER_OP, "pilotnet_snn": PILOTNET_SNN, "pilotnet_sdnn": PILOTNET_SDNN,
              **{f"pair_lif_{hz}Hz": d for hz, d in PAIR_LIF.items()}, "systems": SYSTEMS}
    return {g: {k: a.to_json() for k, a in d.items()} for g, d in groups.items()}
