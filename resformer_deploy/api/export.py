"""Export a loaded checkpoint to a NIR (HDF5) file in deployment-normal form (`export`).

    >>> from resformer_deploy import api
    >>> ck = api.load("examples/digits/digits_resformer.pt")
    >>> api.export(ck, "digits.nir").extension_nodes
    6
"""
from dataclasses import dataclass

__all__ = ["ExportOptions", "ExportResult", "export"]


@dataclass(frozen=True)
class ExportOptions:
    """``dtype``: storage type of the weights (BN folding is done in float64); ``form``:
    "extension" (DSSA as extension nodes) or "standard" (dense standard NIR, tiny models only);
    ``compress``: gzip the HDF5 datasets."""
    dtype: str = "float32"
    form: str = "extension"
    compress: bool = False


@dataclass(frozen=True)
class ExportResult:
    path: str
    nodes: int
    edges: int
    params: int
    neurons: int  # per time step
    extension_nodes: int
    bytes: int  # of the file written
    variant: str
    T: int
    img_size: int


def export(ck, output: str, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Export ``ck`` (api.load) and write it to ``output`` atomically."""
    from exporters.nir_io import write_nir
    from exporters.torch_to_nir import export_model
    from resformer_deploy.analysis.equivalence import lower
    from resformer_deploy.analysis.nir_summary import graph_summary

    graph = lower(export_model(ck.model, options.dtype), "extension" if options.form == "extension" else "standard")
    nbytes = write_nir(graph, output, compression="gzip" if options.compress else None)
    s = graph_summary(graph)
    return ExportResult(output, s["nodes"], s["edges"], s["params"], s["neurons"], len(s["extension_nodes"]),
                        nbytes, ck.variant, ck.config.T, ck.config.img_size)
