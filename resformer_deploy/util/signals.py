"""Hold the stop signals back while a few lines that must not be cut short run."""
import signal
import threading
from contextlib import contextmanager

DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def deferred_signals(signums=DEFERRED):
    """While the block runs, SIGINT/SIGTERM/SIGHUP are recorded instead of handled; the first one
    that came is re-delivered afterwards and then handled as usual (KeyboardInterrupt, or the CLI's
    Terminated). So the exception a handler raises cannot land between a system call (creating a
    temp file, starting a worker) and the bookkeeping that cleans up after it. Masking with
    pthread_sigmask would not do: another thread may receive the signal. Handlers can only be set
    from the main thread (Python docs, signal module); elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    old = {s: signal.signal(s, lambda signum, _frame: pending.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)
        if pending:
            signal.raise_signal(pending[0])
