"""Output files and directories (resformer_deploy/outputs.py): whole or nothing, one-line errors
with exit 2, devices and FIFOs written in place, destinations checked before the work.

Failures are injected (tests run as root, so chmod cannot make a directory unwritable); a real
full and read-only file system is used where an unprivileged mount namespace is available."""
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from resformer_deploy.util import outputs
from resformer_deploy.cli.main import main
from resformer_deploy.util.outputs import OutputError, check_outputs, write_bytes, write_file_set
from tests.conftest import DIGITS_CKPT, REPO

D = str(DIGITS_CKPT)
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
REAL_FSYNC = os.fsync


def run(*argv):
    return CliRunner().invoke(main, [str(a) for a in argv])


def one_error_line(r, *fragments):
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def inject(monkeypatch, name, code, after=0):
    """Replace os.<name> by one that works ``after`` times, then raises OSError(code)."""
    real, calls = getattr(os, name), []

    def fake(*a, **k):
        calls.append(a)
        if len(calls) > after:
            raise OSError(code, os.strerror(code))
        return real(*a, **k)
    monkeypatch.setattr(os, name, fake)


# --- fault injection through the CLI --------------------------------------------------------------

@pytest.mark.parametrize("where, code", [("write", errno.ENOSPC), ("write", errno.EDQUOT), ("fsync", errno.EIO),
                                         ("replace", errno.EROFS), ("replace", errno.EACCES)])
def test_export_failure_is_one_line_and_leaves_nothing(monkeypatch, tmp_path, where, code):
    inject(monkeypatch, where, code)
    r = run("export", D, "-o", tmp_path / "sub" / "x.nir")
    one_error_line(r, str(tmp_path / "sub" / "x.nir"), os.strerror(code))
    assert list(tmp_path.iterdir()) == []  # no temp file, and the parent it created is gone again


def test_failed_replace_keeps_the_previous_file(monkeypatch, tmp_path):
    out = tmp_path / "x.nir"
    out.write_bytes(b"previous")
    inject(monkeypatch, "write", errno.ENOSPC, after=1)  # the first chunk goes through
    monkeypatch.setattr(outputs, "CHUNK", 4096)
    one_error_line(run("export", D, "-o", out), "No space left on device")
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["x.nir"]


def test_json_out_failure_is_one_line(monkeypatch, tmp_path):
    inject(monkeypatch, "write", errno.ENOSPC)
    r = run("compile", D, "--target", "loihi2", "-o", tmp_path / "plan")
    one_error_line(r, "loihi2_plan.json", "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_known_size_is_checked_before_a_temp_file_exists(monkeypatch, tmp_path):
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda p: os.statvfs_result((*real(p)[:3], 1, 1, *real(p)[5:])))
    monkeypatch.setattr(outputs.tempfile, "mkstemp", lambda **k: pytest.fail("temp file created"))
    with pytest.raises(OutputError, match=r"No space left on device \(needs 0\.1 MB"):
        write_bytes(tmp_path / "x.json", b"x" * 100_000)


