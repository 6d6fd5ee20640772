"""Loihi 2 fixed point: number formats, calibration, the quantized network."""
