"""Probe: records its input for ``keep`` steps from ``first_step`` on and writes the record to a
.npy file once the last of them is in.

Not part of a deployed network (a host-side tap, like Loihi's probes). Lava's Var.get()
moves one value per message (~20 us each); a file keeps per-layer comparisons fast.
``spikes=True`` records a spike tap as bits (np.packbits per step, one bit per neuron): at
ti @224 a float64 record of every LIF neuron (10.6 M per step) over 48 steps would be 4 GB,
its bits are 64 MB. targets.lava_cpu.read_probe reads a record back.
"""
from typing import Optional

import numpy as np
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess

from targets.lava_processes import cpu_model


class Probe(AbstractProcess):
    def __init__(self, *, shape, num_steps: int, path: str, first_step: int = 1, keep: Optional[int] = None,
                 spikes: bool = False, **kw):
        keep = num_steps - first_step + 1 if keep is None else keep
        if not (first_step >= 1 and keep >= 1 and first_step + keep - 1 <= num_steps):
            raise ValueError(f"Probe: steps {first_step}..{first_step + keep - 1} are not within the run's "
                             f"1..{num_steps}")
        super().__init__(shape=tuple(shape), num_steps=num_steps, path=path, first_step=first_step, keep=keep,
                         spikes=bool(spikes), **kw)
        self.a_in = InPort(shape=shape)


class _ProbeBase(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self.first, self.keep, self.path, self.spikes = p["first_step"], p["keep"], p["path"], p["spikes"]
        size = int(np.prod(p["shape"]))
        self.record = (np.zeros((self.keep, (size + 7) // 8), dtype=np.uint8) if self.spikes else
                       np.zeros((self.keep, size), dtype=np.float64))

    def run_spk(self) -> None:
        data = self.a_in.recv()
        i = self.time_step - self.first
        if 0 <= i < self.keep:
            self.record[i] = np.packbits(data.reshape(-1) != 0) if self.spikes else data.reshape(-1)
            if i == self.keep - 1:
                np.save(self.path, self.record)
                self.record = None  # written: free it for the rest of the run


@cpu_model(Probe, "floating_pt")
class PyProbeFloat(_ProbeBase):
    a_in = LavaPyType(PyInPort.VEC_DENSE, float)


@cpu_model(Probe, "fixed_pt")
class PyProbeFixed(_ProbeBase):
    a_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
