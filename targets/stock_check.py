"""An artifact checked on Lava's stock process models before it goes to a chip.

The artifact (targets.artifact) runs on Lava's CPU simulator with ``Loihi2SimCfg(select_tag=
'fixed_pt')`` and no exception model map, i.e. only the stock models, whose arithmetic the chip's
own models share (lava-nc 0.10.0 proc/*/models.py); Lava runs in the isolated worker
(targets.lava_cpu.run_in_worker) so nothing is left behind. The same integers go through the
bit-accurate emulator (targets.loihi2_emulator), and every output value and spike must agree."""
from dataclasses import dataclass

import numpy as np

from resformer_deploy.errors import InternalError
from targets.loihi2_hardware import refuse_fused


@dataclass
class StockCheck:
    logits: np.ndarray  # [T, N, K] from the stock-model run
    output_values: int  # integers of the chip's output stream compared
    output_mismatches: int  # of them, how many differ from the emulator
    spikes: int  # spikes compared (every LIF layer, every step)
    spike_mismatches: int
    processes: int
    seconds: float

    @property
    def bit_exact(self) -> bool:
        return self.output_mismatches == 0 and self.spike_mismatches == 0


def check_on_stock_models(art, x, progress=None) -> StockCheck:
    """Samples ``x`` (numpy images or frames) through a read artifact on stock-model Lava and on the
    emulator; the synaptic DSSA lowering only (the fused one has no stock model)."""
    import time

    from targets.lava_cpu import run_in_worker
    from resformer_deploy.fixed_point.emulator import LavaSemantics
    refuse_fused(art.plan, "deploy --simulate", "stock Lava process model")
    x = np.asarray(x)
    N, T = x.shape[0], art.T
    (h,) = art.plan.inputs
    (o,) = art.plan.outputs
    t0 = time.time()
    vals = {h: art.chip_inputs(x)}
    lava = run_in_worker(art.plan, vals, N, T, art.lowerings(), art.quant, stock_models=True, progress=progress)
    emu = LavaSemantics(art.plan, art.quant).run(vals, T)
    got, want = lava.outputs[o].reshape(T, N, -1), emu.outputs[o].reshape(T, N, -1)
    if set(lava.spikes) != set(emu.spikes):
        raise InternalError(f"deploy --simulate: Lava recorded {len(lava.spikes)} LIF layers, the emulator "
                            f"{len(emu.spikes)}")
    spikes = sum(int(np.prod(s.shape)) for s in emu.spikes.values())
    spike_bad = sum(int((lava.spikes[n].reshape(T, N, -1) != emu.spikes[n].reshape(T, N, -1)).sum())
                    for n in emu.spikes)
    return StockCheck(art.scores(np.swapaxes(got, 0, 1)), int(got.size), int((got != want).sum()), spikes, spike_bad,
                      int(lava.stats.processes), time.time() - t0)
