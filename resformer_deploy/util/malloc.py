"""glibc's malloc told to keep the memory a process frees (mallopt(3)).

With glibc's defaults every temporary above the mmap threshold (128 KiB, rising to at most 32 MiB)
is a fresh mapping whose pages fault in zeroed and are unmapped when freed: on ti @224 a fresh Ray
worker took ~140,000 page faults per sample and spent 25-35 % of its main thread's CPU time in the
kernel (benchmarks/RESULTS.md, issue 28, stop 36). Used by the Ray workers and the test processes.
"""
import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
KEEP_BELOW = 1 << 30  # allocations below it from the heap, and up to it freed memory kept


def keep_freed_memory() -> bool:
    """Allocations below KEEP_BELOW come from the heap (M_MMAP_THRESHOLD) and the heap is not trimmed
    until KEEP_BELOW is free at its top (M_TRIM_THRESHOLD). Per process, for the rest of its life.
    Returns whether both were set (False off glibc)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc's, not musl's or macOS's malloc
        return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BELOW) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BELOW))
    except (OSError, AttributeError):
        return False
