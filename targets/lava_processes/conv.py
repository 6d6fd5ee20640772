"""Process models of our own for Lava's stock weight-shared ``Conv`` (lava/proc/conv/process.py).

The stock models are slow for the real networks: ``PyConvModelFloat`` and ``PyConvModelFixed``
loop over every channel pair in Python (lava/proc/conv/utils.py ``conv_scipy``). These are an
optional speed-up: the fixed model computes the stock fixed model's bits (tests/targets/
test_lava_conv.py compares both), so a network runs the same with or without it.
These models read the same Vars (kernel in Lava's (Cout, W, H, Cin/g) convolution layout, ports
in XYC), turn the kernel once into NIR's correlation kernel (resformer_deploy.lava.conv
``from_lava_weight``) and compute with one im2col matmul per group (``conv2d``; numpy only:
torch calls hang inside Lava processes, lava/proc/conv/utils.py). Like stock Conv and Sparse,
each step sends the previous step's result first (one-step synaptic delay), so a feed-forward
graph never waits on a receive before it has sent.

Fixed point is the stock ``PyConvModelFixed``'s arithmetic: acc = sum mant * x exactly, then
wrapped to 24 signed bits (``signed_clamp``). The stock model ignores ``weight_exp`` (lava-nc
issue 803), so the quantizer gives every convolution exponent 0 (fixed_point/quantize.py) and
this model refuses any other rather than compute something stock would not.
Selected by ``exception_proc_model_map`` in the run config (targets.lava_worker, unless it runs
stock models only): discovery only looks next to the process definition, where the stock
models live.
"""
import numpy as np
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.proc.conv.process import Conv

from targets.lava_processes import cpu_model

from resformer_deploy.lava.conv import FLOAT_EXACT, check_exact, conv2d, from_lava_weight


class _PyConvBase(PyLoihiProcessModel):
    """The stock Conv's Vars; the geometry as Python ints (stock declares int8: 128 groups wrap)."""
    s_in = None
    a_out = None
    a_buf = None
    weight = None
    kernel_size: np.ndarray = LavaPyType(np.ndarray, np.int64)
    stride: np.ndarray = LavaPyType(np.ndarray, np.int64)
    padding: np.ndarray = LavaPyType(np.ndarray, np.int64)
    dilation: np.ndarray = LavaPyType(np.ndarray, np.int64)
    groups: np.ndarray = LavaPyType(np.ndarray, np.int64)
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, np.int64)
    weight_exp: np.ndarray = LavaPyType(np.ndarray, np.int64)
    num_weight_bits: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._geometry = None  # set on the first step: Vars are assigned after __init__ (py_builder)

    def _setup(self):
        # Lava's padding/stride/dilation are (X, Y) = (cols, rows); NIR's are (rows, cols)
        yx = lambda v: (int(v[1]), int(v[0]))  # noqa: E731
        self._geometry = dict(stride=yx(self.stride), padding=yx(self.padding), dilation=yx(self.dilation),
                              groups=int(self.groups[0]))
        self._kernel = from_lava_weight(self.weight)  # (Cout, Cin/g, kh, kw) correlation kernel
        self._prepare()

    def _prepare(self):
        pass

    def _conv(self, x_chw, kernel, dtype):
        return conv2d(x_chw[None], kernel, dtype=dtype, **self._geometry)[0]

    def run_spk(self) -> None:
        if self._geometry is None:
            self._setup()
        self.a_out.send(self.a_buf)
        x = self.s_in.recv()  # (X, Y, Cin) = (W, H, C)
        if not x.any():  # silent input (pipeline fill, no spike): nothing to multiply
            self.a_buf = np.zeros(self.a_buf.shape, self.a_buf.dtype)
            return
        out = self._compute(np.swapaxes(x, 0, 2))  # (Cout, H', W')
        self.a_buf = np.swapaxes(out, 0, 2)  # a view: send() copies it into the channel

    def _compute(self, x_chw):
        raise NotImplementedError


@cpu_model(Conv, "floating_pt")
class PyConvModelFloatFast(_PyConvBase):
    """out = conv(x, W) in float64 (weight_exp 0, as the stock float model: it ignores it too)."""
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_buf: np.ndarray = LavaPyType(np.ndarray, float)
    weight: np.ndarray = LavaPyType(np.ndarray, float)

    def _compute(self, x_chw):
        return self._conv(x_chw, self._kernel, np.float64)


@cpu_model(Conv, "fixed_pt")
class PyConvModelFixedExact(_PyConvBase):
    """acc = sum mant * x as an exact integer, out = acc wrapped to 24 signed bits, as the stock
    PyConvModelFixed (weight_exp must be 0: stock ignores it); ports as the stock model.

    The products are summed by BLAS in floating point: float32 when every partial sum of this
    step stays below 2^24 (spike inputs: the kernel's largest |row sum| < 2^24), else float64
    below 2^53, else int64 (exact, no BLAS). The bound is |x|max * max row sum |mant|
    (resformer_deploy.lava.conv.exact_bound), taken from this step's input, so no rounding is
    possible whatever arrives; at set-up the payload width the process declares
    (num_message_bits; 0 = spikes) must be exact in float64, else a weight is out of range."""
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def _prepare(self):
        k = self._kernel
        if not np.array_equal(k, np.round(k)):
            raise ValueError(f"{self.__class__.__name__}: fixed-point Conv weights must be integer mantissas")
        bits = int(self.num_message_bits[0])
        check_exact(k, 2.0 ** bits if bits > 0 else 1.0, np.float64, "fixed-point Conv")
        a = np.abs(k.astype(np.float64))
        self._row_sum = float(a.reshape(a.shape[0], -1).sum(axis=1).max()) if a.size else 0.0
        self._kernels = {np.dtype(np.int64): k.astype(np.int64, copy=False)}  # per dtype, made when needed
        if int(self.weight_exp[0]) != 0:  # stock ignores it: computing it would be a different network
            raise ValueError(f"{self.__class__.__name__}: weight_exp {int(self.weight_exp[0])}: Lava's stock Conv "
                             f"models ignore weight_exp (lava-nc issue 803); quantize with exponent 0")

    def _kernel_as(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._kernels:
            self._kernels[dtype] = self._kernels[np.dtype(np.int64)].astype(dtype)
        return self._kernels[dtype]

    def _compute(self, x_chw):
        bound = self._row_sum * max(float(x_chw.max()), -float(x_chw.min()))  # abs() of int32 min wraps
        dtype = next((d for d in (np.float32, np.float64) if bound < FLOAT_EXACT[np.dtype(d)]), np.int64)
        acc = self._conv(x_chw, self._kernel_as(dtype), dtype).astype(np.int64, copy=False)  # conv2d casts x
        # the stock model: float64 sum cast to int32, then signed_clamp(x, 24) (lava/proc/conv/utils.py)
        if acc.size and (acc.max() >= 2 ** 31 or acc.min() < -2 ** 31):
            raise ValueError(f"{self.__class__.__name__}: sums beyond int32, where the stock model's cast is undefined")
        return (acc + (1 << 23)) % (1 << 24) - (1 << 23)
