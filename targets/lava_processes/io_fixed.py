"""A fixed-point model for Lava's stock ``Injector`` (lava/proc/io/injector.py).

The stock model sends float64: the channel to the next process takes its source port's type
(lava/magma/compiler/builders/channel_builder.py: src_port_initializer.d_type), so a bit-accurate
receiver (LIFReset, GradedVec, DelaySparse) would get floats and fail on its integer shifts. This
model is the stock one with an int32 output port (24-bit graded payloads, as the stock
fixed-point RingBuffer source sends); what a user sends is cast into the int32 buffer.
The stock Extractor needs no twin: its input takes the sender's int32, its output pipe float64.
"""
import numpy as np
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.proc.io.injector import Injector, PyLoihiInjectorModel

from targets.lava_processes import cpu_model


@cpu_model(Injector, "fixed_pt")
class PyLoihiInjectorModelFixed(PyLoihiInjectorModel):
    in_port: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
    out_port: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
