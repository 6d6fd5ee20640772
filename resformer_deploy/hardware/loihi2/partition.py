"""Partition the neuromorphic part of a NIR graph onto Loihi 2 neuro cores (a mapping estimate).

Layer grouping: synapses live on the cores of the neurons they feed, so the unit of mapping is
a *neuron layer*:
* every ``nir.LIF`` (kind ``lif``) and every ``nir.Scale`` residual junction (``junction``),
  with the connections realising its inbound edges: a synapse node in front of it becomes
  ``conv`` / ``dense`` synapses from the synapse node's own source; a direct edge from a
  neuron layer or from the host becomes ``identity`` synapses (one per element);
* ``--dssa synaptic``: per SpikeMatMul a graded ``relay`` layer (lhs operand, holding the
  lhs convolution's synapses) and a ``product`` layer (one neuron per term, coordinates
  (groups*m, n, k)) with ``sel_lhs`` / ``sel_rhs`` synapses; the consuming LIF gets ``reduce``
  (k per output) and ``bias`` (k per output, upper bound) synapses, in coordinates (groups*m, n, 1);
* ``--dssa fused``: one embedded-core (Lakemont) program per SpikeMatMul; a convolution read
  by a program (or by the host) first lands in a shared graded ``relay`` layer; the program's
  output enters its consumer through identity synapses.
Path-balancing delays (``LavaPlan.edge_delay``) are per-synapse delays of the consumer's inbound
synapses (identity synapses for residual paths); delays into a fused program are buffered by
the program.

Synapse geometry (kind, kernel, stride, padding, dilation, groups, input and output shapes)
is read from the Lava plan's typed ``SynapseSpec`` (``plan.synapses``, lava/specs.py), the one
description every simulator uses too; the NIR node is not consulted for it.

Tiling: a layer's neurons are a 3-D row-major box (channels, rows, cols) cut into equal chunks
per axis; the coarsest tiling (fewest cores; ties: fewest spatial splits) whose every core
satisfies neurons, memory, fan-in axons and fan-out routes is chosen. Every per-core metric is
a sum of separable terms (products of per-axis vectors), so no connection is ever unrolled.
If even one neuron cannot fit, the limit is relaxed to ceil(need/limit) times the limit (as if
the inputs were split that many ways; an estimate) and the layer is recorded as unmappable
(reported by the design-rule check, not raised).
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import nir
import numpy as np

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.errors import InternalError
from resformer_deploy.lava.plan import LavaPlan, plan_lava
from resformer_deploy.lava.specs import SynapseSpec
from resformer_deploy.hardware.loihi2 import limits as L
from resformer_deploy.hardware.loihi2.core_plan import (METRICS, CoreLayer, CorePlan, DelayLine, EmbeddedProgram,
                                                        InboundDelay, Unmappable)

PER_SYNAPSE = ("identity", "dense", "sel_lhs", "sel_rhs", "reduce", "bias")
LIMIT_OF = {"neurons": L.MAX_NEURONS_PER_CORE, "memory": L.CORE_MEMORY_BYTES,
            "fan_in": L.MAX_FANIN_AXONS_PER_CORE, "routes": L.MAX_FANOUT_ROUTES_PER_CORE}


@dataclass
class Conn:
    kind: str  # conv | dense | identity | sel_lhs | sel_rhs | reduce | bias
    src: str  # source layer, or "host:<node>" / "embedded:<node>"
    node: object = None  # the SynapseSpec (conv / dense), or the SpikeMatMul
    via: str = ""  # graph node realised by these synapses
    delay: int = 0


@dataclass
class Layer:
    name: str
    kind: str  # lif | junction | relay | product
    node: str
    shape: tuple  # 3-D coordinates: row-major reshape of the flat neuron index
    conns: List[Conn] = field(default_factory=list)
    chunks: Optional[tuple] = None  # set by the mapper
    approx: bool = False  # some fan-in counts are upper bounds
    unmappable: List[Unmappable] = field(default_factory=list)
    row: Optional[CoreLayer] = None

    @property
    def size(self):
        return int(np.prod(self.shape))


def _3d(shape):
    s = tuple(int(v) for v in shape)
    return (s + (1, 1, 1))[:3] if len(s) < 3 else (s[0], s[1], int(np.prod(s[2:])))


def _chunks(D, s):
    starts = np.arange(0, D, s)
    return starts, np.minimum(starts + s, D) - starts


def _sizes(D):
    """Distinct chunk sizes (coarsest first): one per achievable number of chunks."""
    return sorted({math.ceil(D / c) for c in range(1, D + 1)}, reverse=True)


# ---- per-connection separable terms ---------------------------------------------------------

_AXIS_CACHE: Dict[tuple, tuple] = {}


def _conv_axis(starts, sizes, n_out, stride, pad, dil, k, n_in):
    """Per chunk of output rows: distinct input rows covered, valid taps summed, coverage mask."""
    key = (int(sizes[0]) if len(sizes) else 0, n_out, int(stride), int(pad), int(dil), k, n_in)
    if key not in _AXIS_CACHE:
        if len(_AXIS_CACHE) > 4096:
            _AXIS_CACHE.clear()
        _AXIS_CACHE[key] = _conv_axis_uncached(starts, n_out, stride, pad, dil, k, n_in)
    return _AXIS_CACHE[key]


def _conv_axis_uncached(starts, n_out, stride, pad, dil, k, n_in):
    oy = np.arange(n_out)
    iy = oy[:, None] * stride - pad + np.arange(k)[None, :] * dil
    valid = (iy >= 0) & (iy < n_in)
    chunk = np.searchsorted(starts, oy, side="right") - 1
    cover = np.zeros((len(starts), n_in), bool)
    cover[np.broadcast_to(chunk[:, None], iy.shape)[valid], iy[valid]] = True
    taps = np.bincount(chunk, weights=valid.sum(1), minlength=len(starts))
    return cover.sum(1).astype(np.float64), taps, cover


def _conv_geom(spec: SynapseSpec):
    cout, cin_g, kh, kw = spec.weight.shape
    return cout, cin_g, kh, kw, spec.groups, spec.stride, spec.padding, spec.dilation


def _group_span(starts, sizes, per):
    return ((starts + sizes - 1) // per - starts // per + 1).astype(np.float64)


class Mapper:
    def __init__(self, plan: LavaPlan):
        self.plan = plan
        self.g = plan.graph
        self.neuro = set(plan.neuro)
        self.preds = {n: [a for a, b in self.g.edges if b == n] for n in self.g.nodes}
        self.layers: Dict[str, Layer] = {}
        self.programs: List[EmbeddedProgram] = []
        self.problems: List[str] = []
        self.host_reads: List[str] = []
        self.dest: Dict[str, object] = {}

    # -- grouping -----------------------------------------------------------------------------
    def delay(self, a, b):
        return int(self.plan.edge_delay.get((a, b), 0))

    def add(self, layer):
        self.layers[layer.name] = layer
        return layer

    def relay_for(self, n):
        """Shared graded relay layer holding the synapses of synapse node n (read as a value)."""
        name = f"{n}:relay"
        if name not in self.layers:
            self.add(Layer(name, "relay", n, _3d(self.plan.shapes[n]), self.conns_into(n, None)))
        return name

    def src_of(self, n):
        if n not in self.neuro:
            return f"host:{n}"
        node = self.g.nodes[n]
        if isinstance(node, (nir.LIF, nir.Scale)):
            return n
        if isinstance(node, SpikeMatMul):
            return f"embedded:{n}"
        return self.relay_for(n)

    def conns_into(self, p, d):
        """Connections realising the edge p -> d (d None: p's own synapses into its relay)."""
        node = self.g.nodes[p]
        spec = self.plan.synapses.get(p)
        if spec is not None:
            (q,) = self.preds[p]
            if q in self.plan.synapses:
                self.problems.append(f"{p}: synapses fed directly by synapses ({q}) are not supported")
            return [Conn(spec.kind, self.src_of(q), spec, p, self.delay(q, p) + (self.delay(p, d) if d else 0))]
        if p in self.neuro and isinstance(node, SpikeMatMul) and self.plan.dssa == "synaptic":
            from resformer_deploy.passes.dssa_lowering import PRODUCT_HOPS
            conns = [Conn("reduce", f"{p}:prod", node, p, self.delay(p, d))]
            if np.any(self.plan.bias.get(node.lhs, 0.0)):
                conns.append(Conn("bias", self.src_of(node.rhs), node, p,
                                  self.delay(node.rhs, p) + self.delay(p, d) + PRODUCT_HOPS - 1))
            return conns
        return [Conn("identity", self.src_of(p), None, p, self.delay(p, d) if d else 0)]

    def group(self):
        g, plan = self.g, self.plan
        for n in plan.neuro:
            node = g.nodes[n]
            if isinstance(node, (nir.LIF, nir.Scale)):
                conns = [c for p in self.preds[n] for c in self.conns_into(p, n)]
                shape = _3d(plan.shapes[n])
                prod = [c for c in conns if c.kind in ("reduce", "bias")]
                if prod:
                    G, (m, k, nn) = prod[0].node.groups, prod[0].node.product_dims()
                    shape = (G * m, nn, 1)
                for c in conns:
                    if c.kind == "conv" and _3d(c.node.out_shape) != shape:
                        self.problems.append(f"{n}: convolution {c.via} and other inputs use different layouts")
                self.add(Layer(n, "lif" if isinstance(node, nir.LIF) else "junction", n, shape, conns))
            elif isinstance(node, SpikeMatMul):
                G, (m, k, nn) = node.groups, node.product_dims()
                if not isinstance(g.nodes.get(node.rhs), nir.LIF):
                    self.problems.append(f"{n}: spike operand {node.rhs} is not a LIF layer")
                if plan.dssa == "fused":
                    lhs = self.src_of(node.lhs)
                    self.programs.append(EmbeddedProgram(
                        n, lhs, self.src_of(node.rhs), G, m, k, nn, G * m * k * nn,
                        {node.lhs: self.delay(node.lhs, n), node.rhs: self.delay(node.rhs, n)},
                        int(np.prod(node.lhs_shape) + np.prod(node.rhs_shape))))
                else:
                    relay = self.add(Layer(f"{n}:relay", "relay", n, _3d(node.lhs_shape),
                                           self.conns_into(node.lhs, n)))
                    self.add(Layer(f"{n}:prod", "product", n, (G * m, nn, k), [
                        Conn("sel_lhs", relay.name, node, n, 0),
                        Conn("sel_rhs", self.src_of(node.rhs), node, n, self.delay(node.rhs, n))]))
            elif n in plan.outputs and n in plan.synapses:
                self.relay_for(n)
        for n in plan.outputs:
            self.host_reads.append(self.src_of(n))

    # -- per-connection terms -----------------------------------------------------------------
    def terms(self, layer, conn, ch):
        """(fan_in terms, synapse terms, extra memory terms); each term = 3 per-axis vectors."""
        (s0, a), (s1, b), (s2, c) = ch
        one = [np.ones(len(x[0])) for x in ch]
        if conn.kind == "identity":
            t = [(a, b, c)]
            return t, t, []
        if conn.kind == "conv":
            cout, cin_g, kh, kw, groups, st, pad, dil = _conv_geom(conn.node)
            (_, H, W), (_, Hi, Wi) = layer.shape, _3d(conn.node.in_shape)
            cin_t = _group_span(s0, a, cout // groups) * cin_g
            rows, taps_r, _ = _conv_axis(s1, b, H, st[0], pad[0], dil[0], kh, Hi)
            cols, taps_c, _ = _conv_axis(s2, c, W, st[1], pad[1], dil[1], kw, Wi)
            return ([(cin_t, rows, cols)], [(a * cin_g, taps_r, taps_c)],
                    [(a * cin_g * kh * kw * L.CONV_WEIGHT_BYTES, one[1], one[2])])
        if conn.kind == "dense":
            w = conn.node.weight != 0
            nnz = np.add.reduceat(w.sum(1), s0).astype(np.float64)
            fan = np.array([w[s:s + n].any(0).sum() for s, n in zip(s0, a)], dtype=np.float64)
            return [(fan, one[1], one[2])], [(nnz, one[1], one[2])], []
        mm = conn.node
        m, k, _ = mm.product_dims()
        gs = _group_span(s0, a, m)
        if conn.kind == "sel_lhs":
            return [(a, one[1], c)], [(a, b, c)], []
        if conn.kind == "sel_rhs":
            return [(gs, b, c)], [(a, b, c)], []
        if conn.kind == "reduce":
            return [(a, b, c * k)], [(a, b, c * k)], []
        if conn.kind == "bias":
            return [(gs, b, c * k)], [(a, b, c * k)], []
        raise ValueError(conn.kind)

    def all_terms(self, layer, sizes):
        ch = [_chunks(D, s) for D, s in zip(layer.shape, sizes)]
        state = L.NEURON_STATE_BYTES[layer.kind]
        neur = [(ch[0][1], ch[1][1], ch[2][1])]
        fan, syn, mem = [], [], [(ch[0][1] * state, ch[1][1], ch[2][1])]
        for conn in layer.conns:
            f, s, extra = self.terms(layer, conn, ch)
            fan += f
            syn += s
            mem += extra + [(t[0] * L.AXON_IN_BYTES, t[1], t[2]) for t in f]
            if conn.kind in PER_SYNAPSE:
                mem += [(t[0] * L.SYNAPSE_BYTES, t[1], t[2]) for t in s]
        return ch, neur, fan, syn, mem

    def evaluate(self, layer, sizes, dest=None, exact=True, lim=None):
        """Per-core metrics for chunk sizes; exact=False: upper bounds of the maxima (cheap)."""
        ch, neur, fan, syn, mem = self.all_terms(layer, sizes)
        if exact:
            full = lambda terms: sum((t[0][:, None, None] * t[1][None, :, None] * t[2][None, None, :]  # noqa
                                      for t in terms), np.zeros((len(ch[0][0]), len(ch[1][0]), len(ch[2][0]))))
            out = {"neurons": full(neur), "fan_in": full(fan)}
            if lim is not None and (out["fan_in"].max() > lim["fan_in"] or out["neurons"].max() > lim["neurons"]):
                return None
            out["memory"] = full(mem)
            if lim is not None and out["memory"].max() > lim["memory"]:
                return None
            out["synapses"] = full(syn)
            if dest is not None:
                out["routes"] = self.box_sums(layer, dest, ch)
            return out
        bound = lambda terms: float(sum(np.max(t[0]) * np.max(t[1]) * np.max(t[2]) for t in terms))  # noqa
        out = {"neurons": bound(neur), "memory": bound(mem), "fan_in": bound(fan)}
        if dest is not None:
            out["routes"] = float(np.max(dest))
        return out

    @staticmethod
    def box_sums(layer, dest, ch):
        if np.isscalar(dest):
            return dest * (ch[0][1][:, None, None] * ch[1][1][None, :, None] * ch[2][1][None, None, :])
        d = np.asarray(dest, dtype=np.float64).reshape(layer.shape)
        for ax in range(3):
            d = np.add.reduceat(d, ch[ax][0], axis=ax)
        return d

    # -- tiling -------------------------------------------------------------------------------
    def tile(self, layer, dest=None, min_cores=1):
        """The coarsest tiling meeting the limits (fan-out ``dest`` per neuron: routes too), of at least
        ``min_cores`` cores; returns its per-core metrics and sets ``layer.chunks``."""
        lim = {k: v for k, v in LIMIT_OF.items() if k != "routes" or dest is not None}
        finest = self.evaluate(layer, (1, 1, 1), dest, exact=False)
        layer.unmappable = []
        if any(finest[k] > lim[k] for k in lim) and layer.size <= 2_000_000:
            finest = {k: float(np.max(v)) for k, v in self.evaluate(layer, (1, 1, 1), dest).items()}
        for k in lim:
            if finest[k] > lim[k]:
                layer.unmappable.append(Unmappable(k, int(finest[k]), lim[k]))
                # estimate only: as if the inputs were split over ceil(need/limit) cores' worth of the resource
                # (relaxing to exactly one neuron's need would force one neuron per core)
                lim[k] = lim[k] * math.ceil(finest[k] / lim[k])
        S, cores, ok = self.candidates(layer, lim, dest)
        ok &= cores >= min_cores
        D = layer.shape
        spatial = (S[:, 1] < D[1]).astype(int) + (S[:, 2] < D[2])
        idx = np.nonzero(ok)[0]
        idx = idx[np.lexsort((-S[idx, 0], spatial[idx], cores[idx]))]
        for i in idx:
            sizes = tuple(int(v) for v in S[i])
            ev = self.evaluate(layer, sizes, dest, lim=lim)
            if ev is not None and all(float(ev[k].max()) <= lim[k] for k in lim):
                layer.chunks = sizes
                return ev
        raise AssertionError(f"{layer.name}: no tiling found (finest tiling should always fit)")

    def candidates(self, layer, lim, dest=None):
        """Every tiling ``tile`` considers (chunk sizes per axis, one row each), its core count, and
        whether it passes necessary conditions of ``lim`` (a tiling failing them cannot meet ``lim``)."""
        D = layer.shape
        S = np.stack([x.ravel() for x in np.meshgrid(*[np.array(_sizes(d)) for d in D], indexing="ij")], 1)
        cores = np.prod([-(-np.array(D)[i] // S[:, i]) for i in range(3)], axis=0)
        nmax = S.prod(1)
        ok = (nmax <= lim["neurons"]) & (nmax * L.NEURON_STATE_BYTES[layer.kind] <= lim["memory"])
        # exact per-term maxima are products of per-axis maxima: max over terms is a lower bound
        cands = [np.array(_sizes(d)) for d in D]
        pos = [np.searchsorted(-c, -S[:, i]) for i, c in enumerate(cands)]
        for metric, which in (("fan_in", 2), ("memory", 4)):
            per = []  # per term: 3 arrays (axis maxima per candidate size)
            for kk in range(max(len(c) for c in cands)):
                sizes = tuple(int(c[min(kk, len(c) - 1)]) for c in cands)
                terms = self.all_terms(layer, sizes)[which]
                if not per:
                    per = [[[] for _ in range(3)] for _ in terms]
                for t, term in enumerate(terms):
                    for i in range(3):
                        if kk < len(cands[i]):
                            per[t][i].append(float(np.max(term[i])) if len(term[i]) else 0.0)
            lb = np.zeros(len(S))
            for axes in per:
                lb = np.maximum(lb, np.prod([np.asarray(axes[i])[pos[i]] for i in range(3)], axis=0))
            ok &= lb <= lim[metric]
        if dest is not None:  # routes: uniform fan-out is exact; otherwise the mean is a lower bound
            ok &= (dest * nmax if np.isscalar(dest) else np.sum(dest) / cores) <= lim["routes"]
        return S, cores, ok

    # -- fan-out ------------------------------------------------------------------------------
    def fanout(self):
        """Destination cores per source neuron (flat arrays, or scalars when uniform)."""
        dest: Dict[str, object] = {n: 0 for n in self.layers}

        def acc(src, v):
            if src not in dest:
                return  # host / embedded sources: no neuro-core fan-out limit
            cur = dest[src]
            if np.isscalar(cur) and np.isscalar(v):
                dest[src] = cur + v
            else:
                dest[src] = np.broadcast_to(np.asarray(cur, dtype=np.float64), (self.layers[src].size,)) + v

        for layer in self.layers.values():
            ch = [_chunks(D, s) for D, s in zip(layer.shape, layer.chunks)]
            nch = [len(x[0]) for x in ch]
            for conn in layer.conns:
                if conn.src not in dest:
                    continue
                if conn.kind in ("identity", "reduce"):
                    acc(conn.src, 1)
                elif conn.kind == "conv":
                    cout, cin_g, kh, kw, groups, st, pad, dil = _conv_geom(conn.node)
                    Ci, Hi, Wi = _3d(conn.node.in_shape)
                    C, H, W = layer.shape
                    per = cout // groups
                    g0, g1 = ch[0][0] // per, (ch[0][0] + ch[0][1] - 1) // per
                    cnt_c = np.zeros(Ci + 1)
                    np.add.at(cnt_c, g0 * cin_g, 1)
                    np.add.at(cnt_c, (g1 + 1) * cin_g, -1)
                    cnt_c = np.cumsum(cnt_c)[:Ci]
                    cnt_r = _conv_axis(ch[1][0], ch[1][1], H, st[0], pad[0], dil[0], kh, Hi)[2].sum(0)
                    cnt_x = _conv_axis(ch[2][0], ch[2][1], W, st[1], pad[1], dil[1], kw, Wi)[2].sum(0)
                    acc(conn.src, (cnt_c[:, None, None] * cnt_r[None, :, None] * cnt_x[None, None, :]).ravel())
                elif conn.kind == "dense":
                    w = conn.node.weight != 0
                    acc(conn.src, np.sum([w[s:s + n].any(0) for s, n in zip(*ch[0])], axis=0).astype(float))
                else:
                    mm = conn.node
                    G, (m, k, n) = mm.groups, mm.product_dims()
                    v = np.zeros(self.layers[conn.src].size)
                    lcols, rcols = int(mm.lhs_view[1]), int(mm.rhs_view[1])
                    if conn.kind == "sel_lhs":
                        g_, m_, k_ = np.meshgrid(np.arange(G), np.arange(m), np.arange(k), indexing="ij")
                        lidx = (mm.lhs_rows[g_, k_] * lcols + m_ if mm.transpose_lhs
                                else mm.lhs_rows[g_, m_] * lcols + k_)
                        np.add.at(v, lidx.ravel(), nch[1])
                    else:  # sel_rhs, bias: rhs element (g, k, n) -> gm chunks overlapping group g
                        s0, a0 = ch[0]
                        gch = np.array([np.sum((s0 < (gg + 1) * m) & (s0 + a0 > gg * m)) for gg in range(G)])
                        g_, k_, n_ = np.meshgrid(np.arange(G), np.arange(k), np.arange(n), indexing="ij")
                        np.add.at(v, (mm.rhs_rows[g_, k_] * rcols + n_).ravel(), gch[g_].ravel())
                    acc(conn.src, v)
        for p in self.programs:
            acc(p.lhs_from, 1)
            acc(p.rhs_from, 1)
        for s in self.host_reads:
            acc(s, 1)
        return dest

    # -- whole network ------------------------------------------------------------------------
    def run(self):
        self.group()
        for layer in self.layers.values():
            if any(c.kind in ("sel_lhs", "sel_rhs", "bias") for c in layer.conns):
                mm = next(c.node for c in layer.conns if c.node is not None and isinstance(c.node, SpikeMatMul))
                layer.approx = not (len(np.unique(mm.lhs_rows)) == mm.lhs_rows.size
                                    and len(np.unique(mm.rhs_rows)) == mm.rhs_rows.size)
            layer.ev = self.tile(layer)
        for _ in range(8):  # fan-out routes depend on the consumers' tilings: iterate to a fixed point
            dest = self.fanout()
            changed = False
            for name, layer in self.layers.items():
                ev = self.evaluate(layer, layer.chunks, dest[name])
                if float(ev["routes"].max()) > L.MAX_FANOUT_ROUTES_PER_CORE and not any(
                        u.metric == "routes" for u in layer.unmappable):
                    old = layer.chunks
                    ev = self.tile(layer, dest[name])
                    changed |= layer.chunks != old
                layer.ev = ev
            if not changed:
                break
        self.dest = dest
        for name, layer in self.layers.items():
            layer.ev = self.evaluate(layer, layer.chunks, dest[name])
            layer.row = self.row(layer, dest[name])

    def row(self, layer, dest) -> CoreLayer:
        ev = layer.ev
        cores = int(ev["neurons"].size)
        util = {k: float(ev[k].max()) / LIMIT_OF[k] for k in METRICS}
        limiting = max(util, key=lambda k: util[k]) if cores > 1 else "-"
        if layer.unmappable:
            limiting = "UNMAPPABLE " + ",".join(u.metric for u in layer.unmappable)
        memory = int(round(ev["memory"].sum()))
        return CoreLayer(
            layer=layer.name, kind=layer.kind, node=layer.node, coords=list(layer.shape),
            inputs=sorted({c.kind for c in layer.conns}), neurons=int(layer.size),
            synapses=int(round(ev["synapses"].sum())), memory_bytes=memory,
            synaptic_memory_bytes=memory - layer.size * L.NEURON_STATE_BYTES[layer.kind], cores=cores,
            split=[len(range(0, D, s)) for D, s in zip(layer.shape, layer.chunks)], chunk=list(layer.chunks),
            max_core_neurons=int(ev["neurons"].max()), max_core_memory=int(round(ev["memory"].max())),
            max_fan_in=int(round(ev["fan_in"].max())), max_fan_out_routes=int(round(ev["routes"].max())),
            max_neuron_fan_out_cores=int(np.max(dest)) if np.size(dest) else 0,
            utilisation={k: round(v, 4) for k, v in util.items()}, limiting=limiting, unmappable=layer.unmappable,
            fan_in_upper_bound=layer.approx,
            delays=[InboundDelay(c.src, c.via, c.delay) for c in layer.conns if c.delay])


def _row(layer: Layer) -> CoreLayer:
    if layer.row is None:  # Mapper.run() gives every layer its row
        raise InternalError(f"Loihi 2 mapping: layer '{layer.name}' has no core plan row")
    return layer.row


def map_to_loihi2(graph_or_plan, dssa: str = "fused") -> CorePlan:
    """Map a NIR graph (or a LavaPlan, whose own DSSA lowering is used) onto Loihi 2 neuro cores."""
    plan = graph_or_plan if isinstance(graph_or_plan, LavaPlan) else plan_lava(graph_or_plan, dssa)
    mp = Mapper(plan)
    mp.run()
    rows = [_row(lay) for lay in mp.layers.values()]
    delays = [DelayLine(r.layer, d.src, d.via, d.delay, "synaptic delay") for r in rows for d in r.delays]
    delays += [DelayLine(p.product, k, p.product, v, "embedded buffer")
               for p in mp.programs for k, v in p.buffered_delays.items() if v]
    meta = plan.graph.metadata or {}
    model = {k: meta.get(k) for k in ("model", "variant", "time_steps") if k in meta}
    model["host_pre"], model["host_post"] = plan.host_pre, plan.host_post
    model["pipeline_latency_steps"] = plan.total_latency
    core_plan = CorePlan(plan.dssa, rows, mp.programs, delays, mp.problems, [], model)
    t = core_plan.totals
    if t.chips_for_embedded_programs > t.chips_for_neuro_cores:
        core_plan.warnings.append(
            f"fused DSSA lowering: {t.embedded_programs} embedded-core programs need {t.chips_for_embedded_programs} "
            f"chip(s) ({L.USABLE_EMBEDDED_CORES_PER_CHIP} usable embedded cores per chip, Lava "
            f"MAX_EMBEDDED_CORES_PER_CHIP) while the neuro cores fit in {t.chips_for_neuro_cores}; "
            f"--dssa synaptic needs no embedded cores")
    if any(r.fan_in_upper_bound for r in rows):
        core_plan.warnings.append("some DSSA operand rows are shared between groups: their fan-in counts are upper "
                                  "bounds")
    return core_plan
