"""Targets come from the ``resformer_deploy.targets`` entry-point group: an outside package plugs
one in through its own metadata; a broken plug-in is one error line; options are checked."""
import importlib.metadata
import inspect
import json
import textwrap
from dataclasses import fields

import pytest
import torch
from click.testing import CliRunner

import targets
from resformer_deploy.cli.main import main
from resformer_deploy.errors import DeployError
from resformer_deploy.flows import FLOWS
from targets import registry
from targets.base import Capabilities, RunRequest
from tests.passes.test_pass_manager import small_graph

BUILT_IN = {"reference", "lava-cpu", "loihi2-sim", "loihi2-emu", "loihi2"}
PLUGGED = {"fake-cpu", "fake-map", "fake-twin", "fake-flaky"}
PLUGIN = '''
from targets.base import Capabilities
from targets.loihi2_emulator import Loihi2EmulatorTarget
from targets.reference import ReferenceTarget


class FakeCpuTarget(ReferenceTarget):
    """A target from another distribution: the reference interpreter under another name."""
    capabilities = Capabilities(arithmetic="float", flow="graph-check", engine="pytorch", options=("record_nodes",),
                                records_membranes=True, summary="fake plug-in")


class FakeMapTarget(FakeCpuTarget):
    capabilities = Capabilities(arithmetic="fixed", flow="loihi2-map", engine="chip", executes="hardware",
                                options=("dssa",), supports_mapping=True, summary="fake mapping plug-in")


class FakeTwinTarget(Loihi2EmulatorTarget):
    """A fixed-point plug-in declaring the emulator its bit-exact twin (and running it)."""
    capabilities = Capabilities(arithmetic="fixed", flow="loihi2-fixed", engine="numpy", needs_quantized_net=True,
                                bit_exact_twin="loihi2-emu", summary="fake fixed-point plug-in")


class FakeFlakyTarget(FakeTwinTarget):
    """Claims to be the emulator's twin, and flips the first spike it records."""
    def run(self, request):
        res = super().run(request)
        first = res.spikes[sorted(res.spikes)[0]].view(-1)
        first[0] = ~first[0]
        return res
'''


@pytest.fixture
def fresh_registry():
    registry.reload()
    yield
    registry.reload()  # the next test sees the installed targets only


@pytest.fixture
def plugin(tmp_path, monkeypatch, fresh_registry):
    """A distribution installed on sys.path: a module and a dist-info declaring five entry points
    (four good, one pointing at a module that does not exist)."""
    (tmp_path / "fake_resformer_plugin.py").write_text(PLUGIN)
    info = tmp_path / "fake_resformer_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-resformer-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [resformer_deploy.targets]
        fake-cpu = fake_resformer_plugin:FakeCpuTarget
        fake-map = fake_resformer_plugin:FakeMapTarget
        fake-twin = fake_resformer_plugin:FakeTwinTarget
        fake-flaky = fake_resformer_plugin:FakeFlakyTarget
        broken-one = no_such_module_anywhere:Target
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_built_in_targets_come_from_the_entry_points(fresh_registry):
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=registry.GROUP)}
    assert set(eps) == BUILT_IN == set(targets.target_names())
    assert targets.broken_targets() == {}
    for name in BUILT_IN:
        caps = targets.capabilities_of(name)
        assert caps.flow in FLOWS, name  # every flow a target names exists
        cls = targets.target_class(name)
        assert eps[name] == f"{cls.__module__}:{cls.__name__}"


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_run_steps_and_estimate_take_one_typed_request_and_every_declared_option(name):
    cls = targets.target_class(name)
    for method in ("run", "steps", "estimate"):
        assert list(inspect.signature(getattr(cls, method)).parameters) == ["self", "request"], (name, method)
    target = cls.__new__(cls)  # loihi2's constructor needs lava-loihi; the option check does not
    target.refuse_unknown(RunRequest.sizing(small_graph(), 1, 2, **{o: None for o in cls.capabilities.options}))
    with pytest.raises(DeployError, match="has no option 'undeclared'"):
        target.refuse_unknown(RunRequest.sizing(small_graph(), 1, 2, undeclared=1))


