"""Fused DSSA product: one process computes SpikeMatMul directly (fast simulation).

Stands for an embedded-core (Lakemont) or custom-microcode neuron program on Loihi 2 that
holds the real operand and accumulates it under the spike operand's events. The lhs input
is the patch-embedding synapse output without its bias; the bias is added here (Lava
synapses carry no bias). Stateless: out = gather(lhs + bias) @ gather(rhs), same step.
"""
import numpy as np
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess

from targets.lava_processes import cpu_model


class FusedSpikeMatMul(AbstractProcess):
    def __init__(self, *, lhs_size: int, rhs_size: int, out_size: int, lhs_bias, lhs_view, rhs_view,
                 lhs_rows, rhs_rows, transpose_lhs: bool, **kw):
        super().__init__(lhs_size=lhs_size, rhs_size=rhs_size, out_size=out_size,
                         lhs_bias=np.asarray(lhs_bias), lhs_view=tuple(lhs_view),
                         rhs_view=tuple(rhs_view), lhs_rows=np.asarray(lhs_rows), rhs_rows=np.asarray(rhs_rows),
                         transpose_lhs=bool(transpose_lhs), **kw)
        self.lhs_in = InPort(shape=(lhs_size,))
        self.rhs_in = InPort(shape=(rhs_size,))
        self.a_out = OutPort(shape=(out_size,))


class _FusedBase(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self.bias, self.lview, self.rview = p["lhs_bias"], p["lhs_view"], p["rhs_view"]
        self.lrows, self.rrows, self.tr = p["lhs_rows"], p["rhs_rows"], p["transpose_lhs"]

    def run_spk(self) -> None:
        lhs = (self.lhs_in.recv() + self.bias).reshape(self.lview)[self.lrows]  # [G, k|m, cols]
        rhs = self.rhs_in.recv().reshape(self.rview)[self.rrows]  # [G, k, n]
        if self.tr:
            lhs = np.swapaxes(lhs, -1, -2)
        self.a_out.send(np.matmul(lhs, rhs).reshape(-1))


@cpu_model(FusedSpikeMatMul, "floating_pt")
class PyFusedSpikeMatMulFloat(_FusedBase):
    lhs_in = LavaPyType(PyInPort.VEC_DENSE, float)
    rhs_in = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out = LavaPyType(PyOutPort.VEC_DENSE, float)


@cpu_model(FusedSpikeMatMul, "fixed_pt")
class PyFusedSpikeMatMulFixed(_FusedBase):
    """Integer operands (graded 24-bit payload and 0/1 spikes), integer bias: exact."""
    lhs_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    rhs_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
