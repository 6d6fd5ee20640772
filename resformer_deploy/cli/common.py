"""Options and loading shared by the CLI commands (cli/main.py, cli/compile.py)."""
import click

# Ranges of every numeric option, enforced by click while parsing (click.IntRange), so a bad value
# is refused before any work starts, with click's message ("0 is not in the range x>=1").
COUNT = click.IntRange(min=1)  # samples, steps, sizes, classes, batch size
COUNT0 = click.IntRange(min=0)  # counts where 0 has a meaning stated in the option's help
SEED = click.IntRange(0, 2 ** 64 - 1)  # torch.Generator.manual_seed accepts up to 0xffff_ffff_ffff_ffff
UNSAFE_OPTION = "--unsafe-load"


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


def load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load):
    from resformer_deploy.model.checkpoint import load_checkpoint
    return load_checkpoint(checkpoint, variant=variant, img_size=img_size, T=T, num_classes=num_classes,
                           weights_only=not unsafe_load, unsafe_option=UNSAFE_OPTION)