def test_a_run_request_keeps_fields_and_target_options_apart():
    req = RunRequest.of(small_graph(), torch.zeros(3, 3), 2, dtype=torch.float64, dssa="fused")
    assert (req.n_samples, req.dtype, dict(req.options)) == (3, torch.float64, {"dssa": "fused"})
    with pytest.raises(TypeError):
        req.options["dssa"] = "synaptic"  # frozen: a target cannot change what its caller asked
    with pytest.raises(ValueError, match="needs inputs x or"):
        RunRequest(small_graph(), None, 2)


def test_unknown_options_are_refused_naming_the_accepted_ones():
    g, x = small_graph(), torch.zeros(1, 3)
    with pytest.raises(DeployError, match=r"target 'reference' has no option 'bogus' \(its options: record_nodes"):
        targets.get_target("reference").run(RunRequest.of(g, x, 2, bogus=1))
    with pytest.raises(DeployError, match=r"target 'reference' has no option 'dssa'"):
        targets.get_target("reference").steps(RunRequest.sizing(g, 1, 2, dssa="fused"))
    # refused before any Lava work starts
    with pytest.raises(DeployError, match=r"target 'lava-cpu' has no option 'stall' \(its options: dssa, stall_timeout"):
        targets.get_target("lava-cpu").run(RunRequest.of(g, x, 2, stall=3))
    with pytest.raises(DeployError, match="target 'loihi2-emu' has no option 'dssa'"):
        targets.get_target("loihi2-emu").run(RunRequest.of(g, x, 2, dssa="synaptic"))
    with pytest.raises(DeployError, match="does not record membranes"):
        targets.get_target("lava-cpu").run(RunRequest.of(g, x, 2, record_membranes=True))
    assert targets.get_target("reference").run(RunRequest.of(g, x, 2, record_membranes=True)).membranes  # it can


def test_a_plugin_target_is_listed_and_usable_by_name(plugin, tmp_path):
    from exporters.nir_io import write_nir
    assert {"fake-cpu", "fake-map"} <= set(targets.target_names())
    t = targets.get_target("fake-cpu")
    assert t.name == "fake-cpu" and t.run(RunRequest.of(small_graph(), torch.ones(2, 3), 2)).output.shape == (2, 2, 2)
    write_nir(small_graph(), tmp_path / "g.nir")
    r = run("simulate", tmp_path / "g.nir", "--target", "fake-cpu", "--samples", "2")
    assert r.exit_code == 0, r.output  # prepared by its flow, options chosen by its capabilities
    r = run("compile", tmp_path / "g.nir", "--target", "fake-map", "-o", tmp_path / "plan", "--json")
    assert r.exit_code == 0, r.output  # compile's targets: the registry's, by capability
    assert json.loads((tmp_path / "plan" / "loihi2_plan.json").read_text())["totals"]["neuro_cores"] >= 1
    r = run("compile", tmp_path / "g.nir", "--target", "fake-cpu", "-o", tmp_path / "p2")
    assert r.exit_code == 2 and "targets that support mapping: fake-map, loihi2" in r.stderr


def test_targets_json_lists_exactly_the_registered_names_with_their_capabilities(plugin):
    r = run("targets", "--json")
    data = json.loads(r.stdout)
    names = [t["name"] for t in data["targets"]]
    assert names == targets.target_names() == sorted(BUILT_IN | PLUGGED)
    keys = {f.name for f in fields(Capabilities)}
    for t in data["targets"]:
        assert set(t["capabilities"]) == keys, t["name"]
        assert t["flow"]["name"] == t["capabilities"]["flow"] and t["flow"]["passes"]
    assert [b["name"] for b in data["broken"]] == ["broken-one"]


