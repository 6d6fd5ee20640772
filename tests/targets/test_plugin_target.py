"""ARCHITECTURE.md's plug-in example, for real: a distribution outside this project (a module and
its ``.dist-info`` with an entry point in ``resformer_deploy.targets``) brings a target with its
own flow; the installed console script, in a fresh process with the distribution on PYTHONPATH,
lists it and verifies the shipped digits model on it with the flow's artifact reaching ``run``."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from targets import names_with

CLI = Path(sys.executable).with_name("resformer-deploy")
# the yardstick a verdict is compared with: the built-in PyTorch interpreter, found by capability
PYTORCH = [n for n in names_with(engine="pytorch", arithmetic="float") if n != "toy-chip"][0]

TOY = '''
import sys

from resformer_deploy.passes.graph_passes import CHECK_GRAPH
from resformer_deploy.passes.manager import Flow, Pass, declare_artifact
from targets.base import Capabilities
from targets.reference import ReferenceTarget

declare_artifact("toy_census", "node count of the graph, taken by the toy chip's own flow")


def _census(art, _options):
    n = len(art["nir_graph"].nodes)
    print(f"toy-chip flow: census of {n} nodes", file=sys.stderr, flush=True)
    return {"toy_census": n}


CENSUS = Pass("toy-census", _census, requires=("nir_graph", "graph_shapes"), ensures=("toy_census",))
TOY_FLOW = Flow("toy-chip-prepare", (CHECK_GRAPH, CENSUS), outputs=("toy_census",),
                doc="check the graph, then count its nodes (the toy chip's own preparation)")


class ToyChipTarget(ReferenceTarget):
    """Runs as the PyTorch interpreter, but only on graphs its own flow prepared."""
    capabilities = Capabilities(arithmetic="float", flow="toy-chip-prepare", engine="pytorch",
                                options=("record_nodes", "on_spikes"), records_membranes=True,
                                summary="plug-in target bringing its own flow")

    @classmethod
    def flows(cls):
        return (TOY_FLOW,)

    def run(self, request):
        census = (request.prepared or {}).get("toy_census")
        if census != len(request.graph.nodes):
            raise RuntimeError(f"run without the toy flow's census (prepared: {sorted(request.prepared or {})})")
        print(f"toy-chip run: {request.n_samples} samples, census {census}", file=sys.stderr, flush=True)
        return super().run(request)


class BackwardsTarget(ToyChipTarget):
    """Brings a flow whose census pass comes before the pass that ensures what it requires."""
    capabilities = Capabilities(arithmetic="float", flow="backwards", engine="pytorch", summary="broken order")

    @classmethod
    def flows(cls):
        return (Flow("backwards", (CENSUS, CHECK_GRAPH), outputs=("toy_census",)),)
'''


def install(root: Path, entry_points: str) -> Path:
    """A distribution as pip would leave it in site-packages: the module and its dist-info."""
    root.mkdir()
    (root / "toy_chip.py").write_text(TOY)
    info = root / "toy_chip-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-chip\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[resformer_deploy.targets]\n" + textwrap.dedent(entry_points))
    return root


def cli(site: Path, *args, cwd: Path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return install(tmp_path_factory.mktemp("toy") / "site", "toy-chip = toy_chip:ToyChipTarget\n")


def test_the_plugin_is_listed_with_its_own_flow(site, tmp_path):
    r = cli(site, "targets", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {t["name"]: t for t in json.loads(r.stdout)["targets"]}
    toy = rows["toy-chip"]
    assert toy["entry_point"] == "toy_chip:ToyChipTarget from toy-chip 0.1"
    assert toy["capabilities"]["flow"] == "toy-chip-prepare"
    assert [p["name"] for p in toy["flow"]["passes"]] == ["check-graph", "toy-census"]


def test_verify_on_the_plugin_runs_its_flow_and_agrees_with_the_pytorch_interpreter(site, digits_ckpt, tmp_path):
    verdicts = {}
    for target in ("toy-chip", PYTORCH):
        out = tmp_path / f"{target}.json"
        r = cli(site, "verify", digits_ckpt, "--target", target, "--samples", "5", "--json-out", out, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        ran = "toy-chip flow: census of" in r.stderr and "toy-chip run: 5 samples, census" in r.stderr
        assert ran == (target == "toy-chip"), r.stderr  # the plug-in's flow prepared its run, and only its
        verdicts[target] = [(x["precision"], x["verdict"], x["total_mismatches"])
                            for x in json.loads(out.read_text())["reports"]]
    assert verdicts["toy-chip"] == verdicts[PYTORCH] and len(verdicts[PYTORCH]) == 2


def test_a_plugin_flow_out_of_order_is_refused_at_registration_in_one_line(tmp_path):
    site = install(tmp_path / "site", "toy-chip = toy_chip:ToyChipTarget\nbackwards = toy_chip:BackwardsTarget\n")
    r = cli(site, "targets", cwd=tmp_path)
    assert r.returncode == 2
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert ("target plug-in 'backwards' (toy_chip:BackwardsTarget from toy-chip 0.1) brings flow 'backwards' with "
            "its passes out of order: flow 'backwards': pass 'toy-census' requires graph_shapes, which no earlier "
            "pass ensures") in line
    assert "toy-chip" in r.stdout  # the good plug-in stays usable
