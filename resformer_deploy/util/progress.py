"""Progress reporting on stderr: a live bar on a terminal, start/end lines otherwise
(CI logs stay readable)."""
import sys
import time


class Progress:
    LOG_EVERY_S = 30.0  # not a terminal: one line per this many seconds, so a log shows a long run advance

    def __init__(self, total: int, label: str, unit: str = "samples", stream=None, enabled: bool = True):
        self.total, self.label, self.unit = int(total), label, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.done = 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = self.t_line = time.time()

    def __enter__(self):
        if self.enabled and not self.tty and self.total:
            print(f"{self.label}: {self.total} {self.unit} ...", file=self.stream, flush=True)
        return self

    def reset(self, total: int):
        """Set the total once it is known (e.g. simulation steps including pipeline latency)."""
        self.total = int(total)
        if self.enabled and not self.tty:
            print(f"{self.label}: {self.total} {self.unit} ...", file=self.stream, flush=True)

    def update(self, n: int = 1):
        self.done += n
        if self.enabled and self.tty:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            print(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                  f"{self.unit}", end="", file=self.stream, flush=True)
        elif self.enabled and time.time() - self.t_line >= self.LOG_EVERY_S:
            self.t_line = time.time()
            print(f"{self.label}: {self.done}/{self.total} {self.unit}, {self.t_line - self.t0:.0f} s",
                  file=self.stream, flush=True)

    def __exit__(self, exc_type, exc, tb):
        if not self.enabled:
            return False
        dt = time.time() - self.t0
        end = "done" if exc_type is None else "interrupted"
        prefix = "\r" if self.tty else ""
        print(f"{prefix}{self.label}: {end}, {self.done}/{self.total} {self.unit} in {dt:.1f} s"
              + " " * 20, file=self.stream, flush=True)
        return False