def test_a_broken_plugin_is_one_error_line_and_the_rest_still_works(plugin):
    r = run("targets")
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: target plug-in 'broken-one'"), r.stderr
    assert "no_such_module_anywhere" in lines[0] and "fake-resformer-plugin 0.1" in lines[0]
    assert "Traceback" not in r.output and "fake-cpu" in r.stdout  # the good ones are listed
    r = run("simulate", "x.nir", "--target", "broken-one")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "target plug-in 'broken-one'" in r.stderr
    assert targets.get_target("reference").name == "reference"


def test_an_entry_point_that_is_not_a_target_is_reported(monkeypatch, fresh_registry):
    real = importlib.metadata.entry_points
    fake = [importlib.metadata.EntryPoint("not-a-target", "json:dumps", registry.GROUP)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: list(real(**kw)) + fake)
    assert targets.broken_targets() == {"not-a-target": "target plug-in 'not-a-target' (json:dumps) is a "
                                                        "function, not a target class"}
    with pytest.raises(DeployError, match="not-a-target"):
        targets.get_target("not-a-target")
    assert set(targets.target_names()) == BUILT_IN


# ---------------------------------------------------------------- plug-in targets as drift-ladder rungs
def roles(choices):
    return [(c.role, c.target) for c in choices]


def test_rung_roles_come_from_capabilities_for_plugins_too(plugin):
    from resformer_deploy.analysis.drift import assign_roles, rungs_by_capability
    # built-in first: what `verify --target loihi2-sim | loihi2-emu` has always run
    assert rungs_by_capability("loihi2-sim") == ["lava-cpu", "loihi2-sim", "loihi2-emu"]
    assert rungs_by_capability("loihi2-emu") == ["loihi2-emu"]
    # every registered twin of the emulator becomes one of its checks; floats on the checks' engines
    assert rungs_by_capability() == ["lava-cpu", "fake-flaky", "fake-twin", "loihi2-sim", "loihi2-emu"]
    assert rungs_by_capability(subset=False) == ["loihi2-emu"]
    assert rungs_by_capability("fake-twin") == ["fake-twin", "loihi2-emu"]  # no float target on numpy
    got = assign_roles(["loihi2-emu", "fake-twin", "fake-cpu"])
    assert roles(got) == [("float", "fake-cpu"), ("fixed-point-check", "fake-twin"), ("fixed-point", "loihi2-emu")]
    assert [c.label for c in got] == ["float PyTorch", "fixed-point emulator", "fixed-point emulator (bit-accurate)"]
    two = assign_roles(["fake-flaky", "fake-twin", "loihi2-emu"])
    assert [c.label for c in two][:2] == ["fixed-point emulator [fake-flaky]", "fixed-point emulator [fake-twin]"]
    assert roles(assign_roles(["fake-twin"])) == [("fixed-point", "fake-twin")]  # the only fixed target
    for names, msg in ((["fake-cpu"], "no fixed-point target among fake-cpu"),
                       (["fake-map", "loihi2-emu"], "exactly one must be the bit-exact twin .* found 0"),
                       (["fake-map", "fake-twin", "loihi2-emu"], "fake-map are not bit-exact twins of loihi2-emu"),
                       (["loihi2-emu", "loihi2-emu"], "loihi2-emu named twice"),
                       (["nope", "loihi2-emu"], "unknown target 'nope'"),
                       (["broken-one", "loihi2-emu"], "target plug-in 'broken-one'")):
        with pytest.raises(DeployError, match=msg):
            assign_roles(names)


@pytest.fixture(scope="module")
def digits():
    from resformer_deploy.model.checkpoint import load_checkpoint
    from tests.conftest import DIGITS_CKPT
    return load_checkpoint(DIGITS_CKPT).model


