"""The deployable artifact: one HDF5 file holding the quantized network (store.py: format, writer,
reader), its host stem and head in numpy (host.py) and the Lava network rebuilt from it
(network.py). No module of this package imports torch (a loaded artifact runs without it)."""
from targets.artifact.store import (FORMAT, FORMAT_VERSION, Artifact, ArtifactError, CalibrationMeta,  # noqa: F401
                                    artifact_meta, netx_conv_pair, read_artifact, write_artifact, write_netx_slice)


def load_network(path):
    """targets.artifact.network.load_network (imported on use: it imports lava-nc)."""
    from targets.artifact.network import load_network as load
    return load(path)
