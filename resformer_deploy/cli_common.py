"""Options and loading shared by the CLI commands (cli.py, cli_compile.py)."""
import click


def checkpoint_options(f):
    f = click.option("--unsafe-load", is_flag=True,
                     help="Load with weights_only=False (executes pickled code: trusted files only).")(f)
    f = click.option("--num-classes", type=int, help="Override the number of classes.")(f)
    f = click.option("--T", "T", type=int, help="Time steps (not stored in official checkpoints).")(f)
    f = click.option("--img-size", type=int,
                     help="Input image size (not stored in official checkpoints; fixes DSSA lenth).")(f)
    f = click.option("--variant", help="Force a variant (ti, s, m, l, cifar, dvsg, digits) "
                                       "instead of detecting it.")(f)
    return f


def load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load):
    from .checkpoint import load_checkpoint
    return load_checkpoint(checkpoint, variant=variant, img_size=img_size, T=T, num_classes=num_classes,
                           weights_only=not unsafe_load)
