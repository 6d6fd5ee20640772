"""Loihi 2 fixed point: number formats (formats.py); the quantization pass lives in
resformer_deploy/passes/quantize.py and the bit-accurate emulator in targets/loihi2_emulator.py."""
