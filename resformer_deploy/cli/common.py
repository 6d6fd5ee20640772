"""Options and loading shared by the CLI commands (cli/<command>.py), each declared once."""
import click

# Ranges of every numeric option, enforced by click while parsing (click.IntRange), so a bad value
# is refused before any work starts, with click's message ("0 is not in the range x>=1").
COUNT = click.IntRange(min=1)  # samples, steps, sizes, classes, batch size
COUNT0 = click.IntRange(min=0)  # counts where 0 has a meaning stated in the option's help
SEED = click.IntRange(0, 2 ** 64 - 1)  # torch.Generator.manual_seed accepts up to 0xffff_ffff_ffff_ffff
UNSAFE_OPTION = "--unsafe-load"


# the quantizer option of `deploy` and `compile --quantize` (fixed_point.quantize, netx_bias_grid)
netx_bias_grid_option = click.option(
    "--netx-bias-grid", is_flag=True,
    help="Quantize the bias of every LIF fed by one convolution alone on lava-dl netx's 2^6 grid, "
         "so those conv -> LIF pairs are netx `conv` layers of the artifact (netx's hdf5.Network "
         "runs them). Coarser biases: measured -1.39 pp on the dvsg model, within 0.5 pp on digits "
         "and cifar.")


def checkpoint_options(f):
    f = click.option(UNSAFE_OPTION, is_flag=True,
                     help="Load with weights_only=False (executes pickled code: trusted files only).")(f)
    f = click.option("--num-classes", type=COUNT, help="Override the number of classes.")(f)
    f = click.option("--T", "T", type=COUNT, help="Time steps (not stored in official checkpoints).")(f)
    f = click.option("--img-size", type=COUNT,
                     help="Input image size (not stored in official checkpoints; fixes DSSA lenth).")(f)
    f = click.option("--variant", help="Force a variant (ti, s, m, l, cifar, dvsg, digits) "
                                       "instead of detecting it.")(f)
    return f


checkpoint_argument = click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=str))


def checkpoint_option_set(f):
    """checkpoint_options handed to the command as one ``checkpoint_opts``
    (resformer_deploy.api.options.CheckpointOptions), the form api.load takes."""
    import functools

    @functools.wraps(f)
    def command(*args, variant, img_size, T, num_classes, unsafe_load, **kwargs):
        from resformer_deploy.api.options import CheckpointOptions
        return f(*args, checkpoint_opts=CheckpointOptions(variant, img_size, T, num_classes, unsafe_load), **kwargs)
    return checkpoint_options(command)


# options several commands share, declared once; ``help`` differs where the command uses them
# differently (which target they apply to), the type, range and default do not
def json_out_option(help=None):
    return click.option("--json-out", type=click.Path(dir_okay=False, path_type=str), help=help)


def calib_samples_option(help=None):
    return click.option("--calib-samples", type=COUNT, default=128, show_default=True, help=help)


def dssa_option(default="fused", both=False, help=None):
    """--dssa: how DSSA products are lowered; ``both``: the command may run each lowering."""
    choices = ["fused", "synaptic", "both"] if both else ["fused", "synaptic"]
    return click.option("--dssa", type=click.Choice(choices), default=default, show_default=True, help=help)


def lava_processes_option(f):
    """--lava-processes: Lava's runtime with one OS process per Lava process, or every process model
    stepped by one worker process (lava-cpu's ``merge``; targets/lava_processes/cluster.py)."""
    from targets import LAVA_PROCESSES
    return click.option("--lava-processes", type=click.Choice(LAVA_PROCESSES), default=LAVA_PROCESSES[0],
                        show_default=True,
                        help="lava-cpu: 'separate' runs each Lava process in its own OS process under Lava's "
                             "runtime; 'merged' steps every process model in one worker process (same models, "
                             "same outputs; several times faster on small models, one core only).")(f)


def lava_samples_option(help=None):
    return click.option("--lava-samples", type=COUNT0, default=10, show_default=True, help=help)


def eval_samples_option(help=None):
    return click.option("--eval-samples", type=COUNT0, default=0, show_default=True, help=help)


def seed_option(f):
    return click.option("--seed", type=SEED, default=0, show_default=True,
                        help="Seed of random inputs (non-digits).")(f)


