"""Floating-point models for stock lava.proc.graded processes (lava-nc 0.10 ships fixed_pt only).

GradedVec stands for Loihi 2's graded-spike neuron: it forwards its summed input as a
graded spike when |v| > vth and keeps no state. With vth = 0 it is an exact relay, which
is how residual junctions of the real-valued stream are carried.
"""
import numpy as np
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.proc.graded.process import GradedReluVec, GradedVec

from targets.lava_processes import cpu_model


class _GradedFloatBase(PyLoihiProcessModel):
    """Stateless graded neuron: sums its input and forwards it where ``fires`` holds."""
    a_in = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    exp: np.ndarray = LavaPyType(np.ndarray, float)

    def fires(self, v):
        raise NotImplementedError

    def run_spk(self) -> None:
        v = self.v + self.a_in.recv()
        self.v[:] = 0
        self.s_out.send(v * self.fires(v))


@cpu_model(GradedVec, "floating_pt")
class PyGradedVecModelFloat(_GradedFloatBase):
    def fires(self, v):
        return np.abs(v) > self.vth


@cpu_model(GradedReluVec, "floating_pt")
class PyGradedReluVecModelFloat(_GradedFloatBase):
    def fires(self, v):
        return v > self.vth


from lava.proc.prodneuron.process import ProdNeuron  # noqa: E402


@cpu_model(ProdNeuron, "floating_pt")
class PyProdNeuronModelFloat(PyLoihiProcessModel):
    """Loihi 2 product neuron: graded spike = a_in1 * a_in2 * 2^-exp when |.| > vth."""
    a_in1 = LavaPyType(PyInPort.VEC_DENSE, float)
    a_in2 = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    exp: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        v = self.a_in1.recv() * self.a_in2.recv() * 2.0 ** -self.exp
        self.s_out.send(v * (np.abs(v) > self.vth))
