"""The loaded network and its run configurations, torch-free.

``ArtifactNetwork`` is targets.lava_network's ``ResformerNetwork`` (same constructor, same
sub-processes), declared in this package only so that Lava's model discovery stays in it: to find a
process's models Lava imports every module of the package that defines the process
(lava/magma/compiler/compiler_graphs.py ``_find_proc_models``), and the ``targets`` package holds
torch-side modules (host_partition, reference, lava_cpu). Every module here imports no torch.
"""
from lava.magma.core.decorator import implements
from lava.magma.core.model.sub.model import AbstractSubProcessModel
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from targets.lava_network import ResformerNetwork, SubResformerNetworkModel


class ArtifactNetwork(ResformerNetwork):
    """A ResformerNetwork built from an artifact file (targets.artifact.read_artifact)."""


@implements(proc=ArtifactNetwork, protocol=LoihiProtocol)
class SubArtifactNetworkModel(AbstractSubProcessModel):
    """The same sub-process registration as ResformerNetwork's (Lava's @implements refuses a
    subclass of a model that already implements a process, so it is not subclassed)."""

    def __init__(self, proc):
        SubResformerNetworkModel.__init__(self, proc)


def run_config(hardware: bool = False):
    """Lava's stock models for every layer process, select_tag fixed_pt, no exception map:
    Loihi2SimCfg, or with ``hardware`` Loihi2HwCfg (needs Intel's lava-loihi for its Nc models)."""
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
    return Loihi2HwCfg(select_tag="fixed_pt") if hardware else Loihi2SimCfg(select_tag="fixed_pt")


def load_network(path) -> ArtifactNetwork:
    """The public Lava network rebuilt from an artifact file alone: no checkpoint, no NIR file, no
    torch. ``read_artifact(path)`` gives its host stem/head and metadata as well."""
    from targets.artifact.store import read_artifact
    return read_artifact(path).network()
