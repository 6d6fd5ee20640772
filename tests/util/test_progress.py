"""Progress on a stream that is not a terminal (CI logs, redirected output): a start line, a
line per LOG_EVERY_S seconds while work advances, an end line with the count and time."""
import io
import subprocess
import sys

from resformer_deploy.util.progress import Progress


def lines_of(every: float, updates: int):
    out = io.StringIO()
    bar = Progress(5, "evaluate", "samples", stream=out)
    bar.LOG_EVERY_S = every
    with bar:
        for _ in range(updates):
            bar.update()
    return out.getvalue().splitlines()


def test_a_log_shows_the_count_advance():
    lines = lines_of(0.0, 3)
    assert lines[0] == "evaluate: 5 samples ..."
    assert [line.split(",")[0] for line in lines[1:4]] == ["evaluate: 1/5 samples", "evaluate: 2/5 samples",
                                                            "evaluate: 3/5 samples"]
    assert lines[4].startswith("evaluate: done, 3/5 samples in ") and len(lines) == 5


def test_a_short_run_logs_only_its_start_and_end():
    lines = lines_of(3600.0, 5)
    assert lines[0] == "evaluate: 5 samples ..." and lines[1].startswith("evaluate: done, 5/5 samples in ")
    assert len(lines) == 2


def test_a_log_has_no_carriage_returns():
    out = io.StringIO()
    bar = Progress(3, "evaluate", "samples", stream=out)
    bar.LOG_EVERY_S = 0.0
    with bar:
        bar.update(2)
        bar.reset(4)
        bar.update(2)
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines()[-1].startswith("evaluate: done, 4/4 samples in ")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_tqdm_bar_redrawn_in_place():
    out = Terminal()
    try:
        with Progress(4, "evaluate", "samples", stream=out) as bar:
            bar.update(2)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    text = out.getvalue()
    assert text.startswith("\revaluate:   0%") and text.endswith("\n") and text.count("\n") == 1
    last = text.rstrip("\n").split("\r")[-1]  # what the terminal shows at the end
    assert last.startswith("evaluate (interrupted):  50%") and " 2/4 [" in last and "samples/s]" in last


def test_a_drawn_bar_leaves_the_start_method_unset_for_lava():
    # Lava's import calls multiprocessing.set_start_method("fork"), which fails once anything has
    # fixed the start method (tqdm's default lock holds a multiprocessing lock); fresh interpreter
    # because pytest's own process may have fixed it already
    code = ("import io, multiprocessing\n"
            "from resformer_deploy.util.progress import Progress\n"
            "class T(io.StringIO):\n    def isatty(self): return True\n"
            "for stream in (io.StringIO(), T()):\n"
            "    with Progress(3, 'x', stream=stream) as bar: bar.update(3)\n"
            "multiprocessing.set_start_method('fork')\nprint('set')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "set", out.stderr[-500:]
