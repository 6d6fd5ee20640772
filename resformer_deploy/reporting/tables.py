"""Plain-text tables and JSON output shared by the CLI commands."""
import json

from resformer_deploy.util.outputs import write_bytes


def table(rows, headers) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(cells, widths))

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(s.rstrip() for s in out)


def _numeric(s: str) -> bool:
    try:
        float(s.replace(",", "").rstrip("%"))
        return True
    except ValueError:
        return False


def json_bytes(data) -> bytes:
    from resformer_deploy.util.serialize import to_jsonable
    return (json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n").encode()


def write_json(path, data) -> None:
    """Atomic (or in place for /dev/null, a FIFO): resformer_deploy.util.outputs.write_bytes."""
    write_bytes(path, json_bytes(data))


def machine_description() -> str:
    """One line naming the machine and software behind a measurement (reports, benchmarks)."""
    import os
    import platform

    import torch
    return (f"{platform.machine()} {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; float32 results differ by vendor), else the platform's."""
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "") or "?"
    except OSError:
        return platform.processor() or "?"
