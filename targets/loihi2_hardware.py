"""Target ``loihi2``: real Loihi 2 chips. Needs Intel's non-public lava-loihi (NcProcessModels,
the nxcore runtime; INRC members only). Public Lava can only simulate: ``loihi2-sim``.

With lava-loihi importable, a run writes the quantized network as a deployment artifact
(targets.artifact), loads it back and runs it with ``Loihi2HwCfg`` on Lava's stock process models
(targets.artifact.network.run_artifact): the chip runs exactly what the file holds. The fused DSSA
lowering is refused, naming its FusedSpikeMatMul processes: they are our own Python processes and
have no hardware model (an embedded-core program would be needed)."""
import importlib.util
import os
import tempfile

from resformer_deploy.errors import DeployError

from targets.base import Capabilities, RunRequest, Target


class Loihi2HardwareTarget(Target):
    """Real Loihi 2 chips: needs Intel's non-public lava-loihi (NcProcessModels, nxcore runtime).
    Usable today for its core plan (`compile`, flow loihi2-map); running needs lava-loihi and the
    synaptic DSSA lowering. A lava-loihi target would be another package's entry point in the same group."""
    capabilities = Capabilities(arithmetic="fixed", flow="loihi2-map", engine="chip", executes="hardware",
                                needs_quantized_net=True, options=("dssa",), supports_mapping=True,
                                summary="real Loihi 2 chips (needs Intel's lava-loihi): core plan, design rules, "
                                        "runs the deployment artifact with Loihi2HwCfg")

    @classmethod
    def unavailable(cls):
        return None if lava_loihi_installed() else loihi2_hardware_message()

    def __init__(self):
        if not lava_loihi_installed():
            raise DeployError(loihi2_hardware_message())

    def steps(self, request: RunRequest) -> int:
        self.refuse_unknown(request)
        return request.n_samples * request.T + self.quantized_net(request.prepared, request.quant).plan.total_latency

    def run(self, request: RunRequest):
        import torch

        from targets.artifact import artifact_meta, read_artifact, write_artifact
        from targets.base import RunResult
        self.refuse_unknown(request)
        self.check_recording(record_spikes=False, record_membranes=request.record_membranes)
        graph, x, dtype = request.graph, request.x, request.dtype
        quant = self.quantized_net(request.prepared, request.quant)
        refuse_fused(quant.plan)
        with tempfile.TemporaryDirectory(prefix="resformer-loihi2-") as d:
            path = os.path.join(d, "network.h5")
            write_artifact(path, quant, graph, artifact_meta(graph, quant, None))
            art = read_artifact(path)
        import time
        t0 = time.time()
        logits, _ = run_on_chip(art, x.numpy() if hasattr(x, "numpy") else x)
        out = torch.as_tensor(logits, dtype=dtype or torch.float64)
        return RunResult(output=out, spikes={}, seconds=time.time() - t0)


def refuse_fused(plan, who: str = "target loihi2", lacks: str = "Loihi 2 hardware model") -> None:
    """The fused DSSA lowering has no hardware (or stock) model: refused, naming its processes."""
    if plan.dssa != "synaptic":
        fused = [n for n in plan.neuro if type(plan.graph.nodes[n]).__name__ == "SpikeMatMul"]
        raise DeployError(f"{who}: the fused DSSA lowering runs {len(fused)} FusedSpikeMatMul process(es) "
                          f"({', '.join(fused[:3])}{', ...' if len(fused) > 3 else ''}) that have no "
                          f"{lacks} (they need an embedded-core program); deploy with --dssa synaptic")


def run_on_chip(art, x):
    """A read artifact on Loihi 2 (Loihi2HwCfg, stock models) -> (logits [T, N, K], output ints)."""
    from targets.artifact.network import run_artifact
    if not lava_loihi_installed():
        raise DeployError(loihi2_hardware_message())
    refuse_fused(art.plan)
    try:
        return run_artifact(art, x, hardware=True)
    except DeployError:
        raise
    except Exception as e:  # Lava's compiler or runtime: one line, what failed and where
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DeployError(f"target loihi2: Lava could not run the artifact with Loihi2HwCfg "
                          f"({type(e).__name__}: {first})") from None


def lava_loihi_installed() -> bool:
    try:
        return importlib.util.find_spec("lava.magma.core.model.nc") is not None
    except (ImportError, ValueError):
        return False


def loihi2_hardware_message() -> str:
    if lava_loihi_installed():
        return ("lava-loihi is installed: `resformer-deploy deploy MODEL -o OUT.h5 --data ...` writes the "
                "artifact and runs it with Loihi2HwCfg (synaptic DSSA lowering)")
    return ("target loihi2 (real Loihi 2 hardware) needs Intel's non-public lava-loihi package (INRC members "
            "only; not installed here): public Lava can only simulate, use --target loihi2-sim "
            "(bit-accurate fixed point) and `compile --target loihi2` for the core plan")


def hardware_runtime() -> dict:
    """For plans and reports: can this machine run on the chip?"""
    return {"lava_loihi_installed": lava_loihi_installed(), "message": loihi2_hardware_message()}
