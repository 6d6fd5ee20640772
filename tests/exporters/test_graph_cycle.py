"""A cycle is reported by the edge that closes it (exporters/graph_check.py back_edge), not by
every node Kahn's algorithm could not order (the cycle and all that lies downstream of it)."""
import nir
import numpy as np
import pytest

from exporters.graph_check import back_edge, check_graph, topological_order


def _chain(n, extra=()):
    """input -> n0 -> ... -> n{n-1} -> output (LIF nodes of width 2), plus ``extra`` edges."""
    lif = dict(tau=np.full(2, 2e-3), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    names = [f"n{i}" for i in range(n)]
    nodes = {"input": nir.Input(input_type=np.array([2])), "output": nir.Output(output_type=np.array([2])),
             **{k: nir.LIF(**lif) for k in names}}
    path = ["input", *names, "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(path, path[1:])) + list(extra))


def _is_cycle(graph, cycle):
    edges = set(graph.edges)
    return cycle[0] == cycle[-1] and all((a, b) in edges for a, b in zip(cycle, cycle[1:]))


def test_long_graph_names_the_back_edge_in_a_short_line():
    g = _chain(60, [("n40", "n10")])
    _, cyclic = topological_order(g)
    assert len(cyclic) == 51  # n10 .. n59 and the output: what the old message listed
    edge, cycle = back_edge(g, cyclic)
    assert edge == ("n40", "n10") and cycle == [f"n{i}" for i in range(10, 41)] + ["n10"]
    _, problems = check_graph(g)
    assert len(problems) == 1
    assert problems[0] == ("recurrent/cyclic connections are not supported: edge n40 -> n10 closes the cycle "
                           "n10 -> n11 -> n12 -> ... -> n40 -> n10 (31 nodes; 51 nodes on or after cycles "
                           "cannot be ordered)")


@pytest.mark.parametrize("extra", [[("n3", "n3")], [("n2", "n1")], [("n5", "n4"), ("n2", "n0")]])
def test_back_edge_closes_a_real_cycle(extra):
    """With two cycles either may be named; the edge is always one of those added, and closes the
    cycle returned with it."""
    g = _chain(8, extra)
    _, cyclic = topological_order(g)
    found, cycle = back_edge(g, cyclic)
    assert found in extra and _is_cycle(g, cycle) and (cycle[-2], cycle[-1]) == found
    assert f"edge {found[0]} -> {found[1]} closes the cycle" in check_graph(g)[1][0]


def test_no_cycle_is_an_error_of_the_caller():
    g = _chain(3)
    with pytest.raises(ValueError):
        back_edge(g, list(g.nodes))