def warn_skipped(reasons) -> None:
    """The samples --skip-bad left out of --data (api.Messages.skipped), on stderr as evaluate lists them."""
    from resformer_deploy.cli.evaluate import skipped_warnings
    for line in skipped_warnings(list(reasons)):
        click.echo(line, err=True)


def asked(value, name: str):
    """``value`` if the user gave option ``name``, else None: the API's "default, lowered to fit"."""
    return value if given(name) else None


def load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load):
    from resformer_deploy.model.checkpoint import load_checkpoint
    return load_checkpoint(checkpoint, variant=variant, img_size=img_size, T=T, num_classes=num_classes,
                           weights_only=not unsafe_load, unsafe_option=UNSAFE_OPTION)


# --data / --calib-data: the readers and presets of resformer_deploy.data (sources.KINDS and
# preprocess.PRESETS, kept equal by tests/cli/test_data_options.py; named here so that parsing the
# command line imports neither numpy nor torch)
DATA_FORMATS = ("auto", "imagefolder", "cifar10", "cifar100", "frames", "npz", "digits")
PRESET_NAMES = ("auto", "imagenet", "cifar10", "cifar100", "dvs", "digits", "none")
SPLITS = ("test", "train")


def data_options(evaluation: bool = True, calibration: bool = True, required: bool = False):
    """The data options of a command, handed to it as one ``data_args``
    (resformer_deploy.analysis.data_inputs.DataArgs): ``evaluation``: --data SOURCE (``required``:
    the command has no inputs of its own) and --split; ``calibration`` (commands that quantize):
    --calib-data SOURCE and --calib-split; both: the reader (--data-format), the preprocessing
    (--preset) and --skip-bad, which apply to either."""
    import functools

    names = (("data", "split", "class_map") if evaluation else ()) + ("data_format", "preset", "skip_bad") + \
        (("calib_data", "calib_split") if calibration else ())

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kwargs):
            from resformer_deploy.analysis.data_inputs import DataArgs
            return f(*args, data_args=DataArgs(**{n: kwargs.pop(n) for n in names}), **kwargs)

        opts = []
        if evaluation:
            opts += [click.option("--data", "data", metavar="SOURCE", required=required,
                                  help="Data set to run on: an ImageFolder directory, CIFAR-10/100 python "
                                       "directory, spikingjelly frames directory, .npz file (x, y) or 'digits'"
                                       + ("." if required else
                                          " (without it: the digits held-out split or random inputs).")),
                     click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True,
                                  help="Split of --data (CIFAR, digits, frames, train/val folders)."),
                     click.option("--class-map", "class_map", metavar="FILE",
                                  help="Class index of every class folder of --data: JSON {\"folder\": index} or "
                                       "lines 'folder index' (default: ImageNet WordNet-ID folders get their "
                                       "ImageNet-1k index on a 1000-class model, other folders their sorted "
                                       "position).")]
        opts += [click.option("--data-format", type=click.Choice(DATA_FORMATS), default="auto", show_default=True,
                              help="Reader of --data/--calib-data (auto: detected from the layout)."),
                 click.option("--preset", type=click.Choice(PRESET_NAMES), default="auto", show_default=True,
                              help="Preprocessing (auto: the official evaluation transform of the variant / data "
                                   "set)."),
                 click.option("--skip-bad", is_flag=True,
                              help="Skip samples that cannot be decoded (listed) instead of stopping.")]
        if calibration:
            opts += [click.option("--calib-data", metavar="SOURCE",
                                  help="Quantization calibration data (never the evaluation samples; default: "
                                       "digits training split or random inputs)."),
                     click.option("--calib-split", type=click.Choice(SPLITS), default="train", show_default=True,
                                  help="Split of --calib-data.")]
        for opt in reversed(opts):  # listed in --help in this order
            command = opt(command)
        return command
    return decorate


def given(name: str) -> bool:
    """The user gave option ``name`` (a parameter's name) on the command line or by environment,
    rather than click filling in its default: defaults are lowered to fit the memory budget,
    what was asked for is refused (analysis/sizing.py)."""
    from click.core import ParameterSource
    return click.get_current_context().get_parameter_source(name) not in (ParameterSource.DEFAULT,
                                                                          ParameterSource.DEFAULT_MAP)
