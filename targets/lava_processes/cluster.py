"""Merged run: every Lava process model of a compiled graph run by the calling OS process, its
models and arithmetic unchanged (lava-cpu's ``merge`` option).

Lava 0.10 runs every process model in its own OS process, and each step costs every process a
round trip with the runtime service plus one hand-over per channel message, each through a
multiprocessing semaphore and a helper thread (lava/magma/compiler/channels/pypychannel.py):
~0.9 ms of CPU per process and step on the digits network (66 processes: 62 ms of CPU a step,
measured on a loaded 2-core AMD EPYC; far more than its arithmetic). A merged run starts from the
Lava compiler's own builders of the whole graph (``Executable.proc_builders``,
``channel_builders``: model selection, Var initial values and virtual-port transforms exactly as
a normal run has them) and builds every member model with ``PyProcessBuilder.build()`` here.
Channels between members become in-memory queues with the shm channel's copy semantics
(CspSendPort.send assigns into a buffer of the channel's dtype and shape, CspRecvPort.recv
returns a copy). Each step calls every member's ``run_spk`` in a topological order of the
channels (the graph is feed-forward; within a step a message is received in the step it was
sent, as under LoihiProtocol), so every member computes what it computes as its own process.
No Lava runtime: no fork, no runtime service, no shared memory (a first version ran the members
in one Lava process under Lava's runtime: its start-up, per-step handshakes and stop were ~0.4 s
of a 20-sample digits run). Not for models needing a management or learning phase (refused).
"""
from collections import deque

import numpy as np
from lava.magma.core.model.py.model import PyLoihiProcessModel


class _Queue:
    """One channel in memory: its send side and receive side (the same object)."""

    def __init__(self, name_src: str, name_dst: str, shape, d_type):
        self.src_name, self.dst_name = name_src, name_dst
        self.shape, self.d_type = tuple(shape), d_type
        self.items = deque()


class _CspEnd:
    """The part of a CSP port (pypychannel.CspSendPort / CspRecvPort) a PyPort uses."""

    def __init__(self, q: _Queue, send: bool):
        self.q, self._send = q, send
        self.name = q.src_name if send else q.dst_name
        self.shape, self.d_type, self.size = q.shape, q.d_type, 1

    def send(self, data):
        if data.shape != self.shape:
            raise AssertionError(f"{data.shape=} {self.shape=} Mismatch")
        buf = np.empty(self.shape, self.d_type)
        buf[:] = data[:]  # as CspSendPort.send: cast into the channel's buffer
        self.q.items.append(buf)

    def recv(self):
        if not self.q.items:
            raise RuntimeError(f"cluster: nothing to receive on {self.name} (members out of order)")
        return self.q.items.popleft()  # a buffer of its own, as CspRecvPort.recv's copy

    def peek(self):
        return self.q.items[0].copy()

    def probe(self) -> bool:
        return bool(self.q.items) if not self._send else True

    def is_msg_size_static(self) -> bool:
        return True

    def start(self):
        pass

    def join(self):
        pass


def cluster_members(executable):
    """(builders in a topological order, queues) for every process of a compiled Executable whose
    channels all run between its processes: the channels' csp ends are set on the builders as
    Runtime._build_channels sets real ones (csp ports, and the source PyPort id for virtual-port
    transforms)."""
    from lava.magma.compiler.builders.channel_builder import ChannelBuilderMp
    from lava.magma.core.process.ports.ports import create_port_id
    builders = executable.proc_builders
    procs = list(builders)
    succ = {p: set() for p in procs}
    indeg = {p: 0 for p in procs}
    for cb in executable.channel_builders:
        if not isinstance(cb, ChannelBuilderMp):
            raise ValueError(f"cluster: channel {type(cb).__name__} is not a Python-Python channel")
        s, d = cb.src_port_initializer, cb.dst_port_initializer
        q = _Queue(s.name, d.name, s.shape, s.d_type)
        src_end, dst_end = _CspEnd(q, True), _CspEnd(q, False)
        builders[cb.src_process].set_csp_ports([src_end])
        builders[cb.dst_process].set_csp_ports([dst_end])
        builders[cb.dst_process].add_csp_port_mapping(create_port_id(cb.src_process.id, s.name), dst_end)
        if cb.dst_process not in succ[cb.src_process]:
            succ[cb.src_process].add(cb.dst_process)
            indeg[cb.dst_process] += 1
    order, ready = [], [p for p in procs if indeg[p] == 0]
    while ready:  # Kahn's algorithm, stable in the compiler's order
        p = ready.pop(0)
        order.append(p)
        for d in sorted(succ[p], key=procs.index):
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
    if len(order) != len(procs):
        raise ValueError("cluster: the process graph has a cycle; its members cannot run in one order")
    for p in order:
        model = builders[p].proc_model
        for guard in ("pre_guard", "lrn_guard", "post_guard"):
            if getattr(model, guard) is not getattr(PyLoihiProcessModel, guard):
                raise ValueError(f"cluster: {model.__name__} has its own {guard} (a management or "
                                 f"learning phase), which a cluster does not run")
    return [builders[p] for p in order]


class MergedRun:
    """The members of ``builders`` (cluster_members) built in this process, stepped in order."""

    def __init__(self, builders):
        self.members = [b.build() for b in builders]
        self.time_step = 0
        for m in self.members:
            m.phase = PyLoihiProcessModel.Phase.SPK  # the only phase a member runs
        # time_step straight into each model's __dict__: what its __setattr__ does for a non-port value
        self._steps = [(m.__dict__, m.run_spk) for m in self.members]

    def run(self, num_steps: int) -> None:
        for _ in range(num_steps):
            self.time_step += 1
            t = self.time_step
            for attrs, run_spk in self._steps:  # each as its own process's _spike would run it
                attrs["time_step"] = t
                run_spk()
