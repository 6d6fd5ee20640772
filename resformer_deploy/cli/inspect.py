"""`resformer-deploy inspect`: a NIR file's nodes and totals (api.inspect_nir), as a table or JSON."""
import json

import click


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect(model, as_json):
    """Table of a NIR file's nodes (type, shape, parameters, partition) and totals."""
    from resformer_deploy import api
    from resformer_deploy.reporting.tables import table

    s = api.inspect_nir(model)
    if as_json:
        click.echo(json.dumps(s.to_json(), indent=2, default=str))
        return
    rows = [(r["node"], r["type"].replace("resformer_deploy.", "ext:"), "x".join(map(str, r["shape"])),
             f"{r['params']:,}", f"{r['neurons']:,}" if r["neurons"] else "", r["fan_in"], r["partition"],
             r["role"]) for r in s.table]
    click.echo(table(rows, ["node", "type", "shape", "params", "neurons", "in", "partition", "role"]))
    meta = s.metadata
    click.echo(f"\n{s.nodes} nodes, {s.edges} edges; {s.params:,} parameters "
               f"({s.params_neuromorphic:,} neuromorphic, {s.params_host:,} host); "
               f"{s.neurons:,} neurons per step; extension nodes: {len(s.extension_nodes)}")
    click.echo("types: " + ", ".join(f"{k} {v}" for k, v in sorted(s.types.items())))
    if meta.get("format"):
        d = meta.get("discretisation", {})
        click.echo(f"model: {meta.get('model')} '{meta.get('variant')}', T={meta.get('time_steps')}, "
                   f"dt={d.get('dt')}, threshold test '{d.get('threshold_test')}', {d.get('reset')}")