def test_unwritable_destination_found_before_the_work(monkeypatch, tmp_path):
    """A read-only directory (simulated: the probe file cannot be created) stops `report` before
    the checkpoint is even loaded."""
    import resformer_deploy.reporting.deploy as dr
    monkeypatch.setattr(dr, "build_report", lambda *a, **k: pytest.fail("work started"))
    monkeypatch.setattr("resformer_deploy.api.load", lambda *a: pytest.fail("loaded"))
    real = outputs.tempfile.mkstemp
    monkeypatch.setattr(outputs.tempfile, "mkstemp", lambda **k: (_ for _ in ()).throw(
        OSError(errno.EROFS, os.strerror(errno.EROFS))) if "probe" in k.get("prefix", "") else real(**k))
    one_error_line(run("report", D, "-o", tmp_path / "rep"), str(tmp_path / "rep"), "Read-only file system")
    one_error_line(run("simulate", D, "--json-out", tmp_path / "s.json"), "s.json", "Read-only file system")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_save_failure_leaves_nothing(monkeypatch, tmp_path):
    from resformer_deploy.model.checkpoint import save_checkpoint
    from resformer_deploy.model.resformer import build_model
    inject(monkeypatch, "write", errno.ENOSPC)
    with pytest.raises(OutputError, match="No space left on device"):
        save_checkpoint(tmp_path / "m.pt", build_model("tiny"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_interrupt_mid_write_removes_the_temp_file(monkeypatch, tmp_path, exc):
    def boom(*a):
        raise exc()
    monkeypatch.setattr(os, "write", boom)
    with pytest.raises(exc):
        write_bytes(tmp_path / "a" / "x.bin", b"data")
    assert list(tmp_path.iterdir()) == []


# --- real file systems (private mount namespace) --------------------------------------------------

def _unshare_ok():
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _unshare_ok(), reason="needs a private mount namespace (unshare -m)")
def test_real_full_and_read_only_file_system(tmp_path):
    """A 300 kB tmpfs (the digits NIR file is 1 MB) and then the same mount read-only; the mount
    exists only inside `unshare -m`, so nothing outside the test sees it."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cli = f"{sys.executable} -m resformer_deploy.cli.main"
    script = f"""
        mount -t tmpfs -o size=300k tmpfs {mnt} || exit 99
        {cli} export {D} -o {mnt}/x.nir; echo "rc=$?"
        ls -A {mnt}; echo "--"
        mount -o remount,ro {mnt}
        {cli} ops {D} --samples 2 --json-out {mnt}/ops.json; echo "rc=$?"
    """
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    if r.returncode == 99:
        pytest.skip("cannot mount tmpfs")
    out, err = r.stdout.splitlines(), r.stderr.strip().splitlines()
    assert out == ["rc=2", "--", "rc=2"], (r.stdout, r.stderr)  # and nothing listed in the full mount
    assert len(err) == 2 and "Segmentation" not in r.stderr and "Traceback" not in r.stderr
    assert err[0].startswith(f"error: cannot write {mnt}/x.nir: No space left on device"), err
    assert err[1].startswith(f"error: cannot write {mnt}/ops.json: Read-only file system"), err


# --- devices, FIFOs, symlinks ---------------------------------------------------------------------

def test_fifo_is_streamed_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = run("export", D, "-o", fifo)
    reader.join(30)
    assert r.exit_code == 0, r.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got and got[0].startswith(HDF5_MAGIC) and f"{len(got[0]) / 1e6:.1f} MB" in r.output
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_character_device_is_written_not_replaced(tmp_path):
    node = tmp_path / "null"
    os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # the device /dev/null is
    before = os.stat(node)
    assert run("export", D, "-o", node).exit_code == 0
    from resformer_deploy.reporting.tables import write_json
    write_json(node, {"a": 1})
    after = os.stat(node)
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]


def test_symlink_destination_replaces_the_target_and_keeps_the_link(tmp_path):
    (tmp_path / "real.json").write_text("old")
    os.symlink("real.json", tmp_path / "link.json")
    os.chmod(tmp_path / "real.json", 0o640)
    write_bytes(tmp_path / "link.json", b"new")
    assert os.path.islink(tmp_path / "link.json") and (tmp_path / "real.json").read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(tmp_path / "real.json").st_mode) == 0o640  # replacing keeps the mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_new_file_gets_the_usual_permissions(tmp_path):
    write_bytes(tmp_path / "x", b"1")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "x").st_mode) == 0o666 & ~mask


# --- SIGTERM in a subprocess ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def ti_checkpoint(tmp_path_factory):
    """A randomly initialised `ti` at 224 (45 MB of weights): a large model's export."""
    from resformer_deploy.model.checkpoint import save_checkpoint
    from resformer_deploy.model.resformer import build_model
    from resformer_deploy.model.calibration import randomize_state
    p = tmp_path_factory.mktemp("ti") / "ti.pt"
    save_checkpoint(p, randomize_state(build_model("ti")))
    return p


SLOW_WRITE = """
import os, sys, time
import resformer_deploy.util.outputs as o
o.CHUNK = 1 << 20
real = os.write
os.write = lambda fd, b: (time.sleep(0.02), real(fd, b))[1]  # a slow disk: the write takes about 1 s
from resformer_deploy.cli.main import main
sys.argv = ["resformer-deploy", *sys.argv[1:]]
main()
"""


def test_sigterm_during_export_of_a_large_model_leaves_no_temp_file(tmp_path, ti_checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "-c", SLOW_WRITE, "export", str(ti_checkpoint), "-o", str(out / "ti.nir")],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while p.poll() is None and not any(n.endswith(".tmp") for n in os.listdir(out)):
            time.sleep(0.005)  # until the temp file exists: the signal then arrives mid-write
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err
    assert err.strip() == "error: terminated by SIGTERM"
    assert os.listdir(out) == []


# --- the report directory: whole or nothing ------------------------------------------------------

FILES = {"report.json": b"{}\n", "report.html": b"<html></html>\n", "a.png": b"png-a", "b.png": b"png-b"}


def test_file_set_appears_whole_or_not_at_all(monkeypatch, tmp_path):
    inject(monkeypatch, "write", errno.ENOSPC, after=2)  # the third file fails
    with pytest.raises(OutputError, match=f"cannot write {tmp_path}/new/rep: No space left on device"):
        write_file_set(tmp_path / "new" / "rep", FILES)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    paths = write_file_set(tmp_path / "new" / "rep", FILES)
    assert {p.name: p.read_bytes() for p in paths} == FILES
    assert os.listdir(tmp_path / "new") == ["rep"]


def test_previous_set_is_replaced_as_a_whole_or_kept(monkeypatch, tmp_path):
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "report.json").write_text("old")
    (rep / "stale.png").write_text("from an older run")
    owned = [*FILES, "stale.png"]
    real = os.rename
    monkeypatch.setattr(os, "rename", lambda a, b: (_ for _ in ()).throw(OSError(errno.EIO, "Input/output error"))
                        if str(a).endswith(".tmp") else real(a, b))  # moving the new set in fails
    with pytest.raises(OutputError, match="Input/output error"):
        write_file_set(rep, FILES, owned)
    assert sorted(os.listdir(rep)) == ["report.json", "stale.png"] and (rep / "report.json").read_text() == "old"
    assert os.listdir(tmp_path) == ["rep"]
    monkeypatch.undo()
    write_file_set(rep, FILES, owned)
    assert sorted(os.listdir(rep)) == sorted(FILES)  # the stale figure is gone with the old set
    assert os.listdir(tmp_path) == ["rep"]


