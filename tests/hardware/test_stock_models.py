"""Stock-model design rules (resformer_deploy/hardware/loihi2/drc.py STOCK_MODEL_CHECKS): every
process whose parameters Lava's stock process models would not honour, and every process with
no stock model, named; checked on the quantized digits model (both DSSA lowerings) and on
hand-made plans that break each rule once."""
from types import SimpleNamespace as NS

import numpy as np
import pytest

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.hardware.loihi2.drc import (STOCK_MODEL_CHECKS, stock_conv_geometry, stock_conv_weight_exp,
                                                  stock_delays, stock_model_findings, stock_process_models)


@pytest.fixture(scope="module")
def digits_quant():
    from exporters.torch_to_nir import export_model
    from resformer_deploy.flows.fixed_point import calibrate_and_quantize, calibration_inputs
    from resformer_deploy.model.checkpoint import load_checkpoint
    from tests.conftest import DIGITS_CKPT
    m = load_checkpoint(DIGITS_CKPT).model.double().eval()
    g = export_model(m, "float64")
    xc, _ = calibration_inputs((1, 8, 8), 32)
    return {d: calibrate_and_quantize(g, xc.double(), m.config.T, dssa=d) for d in ("fused", "synaptic")}


def test_synaptic_digits_network_runs_on_stock_models_only(digits_quant):
    q = digits_quant["synaptic"]
    assert sum(s.kind == "conv" for s in q.syn.values()) == 17
    assert stock_model_findings(q.plan, q) == []


def test_fused_products_are_named_as_needing_embedded_core_programs(digits_quant):
    q = digits_quant["fused"]
    products = sorted(n for n in q.plan.neuro if isinstance(q.plan.graph.nodes[n], SpikeMatMul))
    assert len(products) == 6
    found = stock_model_findings(q.plan, q)
    assert found == [f"{n}: FusedSpikeMatMul has no stock Lava process model: needs an embedded-core program "
                     f"(or --dssa synaptic, which uses stock processes only)" for n in products]


def test_a_convolution_exponent_the_stock_conv_ignores_is_named():
    # SynQ refuses such a network when it is made; the rule still judges any network it is given
    qn = NS(syn={"c1": NS(kind="conv", exp=3), "c2": NS(kind="conv", exp=0), "fc": NS(kind="dense", exp=3)})
    assert stock_conv_weight_exp(None, qn) == [
        "c1: Conv weight_exp 3 is ignored by Lava's stock Conv models (lava-nc issue 803); quantize with exponent 0"]
    assert stock_conv_weight_exp(None, None) == []  # a float plan has no exponents


def test_conv_geometry_beyond_the_stock_models_int8_vars_is_named():
    def conv(**kw):
        return NS(**{**dict(kind="conv", weight=np.zeros((4, 1, 3, 3)), stride=(1, 1), padding=(1, 1),
                            dilation=(1, 1), groups=1), **kw})
    plan = NS(synapses={"ok": conv(), "dw": conv(weight=np.zeros((256, 1, 3, 3)), groups=256),
                        "pad": conv(padding=(0, 128)), "fc": NS(kind="dense")})
    assert stock_conv_geometry(plan) == [
        "dw: Conv groups 256 > 127: the stock Conv model holds it in int8 (wraps)",
        "pad: Conv padding 128 > 127: the stock Conv model holds it in int8 (wraps)"]


def test_delays_beyond_the_stock_delay_sparse_are_named():
    plan = NS(neuro=["b", "c", "d"], edge_delay={("a", "b"): 65, ("a", "c"): 64, ("a", "d"): 1, ("d", "out"): 99})
    assert stock_delays(plan) == ["b: delay 65 on the input from a needs a DelaySparse delay 64 > 63 "
                                  "(the stock model refuses it)"]


def test_every_rule_runs_and_a_synaptic_plan_has_no_program():
    assert STOCK_MODEL_CHECKS == [stock_conv_weight_exp, stock_conv_geometry, stock_delays, stock_process_models]
    plan = NS(dssa="synaptic", neuro=["b"], graph=NS(nodes={"b": None}), synapses={}, edge_delay={("a", "b"): 70})
    qn = NS(syn={"c": NS(kind="conv", exp=-1)})
    found = stock_model_findings(plan, qn)
    assert [f.split(":")[0] for f in found] == ["c", "b"]
