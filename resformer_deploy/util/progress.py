"""Progress reporting on stderr through tqdm: a live bar on a terminal; on anything else (CI logs,
redirected output) whole lines, because tqdm redraws its bar with carriage returns, which a log
file keeps as one ever-growing line: a start line, a line per LOG_EVERY_S seconds while work
advances, an end line with the count and the time.

Callers use ``with Progress(total, label, unit) as bar: ... bar.update(n)`` (or pass
``progress=bar.update``), and ``bar.reset(total)`` once the total is known."""
import sys
import threading

from tqdm import tqdm


class _Tqdm(tqdm):
    monitor_interval = 0  # no monitor thread: our bars never need their refresh rate lowered


# tqdm's default write lock includes a multiprocessing.RLock, whose creation fixes the process's
# start method; importing Lava then calls multiprocessing.set_start_method("fork") (lava-nc
# lava/magma/runtime/message_infrastructure/multiprocessing.py) and fails with "context has already been set". Our bars are drawn from one process:
# a thread lock is all they need.
_Tqdm.set_lock(threading.RLock())


class _Lines:
    """tqdm's output stream for a log: each status tqdm draws (``\\r`` + text) becomes one line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, s: str) -> None:
        text = s.replace("\r", "").strip()
        if text:
            print(text, file=self.stream, flush=True)

    def flush(self) -> None:
        self.stream.flush()


class Progress:
    LOG_EVERY_S = 30.0  # not a terminal: one line per this many seconds, so a log shows a long run advance

    def __init__(self, total: int, label: str, unit: str = "samples", stream=None, enabled: bool = True):
        self.total, self.label, self.unit = int(total), label, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar = None
        self.done = 0  # counted here too: a disabled tqdm bar counts nothing

    def __enter__(self):
        if self.tty:
            self._bar = _Tqdm(total=self.total, desc=self.label, unit=f" {self.unit}", file=self.stream,
                              disable=not self.enabled, leave=True, dynamic_ncols=True)
        else:  # tqdm times the lines; its first status is not drawn at once (delay > 0): the start line is ours
            self._start_line()
            self._bar = _Tqdm(total=self.total, desc=self.label, file=_Lines(self.stream), disable=not self.enabled,
                              leave=False, mininterval=self.LOG_EVERY_S, miniters=1, delay=1e-9,
                              bar_format="{desc}: {n}/{total} " + self.unit + ", {elapsed_s:.0f} s")
        self._bar.n = self.done
        return self

    def _start_line(self) -> None:
        if self.enabled and self.total:
            print(f"{self.label}: {self.total} {self.unit} ...", file=self.stream, flush=True)

    def reset(self, total: int):
        """Set the total once it is known (e.g. simulation steps including pipeline latency)."""
        self.total = int(total)
        if self._bar is not None:
            self._bar.total = self.total  # tqdm's own reset() would also zero the count
            if self.tty:
                self._bar.refresh()
        if not self.tty:
            self._start_line()

    def update(self, n: int = 1):
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def __exit__(self, exc_type, exc, tb):
        bar, self._bar = self._bar, None
        if bar is None:
            return False
        if self.tty:
            if exc_type is not None and self.enabled:
                bar.set_description(f"{self.label} (interrupted)", refresh=False)
            bar.close()
            return False
        elapsed = bar.format_dict["elapsed"]
        bar.close()
        if self.enabled:
            end = "done" if exc_type is None else "interrupted"
            print(f"{self.label}: {end}, {self.done}/{self.total} {self.unit} in {elapsed:.1f} s",
                  file=self.stream, flush=True)
        return False
