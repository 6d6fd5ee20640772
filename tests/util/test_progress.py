"""Progress on a stream that is not a terminal (CI logs, redirected output): a start line, a
line per LOG_EVERY_S seconds while work advances, an end line with the count and time."""
import io

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
