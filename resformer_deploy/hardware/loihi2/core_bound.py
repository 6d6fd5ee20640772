"""A lower bound on a fused plan's neuro cores from shapes alone, for sizes too large to plan (issue 29).

Per layer: the fewest cores of any tiling the planner may choose (``partition.Mapper.tile``'s
candidates, same order and limits) that meets every per-core limit when each neuron has only the
destination cores that every plan gives it (``floor_destinations``). A plan's tiling of a layer that
meets the limits (its design-rule check finds nothing there) meets them with its own destination
counts, which are at least these, so it is among those candidates and has at least that many cores.
Summed: a plan with a clean design-rule check has at least ``total`` neuro cores, so a total above a
system's cores refuses the size there for certain (by cores, or by a design rule).

Memory: the Lava plan without its per-neuron offsets (``plan_lava(offsets=False)``) and per-core
arrays; no per-neuron fan-out array is built (the floor is one number per layer).
"""
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import nir
import numpy as np

from resformer_deploy.errors import DeployError
from resformer_deploy.hardware.loihi2 import limits as L
from resformer_deploy.hardware.loihi2.partition import (LIMIT_OF, Mapper, _3d, _chunks, _conv_axis_uncached, _conv_geom,
                                                       _group_span)
from resformer_deploy.lava.plan import plan_lava


@dataclass
class CoreBound:
    layers: Dict[str, int]  # layer -> fewest cores of any tiling meeting the limits
    destinations: Dict[str, int]  # layer -> destination cores every plan gives each of its neurons
    total_destinations: Dict[str, int]  # layer -> the same, summed over its neurons

    @property
    def total(self) -> int:
        return sum(self.layers.values())


def _conv_floor(mp: Mapper, layer, spec) -> Tuple[int, int]:
    """What convolution ``spec`` into ``layer`` adds to its source's fan-out in every tiling of ``layer``
    that may meet its per-core limits (``Mapper.candidates``, routes left out), minimised over them:
    (per input neuron, as ``Mapper.fanout`` counts it: chunks overlapping the neuron's group x row
    chunks covering its row x column chunks covering its column, each at its minimum over neurons;
    summed over input neurons, i.e. the fan-in axons of all of ``layer``'s cores, which separate per axis)."""
    lim = {k: v for k, v in LIMIT_OF.items() if k != "routes"}
    S, _, ok = mp.candidates(layer, lim)
    if not ok.any():  # no tiling meets the limits: no plan has a clean design-rule check
        return 0, 0
    cout, cin_g, kh, kw, groups, st, pad, dil = _conv_geom(spec)
    (_, H, W), (_, Hi, Wi) = layer.shape, _3d(spec.in_shape)
    per, g = cout // groups, np.arange(groups)
    memo: Dict[tuple, Tuple[int, int]] = {}

    def axis(i, s):  # (fewest chunks reaching one input, fan-in summed over chunks) along axis i
        if (i, s) not in memo:
            starts, sizes = _chunks(layer.shape[i], s)
            if i == 0:
                reach = int(np.min(((g + 1) * per - 1) // s - (g * per) // s + 1))
                memo[i, s] = reach, int(_group_span(starts, sizes, per).sum()) * cin_g
            else:
                n_out, n_in, k = (H, Hi, kh) if i == 1 else (W, Wi, kw)
                rows, _, cover = _conv_axis_uncached(starts, n_out, st[i - 1], pad[i - 1], dil[i - 1], k, n_in)
                memo[i, s] = int(cover.sum(0).min()), int(rows.sum())
        return memo[i, s]
    S = S[ok]
    per_axis = [np.array([axis(i, int(s)) for s in S[:, i]], dtype=np.int64).reshape(-1, 2) for i in range(3)]
    got = per_axis[0] * per_axis[1] * per_axis[2]  # (each, total) per tiling
    return int(got[:, 0].min()), int(got[:, 1].min())


def floor_destinations(mp: Mapper) -> Tuple[Dict[str, int], Dict[str, int]]:
    """Per layer (after ``mp.group()``), destination cores in every plan whose layers meet their limits,
    (of each neuron, of all its neurons together): ``Mapper.fanout`` adds exactly 1 per identity or
    reduce synapse, embedded-program operand and host read; a convolution adds ``_conv_floor``, a
    dense synapse >= 1 per input with a nonzero weight; the DSSA selector and bias synapses 0 (a floor)."""
    each = {n: 0 for n in mp.layers}
    total = {n: 0 for n in mp.layers}

    def add(src, n=1, t=None):
        if src in each:
            each[src] += n
            total[src] += mp.layers[src].size * n if t is None else t
    for layer in mp.layers.values():
        for c in layer.conns:
            if c.kind in ("identity", "reduce"):
                add(c.src)
            elif c.kind == "conv" and c.src in each:
                add(c.src, *_conv_floor(mp, layer, c.node))
            elif c.kind == "dense":
                spec: Any = c.node  # a dense conn's node is its SynapseSpec (partition.Conn)
                used = (spec.weight != 0).any(0)
                add(c.src, int(used.all()), int(used.sum()))
    for p in mp.programs:
        add(p.lhs_from)
        add(p.rhs_from)
    for s in mp.host_reads:
        add(s)
    return each, total


def core_lower_bound(graph: nir.NIRGraph, dssa: str = "fused") -> CoreBound:
    """Fewest neuro cores of each layer of ``graph``'s core plan in any plan whose design-rule check is
    clean: its routes per core are at most the limit, so at least (each neuron's floor) x (its neurons)
    and at least the layer's total floor / its cores."""
    if dssa != "fused":  # the synaptic lowering's layers read the offsets (bias synapses)
        raise DeployError(f"core lower bound: only the fused DSSA lowering, got '{dssa}'")
    mp = Mapper(plan_lava(graph, dssa, offsets=False))
    mp.group()
    each, total = floor_destinations(mp)
    cores = {}
    for name, layer in mp.layers.items():
        least = min(-(-total[name] // L.MAX_FANOUT_ROUTES_PER_CORE), layer.size)
        cores[name] = int(mp.tile(layer, each[name], max(least, 1))["neurons"].size)
    return CoreBound(cores, each, total)
