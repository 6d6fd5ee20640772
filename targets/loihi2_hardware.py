"""Target ``loihi2``: real Loihi 2 chips. Needs Intel's non-public lava-loihi (NcProcessModels,
the nxcore runtime; INRC members only). Public Lava can only simulate: ``loihi2-sim``."""
import importlib.util

from resformer_deploy.errors import DeployError

from targets.base import Capabilities, Target


class Loihi2HardwareTarget(Target):
    """Real Loihi 2 chips: needs Intel's non-public lava-loihi (NcProcessModels, nxcore runtime).
    Usable today for its core plan (`compile`, flow loihi2-map); running refuses with the reason.
    A lava-loihi target would be another package's entry point in the same group."""
    capabilities = Capabilities(arithmetic="fixed", flow="loihi2-map", engine="chip", executes="hardware",
                                needs_quantized_net=True, options=("dssa",), supports_mapping=True,
                                summary="real Loihi 2 chips (needs Intel's lava-loihi): core plan and design rules")

    @classmethod
    def unavailable(cls):
        return loihi2_hardware_message()

    def __init__(self):
        raise DeployError(loihi2_hardware_message())

    def steps(self, graph, n_samples: int, T: int, *, prepared=None, quant=None, **options) -> int:
        raise DeployError(loihi2_hardware_message())

    def run(self, graph, x, T: int, record_spikes: bool = True, record_membranes: bool = False, dtype=None,
            progress=None, info=None, prepared=None, quant=None, dssa: str = "fused", **unknown):
        raise DeployError(loihi2_hardware_message())


def lava_loihi_installed() -> bool:
    try:
        return importlib.util.find_spec("lava.magma.core.model.nc") is not None
    except (ImportError, ValueError):
        return False


def loihi2_hardware_message() -> str:
    if lava_loihi_installed():
        return ("lava-loihi is installed, but this release has no Loihi2HwCfg runner yet; "
                "run `compile --target loihi2` for the core plan and `--target loihi2-sim` for the bit-accurate run")
    return ("target loihi2 (real Loihi 2 hardware) needs Intel's non-public lava-loihi package (INRC members "
            "only; not installed here): public Lava can only simulate, use --target loihi2-sim "
            "(bit-accurate fixed point) and `compile --target loihi2` for the core plan")


def hardware_runtime() -> dict:
    """For plans and reports: can this machine run on the chip?"""
    return {"lava_loihi_installed": lava_loihi_installed(), "message": loihi2_hardware_message()}
