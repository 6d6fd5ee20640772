"""Describe a NIR file: its nodes (type, shape, parameters, partition) and totals (`inspect`).

    >>> from resformer_deploy import api
    >>> api.export(api.load("examples/digits/digits_resformer.pt"), "digits.nir").nodes
    58
    >>> s = api.inspect_nir("digits.nir")
    >>> s.types["LIF"], s.problems
    (20, [])
"""
from dataclasses import dataclass
from typing import Dict, List

__all__ = ["NirSummary", "inspect_nir"]


@dataclass(frozen=True)
class NirSummary:
    """analysis.nir_summary.graph_summary, typed; ``table``: one row (dict) per node."""
    nodes: int
    edges: int
    types: Dict[str, int]
    extension_nodes: List[str]
    params: int
    params_neuromorphic: int
    params_host: int
    neurons: int
    partition_nodes: Dict[str, int]
    problems: List[str]
    metadata: dict
    table: List[dict]

    def to_json(self) -> dict:
        """The fields in order, as `inspect --json` prints them."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def inspect_nir(path: str) -> NirSummary:
    """Read ``path`` (a NIR file; an unreadable one raises DeployError naming it) and summarise it."""
    from exporters.nir_io import read_nir
    from resformer_deploy.analysis.nir_summary import graph_summary
    return NirSummary(**graph_summary(read_nir(path)))
