"""Bugs are not user errors (issue 26, item 4). A bug -- InternalError (PassError, ...) or any
unexpected exception in a command -- is one line saying so, exit 1; its traceback only under
--debug or RESFORMER_DEPLOY_DEBUG=1. A user error stays one line, exit 2. A Python exception in
a Lava worker that is not a user error comes back as an InternalError with its type and traceback."""
import errno
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import resformer_deploy.cli.main as cli_main
from resformer_deploy import api
from resformer_deploy.errors import DeployError, InternalError
from resformer_deploy.passes.manager import Flow, Pass, PassError, PassManager
from targets.worker_errors import exception_record, failure, read_record, write_record

CLI = str(Path(sys.executable).parent / "resformer-deploy")
HINT = " -- this is a bug in resformer-deploy; rerun with --debug (or RESFORMER_DEPLOY_DEBUG=1) for the traceback"


def _broken_loader(*args, **kwargs):  # stands in for the checkpoint loader of `info`
    raise RuntimeError("planted bug\nwith a second line")


def _contract_breaking_loader(*args, **kwargs):
    """A real PassError: the manager's check of a pass that returns no artifacts."""
    flow = Flow("f", (Pass("lazy", lambda art, opts: [], requires=("nir_graph",), ensures=("lava_plan",)),))
    PassManager(flow, check_graphs=False).run({"nir_graph": object()})


def _user_error_loader(*args, **kwargs):
    raise DeployError("x.pth: checkpoint file not found")


def _interrupted_loader(*args, **kwargs):
    raise KeyboardInterrupt


def invoke(monkeypatch, loader, *pre, env=None):
    monkeypatch.setattr(api, "load", loader)  # `info` loads through the API
    # None: unset, so a RESFORMER_DEPLOY_DEBUG in the test's own environment changes nothing
    env = {"RESFORMER_DEPLOY_DEBUG": None, **(env or {})}
    return CliRunner().invoke(cli_main.main, [*pre, "info", "x.pth"], env=env)


def lines(r):
    return r.stderr.strip().splitlines()


@pytest.mark.parametrize("loader, line", [
    (_broken_loader, "error: internal error: RuntimeError: planted bug with a second line" + HINT),
    (_contract_breaking_loader,
     "error: internal error: PassError: pass 'lazy' returned list, not a dict of artifacts" + HINT),
])
def test_a_bug_is_one_line_with_exit_1(monkeypatch, loader, line):
    assert issubclass(PassError, InternalError) and not issubclass(InternalError, DeployError)
    r = invoke(monkeypatch, loader)
    assert r.exit_code == 1, (r.exit_code, r.stderr)
    assert lines(r) == [line] and "Traceback" not in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("how", ["--debug", "env", "env=0"])
@pytest.mark.parametrize("loader, function", [(_broken_loader, "_broken_loader"),
                                              (_contract_breaking_loader, "run_pass")])
def test_debug_shows_the_traceback_then_the_line(monkeypatch, how, loader, function):
    pre, env = {"--debug": (["--debug"], {}), "env": ([], {"RESFORMER_DEPLOY_DEBUG": "1"}),
                "env=0": ([], {"RESFORMER_DEPLOY_DEBUG": "0"})}[how]
    r = invoke(monkeypatch, loader, *pre, env=env)
    assert r.exit_code == 1, (r.exit_code, r.stderr)
    out = lines(r)
    assert out[-1].startswith("error: internal error: ") and out[-1].endswith(HINT)
    if how == "env=0":  # switched off explicitly: no traceback
        assert len(out) == 1
        return
    assert out[0] == "Traceback (most recent call last):"
    assert f", in {function}" in r.stderr  # the frame of the function that raised


def test_a_user_error_stays_one_line_with_exit_2(monkeypatch):
    r = invoke(monkeypatch, _user_error_loader)
    assert r.exit_code == 2 and lines(r) == ["error: x.pth: checkpoint file not found"], r.stderr
    r = invoke(monkeypatch, _user_error_loader, "--debug")
    assert r.exit_code == 2, r.stderr
    assert lines(r)[0] == "Traceback (most recent call last):" and ", in _user_error_loader" in r.stderr
    assert lines(r)[-1] == "error: x.pth: checkpoint file not found"


def test_interrupt_is_unchanged(monkeypatch):
    r = invoke(monkeypatch, _interrupted_loader, "--debug")
    assert r.exit_code == 130 and lines(r) == ["error: interrupted (SIGINT)"], r.stderr


def test_usage_errors_are_not_bugs(tmp_path):
    # click raises these while it parses the command's options, inside Group.invoke
    r = CliRunner().invoke(cli_main.main, ["--debug", "info", "x.pth", "--img-size", "big"])
    assert r.exit_code == 2 and len(lines(r)) == 1, r.stderr
    assert lines(r)[0].startswith("error: resformer-deploy info: ") and "'big' is not a valid integer" in r.stderr
    # a user error of the real loader
    r = CliRunner().invoke(cli_main.main, ["info", str(tmp_path / "nope.pth")], env={"RESFORMER_DEPLOY_DEBUG": None})
    assert r.exit_code == 2 and len(lines(r)) == 1 and "internal error" not in r.stderr, r.stderr


SITECUSTOMIZE = """\
from resformer_deploy import api

def _broken_loader(*args, **kwargs):
    raise RuntimeError("planted bug")

api.load = _broken_loader
"""


