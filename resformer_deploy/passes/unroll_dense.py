"""Pass: unroll a graph into dense 1-D form (small models only).

Requires: a graph accepted by exporters.graph_check without MaxPool2d.
Ensures:  every Conv2d / AvgPool2d / SumPool2d becomes an ``Affine``/``Linear`` with the
          unrolled matrix (exact: the same products, summed in another order); every
          elementwise node (LIF, IF, Scale, Threshold) gets the flattened shape; Flatten
          nodes disappear except one right after the Input; SpikeMatMul operands are 1-D.
Why: NIR 1.0.8 has no node that turns a vector back into (C,H,W), so a graph that must
pass through Linear layers (the standard lowering of SpikeMatMul) has to be 1-D
throughout. It also sidesteps NIR's grouped-convolution typing bug.
"""
import nir
import numpy as np
import scipy.sparse as sp

from exporters.graph_check import check_graph
from exporters.nir_ext import MaxPool2d, SpikeMatMul
from resformer_deploy.errors import DeployError

MAX_MATRIX = 50_000_000  # elements of one unrolled matrix (~200 MB float32)


def _pair(v):
    return tuple(int(x) for x in np.broadcast_to(np.asarray(v).reshape(-1), (2,)))


def window_matrix(weight, in_shape, out_shape, stride=1, padding=0, dilation=1, groups=1) -> sp.csr_matrix:
    """Unrolled (out x in) sparse connectivity of a (grouped) 2-D cross-correlation, exact weights.

    Rows and columns are row-major flat indices of (C, H, W), the layout of every Lava port; taps
    that land in the zero padding make no synapse. The one convolution unroller, for this pass
    (the dense-form flow, small models) and as the tests' independent oracle: the simulators,
    the quantizer, the plan and the operation counts never unroll (out x kernel synapses: 3.5 G
    at ti @224, against 10.7 M kernel weights)."""
    w = np.asarray(weight, dtype=np.float64)
    cout, cin_g, kh, kw = w.shape
    Cin, H, W = (int(v) for v in in_shape)
    _, Ho, Wo = (int(v) for v in out_shape)
    g = int(groups)
    st, pad, dil = _pair(stride), _pair(padding), _pair(dilation)
    co, oy, ox, ci, ky, kx = np.meshgrid(np.arange(cout), np.arange(Ho), np.arange(Wo), np.arange(cin_g),
                                         np.arange(kh), np.arange(kw), indexing="ij")
    iy = oy * st[0] - pad[0] + ky * dil[0]
    ix = ox * st[1] - pad[1] + kx * dil[1]
    cabs = (co // (cout // g)) * cin_g + ci
    ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    vals = w[co, ci, ky, kx][ok]
    rows = ((co * Ho + oy) * Wo + ox)[ok]
    cols = ((cabs * H + iy) * W + ix)[ok]
    m = sp.csr_matrix((vals, (rows, cols)), shape=(cout * Ho * Wo, Cin * H * W))
    m.eliminate_zeros()
    return m


def conv_matrix(node: nir.Conv2d, in_shape, out_shape) -> sp.csr_matrix:
    """window_matrix of a nir.Conv2d (its bias is not part of the matrix)."""
    return window_matrix(node.weight, in_shape, out_shape, node.stride, node.padding, node.dilation, node.groups)


def pool_matrix(node, in_shape, out_shape) -> sp.csr_matrix:
    """nir.AvgPool2d / SumPool2d as a depthwise window of constant weights: 1/(kh kw) (average,
    padding counted, as torch's avg_pool2d count_include_pad=True) or 1 (sum)."""
    kh, kw = _pair(node.kernel_size)
    c = int(in_shape[0])
    w = np.full((c, 1, kh, kw), 1.0 / (kh * kw) if isinstance(node, nir.AvgPool2d) else 1.0)
    return window_matrix(w, in_shape, out_shape, node.stride, node.padding, 1, c)


def unroll_dense(graph: nir.NIRGraph) -> nir.NIRGraph:
    shapes, problems = check_graph(graph)
    if problems:
        raise DeployError("cannot unroll an invalid graph: " + "; ".join(problems))
    preds = {n: [a for a, b in graph.edges if b == n] for n in graph.nodes}
    violations = []
    for name, node in graph.nodes.items():
        if isinstance(node, MaxPool2d):
            violations.append(f"{name}: max-pooling has no standard NIR form (host partition)")
        elif isinstance(node, (nir.Conv2d, nir.AvgPool2d, nir.SumPool2d)):
            size = int(np.prod(shapes[preds[name][0]])) * int(np.prod(shapes[name]))
            if size > MAX_MATRIX:
                violations.append(f"{name}: unrolled matrix of {size:,} elements (limit {MAX_MATRIX:,})")
    if violations:
        raise DeployError(f"graph has no dense standard form: {len(violations)} violation(s): "
                          + "; ".join(violations))
    nodes, edges, bypass = {}, [], {}
    inp = next(n for n, v in graph.nodes.items() if isinstance(v, nir.Input))
    for name, node in graph.nodes.items():
        meta = dict(node.metadata)
        src_shape = shapes[preds[name][0]] if preds[name] else None
        if isinstance(node, nir.Input):
            nodes[name] = node
            continue
        if isinstance(node, nir.Conv2d):  # sizes checked above: the dense matrix fits MAX_MATRIX
            mat = conv_matrix(node, src_shape, shapes[name]).toarray()
            bias = np.repeat(np.asarray(node.bias, dtype=np.float64), int(np.prod(shapes[name][1:])))
            new = nir.Affine(weight=mat.astype(node.weight.dtype), bias=bias.astype(node.weight.dtype))
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            new = nir.Linear(weight=pool_matrix(node, src_shape, shapes[name]).toarray().astype(np.float32))
        elif isinstance(node, nir.Flatten):
            bypass[name] = preds[name][0]  # already 1-D downstream
            continue
        elif isinstance(node, (nir.LIF, nir.IF)):
            fields = {f: np.asarray(getattr(node, f)).reshape(-1) for f in
                      (("tau", "r", "v_leak", "v_threshold", "v_reset") if isinstance(node, nir.LIF)
                       else ("r", "v_threshold", "v_reset"))}
            new = type(node)(**fields)
        elif isinstance(node, nir.Scale):
            new = nir.Scale(scale=np.asarray(node.scale).reshape(-1))
        elif isinstance(node, nir.Threshold):
            new = nir.Threshold(threshold=np.asarray(node.threshold).reshape(-1))
        elif isinstance(node, SpikeMatMul):
            new = SpikeMatMul(lhs=node.lhs, rhs=node.rhs, lhs_shape=[int(np.prod(node.lhs_shape))],
                              rhs_shape=[int(np.prod(node.rhs_shape))], lhs_view=node.lhs_view,
                              rhs_view=node.rhs_view, lhs_rows=node.lhs_rows, rhs_rows=node.rhs_rows,
                              transpose_lhs=node.transpose_lhs, output_shape=[int(np.prod(node.output_shape))])
        elif isinstance(node, (nir.Affine, nir.Linear, nir.Output)):
            new = node if not isinstance(node, nir.Output) else nir.Output(
                output_type=np.array([int(np.prod(shapes[name]))]))
        else:
            raise DeployError(f"{name}: {type(node).__name__} not handled by unroll_dense")
        new.metadata = meta
        nodes[name] = new
    # one Flatten right after the Input; consumers of the Input read the flattened vector
    in_shape = shapes[inp]
    flat = f"{inp}_flatten"
    nodes[flat] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
    nodes[flat].metadata = {"partition": "host", "role": "input flatten"}
    edges.append((inp, flat))

    def resolve(n):
        while n in bypass:
            n = bypass[n]
        return flat if n == inp else n
    for a, b in graph.edges:
        if b in bypass:
            continue
        edges.append((resolve(a), b))
    for n, v in nodes.items():
        if isinstance(v, SpikeMatMul):
            v.lhs, v.rhs = resolve(v.lhs), resolve(v.rhs)
    meta = dict(graph.metadata)
    meta["form"] = "dense-1d"
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
