"""Probe: records its input at every step and writes the record to a .npy file on the last step.

Not part of a deployed network (a host-side tap, like Loihi's probes). Lava's Var.get()
moves one value per message (~20 us each); a file keeps per-layer comparisons fast.
"""
import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class Probe(AbstractProcess):
    def __init__(self, *, shape, num_steps: int, path: str, first_step: int = 1, **kw):
        super().__init__(shape=shape, num_steps=num_steps, path=path, first_step=first_step, **kw)
        self.a_in = InPort(shape=shape)


class _ProbeBase(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.num_steps = proc_params["num_steps"]
        self.first = proc_params["first_step"]
        self.path = proc_params["path"]
        self.record = np.zeros((self.num_steps - self.first + 1, *proc_params["shape"]), dtype=np.float64)

    def run_spk(self) -> None:
        data = self.a_in.recv()
        if self.time_step >= self.first:
            self.record[self.time_step - self.first] = data
        if self.time_step == self.num_steps:
            np.save(self.path, self.record)


@implements(proc=Probe, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyProbeFloat(_ProbeBase):
    a_in = LavaPyType(PyInPort.VEC_DENSE, float)


@implements(proc=Probe, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyProbeFixed(_ProbeBase):
    a_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