def test_console_script(tmp_path):
    """The installed entry point (not CliRunner): the bug planted through a sitecustomize module,
    which Python imports at start-up from PYTHONPATH (Python docs, the site module)."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k != "RESFORMER_DEPLOY_DEBUG"}
    env["PYTHONPATH"] = str(tmp_path)
    plain = subprocess.run([CLI, "info", "x.pth"], capture_output=True, text=True, env=env, timeout=300)
    assert plain.returncode == 1, plain.stderr
    assert plain.stderr.splitlines() == ["error: internal error: RuntimeError: planted bug" + HINT]
    debug = subprocess.run([CLI, "--debug", "info", "x.pth"], capture_output=True, text=True, env=env, timeout=300)
    assert debug.returncode == 1, debug.stderr
    err = debug.stderr.splitlines()
    assert err[0] == "Traceback (most recent call last):" and ", in _broken_loader" in debug.stderr
    assert err[-1] == "error: internal error: RuntimeError: planted bug" + HINT


# --- the Lava worker's failures --------------------------------------------------------------

def _worker_step(value):
    return value + 1  # a str + int: a TypeError, as a bug in the worker's code would raise


def raised(fn, *args):
    try:
        fn(*args)
    except BaseException as e:  # noqa: B902 -- the worker records whatever ends it
        return e, traceback.format_exc()
    raise AssertionError("did not raise")


class RunError(DeployError):
    """Stands in for targets.lava_cpu.LavaRunError (a DeployError), which imports torch."""


def test_worker_bug_travels_with_its_type_and_traceback(tmp_path):
    write_record(str(tmp_path), exception_record(*raised(_worker_step, "1")))
    e = failure(read_record(str(tmp_path)), "unused", RunError)
    assert type(e) is InternalError and not isinstance(e, DeployError)
    assert e.error_type == "TypeError" and str(e).endswith("(in the Lava worker)")
    assert "can only concatenate str" in str(e) and ", in _worker_step" in e.remote_traceback


@pytest.mark.parametrize("exc, line", [
    (DeployError("a\nb"), "Lava simulation failed: DeployError: a"),
    (MemoryError("Unable to allocate 8 GiB"), "Lava simulation failed: MemoryError: Unable to allocate 8 GiB"),
    (OSError(errno.ENOSPC, "No space left on device"),
     "Lava simulation failed: OSError: [Errno 28] No space left on device"),
])
def test_user_and_environment_failures_stay_one_line_user_errors(exc, line):
    def boom():
        raise exc
    e = failure(exception_record(*raised(boom)), "unused", RunError)
    assert type(e) is RunError and str(e) == line


def test_an_oserror_that_is_no_machine_limit_is_a_bug():
    def boom():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "probe.npy")
    e = failure(exception_record(*raised(boom)), "unused", RunError)
    assert isinstance(e, InternalError) and e.error_type == "FileNotFoundError"


def test_no_record_is_the_fallback_line(tmp_path):
    assert read_record(str(tmp_path)) is None
    e = failure(None, "Lava worker exited with code 1: last words", RunError)
    assert type(e) is RunError and str(e) == "Lava simulation failed: Lava worker exited with code 1: last words"


def test_cli_shows_the_worker_traceback_under_debug(monkeypatch):
    e, tb = raised(_worker_step, "1")

    def loader(*args, **kwargs):
        raise failure(exception_record(e, tb), "unused", RunError)
    r = invoke(monkeypatch, loader)
    assert r.exit_code == 1 and lines(r) == [
        "error: internal error: TypeError: can only concatenate str (not \"int\") to str (in the Lava worker)"
        + HINT], r.stderr
    r = invoke(monkeypatch, loader, "--debug")
    assert r.exit_code == 1 and ", in _worker_step" in r.stderr and ", in loader" in r.stderr, r.stderr


def test_real_worker_raising_a_non_user_error_is_an_internal_error():
    """Stock code, a real worker: host values for an input the network does not read make the
    worker's LavaBuild raise (an InternalError there, a caller's bug); it comes back as one."""
    import nir
    from targets.lava_cpu import LavaRunError, run_in_worker
    from resformer_deploy.lava.plan import plan_lava
    from tests.support.lava_util import descendants
    nodes = {"input": nir.Input({"input": np.array([3])}, metadata={"partition": "host"}),
             "fc": nir.Affine(np.ones((2, 3)), np.zeros(2)),
             "spk": nir.LIF(np.full(2, 0.002), np.ones(2), np.zeros(2), np.ones(2), np.zeros(2)),
             "output": nir.Output({"output": np.array([2])}, metadata={"partition": "host"})}
    g = nir.NIRGraph(nodes, [("input", "fc"), ("fc", "spk"), ("spk", "output")], metadata={"time_steps": 2},
                     type_check=False)
    plan = plan_lava(g, "fused")
    (h,) = plan.inputs
    before = set(descendants())
    with pytest.raises(InternalError) as info:
        run_in_worker(plan, {h + "-elsewhere": np.zeros((1, 2, 3))}, 1, 2, {})
    e = info.value
    assert not isinstance(e, LavaRunError) and e.error_type == "InternalError"
    assert str(e).startswith(f"host values for '{h}-elsewhere'") and "LavaBuild" in e.remote_traceback
    assert set(descendants()) <= before
