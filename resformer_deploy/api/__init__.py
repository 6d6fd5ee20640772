"""resformer-deploy's public Python API: one function per job, typed options in, typed results out.

The CLI (resformer_deploy.cli) is a thin shell over these functions: it parses options, calls
one of them and renders the result. A notebook user calls them directly, e.g.::

    from resformer_deploy import api
    from targets import names_with
    model = api.load("examples/digits/digits_resformer.pt")
    pytorch = names_with(engine="pytorch")[0]  # targets are chosen by capability
    result = api.verify(model, api.VerifyOptions(target=pytorch, samples=4))
    print(result.passed, result.verdicts)  # True ['exact', 'exact']: float64, float32

Each job lives in its own module (api/<job>.py); the names below are the public surface.
"""
# re-exports, one line per job module (keep sorted by module)
from resformer_deploy.api.compile import (PLAN_NAME, CompileOptions, CompileResult, ModelGraph, PlanRecord,  # noqa: E402,F401
                                          StockModelFindings, compile, is_nir, load_graph, mapping_target)
from resformer_deploy.api.data import DataArgs, ModelData, open_data  # noqa: E402,F401
from resformer_deploy.api.demo import (DEMO_MODELS, DemoOptions, DemoResult, DemoSetup, FixedPointResult,  # noqa: E402,F401
                                       FixedPointStart, LavaRun, LavaStart, TorchAccuracy, WholeSplit, WholeSplitStart,
                                       demo)
from resformer_deploy.api.deploy import (ArtifactFigures, ChipRun, DeployOptions, DeployResult,  # noqa: E402,F401
                                         StockModelsCheck, chip_available, deploy, read_artifact, run_on_loihi2,
                                         simulate_artifact, write_artifact)
from resformer_deploy.api.drift import DriftOptions, DriftResult, drift  # noqa: E402,F401
from resformer_deploy.api.evaluate import (ClassAccuracy, EvaluateOptions, EvaluationResult, Prediction,  # noqa: E402,F401
                                           StageSeconds, Throughput, evaluate, target_quantizes)
from resformer_deploy.api.export import ExportOptions, ExportResult, export  # noqa: E402,F401
from resformer_deploy.api.inspect import NirSummary, inspect_nir  # noqa: E402,F401
from resformer_deploy.api.load import CheckpointInfo, inspect_checkpoint, load  # noqa: E402,F401
from resformer_deploy.api.ops import LayerOpsComparison, OpsOptions, OpsResult, ops  # noqa: E402,F401
from resformer_deploy.api.options import CheckpointOptions, DataOptions, Messages  # noqa: E402,F401
from resformer_deploy.api.report import ReportOptions, ReportResult, report  # noqa: E402,F401
from resformer_deploy.api.simulate import SimulateOptions, SimulateResult, simulate  # noqa: E402,F401
from resformer_deploy.api.verify import VerifyOptions, VerifyResult, verify  # noqa: E402,F401