def test_plugin_targets_run_rungs_of_a_real_ladder_and_a_false_twin_is_caught(plugin, digits):
    from resformer_deploy.analysis.drift import drift_ladder
    from resformer_deploy.data.digits import load_digits_split
    from resformer_deploy.reporting.drift import ladder_text
    from resformer_deploy.training.loop import predict
    lad = drift_ladder(digits, eval_samples=24, lava_samples=3, calib_samples=32, keep_runs=True,
                       targets=["fake-flaky", "fake-cpu", "fake-twin", "loihi2-emu"])
    assert [(r.role, r.target) for r in lad.rungs] == [
        ("pytorch", "torch"), ("float", "fake-cpu"), ("fixed-point-check", "fake-flaky"),
        ("fixed-point-check", "fake-twin"), ("fixed-point", "loihi2-emu")]
    rung = {r.target: r for r in lad.rungs}
    assert rung["fake-cpu"].samples == 3 and rung["fake-cpu"].total_mismatches == 0  # float64 interpreter: exact
    assert rung["fake-twin"].emulator_match.bit_exact and rung["fake-twin"].emulator_match.spike_mismatches == 0
    flaky = rung["fake-flaky"].emulator_match
    assert (flaky.spike_mismatches, flaky.bit_exact) == (1, False)
    emu = lad.runs.emulator  # the fixed-point rung's own run: what the checks were compared with
    assert flaky.compared_spikes == sum(s[:, :3].numel() for s in emu.spikes.values())
    assert lad.emulator_bit_exact_vs_lava is False
    assert lad.failures() == ["fused: fixed-point emulator (bit-accurate) (loihi2-emu) is not bit-exact with "
                              "fixed-point emulator [fake-flaky] (fake-flaky)"]
    # accuracies recomputed: the model's predictions, and the fixed-point rung's logits
    split = load_digits_split()
    y = split.y_test[:24]
    pred = predict(digits.double(), split.x_test[:24].double()).argmax(-1)
    assert lad.reference.accuracy == float((pred == y).double().mean())
    assert lad.fixed_point.accuracy == float((emu.output.mean(0).argmax(-1) == y).double().mean())
    text = ladder_text(lad)
    assert "loihi2-emu vs fake-flaky (fixed-point emulator [fake-flaky]) on 3 samples: 1 of" in text
    assert "NOT bit-exact" in text and "BIT-EXACT" in text


def test_drift_command_takes_any_registered_targets(plugin, tmp_path):
    from resformer_deploy.cli.drift import drift_cmd
    from tests.conftest import DIGITS_CKPT
    out = tmp_path / "drift.json"
    r = CliRunner().invoke(drift_cmd, [str(DIGITS_CKPT), "--targets", "fake-cpu,fake-twin,loihi2-emu",
                                       "--eval-samples", "16", "--lava-samples", "2", "--calib-samples", "32",
                                       "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    (lad,) = json.loads(out.read_text())["ladders"]
    assert [(x["role"], x["target"]) for x in lad["rungs"]] == [
        ("pytorch", "torch"), ("float", "fake-cpu"), ("fixed-point-check", "fake-twin"),
        ("fixed-point", "loihi2-emu")]
    assert lad["emulator_bit_exact_vs_lava"] is True
    assert "loihi2-emu vs fake-twin (fixed-point emulator) on 2 samples: 0 of" in r.output
    # a list no role assignment fits is refused in one line before the checkpoint is even read
    r = CliRunner().invoke(drift_cmd, [str(tmp_path / "missing.pt"), "--targets", "fake-map,loihi2-emu"])
    assert isinstance(r.exception, DeployError) and "not bit-exact twins" not in str(r.exception)
    assert "exactly one must be the bit-exact twin" in str(r.exception) and "\n" not in str(r.exception)
    r = CliRunner().invoke(drift_cmd, [str(tmp_path / "missing.pt"), "--targets", "fake-cpu,fake-twin,loihi2-emu",
                                       "--lava-samples", "0"])
    assert isinstance(r.exception, DeployError) and "fake-cpu, fake-twin run on the first --lava-samples" in str(
        r.exception)
