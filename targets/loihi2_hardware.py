"""Target ``loihi2``: real Loihi 2 chips. Needs Intel's non-public lava-loihi (NcProcessModels,
the nxcore runtime; INRC members only). Public Lava can only simulate: ``loihi2-sim``."""
import importlib.util

from resformer_deploy.errors import DeployError

from targets import register_target


@register_target("loihi2")
class Loihi2HardwareTarget:
    """Real Loihi 2 chips: needs Intel's non-public lava-loihi (NcProcessModels, nxcore runtime)."""

    def __init__(self):
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
