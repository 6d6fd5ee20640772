"""Decoding one image file of an ImageFolder, sized from its header before it is decoded.

As torchvision's ``pil_loader`` (``Image.open(f).convert("RGB")``) except:

* grayscale stays one channel (the Preprocessor repeats it to RGB for a 3-channel model);
* 16-bit grayscale (Pillow modes ``I;16*``) is scaled to 8 bit by ``v >> 8``, as torchvision's
  ``to_dtype(uint16 image, torch.uint8, scale=True)`` does (torchvision/transforms/v2/functional/
  _misc.py: integer to integer is a right shift by the difference of bit depths), where
  ``convert("RGB")`` would clip every value above 255 to white;
* 32-bit integer (``I``) and float (``F``) images are refused naming the mode: they have no
  defined 0..255 scale;
* the decoded size (Pillow reads width, height and mode from the header in ``Image.open``) is
  checked against the memory budget before ``load()``, and Pillow's decompression-bomb warning
  (raised in ``Image.open``) is an error: one line naming the file and the figures instead of a
  printed warning. ``warnings.catch_warnings`` changes process-wide state, so the header reads
  of the decoding threads take turns (a header read is short; the decoding itself is not locked);
* the loader's threads decode at the same time: a decode that would not fit beside those in
  flight waits for them, so together they stay within the budget too.
"""
import threading
import warnings
from contextlib import contextmanager

import numpy as np

from resformer_deploy.data.checks import check_budget
from resformer_deploy.util.memory_budget import MemoryBudgetError

GRAY_MODES = ("1", "L", "LA", "La")  # decoded as one channel
GRAY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
REFUSED_MODES = {"I": "32-bit integer", "F": "32-bit float"}
_OPEN_LOCK = threading.Lock()
_IN_FLIGHT = threading.Condition()
_reserved = [0]  # bytes the decodes in flight may take


@contextmanager
def reserve(need: int, budget: int):
    """Hold ``need`` bytes of ``budget`` while decoding; wait while others hold too much."""
    with _IN_FLIGHT:
        while _reserved[0] and _reserved[0] + need > budget:
            _IN_FLIGHT.wait()
        _reserved[0] += need
    try:
        yield
    finally:
        with _IN_FLIGHT:
            _reserved[0] -= need
            _IN_FLIGHT.notify_all()


def _open(Image, f):
    """Image.open with its DecompressionBombWarning raised as an exception."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(f)


def decode_needs(width: int, height: int, mode: str, bands: int) -> int:
    """Bytes decoding and preprocessing one image take at their peak, a pixel at a time: the
    decoded image (its mode's bytes), a converted copy when its mode is not the output's (16 bit:
    the native copy and the shifted one), numpy's array and the bytes it is made from, and the
    Preprocessor's PIL copy (RGB at worst). Measured on 9000x9000 PNGs (RGB, P, L, I;16): within
    this figure."""
    decoded = {"I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4, "1": 1}.get(mode, bands)
    out = 1 if mode in GRAY_MODES + GRAY16_MODES else 3
    target = "L" if out == 1 else "RGB"
    converted = 4 if mode in GRAY16_MODES else (0 if mode == target else out)
    return width * height * (decoded + converted + 2 * out + 3)


class ImageRefused(Exception):
    """A file that opens but must not be decoded (one line, naming it)."""


def decode(path: str) -> np.ndarray:
    """uint8 [H, W, 1] (grayscale) or [H, W, 3] (RGB) of the image at ``path``; ImageRefused /
    OSError / SyntaxError / ValueError for one that cannot or must not be decoded."""
    from PIL import Image

    with open(path, "rb") as f:
        try:
            img = _open(Image, f)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            raise ImageRefused(f"refused by Pillow's decompression-bomb check: {e}") from None
        w, h = img.size
        if img.mode in REFUSED_MODES:
            raise ImageRefused(f"{REFUSED_MODES[img.mode]} image (Pillow mode {img.mode}) has no 0..255 scale; "
                               f"save it with 8 or 16 bits per channel")
        need = decode_needs(w, h, img.mode, len(img.getbands()))
        try:
            budget = check_budget(need, f"decoding a {w:,}x{h:,} {img.mode} image")
        except MemoryBudgetError as e:
            raise ImageRefused(str(e)) from None
        with reserve(need, budget):
            img.load()  # decode now: a truncated file fails here, not later
            if img.mode in GRAY16_MODES:
                a = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
            else:
                mode = "L" if img.mode in GRAY_MODES else "RGB"
                a = np.asarray(img if img.mode == mode else img.convert(mode), dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a
