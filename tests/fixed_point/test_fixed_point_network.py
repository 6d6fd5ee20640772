"""The quantized network's parts (resformer_deploy.fixed_point.network) refuse values outside
Loihi 2's number formats, naming the node; the report rows keep their JSON form."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from resformer_deploy.fixed_point.network import LifQ, QuantizationError, QuantLayer, ScaleGroup, SynQ
from resformer_deploy.util.serialize import to_jsonable


def _syn(mant, exp=0):
    return SynQ("fc", "dense", sp.csr_matrix(np.array([mant], dtype=np.int64)), exp, 0, 0.0, 0.0, len(mant))


def _conv(kernel, exp=0):
    return SynQ("conv1", "conv", np.asarray(kernel, dtype=np.int64).reshape(1, 1, 1, -1), exp, 0, 0.0, 0.0, 9)


def test_weight_mantissas_and_exponent_must_fit_lavas_sparse():
    _syn([-256, 0, 254])  # mixed sign: even values in [-256, 254]
    _syn([255, 3])  # one sign: up to 255
    _syn([-255, -3], exp=-8)
    with pytest.raises(QuantizationError, match=r"^fc: weight mantissas 3..300 outside \[-255, 255\]"):
        _syn([300, 3])
    with pytest.raises(QuantizationError, match="^fc: mixed-sign weight mantissas must be even"):
        _syn([-4, 3])
    with pytest.raises(QuantizationError, match=r"^fc: mixed-sign weight mantissas -2..255 outside \[-256, 254\]"):
        _syn([-2, 255])
    with pytest.raises(QuantizationError, match=r"^fc: weight exponent 8 outside \[-8, 7\]"):
        _syn([1], exp=8)
    with pytest.raises(QuantizationError, match="^fc: weight mantissas must be integers"):
        SynQ("fc", "dense", sp.csr_matrix(np.array([[0.5]])), 0, 0, 0.0, 0.0, 1)


def test_convolution_kernels_of_mantissas_obey_the_same_formats():
    k = _conv([-256, 0, 254])
    assert k.values.tolist() == [-256, 0, 254] and k.max_abs == 256 and k.mant.shape == (1, 1, 1, 3)
    _conv([255, 0, 3])
    with pytest.raises(QuantizationError, match="^conv1: mixed-sign weight mantissas must be even"):
        _conv([-4, 0, 3])
    with pytest.raises(QuantizationError, match=r"^conv1: weight mantissas 0..300 outside \[-255, 255\]"):
        _conv([300, 0, 3])
    with pytest.raises(QuantizationError, match=r"^conv1: convolution mantissas must be a \(Cout, Cin/groups, kh, "
                                                r"kw\) kernel, got shape \(3,\)"):
        SynQ("conv1", "conv", np.zeros(3, np.int64), 0, 0, 0.0, 0.0, 3)
    with pytest.raises(QuantizationError, match="^conv1: weight mantissas must be integers"):
        SynQ("conv1", "conv", np.full((1, 1, 3, 3), 0.5), 0, 0, 0.0, 0.0, 9)
    with pytest.raises(QuantizationError, match="^fc: dense mantissas must be a sparse"):
        SynQ("fc", "dense", np.zeros((2, 2), np.int64), 0, 0, 0.0, 0.0, 4)
    with pytest.raises(QuantizationError, match="^fc: synapse kind 'pool' is not one of dense, conv"):
        SynQ("fc", "pool", np.zeros((1, 1, 1, 1), np.int64), 0, 0, 0.0, 0.0, 1)


def _lif(**kw):
    args = dict(dv=2048, vth=100, bias_mant=np.array([0, -4096, 4095]), bias_exp=0, bias_saturated=0,
                decay_error=0.0, threshold_error=0.0)
    args.update(kw)
    return LifQ("lif3", **args)


def test_lif_registers_must_fit_lavas_bit_accurate_lif():
    assert _lif(bias_exp=2).bias_eff.tolist() == [0, -4096 * 4, 4095 * 4]
    with pytest.raises(QuantizationError, match="^lif3: threshold 131072 outside the 17-bit vth range"):
        _lif(vth=2 ** 17)
    with pytest.raises(QuantizationError, match=r"^lif3: decay dv 4096 outside \[0, 4095\]"):
        _lif(dv=4096)
    with pytest.raises(QuantizationError, match=r"^lif3: bias mantissas 0..5000 outside \[-4096, 4095\]"):
        _lif(bias_mant=np.array([0, 5000]))
    with pytest.raises(QuantizationError, match=r"^lif3: bias exponent 8 outside \[0, 7\]"):
        _lif(bias_exp=8)
    with pytest.raises(QuantizationError, match="^lif3: bias mantissas must be one per neuron"):
        _lif(bias_mant=np.zeros((2, 2), np.int64))


def test_scale_groups_are_powers_of_two_that_say_what_bound_them():
    ScaleGroup(["a", "b"], ["lif"], 0.25, -2, "lif: threshold (17 bit)", 3.0)
    with pytest.raises(QuantizationError, match=r"^scale group a: scale 0.3 is not 2\^-2"):
        ScaleGroup(["a"], [], 0.3, -2, "x", 1.0)
    with pytest.raises(QuantizationError, match="needs members and the bound"):
        ScaleGroup(["a"], [], 0.25, -2, "", 1.0)


def test_report_rows_list_only_the_figures_a_node_has():
    mant = sp.csr_matrix(np.array([[4, 0, -2]], dtype=np.int64))
    syn = QuantLayer.of("fc", "Affine", 3, 1.5, syn=SynQ("fc", "dense", mant, -1, 2, 0.01, 0.5, 2))
    lif = QuantLayer.of("lif3", "LIF", 3, 0.7, lif=_lif(bias_saturated=1), max_membrane=9.0)
    assert list(to_jsonable(syn)) == ["node", "kind", "log2_scale", "weights_saturated", "bias_saturated",
                                      "calibrated_max_abs", "weight_exp", "weight_rel_rms_error",
                                      "mantissa_utilization", "synapses"]
    assert to_jsonable(syn)["synapses"] == 2 and syn.clipped == 2
    assert list(to_jsonable(lif))[6:] == ["dv", "vth", "bias_exp", "threshold_rel_error", "decay_error",
                                          "calibrated_max_membrane"]
    assert lif.clipped == 1 and json.dumps(to_jsonable([syn, lif]))
    with pytest.raises(QuantizationError, match="^fc: report row has only some of weight_exp"):
        QuantLayer("fc", "Affine", 3, weight_exp=1)