def test_directory_with_other_files_is_refused_not_deleted(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(OutputError, match=r"not part of this output \(mine.txt\)"):
        write_file_set(tmp_path, FILES)
    with pytest.raises(OutputError, match="mine.txt"):
        check_outputs(file_sets={tmp_path: FILES})
    assert os.listdir(tmp_path) == ["mine.txt"]


def _fake_report(*a, **k):
    from tests.reporting.test_reports import small_report
    return small_report("x")


def test_report_command_writes_its_directory_atomically(monkeypatch, tmp_path):
    import resformer_deploy.reporting.deploy as dr
    import resformer_deploy.reporting.html as rh
    monkeypatch.setattr(dr, "build_report", _fake_report)
    monkeypatch.setattr(rh, "figures", lambda rep: {"firing_rates.png": b"png"})
    monkeypatch.setattr(rh, "render_html", lambda rep, pngs: "<html></html>\n")
    out = tmp_path / "rep"
    inject(monkeypatch, "fsync", errno.ENOSPC, after=1)
    one_error_line(run("report", D, "-o", out), str(out), "No space left on device")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(os, "fsync", REAL_FSYNC)
    r = run("report", D, "-o", out)
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(out)) == ["firing_rates.png", "report.html", "report.json"]
    assert json.loads((out / "report.json").read_text())["checkpoint"] == "ckpt/x.pt"
    assert run("report", D, "-o", out).exit_code == 0  # a previous report is replaced
    assert os.listdir(tmp_path) == ["rep"]

