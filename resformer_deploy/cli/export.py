"""`resformer-deploy export`: a checkpoint written as a NIR file (api.export), one line said."""
import time

import click

from resformer_deploy.cli.common import checkpoint_argument, checkpoint_option_set
from resformer_deploy.util.outputs import check_outputs


@click.command("export")
@checkpoint_argument
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="NIR file to write (atomically).")
@checkpoint_option_set
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True,
              help="Storage type of weights (BN folding is done in float64).")
@click.option("--form", type=click.Choice(["extension", "standard"]), default="extension", show_default=True,
              help="'standard': dense 1-D graph with DSSA lowered to standard NIR nodes (tiny models only).")
@click.option("--compress", is_flag=True, help="gzip the HDF5 datasets (smaller, slower).")
def export(checkpoint, output, checkpoint_opts, dtype, form, compress):
    """Export a checkpoint to a NIR (HDF5) file in deployment-normal form."""
    check_outputs([checkpoint], files=[output])
    from resformer_deploy import api

    t0 = time.time()  # the time said includes loading the checkpoint
    r = api.export(api.load(checkpoint, checkpoint_opts), output, api.ExportOptions(dtype, form, compress))
    click.echo(f"wrote {r.path}: {r.nodes} nodes, {r.edges} edges, {r.params:,} parameters, "
               f"{r.neurons:,} neurons per step, {r.extension_nodes} extension nodes, "
               f"{r.bytes / 1e6:.1f} MB in {time.time() - t0:.1f} s "
               f"(variant {r.variant}, T={r.T}, {r.img_size}x{r.img_size})")
