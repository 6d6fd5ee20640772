"""Bad inputs: refused before any long work, in one line that names the file, key, node or option.

Numeric options out of range (click's own validation, one line via Group.main), click usage errors,
damaged or foreign checkpoints and NIR files, NaN/inf and non-physical parameters, sizes beyond the
memory budget. Foreign NIR graphs are built with nir's own node constructors and ``nir.write``.
"""
import pickle

import nir
import numpy as np
import torch

from tests.bad_inputs import Case, args
from tests.conftest import DIGITS_CKPT

D = str(DIGITS_CKPT)
RANGE1 = "is not in the range x>=1"
RANGE0 = "is not in the range x>=0"
HUGE = str(10 ** 12)
BUDGET_ENV = "RESFORMER_DEPLOY_MEMORY_BUDGET"


# -- files the cases need ------------------------------------------------------------------------

def foreign_graph(n_in=64, n_out=10, in_shape=None, lif=None, extra_output=False, flatten=False):
    """Input -> [Flatten] -> Affine -> LIF -> Output, named as another tool might name them."""
    rng = np.random.default_rng(0)
    one = np.ones(n_out, np.float32)
    p = dict(tau=2e-3 * one, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one)
    p.update(lif or {})
    nodes = {"x_in": nir.Input(input_type={"input": np.array(in_shape or [n_in])}),
             "fc": nir.Affine(weight=rng.normal(size=(n_out, n_in)).astype(np.float32),
                              bias=rng.normal(size=n_out).astype(np.float32)),
             "spk": nir.LIF(**{k: np.asarray(v, np.float32) for k, v in p.items()}),
             "y_out": nir.Output(output_type={"output": np.array([n_out])})}
    edges = [("fc", "spk"), ("spk", "y_out")]
    if flatten:
        nodes["flat"] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
        edges += [("x_in", "flat"), ("flat", "fc")]
    else:
        edges.append(("x_in", "fc"))
    if extra_output:
        nodes["y_out2"] = nir.Output(output_type={"output": np.array([n_out])})
        edges.append(("spk", "y_out2"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def write_foreign(tmp, name="foreign.nir", **kw):
    path = tmp / name
    nir.write(path, foreign_graph(**kw))
    return str(path)


def _edit_h5(tmp, dataset, value=None, fill_shape=None, name="edited.nir"):
    """A foreign file with one dataset replaced: first element set to ``value``, or an
    unwritten dataset of ``fill_shape`` holding only its fill value (no space in the file)."""
    import h5py
    path = write_foreign(tmp, name)
    with h5py.File(path, "r+") as f:
        a = f[dataset][()]
        grp, key = dataset.rsplit("/", 1)
        del f[dataset]
        if fill_shape:
            f[grp].create_dataset(key, shape=fill_shape, dtype=np.float32, fillvalue=0.5, chunks=True)
        else:
            a = np.array(a)
            a.flat[0] = value
            f[grp].create_dataset(key, data=a)
    return path


def _checkpoint(tmp, name="bad.pt", drop=(), add=None, change=None, obj=None):
    """The digits checkpoint with keys dropped/added/changed (or any object) saved in its place."""
    ck = torch.load(D, map_location="cpu", weights_only=True)
    sd = {k: v for k, v in ck["model"].items() if k not in drop}
    sd.update(add or {})
    for k, fn in (change or {}).items():
        sd[k] = fn(sd[k].clone())
    ck["model"] = sd
    path = tmp / name
    torch.save(ck if obj is None else obj, path)
    return str(path)


def _nan_first(t):
    t.view(-1)[0] = float("nan")
    return t


def _tiny_checkpoint(tmp, name="tiny.pt"):
    from resformer_deploy.model.resformer import build_model
    from resformer_deploy.model.calibration import randomize_state
    path = tmp / name
    torch.save({"model": randomize_state(build_model("tiny")).state_dict()}, path)
    return str(path)


class Opaque:  # a pickled object that weights_only loading refuses
    pass


def _bytes(tmp, data, name="bad.pt"):
    (tmp / name).write_bytes(data)
    return str(tmp / name)


# -- the cases -----------------------------------------------------------------------------------

def _fg(cmd, *extra, **kw):  # a command on a foreign graph
    return lambda tmp: [cmd, write_foreign(tmp, **kw), *extra]


def _ck(cmd, *extra, **kw):  # a command on an edited digits checkpoint
    return lambda tmp: [cmd, _checkpoint(tmp, **kw), *extra]


CASES = [
    # 7: numeric options, every command (click.IntRange; one line from Group.main)
    Case("info_T_zero", args("info", D, "--T", "0"), ["info", "'--T'", "0 " + RANGE1]),
    Case("info_img_size_zero", args("info", D, "--img-size", "0"), ["'--img-size'", RANGE1]),
    Case("info_num_classes_zero", args("info", D, "--num-classes", "0"), ["'--num-classes'", RANGE1]),
    Case("info_T_not_a_number", args("info", D, "--T", "four"), ["'--T'", "'four' is not a valid integer"]),
    Case("export_img_size_negative", args("export", D, "-o", "{tmp}/x.nir", "--img-size", "-8"),
         ["export", "'--img-size'", "-8 " + RANGE1]),
    Case("simulate_samples_zero", _fg("simulate", "--samples", "0"), ["simulate", "'--samples'", RANGE1]),
    Case("simulate_samples_negative", _fg("simulate", "--samples", "-1"), ["'--samples'", "-1 " + RANGE1]),
    Case("simulate_calib_samples_zero", _fg("simulate", "--calib-samples", "0"), ["'--calib-samples'", RANGE1]),
    Case("simulate_seed_too_large", _fg("simulate", "--seed", str(2 ** 64)),
         ["'--seed'", "0<=x<=18446744073709551615"]),
    Case("verify_samples_zero", args("verify", D, "--samples", "0"), ["verify", "'--samples'", RANGE1]),
    Case("verify_calib_samples_zero", args("verify", D, "--target", "loihi2-sim", "--calib-samples", "0"),
         ["'--calib-samples'", RANGE1]),
    Case("verify_lava_samples_negative", args("verify", D, "--lava-samples", "-1"), ["'--lava-samples'", RANGE0]),
    Case("verify_eval_samples_negative", args("verify", D, "--eval-samples", "-5"), ["'--eval-samples'", RANGE0]),
    Case("verify_seed_negative", args("verify", D, "--seed", "-1"), ["'--seed'", "-1 is not in the range"]),
    Case("ops_samples_zero", args("ops", D, "--samples", "0"), ["ops", "'--samples'", RANGE1]),
    Case("ops_T_negative", args("ops", D, "--T", "-4"), ["'--T'", RANGE1]),
    Case("demo_lava_samples_negative", args("demo", "--lava-samples", "-1", "--out-dir", "{tmp}/demo"),
         ["demo", "'--lava-samples'", RANGE0]),
    Case("demo_batch_size_zero", args("demo", "--batch-size", "0", "--out-dir", "{tmp}/demo"),
         ["'--batch-size'", RANGE1]),
    Case("report_calib_samples_negative", args("report", D, "-o", "{tmp}/r", "--calib-samples", "-3"),
         ["report", "'--calib-samples'", "-3 " + RANGE1]),
    Case("report_lava_samples_negative", args("report", D, "-o", "{tmp}/r", "--lava-samples", "-2"),
         ["'--lava-samples'", RANGE0]),
    Case("compile_calib_samples_zero", args("compile", D, "-o", "{tmp}/c", "--calib-samples", "0"),
         ["compile", "'--calib-samples'", RANGE1]),
    Case("compile_num_classes_negative", args("compile", D, "-o", "{tmp}/c", "--num-classes", "-1"),
         ["'--num-classes'", RANGE1]),
    Case("demo_lava_samples_beyond_split", args("demo", "--lava-samples", "1000", "--out-dir", "{tmp}/demo"),
         ["--lava-samples 1000 exceeds the 359 held-out samples of the digits held-out split"]),
    Case("demo_both_counts_beyond_split", args("demo", "--lava-samples", "400", "--eval-samples", "360", "--out-dir",
                                              "{tmp}/demo"),
         ["--lava-samples 400 exceeds the 359 held-out samples", "; --eval-samples 360 exceeds the 359"]),
    # click usage errors: one line, not the Usage/Try/Error block
    Case("verify_missing_checkpoint", args("verify"), ["verify", "Missing argument 'CHECKPOINT'"]),
    Case("export_missing_output", args("export", D), ["Missing option '-o' / '--output'"]),
    Case("unknown_command", args("frobnicate"), ["No such command 'frobnicate'"]),
    Case("unknown_option", args("info", D, "--bogus"), ["resformer-deploy info: No such option '--bogus'"]),
    Case("export_bad_dtype_choice", args("export", D, "-o", "{tmp}/x.nir", "--dtype", "float16"),
         ["'--dtype'", "'float16' is not one of"]),
    Case("simulate_unknown_target", _fg("simulate", "--target", "gpu"), ["unknown target 'gpu'", "reference"]),
    # 9: graphs from other NIR tools: a run, or one error naming what is unsupported
    Case("foreign_two_outputs", _fg("inspect", extra_output=True),
         ["exactly one Output node, found 2", "y_out, y_out2"]),
    Case("foreign_lif_r_on_lava", _fg("simulate", "--target", "lava-cpu", lif={"r": 2 * np.ones(10)}),
         ["spk: LIF r must be 1.0"]),
    Case("foreign_unsupported_node", lambda tmp: ["simulate", _cuba(tmp)], ["unsupported node type CubaLIF"]),
    Case("foreign_digits_calib_beyond_split",
         _fg("simulate", "--target", "loihi2-emu", "--calib-samples", "5000", n_in=64, in_shape=[1, 8, 8],
             flatten=True), ["--calib-samples 5000", "1438 samples"]),
    # 10: NaN/inf and non-physical parameters
    Case("nir_nan_weight", lambda tmp: ["inspect", _edit_h5(tmp, "node/nodes/fc/weight", np.nan)],
         ["edited.nir", "fc (Affine): weight has 1 non-finite value(s)"]),
    Case("nir_inf_bias_simulate", lambda tmp: ["simulate", _edit_h5(tmp, "node/nodes/fc/bias", -np.inf)],
         ["fc (Affine): bias has 1 non-finite"]),
    Case("nir_tau_zero", lambda tmp: ["simulate", _edit_h5(tmp, "node/nodes/spk/tau", 0.0), "--target",
                                      "reference"], ["spk (LIF): tau must be > 0"]),
    Case("nir_tau_negative_lava", lambda tmp: ["simulate", _edit_h5(tmp, "node/nodes/spk/tau", -1e-3),
                                               "--target", "lava-cpu"], ["spk (LIF): tau must be > 0"]),
    Case("nir_threshold_nan", lambda tmp: ["simulate", _edit_h5(tmp, "node/nodes/spk/v_threshold", np.nan)],
         ["spk (LIF): v_threshold has 1 non-finite"]),
    Case("nir_time_steps_zero", lambda tmp: ["inspect", _metadata(tmp, time_steps=0)],
         ["graph metadata time_steps = 0"]),
    Case("ckpt_nan_weight_info", _ck("info", change={"classifier.weight": _nan_first}),
         ["bad.pt", "classifier.weight (1 of 640 values NaN/inf)"]),
    Case("ckpt_inf_buffer_export",
         _ck("export", "-o", "{tmp}/x.nir", change={"layers.0.0.firing_rate_x": lambda t: t.fill_(float("inf"))}),
         ["layers.0.0.firing_rate_x", "NaN/inf"]),
    Case("ckpt_nan_bn_verify", _ck("verify", change={"prologue.1.bn.running_var": _nan_first}),
         ["prologue.1.bn.running_var", "NaN/inf"]),
    Case("ckpt_complex_tensor", _ck("info", change={"classifier.weight": lambda t: t.to(torch.complex64)}),
         ["classifier.weight (complex torch.complex64)"]),
    Case("ckpt_integer_not_exact", _ck("info", change={
        "prologue.1.bn.running_mean": lambda t: torch.full_like(t, 2 ** 30, dtype=torch.int64)}),
         ["prologue.1.bn.running_mean (int64, |max| 1,073,741,824)", "would not convert exactly to the model's"]),
    Case("ckpt_float64_beyond_float32", _ck("info", change={
        "classifier.weight": lambda t: t.double().fill_(1e300)}), ["classifier.weight (float64, |max| 1"]),
    # 11: memory budget, refused from declared sizes before allocating
    Case("nir_fill_weight_beyond_budget",
         lambda tmp: ["inspect", _edit_h5(tmp, "node/nodes/fc/weight", fill_shape=(10 ** 6, 10 ** 6))],
         ["node 'fc' weight declares 1,000,000,000,000 elements", "GiB) > memory budget"]),
    Case("nir_fill_weight_wrong_shape",  # 3.5 GB declared, within the budget: refused by the shape check
         lambda tmp: ["inspect", _edit_h5(tmp, "node/nodes/fc/weight", fill_shape=(10, 87_500_000))],
         ["fc (Affine): expects input shape (87500000,), receives (64,)"]),
    Case("simulate_inputs_beyond_budget", _fg("simulate", "--target", "reference", "--samples", HUGE),
         ["inputs: 1,000,000,000,000 samples of 64", "> memory budget"]),
    Case("verify_recording_beyond_budget", lambda tmp: ["verify", _tiny_checkpoint(tmp), "--samples", HUGE],
         ["1,000,000,000,000 samples x T=4", "neurons per step", "> memory budget"]),
    Case("ops_T_beyond_budget", lambda tmp: ["ops", _tiny_checkpoint(tmp), "--T", HUGE, "--samples", "2"],
         ["T=1000000000000", "> memory budget"]),
    Case("compile_calibration_beyond_budget",
         lambda tmp: ["compile", _tiny_checkpoint(tmp), "-o", tmp / "c", "--quantize", "--calib-samples", HUGE],
         ["calibration inputs: 1,000,000,000,000 samples", "> memory budget"]),
    Case("report_T_beyond_budget", lambda tmp: ["report", _tiny_checkpoint(tmp), "-o", tmp / "r", "--T", HUGE],
         ["32 samples x T=1000000000000", "> memory budget"]),  # the ladder's default: 32 random inputs
    # a run whose estimate exceeds the budget is refused before any work, with the figures
    Case("verify_estimate_beyond_budget", lambda tmp: ["verify", _tiny_checkpoint(tmp), "--samples", "2"],
         ["verify on target 'reference' [float64] needs about", "KiB > memory budget 97.7 KiB: PyTorch phase",
          "target phase", "run "], env={BUDGET_ENV: "100000"}),
    Case("simulate_estimate_beyond_budget", _fg("simulate", "--target", "reference", "--samples", "1000"),
         ["simulate: 1,000 samples of", "on target 'reference' needs about", "> memory budget 976.6 KiB (",
          "GMAC/s"],
         env={BUDGET_ENV: "1000000"}),
    Case("verify_emu_eval_samples_beyond_budget",
         lambda tmp: ["verify", _tiny_checkpoint(tmp), "--target", "loihi2-emu", "--eval-samples", HUGE],
         ["1,000,000,000,000 samples x T=4", "> memory budget"]),
    Case("info_img_size_not_divisible", args("info", D, "--img-size", "7"),
         ["img_size 7 does not fit the stored architecture", "not divisible by patch size 4"]),
    Case("info_num_classes_beyond_checkpoint", args("info", D, "--num-classes", HUGE),
         [f"{HUGE} classes requested, but classifier.weight has 10 rows"]),
    # 12: say what the file is; --unsafe-load only for pickled objects, only where the flag exists
    Case("ckpt_random_bytes", lambda tmp: ["info", _bytes(tmp, b"\x00" + np.random.default_rng(1).bytes(3000))],
         ["bad.pt: not a readable PyTorch checkpoint: neither a zip archive nor a pickle"]),
    Case("ckpt_text_file", lambda tmp: ["export", _bytes(tmp, b"hello world\n"), "-o", tmp / "x.nir"],
         ["not a readable PyTorch checkpoint"]),
    Case("ckpt_is_nir", lambda tmp: ["info", write_foreign(tmp)],
         ["foreign.nir: is an HDF5 file (a NIR graph?), not a PyTorch checkpoint"]),
    Case("ckpt_plain_pickle", lambda tmp: ["info", _bytes(tmp, pickle.dumps({"a": 1}, protocol=4))],
         ["not a readable PyTorch checkpoint: a pickle that torch.load cannot read"]),
    Case("ckpt_truncated_zip", lambda tmp: ["info", _bytes(tmp, DIGITS_CKPT.read_bytes()[:5000])],
         ["not a readable PyTorch checkpoint: a zip archive that torch.load cannot read"]),
    Case("ckpt_pickled_object_info", lambda tmp: ["info", _checkpoint(tmp, obj={"args": Opaque()})],
         ["refused by weights_only=True loading", "Opaque", "re-run with --unsafe-load"]),
    Case("ckpt_pickled_object_demo", lambda tmp: ["demo", "--checkpoint", _checkpoint(tmp, obj={"args": Opaque()}),
                                                  "--out-dir", tmp / "demo"], ["refused by weights_only=True"]),
    Case("demo_non_digits_checkpoint", lambda tmp: ["demo", "--checkpoint", _tiny_checkpoint(tmp),
                                                    "--out-dir", tmp / "demo"],
         ["tiny.pt: variant 'tiny' (1x4x4 input, 3 classes)", "demo needs a model of the digits split"]),
    Case("nir_given_a_checkpoint", args("inspect", D), ["is a zip archive (a PyTorch checkpoint?), not a NIR"]),
    Case("nir_text_file", lambda tmp: ["inspect", _bytes(tmp, b"hello", "t.nir")], ["t.nir: not a readable HDF5/NIR"]),
    Case("ckpt_empty", lambda tmp: ["info", _bytes(tmp, b"")], ["checkpoint file is empty"]),
    Case("ckpt_missing", args("info", "{tmp}/nope.pt"), ["checkpoint file not found", "nope.pt"]),
    Case("ckpt_directory", args("info", "{tmp}"), ["is a directory"]),
    # checkpoints that do not fit: other architecture, missing/unexpected keys, shapes
    Case("ckpt_other_architecture",
         lambda tmp: ["info", _checkpoint(tmp, obj={"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight":
                                                    torch.zeros(1000, 512)})],
         ["not a SpikingResformer checkpoint", "prologue.0.weight"]),
    Case("ckpt_missing_key", _ck("info", drop=("layers.0.0.W.weight", "layers.0.0.firing_rate_x")),
         ["missing key", "layers.0.0"]),
    Case("ckpt_unexpected_key", _ck("export", "-o", "{tmp}/x.nir", add={"extra.weight": torch.zeros(3)}),
         ["1 unexpected key(s): extra.weight"]),
    Case("ckpt_shape_mismatch", _ck("info", change={"classifier.weight": lambda t: torch.zeros(10, 32)}),
         ["shape mismatch", "classifier.weight: checkpoint (10, 32) vs model (10, 64)"]),
    Case("ckpt_variant_mismatch", args("info", D, "--variant", "cifar"), ["does not fit SpikingResformer 'cifar'"]),
]


def _cuba(tmp):
    n = 4
    g = nir.NIRGraph(nodes={
        "x_in": nir.Input(input_type={"input": np.array([n])}),
        "cuba": nir.CubaLIF(tau_syn=np.ones(n), tau_mem=np.ones(n), r=np.ones(n), v_leak=np.zeros(n),
                            v_threshold=np.ones(n)),
        "y_out": nir.Output(output_type={"output": np.array([n])})},
        edges=[("x_in", "cuba"), ("cuba", "y_out")], type_check=False)
    nir.write(tmp / "cuba.nir", g)
    return str(tmp / "cuba.nir")


def _metadata(tmp, **meta):
    g = foreign_graph()
    g.metadata = dict(meta)
    nir.write(tmp / "meta.nir", g)
    return str(tmp / "meta.nir")
