"""The ResformerNetwork process and its SubProcessModel (public API: targets.lava_network).

It lives here, beside the project's other process models, because Lava finds a process's
models by importing every module in the directory of the file that defines the process
(lava/magma/compiler/compiler_graphs.py ``_find_proc_models``): this directory holds only
Lava process code, so that scan imports no torch and none of the CLI's modules. Mapping of
each node: resformer_deploy/lava/plan.py.
"""
from typing import Dict, List, Optional

import nir
import numpy as np
import scipy.sparse as sp
from lava.magma.core.decorator import implements
from lava.magma.core.model.sub.model import AbstractSubProcessModel
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.process import Conv
from lava.proc.graded.process import GradedVec
from lava.proc.lif.process import LIFReset
from lava.proc.prodneuron.process import ProdNeuron
from lava.proc.sparse.process import DelaySparse, Sparse

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.lava.conv import to_lava_weight
from resformer_deploy.lava.plan import MSG_BITS, LavaMappingError
from targets.lava_processes.spike_matmul import FusedSpikeMatMul


class ResformerNetwork(AbstractProcess):
    """The neuromorphic partition of a LavaPlan: ports ``inp`` (n_in,) and ``out`` (n_out,),
    sub-processes in ``layers`` {node: process, or a synaptic product's parts} and ``delays``
    {(node, d): process}. Float (plan parameters) or fixed point (``quant``, a QuantNet)."""

    def __init__(self, *, plan, T: int, quant=None, lowerings: Optional[dict] = None, name: Optional[str] = None):
        super().__init__(name=name or "resformer")
        if len(plan.inputs) != 1 or len(plan.outputs) != 1:
            raise LavaMappingError(f"the network needs one input and one output stream; the plan has inputs "
                                   f"{sorted(plan.inputs)} and outputs {plan.outputs}")
        if plan.dssa == "synaptic":
            missing = [n for n in plan.neuro if isinstance(plan.graph.nodes[n], SpikeMatMul)
                       and n not in (lowerings or {})]
            if missing:
                raise LavaMappingError(f"synaptic DSSA lowering: no product lowering for {', '.join(missing)} "
                                       f"(resformer_deploy.passes.product_lowering.lower_products)")
        self.plan, self.T, self.q = plan, int(T), quant
        self.lowerings = lowerings or {}
        self.input_node = next(iter(plan.inputs))
        self.output_node = plan.outputs[0]
        self.out_delay = int(plan.latency[self.output_node])
        self.layers: Dict[str, object] = {}
        self.delays: Dict[tuple, AbstractProcess] = {}
        self.process_kinds: Dict[str, int] = {}
        self.channel_values = 0  # values of all internal data channels (one message each)
        self._conv_out = {}  # conv node -> its output as a flat (C, H, W) virtual port
        self.inp = InPort(shape=(self.size(self.input_node),))
        self.out = OutPort(shape=(self.size(self.output_node),))
        g = plan.graph
        for n in plan.neuro:
            self.layers[n] = self._build(n, g.nodes[n])
        for a, b in g.edges:
            if b in plan.neuro:
                self._connect(a, b)
        outs = self.ports_of(self.output_node)
        if len(outs) != 1:
            raise LavaMappingError(f"{self.output_node}: the chip's output is a synaptic product (two summed "
                                   f"streams); the network's out port needs one")
        outs[0].connect(self.out)

    @property
    def fixed(self) -> bool:
        return self.q is not None

    @property
    def process_count(self) -> int:
        return sum(self.process_kinds.values())

    def size(self, n) -> int:
        return int(np.prod(self.plan.shapes[n]))

    def _new(self, cls, node, **kw):
        self.process_kinds[cls.__name__] = self.process_kinds.get(cls.__name__, 0) + 1
        proc = cls(**kw)
        proc.name = node  # not every stock constructor takes a name
        return proc

    def _build(self, n, node):
        plan, q, T = self.plan, self.q, self.T
        if n in plan.synapses:
            spec = plan.synapses[n]
            if spec.kind == "conv":  # fixed point: the int64 kernel of mantissas (fixed_point/network.py SynQ)
                if q is None:
                    return self._conv(n, spec, spec.weight, 0)
                return self._conv(n, spec, q.syn[n].mant, q.syn[n].exp)
            if q is not None:
                return self._new(Sparse, n, weights=q.syn[n].mant.astype(np.int32), weight_exp=q.syn[n].exp,
                                 num_message_bits=MSG_BITS)
            return self._new(Sparse, n, weights=spec.matrix(), num_message_bits=MSG_BITS)
        if isinstance(node, nir.LIF):
            offset = (1 + plan.latency[n]) % T  # the step a sample's first input arrives
            if q is not None:
                p = q.lif[n]  # du 4095: u = a_in << 6 each step (no current decay)
                return self._new(LIFReset, n, shape=(self.size(n),), du=4095, dv=p.dv, vth=p.vth,
                                 bias_mant=p.bias_mant.astype(np.int32), bias_exp=p.bias_exp, reset_interval=T,
                                 reset_offset=offset)
            p = plan.lif[n]
            return self._new(LIFReset, n, shape=(self.size(n),), du=1.0, dv=p.k, vth=p.vth, bias_mant=p.bias,
                             reset_interval=T, reset_offset=offset)
        if isinstance(node, nir.Scale):
            return self._new(GradedVec, n, shape=(self.size(n),), vth=0)
        if isinstance(node, SpikeMatMul) and plan.dssa == "synaptic":
            return self._product(n, self.lowerings[n])
        if isinstance(node, SpikeMatMul):
            return self._new(FusedSpikeMatMul, n, lhs_size=self.size(node.lhs), rhs_size=self.size(node.rhs),
                             out_size=self.size(n), lhs_view=node.lhs_view,
                             lhs_bias=plan.bias[node.lhs] if q is None else q.lhs_bias[node.lhs],
                             rhs_view=node.rhs_view, lhs_rows=node.lhs_rows, rhs_rows=node.rhs_rows,
                             transpose_lhs=node.transpose_lhs)
        raise LavaMappingError(f"{n}: no Lava mapping for {type(node).__name__}")

    def _product(self, n, low) -> dict:
        """Synaptic DSSA lowering (passes.dssa_lowering): relay -> selections -> product neurons ->
        reduction, plus the operand-bias term on a one-step DelaySparse."""
        U = low.sel_lhs.shape[0]
        parts = {
            "relay": self._new(GradedVec, f"{n}.relay", shape=(low.sel_lhs.shape[1],), vth=0),
            "sel_l": self._new(Sparse, f"{n}.sel_l", weights=low.sel_lhs, num_message_bits=MSG_BITS),
            "sel_r": self._new(Sparse, f"{n}.sel_r", weights=low.sel_rhs, num_message_bits=MSG_BITS),
            "prod": self._new(ProdNeuron, f"{n}.prod", shape=(U,), vth=0, exp=0),
            "reduce": self._new(Sparse, f"{n}.reduce", weights=low.reduce, num_message_bits=MSG_BITS),
            "bias": self._new(DelaySparse, f"{n}.bias", weights=low.bias_term,
                              delays=(low.bias_term != 0).astype(np.int64), max_delay=1,
                              num_message_bits=MSG_BITS, weight_exp=low.bias_exp),
        }
        self._link(parts["relay"].s_out, parts["sel_l"].s_in)
        self._link(parts["sel_l"].a_out, parts["prod"].a_in1)
        self._link(parts["sel_r"].a_out, parts["prod"].a_in2)
        self._link(parts["prod"].s_out, parts["reduce"].s_in)
        return parts

    def _conv(self, n, spec, kernel, exp):
        """Stock weight-shared Conv (lava/proc/conv/process.py): kernel in Lava's layout, ports
        (X, Y, C) = (W, H, C), stride/padding/dilation as (X, Y). The rest of the graph's ports are
        flat (C, H, W), so the output is exposed as a transposed and flattened virtual port (Lava
        applies it in the receiving PyInPort: lava/magma/core/model/py/ports.py VirtualPortTransformer)."""
        c, h, w = spec.in_shape
        xy = lambda v: (int(v[1]), int(v[0]))  # noqa: E731  NIR (rows, cols) -> Lava (X, Y)
        proc = self._new(Conv, n, weight=to_lava_weight(kernel), input_shape=(w, h, c), padding=xy(spec.padding),
                         stride=xy(spec.stride), dilation=xy(spec.dilation), groups=spec.groups,
                         weight_exp=int(exp), num_message_bits=MSG_BITS)
        self._conv_out[n] = proc.a_out.transpose((2, 1, 0)).flatten()
        return proc

    def _link(self, src, dst) -> None:
        """src -> dst, through a (C,H,W) -> (W,H,C) virtual port where dst is a Conv's XYC input."""
        if len(dst.shape) == 3 and len(src.shape) == 1:
            w, h, c = dst.shape
            src = src.reshape((c, h, w)).transpose((2, 1, 0))
        src.connect(dst)
        self.channel_values += int(np.prod(src.shape))

    def ports_of(self, n) -> List:
        """The ports carrying node n's output (flat (C, H, W)); a synaptic product has two, its
        reduction and its bias term, which the receiver sums. The input node's is ``inp``."""
        if n == self.input_node:
            return [self.inp]
        if n in self._conv_out:
            return [self._conv_out[n]]
        proc = self.layers[n]
        if isinstance(proc, dict):
            return [proc["reduce"].a_out, proc["bias"].a_out]
        return [proc.a_out if hasattr(proc, "a_out") else proc.s_out]

    def _in_ports(self, a, b) -> List:
        proc, node = self.layers[b], self.plan.graph.nodes[b]
        if isinstance(proc, dict):
            return [proc["relay"].a_in] if a == node.lhs else [proc["sel_r"].s_in, proc["bias"].s_in]
        if isinstance(node, SpikeMatMul):
            return [proc.lhs_in if a == node.lhs else proc.rhs_in]
        return [proc.s_in if hasattr(proc, "s_in") else proc.a_in]

    def _connect(self, a, b) -> None:
        d = self.plan.edge_delay.get((a, b), 0)
        srcs = self.ports_of(a)
        if d > 0 and len(srcs) != 1:
            raise LavaMappingError(f"{a}: a synaptic product feeds '{b}' through a delay (unsupported)")
        if d > 0:  # one identity delay process per (source, delay), shared by consumers
            if (a, d) not in self.delays:
                n = self.size(a)
                eye = sp.identity(n, format="csr", dtype=np.int32 if self.q is not None else np.float64)
                if d == 1:
                    proc = self._new(Sparse, f"{a}.delay1", weights=eye, num_message_bits=MSG_BITS)
                else:
                    proc = self._new(DelaySparse, f"{a}.delay{d}", weights=eye,
                                     delays=sp.identity(n, dtype=np.int64, format="csr") * (d - 1),
                                     max_delay=d - 1, num_message_bits=MSG_BITS)
                self._link(srcs[0], proc.s_in)
                self.delays[(a, d)] = proc
            srcs = [self.delays[(a, d)].a_out]
        for src in srcs:
            for port in self._in_ports(a, b):
                self._link(src, port)

    def sub_processes(self) -> Dict[str, AbstractProcess]:
        """Every sub-process by a unique name (its node, or node.part for a product's parts)."""
        procs = {}
        for n, p in self.layers.items():
            procs.update({f"{n}.{k}": v for k, v in p.items()} if isinstance(p, dict) else {n: p})
        procs.update({p.name: p for p in self.delays.values()})
        return procs


@implements(proc=ResformerNetwork, protocol=LoihiProtocol)
class SubResformerNetworkModel(AbstractSubProcessModel):
    """Registers the sub-processes made (and connected to the ports) in ResformerNetwork.__init__;
    the compiler finds a sub-process model's processes among its attributes
    (lava/magma/core/model/sub/model.py find_sub_procs)."""

    def __init__(self, proc):  # no super().__init__: the abstract one raises NotImplementedError
        for i, p in enumerate(proc.sub_processes().values()):
            setattr(self, f"proc_{i}", p)
