"""`pygmy partition`, `pygmy heal` and `pygmy partitions`: cut and heal links between the nodes of a cluster
started with `sudo pygmy up --netns`, through its control endpoint (pygmy/cluster/netlab.py has the routes).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import typer

CONTROL_TIMEOUT = 60.0  # iptables in several namespaces, on a busy machine

ConfigOpt = typer.Option(None, "--config", "-c", envvar="PYGMY_CONFIG", help="The configuration `pygmy up --netns` was started with. Default: built in.")
DataDirOpt = typer.Option(None, "--data-dir", help="Its data directory, where the admin token is (overrides the config).")


def _call(config: Optional[Path], data_dir: Optional[Path], method: str, path: str, body: Any = None) -> dict[str, Any]:
    """One control request with the admin token; a refusal or silence is one line on stderr and exit 1."""
    from pygmy.cli import _admin_token, _config, err

    cfg = _config(config, data_dir)
    url = f"{cfg.control.url}/control/{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {_admin_token(cfg)}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            message, code = error["message"], error["code"]
        except (ValueError, KeyError, TypeError):
            message, code = exc.reason, "error"
        err.print(f"error ({exc.code} {code}): {message}", markup=False, highlight=False, soft_wrap=True)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        err.print(f"error: the control endpoint at {cfg.control.url} does not answer ({reason}); is `sudo pygmy up --netns` running?",
                  markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _say(line: str) -> None:
    from pygmy.cli import out

    out.print(line, markup=False, highlight=False, soft_wrap=True)


def _links(partitions: list[dict[str, Any]]) -> str:
    return "; ".join(f"{p['node']} from {', '.join(p['from'])}" for p in partitions) or "none"


def partition(
    node: str = typer.Argument(..., help="The node to cut off, e.g. catalog-0 (names as `pygmy status` shows them)."),
    others: Optional[str] = typer.Option(None, "--from", help="Comma-separated nodes to cut it from. Default: every other node."),
    config: Optional[Path] = ConfigOpt,
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Cut a node off from every other node (or from those given with --from), both ways.

    Packets between them are dropped (iptables DROP in the node's network namespace); the node and the host still reach each other.

    Needs a cluster started with [bold]sudo pygmy up --netns[/]; undo with [bold]pygmy heal[/].
    """
    body: dict[str, Any] = {"node": node}
    if others is not None:
        body["from"] = [name.strip() for name in others.split(",") if name.strip()]
    answer = _call(config, data_dir, "POST", "partitions", body)
    _say(f"cut {answer['node']} from {', '.join(answer['from'])}; packets between them are dropped until `pygmy heal {answer['node']}`.")


def heal(
    node: Optional[str] = typer.Argument(None, help="Heal only the cuts that involve this node. Default: every cut."),
    config: Optional[Path] = ConfigOpt,
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Remove the cuts `pygmy partition` made: those involving one node, or all of them."""
    answer = _call(config, data_dir, "DELETE", f"partitions/{node}" if node else "partitions")
    healed = answer["healed"]
    if not healed:
        _say(f"nothing to heal{' for ' + node if node else ''}: no link was cut.")
        return
    _say(f"healed {len(healed)} link(s): " + ", ".join(f"{h['node']}-{h['from']}" for h in healed)
         + f"; still cut: {_links(answer['partitions'])}.")


def partitions(config: Optional[Path] = ConfigOpt, data_dir: Optional[Path] = DataDirOpt) -> None:
    """List the links that are cut now (as the rules in the namespaces say)."""
    answer = _call(config, data_dir, "GET", "partitions")
    _say(f"cut links: {_links(answer['partitions'])}.")


def register(app: typer.Typer) -> None:
    app.command("partition")(partition)
    app.command("heal")(heal)
    app.command("partitions")(partitions)
