"""twinctl stack: the local PostgreSQL + rtpengine + Kamailio."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from twinning.config import REPO_ROOT

from .. import context, output, stack
from ..errors import TwinctlError

CLUSTER_CONFIG = REPO_ROOT / "etc" / "cluster.toml"

app = typer.Typer(no_args_is_help=True, help="Start, stop and check the local stack.")


def _report(rows: list[stack.Health], as_json: bool) -> bool:
    output.table([{"service": h.name, "ok": h.ok, "endpoint": h.endpoint, "detail": h.detail}
                  for h in rows], ("service", "ok", "endpoint", "detail"), as_json)
    return all(h.ok for h in rows)


ClusterOption = typer.Option(
    False, "--cluster", help="The cluster of the site config's [cluster] section; without "
    "--config or $TWIN_CONFIG, etc/cluster.toml (two proxies, two rtpengines on 127.0.4.x/"
    "127.0.5.x).")


def _config(cluster: bool):
    """The site config; with --cluster, one that describes a cluster."""
    if cluster and not context.explicit():
        context.set_config_path(str(CLUSTER_CONFIG))
    cfg = context.config()
    if cluster and cfg.cluster is None:
        raise TwinctlError(f"--cluster: {cfg.path} has no [cluster] section "
                           f"(see {CLUSTER_CONFIG.relative_to(REPO_ROOT)})")
    return cfg


@app.command("up")
def up_cli(cluster: bool = ClusterOption, as_json: bool = output.JsonOption) -> None:
    """Start whatever is not running, wait until each answers, print the endpoints."""
    cfg = _config(cluster)
    rows = stack.up(cfg, log=(lambda *_: None) if as_json else output.info)
    if not _report(rows, as_json):
        raise typer.Exit(1)


@app.command("down")
def down_cli(cluster: bool = ClusterOption) -> None:
    """Stop exactly what `stack up` started."""
    stack.down(_config(cluster), log=output.info)


@app.command("health")
def health_cli(cluster: bool = ClusterOption, as_json: bool = output.JsonOption) -> None:
    """Check that each service answers (SQL, ng ping, SIP OPTIONS; in a cluster every node,
    and each proxy's DMQ peers); exit 1 if one does not."""
    if not _report(stack.health(_config(cluster)), as_json):
        raise typer.Exit(1)


@app.command("restart")
def restart_cli() -> None:
    """Restart Kamailio only (new routing code or cfg); calls in progress keep their media."""
    stack.restart_kamailio(context.config(), log=output.info)


@app.command("why")
def why_cli(daemon: str = typer.Argument(..., help="postgresql, rtpengine or kamailio"),
            log: Optional[Path] = typer.Option(None, "--log", help="read this log instead")
            ) -> None:
    """Why a daemon did not start or stopped, in one line: a port of its taken (and by whom),
    a cfg error's line, its log's last relevant lines. For systemd units as ExecStopPost
    (prints nothing after a clean stop; reads the journal of the run that ended)."""
    line = stack.why(context.config(), daemon, log)
    if line:
        output.info(line)


@app.command("render")
def render_cli(
        daemon: str = typer.Argument(..., metavar="kamailio|rtpengine",
                                     help="Whose files to render from the site config."),
        owner: str = typer.Option(None, "--owner",
                                  help="System user that owns them (the daemon's own)."),
        as_json: bool = output.JsonOption) -> None:
    """Render a daemon's config (what `stack up` and its systemd unit run it with) into the
    state dir; print the files that changed (none when already up to date)."""
    changed = stack.render(context.config(), daemon, owner)
    output.table([{"file": str(p), "changed": True} for p in changed], ("file", "changed"),
                 as_json)


@app.command("reload")
def reload_cli() -> None:
    """Make the running Kamailio reread its data over RPC (dispatcher, permissions, the
    subscriber cache), without a restart."""
    from .. import rpc
    cfg = context.config()
    for node in rpc.proxies(cfg):
        for method, *params in stack.RELOADS:
            rpc.call(node, method, *params)
            output.info(f"reloaded{' ' + node.node if node.node else ''}: "
                        f"{' '.join([method, *params])}")
