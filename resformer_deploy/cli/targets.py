"""`resformer-deploy targets`: the registered targets, their capabilities and flows."""
import json

import click


def _passes(flow: dict) -> str:
    return " -> ".join(p["name"] + (" (if asked)" if p["conditional"] else "") for p in flow["passes"])


@click.command("targets")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.pass_context
def targets_cmd(ctx, as_json):
    """List the registered targets (entry-point group resformer_deploy.targets), what each can do
    and the flow that prepares a graph for it. A plug-in that fails to load is reported in one
    line naming it (exit code 2); the others are listed."""
    from targets import broken_targets, listing
    from resformer_deploy.flows import FLOWS
    from resformer_deploy.reporting.tables import table

    rows = listing()
    for r in rows:
        flow = FLOWS.get(r["capabilities"]["flow"])
        r["flow"] = flow.describe() if flow is not None else None
    broken = broken_targets()
    if as_json:
        click.echo(json.dumps({"targets": rows, "broken": [{"name": n, "error": m} for n, m in sorted(broken.items())]},
                              indent=2))
    else:
        yes = lambda v: "yes" if v else ""  # noqa: E731
        click.echo(table([(r["name"], c["arithmetic"], c["engine"], c["executes"], c["flow"],
                           ", ".join(c["options"]), yes(c["records_membranes"]), yes(c["supports_mapping"]),
                           "yes" if r["available"] else "no") for r in rows for c in [r["capabilities"]]],
                         ["target", "arithmetic", "engine", "executes", "flow", "options", "membranes", "mapping",
                          "available"]))
        click.echo("\nflows:")
        for name in sorted({r["capabilities"]["flow"] for r in rows}):
            flow = FLOWS.get(name)
            click.echo(f"  {name}: " + (_passes(flow.describe()) if flow is not None else "NOT DEFINED"))
        for r in rows:
            if not r["available"]:
                click.echo(f"note: {r['name']}: {r['unavailable_reason']}")
    for msg in (m for _, m in sorted(broken.items())):
        click.echo(f"error: {msg}", err=True)
    if broken:
        ctx.exit(2)
