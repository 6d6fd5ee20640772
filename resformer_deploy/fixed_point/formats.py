"""Loihi 2 number formats (as Lava's bit-accurate models implement them) and exact rounding helpers.

Sources: lava-nc 0.10.0 ``proc/lif/models.py`` (AbstractPyLifModelFixed / PyLifResetModelBitAcc),
``proc/sparse/models.py`` (PySparseModelBitAcc), ``utils/weightutils.py`` (clip/truncate),
``proc/graded/models.py``.
"""
import numpy as np

# 8-bit signed mantissa; mixed-sign matrices lose the LSB (weightutils.truncate_weights): even values
WEIGHT_MIXED_MIN, WEIGHT_MIXED_MAX = -256, 254
WEIGHT_SINGLE_MAX = 255  # all-positive (excitatory) or all-negative (inhibitory) matrices
# shared per-connection exponent: Loihi 1's 4-bit signed weight exponent (Davies et al., IEEE Micro
# 2018), kept for Loihi 2 as a proxy; Lava's Sparse/Dense models shift by any integer
WEIGHT_EXP_RANGE = (-8, 7)
# Lava's stock Conv models ignore weight_exp (lava/proc/conv/models.py; lava-nc issue 803): a
# convolution's mantissas are its integer weights, so its exponent is 0
CONV_WEIGHT_EXP = 0
# ... and its fixed model wraps the sum to 24 signed bits (conv/utils.py signed_clamp)
CONV_OUT_BITS = 24
STATE_BITS = 24  # u, v and graded spike payloads
STATE_MAX = 2 ** (STATE_BITS - 1)  # |u| must stay below (wraps), v saturates at +-(STATE_MAX - 1)
ACT_SHIFT = 6  # synaptic input and threshold are MSB-aligned by << 6
DECAY_BITS = 12  # du, dv: decay = d / 4096 (u uses du + 1)
DECAY_UNITY = 2 ** DECAY_BITS
VTH_MAX = 2 ** 17 - 1  # unsigned 17-bit threshold mantissa
BIAS_MANT_RANGE = (-4096, 4095)  # signed 13-bit
BIAS_EXP_RANGE = (0, 7)  # unsigned 3-bit
# lava-dl netx builds every neuron with bias_exp 6 (lava/lib/dl/netx/hdf5.py, Network.get_neuron_params):
# a bias on this grid is what netx's conv/dense blocks can hold
NETX_BIAS_EXP = 6


def _ceil_log2(x: float) -> int:
    return int(np.ceil(np.log2(x))) if x > 0 else WEIGHT_EXP_RANGE[0]


def weight_top(w) -> int:
    """Largest |mantissa| for the weights w: 254 if they have both signs (even values), else 255."""
    nz = np.asarray(w)[np.asarray(w) != 0]
    return WEIGHT_MIXED_MAX if nz.size and nz.min() < 0 < nz.max() else WEIGHT_SINGLE_MAX


def quantize_weights(w: np.ndarray, exp_range=WEIGHT_EXP_RANGE):
    """Target values w (already in integer units) -> (mantissa, exponent, saturated count).

    Smallest exponent in ``exp_range`` whose mantissa fits; mixed-sign mantissas rounded to even values
    (Lava drops their LSB).  Returns int64 mantissas with  mant << exp  ~=  w.
    """
    w = np.asarray(w, dtype=np.float64)
    nz = w[w != 0]
    if nz.size == 0:
        return np.zeros(w.shape, np.int64), int(np.clip(0, *exp_range)), 0
    mixed = nz.min() < 0 < nz.max()
    top = WEIGHT_MIXED_MAX if mixed else WEIGHT_SINGLE_MAX
    exp = int(np.clip(_ceil_log2(np.abs(nz).max() / top), *exp_range))
    while exp < exp_range[1] and np.abs(_round_to_grid(w, exp, mixed)).max() > top:
        exp += 1  # rounding up reached the top: next exponent
    mant = _round_to_grid(w, exp, mixed)
    lo = WEIGHT_MIXED_MIN if mixed else -top
    sat = int(((mant > top) | (mant < lo)).sum())
    return np.clip(mant, lo, top).astype(np.int64), exp, sat


def _round_to_grid(w, exp, mixed):
    step = 2.0 if mixed else 1.0
    return (np.round(w / 2.0 ** exp / step) * step).astype(np.int64)


def shift(acc: np.ndarray, exp: int) -> np.ndarray:
    """Lava's synaptic exponent: << exp, or arithmetic >> -exp (floors)."""
    return acc << exp if exp > 0 else acc >> -exp


def split_bias(b: np.ndarray, min_exp: int = 0):
    """Integer bias -> (13-bit mantissa, 3-bit exponent >= min_exp, saturated count); mant << exp ~= b."""
    b = np.asarray(b, dtype=np.float64)
    top = BIAS_MANT_RANGE[1]
    m = float(np.abs(b).max()) if b.size else 0.0
    exp = int(np.clip(max(_ceil_log2(m / top) if m > top else 0, min_exp), *BIAS_EXP_RANGE))
    mant = np.round(b / 2.0 ** exp).astype(np.int64)
    sat = int(((mant > top) | (mant < BIAS_MANT_RANGE[0])).sum())
    return np.clip(mant, *BIAS_MANT_RANGE), exp, sat


def decay_register(k: float):
    """Voltage decay k (v' = (1-k) v + ...) -> 12-bit dv = k * 4096 and its representation error."""
    dv = int(np.clip(round(k * DECAY_UNITY), 0, DECAY_UNITY - 1))
    return dv, abs(dv / DECAY_UNITY - k)


def lif_step(v, a_in, dv: int, bias_eff, vth: int):
    """One step of Lava's bit-accurate LIF with du = 4095 (u = a_in << 6), int64 arrays: the current
    keeps nothing of its previous value, so that is not an argument.

    Returns (u, v_pre_reset, spikes, u_wrapped count, v_saturated count); wrap and saturation
    are what the 24-bit registers do (lava proc/lif/models.py, subthr_dynamics)."""
    u = a_in << ACT_SHIFT
    wrapped = (u > STATE_MAX) | (u <= -STATE_MAX)
    if wrapped.any():
        u = np.where(u > STATE_MAX, u - 2 * STATE_MAX, u)
        u = np.where(u <= -STATE_MAX, u + 2 * STATE_MAX, u)
    d = v * (DECAY_UNITY - dv)
    v = np.sign(d) * (np.abs(d) >> DECAY_BITS) + u + bias_eff
    sat = (v > STATE_MAX - 1) | (v < -(STATE_MAX - 1))
    v = np.clip(v, -(STATE_MAX - 1), STATE_MAX - 1)
    s = v > (vth << ACT_SHIFT)
    return u, v, s, int(wrapped.sum()), int(sat.sum())


def wrap_signed(acc: np.ndarray, bits: int = CONV_OUT_BITS):
    """The stock fixed Conv's output register: acc wrapped to ``bits`` signed bits
    (lava/proc/conv/utils.py signed_clamp) -> (wrapped int64 array, count of values that wrapped)."""
    acc = np.asarray(acc, dtype=np.int64)
    half = 1 << (bits - 1)
    out = (acc + half) % (2 * half) - half
    return out, int((out != acc).sum())
