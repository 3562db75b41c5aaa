"""The `pygmy` command: run the cluster or one node, and talk to a running cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pygmy.client.api import DEFAULT_URL, ApiCallError, Answer, PygmyClient
from pygmy.cluster.credentials import require_secrets, secrets_path, with_stored_secrets
from pygmy.config import Config, ConfigError, load

app = typer.Typer(
    help="Pygmy: a replicated online bookstore. Start a cluster with `pygmy up`, then search, look up and buy.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)


class Kind(str, enum.Enum):
    frontend = "frontend"
    catalog = "catalog"
    order = "order"


ConfigOpt = typer.Option(None, "--config", "-c", envvar="PYGMY_CONFIG", help="Cluster configuration (TOML). Default: built in.")
DataDirOpt = typer.Option(None, "--data-dir", help="Where nodes keep their databases and logs (overrides the config).")
CatalogOpt = typer.Option(None, "--catalog", help="Initial catalog, JSON or CSV, loaded on first start only.")


def _running_cluster_file(data_dir: Path) -> Path | None:
    """The effective configuration (`cluster.toml`) of a `pygmy up` running on `data_dir`, if one runs there."""
    from pygmy.cluster.dirlock import in_use

    written = data_dir / "cluster.toml"
    return written if written.is_file() and in_use(data_dir) else None


def _default_url() -> str:
    """The frontend of the `pygmy up` running on the configured data directory (PYGMY_CONFIG's, or the
    built-in one; under --netns it is not on loopback), else the built-in address."""
    try:
        written = _running_cluster_file(load(os.environ.get("PYGMY_CONFIG") or None).data_dir.resolve())
        return load(written).of_kind("frontend")[0].url if written else DEFAULT_URL
    except (ConfigError, IndexError):
        return DEFAULT_URL


UrlOpt = typer.Option(..., "--url", envvar="PYGMY_URL", default_factory=_default_url,
                      help=f"The frontend to talk to. Default: that of the `pygmy up` running on the data directory, else {DEFAULT_URL}.")
JsonOpt = typer.Option(False, "--json", help="Print the raw JSON answer (for scripts).")


def _config(path: Optional[Path], data_dir: Optional[Path] = None, catalog: Optional[Path] = None,
            *, running: bool = False) -> Config:
    """The configuration from `path` (or built in) with the command line's overrides. `running`: for a tool
    that talks to the nodes, the effective one (cluster.toml) of a `pygmy up` running on that data
    directory, if one does: under --netns its nodes are not where the configuration file says."""
    config: Config = _or_exit(lambda: load(path))
    written = _running_cluster_file((data_dir or config.data_dir).resolve()) if running else None
    if written is not None:
        config = _or_exit(lambda: load(written))
    if data_dir is not None:
        config = config.with_overrides(data_dir=data_dir.resolve())
    if catalog is not None:
        if not catalog.is_file():
            err.print(f"[red]error:[/] catalog file {catalog} does not exist")
            raise typer.Exit(2)
        config = config.with_overrides(catalog_file=catalog.resolve())
    config = config.with_overrides(data_dir=config.data_dir.resolve())
    return _or_exit(lambda: with_stored_secrets(config))  # secrets `pygmy up` generated, if the config has none


def _check_catalog_file(config: Config) -> None:
    """Refuse a bad catalog file before any node starts, naming the file and what is wrong."""
    from pygmy.catalog.books import CatalogFileError, load_catalog_file

    if config.catalog_file is None:
        return
    try:
        load_catalog_file(config.catalog_file)
    except CatalogFileError as exc:
        err.print(f"[red]error:[/] bad catalog file {config.catalog_file.name}: {exc}")
        raise typer.Exit(2) from None


@app.command()
def up(
    config: Optional[Path] = ConfigOpt,
    data_dir: Optional[Path] = DataDirOpt,
    catalog: Optional[Path] = CatalogOpt,
    replicas: Optional[int] = typer.Option(None, "--replicas", "-n", help="Catalog and order replicas each (odd). Default: as the config says."),
    restart: bool = typer.Option(True, "--restart/--no-restart", help="Restart a node that exits (with backoff)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Frontends answer every lookup and search from the catalog (no cache, no leases)."),
    control: Optional[bool] = typer.Option(None, "--control/--no-control", help="Serve the control endpoint (list, kill -9, restart nodes; admin token). Default: as [control] says (off)."),
    netns: bool = typer.Option(False, "--netns", help="Every node in its own network namespace at its own address (needs root), for `pygmy partition` and `pygmy heal`; turns the control endpoint on."),
) -> None:
    """Start the whole cluster on this machine and keep it running; Ctrl-C stops every node."""
    import dataclasses

    from pygmy.cluster.control import ControlServer, check_binding
    from pygmy.cluster.launcher import Supervisor, ignore_stop_signals, install_stop_handlers

    cfg = _config(config, data_dir, catalog)
    if no_cache:
        cfg = cfg.with_overrides(cache=dataclasses.replace(cfg.cache, enabled=False))
    if replicas is not None:
        cfg = _or_exit(lambda: cfg.with_replicas(replicas))
    if control is not None:
        cfg = cfg.with_overrides(control=dataclasses.replace(cfg.control, enabled=control))
    lab = _netlab_or_exit(cfg) if netns else None
    if lab is not None:
        cfg = lab.with_control(cfg)
    if cfg.admin_token:  # else `pygmy up` generates a strong one, checked after start
        _or_exit(lambda: check_binding(cfg))
    _check_catalog_file(cfg)
    supervisor = Supervisor(lab.nodes_config(cfg) if lab else cfg, restart=restart, report=_report)
    _lock_or_exit(supervisor)
    controller = ControlServer(supervisor, cfg.control, lab.network, (lab.network.gateway,)) if lab else (
        ControlServer(supervisor, cfg.control) if cfg.control.enabled else None)
    install_stop_handlers()
    try:
        if lab is not None:
            _or_exit(lambda: lab.start(supervisor))
        _or_exit(supervisor.start)
        if controller is not None:
            # After start: the admin token may have just been generated.
            _or_exit(lambda: check_binding(supervisor.config))
            _or_exit(controller.start)
        cfg = supervisor.config
        with out.status("starting nodes..."):
            slow = supervisor.wait_ready()
        if slow:
            err.print(f"[yellow]not answering yet:[/] {', '.join(slow)}; see the logs in {supervisor.log_dir}", highlight=False)
        frontend = cfg.of_kind("frontend")[0].url
        _print_health_of(frontend)
        out.print(f"Logs in {supervisor.log_dir}. Data in {cfg.data_dir}. Frontend at [bold]{frontend}[/]. Ctrl-C stops the cluster.")
        out.print(f"In another shell: [bold]{_pygmy_command()} buy 1[/], then [bold]{_pygmy_command()} lookup 1[/]."
                  if lab is None else f"In another shell: [bold]{_pygmy_command()} buy 1 --url {frontend}[/] (or export PYGMY_URL={frontend}), "
                  f"[bold]pygmy partition catalog-0[/], [bold]pygmy heal[/], [bold]pygmy check -c {supervisor.config_path}[/].")
        while not supervisor.finished():
            supervisor.poll()
            time.sleep(0.2)
        err.print(f"[red]every node has exited and none will be restarted[/]; see the logs in {supervisor.log_dir}")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        out.print("stopping the cluster...")
    finally:
        ignore_stop_signals()
        if controller is not None:
            controller.stop()
        supervisor.stop()
        if lab is not None:
            lab.stop()
    out.print("all nodes stopped." if lab is None else "all nodes stopped and their network namespaces removed.")


def _netlab_or_exit(cfg: Config) -> Any:
    """The namespaces for `up --netns`, or one line saying why they cannot be made (77 not root, 78 no tools)."""
    from pygmy.cluster.netlab import LabUnavailable, NetLab

    try:
        NetLab.check()
    except LabUnavailable as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.status) from None
    return NetLab(cfg)


def _lock_or_exit(supervisor: Any) -> None:
    """A second `pygmy up` on one data directory is refused (78: a configuration error, not worth a retry)."""
    from pygmy.cluster.dirlock import DirectoryInUse

    try:
        supervisor.lock()
    except DirectoryInUse as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(78) from None


def _or_exit(step: Callable[[], Any]) -> Any:
    """Run a step that may refuse the configuration: a clear message in one line and exit 2 (or the
    error's own `status`, e.g. 78 for a lab that cannot be made), not a traceback."""
    try:
        return step()
    except ConfigError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(getattr(exc, "status", 2)) from None


def _report(line: str) -> None:
    # Supervisor events are log lines: a timestamp, and no markup (paths and names are printed as they are).
    out.print(f"{time.strftime('%H:%M:%S')} {line}", markup=False, highlight=False, soft_wrap=True)


def _print_health_of(url: str, settle: float = 15.0) -> None:
    """The status table once every group has elected a leader (or after `settle` seconds), or a warning
    if the frontend does not answer (the cluster keeps running)."""
    async def go() -> Answer:
        async with PygmyClient(url) as c:
            deadline = time.monotonic() + settle
            while True:
                answer = await c.health()
                if answer.body.get("status") != "unavailable" or time.monotonic() > deadline:
                    return answer
                await asyncio.sleep(0.1)

    try:
        with out.status("waiting for each group to elect a leader..."):
            body = asyncio.run(go()).body
        _print_health(body)
    except ApiCallError as exc:
        err.print(f"[yellow]no status from {url}:[/] {exc.message}", highlight=False)


@app.command()
def serve(
    kind: Kind = typer.Argument(..., help="frontend, catalog or order"),
    node_id: int = typer.Argument(..., metavar="ID", help="The node's id in the configuration."),
    config: Optional[Path] = ConfigOpt,
    data_dir: Optional[Path] = DataDirOpt,
    catalog: Optional[Path] = CatalogOpt,
    join: bool = typer.Option(
        False, "--join", help="This node's data directory was lost: rejoin the existing cluster as a non-voter until caught up."
    ),
) -> None:
    """Run one node in the foreground (as a container or another host would)."""
    from pygmy.cluster.node import run_node

    cfg = _config(config, data_dir, catalog)
    try:
        cfg.node(kind.value, node_id)  # type: ignore[arg-type]
    except ConfigError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if join and kind is Kind.frontend:
        err.print("[red]error:[/] --join is for catalog and order nodes: a frontend keeps no data")
        raise typer.Exit(2)
    if kind is Kind.catalog:
        _check_catalog_file(cfg)
    _or_exit(lambda: require_secrets(cfg, cfg.node(kind.value, node_id)))  # type: ignore[arg-type]
    run_node(cfg, kind.value, node_id, join=join)  # type: ignore[arg-type]


@app.command("k8s-config")
def k8s_config(
    replicas: int = typer.Option(3, "--replicas", "-n", help="Pods per backend StatefulSet (odd)."),
    namespace: str = typer.Option("pygmy", "--namespace", help="The namespace the Services live in."),
    domain: str = typer.Option("cluster.local", "--domain", help="The cluster's DNS domain."),
) -> None:
    """Print the configuration of a Kubernetes deployment (deploy/kubernetes/pygmy.toml): nodes by DNS name."""
    from pygmy.config import parse
    from pygmy.ops.kubernetes import kubernetes_toml

    text = kubernetes_toml(replicas, namespace, domain)
    # The same checks a pod makes at start (an odd group, ...), with stand-ins for the secrets.
    _or_exit(lambda: parse(text, env={"PYGMY_ADMIN_TOKEN": "-", "PYGMY_CLUSTER_SECRET": "-"}))
    sys.stdout.write(text)


@app.command()
def search(topic: str = typer.Argument(..., help="A topic code or name: ds, 'distributed systems', gs ..."), url: str = UrlOpt, json: bool = JsonOpt) -> None:
    """List the books of a topic."""
    answer = _run(lambda c: c.search(topic), url)
    if _maybe_json(answer, json):
        return
    table = Table(title=f"Books in topic {answer.body['topic']}")
    table.add_column("id", justify="right")
    table.add_column("title")
    for book in answer.body["items"]:
        table.add_row(str(book["id"]), book["title"])
    out.print(table)


@app.command()
def lookup(item: int = typer.Argument(..., help="The book's id."), url: str = UrlOpt, json: bool = JsonOpt) -> None:
    """Show one book: title, topic, stock and cost."""
    answer = _run(lambda c: c.lookup(item), url)
    if not _maybe_json(answer, json):
        _print_books([answer.body])


@app.command()
def buy(
    item: int = typer.Argument(..., help="The book's id."),
    idempotency_key: Optional[str] = typer.Option(None, "--idempotency-key", "-k", help="Retrying with the same key never buys twice."),
    url: str = UrlOpt,
    json: bool = JsonOpt,
) -> None:
    """Buy one copy of a book."""
    answer = _run(lambda c: c.buy(item, idempotency_key), url)
    if not _maybe_json(answer, json):
        order = answer.body
        out.print(f"Bought [bold]{order['title']}[/] for {order['cost']:.2f}: order {order['order_id']}.")


@app.command()
def update(
    item: int = typer.Argument(..., help="The book's id."),
    delta: Optional[int] = typer.Option(None, "--delta", "-d", help="Change the stock by this many copies (may be negative)."),
    cost: Optional[float] = typer.Option(None, "--cost", help="Set a new price."),
    token: Optional[str] = typer.Option(None, "--token", envvar="PYGMY_ADMIN_TOKEN", help="Admin token (default: from the configuration or the data dir's secrets.toml)."),
    config: Optional[Path] = ConfigOpt,
    data_dir: Optional[Path] = DataDirOpt,
    url: str = UrlOpt,
    json: bool = JsonOpt,
) -> None:
    """Restock or reprice a book (admin)."""
    if delta is None and cost is None:
        err.print("[red]error:[/] give --delta, --cost or both")
        raise typer.Exit(2)
    admin = token or _admin_token(_config(config, data_dir))
    answer = _run(lambda c: c.update(item, delta=delta, cost=cost), url, admin_token=admin)
    if not _maybe_json(answer, json):
        _print_books([answer.body])


@app.command()
def orders(
    order_id: Optional[int] = typer.Argument(None, help="Show this order only."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many orders."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Show at most this many."),
    url: str = UrlOpt,
    json: bool = JsonOpt,
) -> None:
    """List orders, oldest first (or show one)."""
    if order_id is not None:
        answer = _run(lambda c: c.order(order_id), url)
        rows = [answer.body]
    else:
        answer = _run(lambda c: c.orders(offset, limit), url)
        rows = answer.body["orders"]
    if _maybe_json(answer, json):
        return
    title = "Order" if order_id is not None else f"Orders {offset + 1}-{offset + len(rows)} of {answer.body['total']}"
    table = Table(title=title)
    for col in ("order", "item", "title", "cost", "time"):
        table.add_column(col, justify="right" if col in ("order", "item", "cost") else "left")
    for o in rows:
        table.add_row(str(o["order_id"]), str(o["item"]), o["title"], f"{o['cost']:.2f}", o["time"])
    out.print(table)


@app.command()
def status(url: str = UrlOpt, json: bool = JsonOpt) -> None:
    """Every node of every tier: role, term, leader, commit and applied index; each group's leader."""
    answer = _run(lambda c: c.health(), url)
    if not _maybe_json(answer, json):
        _print_health(answer.body)


@app.command()
def check(config: Optional[Path] = ConfigOpt, data_dir: Optional[Path] = DataDirOpt, json: bool = JsonOpt) -> None:
    """Check that every replica holds the same state and that the books balance against the orders.

    Talks to the backend replicas directly (addresses and secret from the configuration). Exit 0 if all
    holds, 1 if anything differs (each difference named: replica, item, expected, found).
    """
    from pygmy.ops.check import run_check

    report = _with_backends(_config(config, data_dir, running=True), lambda b, progress: run_check(b, progress), "checking")
    if json:
        body = {"ok": report.ok, "findings": [dataclasses.asdict(f) for f in report.findings]}
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        styles = {"ok": "green", "warn": "yellow", "fail": "bold red"}
        table = Table(title="pygmy check")
        for col in ("check", "where", "result", "detail"):
            table.add_column(col, overflow="fold")
        for f in report.findings:
            table.add_row(f.check, f.where, Text(f.level, style=styles[f.level]), Text(f.detail))
        out.print(table)
        failures = sum(1 for f in report.findings if f.level == "fail")
        out.print("[green]all replicas agree and the books balance[/]" if report.ok else f"[bold red]{failures} problem(s) found[/]")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def backup(
    file: Path = typer.Argument(..., help="Where to write the backup (one file, both groups)."),
    config: Optional[Path] = ConfigOpt,
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Back up the catalog and order groups, consistently across the two, into one file."""
    from pygmy.ops.backup import take_backup, write_backup

    taken = _with_backends(_config(config, data_dir, running=True), lambda b, progress: take_backup(b), "backing up")
    write_backup(file, taken)
    for kind, group in taken.groups.items():
        out.print(f"{kind}: {len(group.data):,} bytes at log index {group.index} (from {group.served_by}), {group.summary}",
                  markup=False, highlight=False)
    out.print(f"Backup written to {file} (consistent across the groups after {taken.attempts} attempt(s)).", markup=False)


@app.command()
def restore(
    file: Path = typer.Argument(..., help="A file written by `pygmy backup`."),
    data_dir: Path = typer.Option(..., "--data-dir", help="An empty data directory for the new cluster."),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Make a new cluster (new cluster id) in DATA_DIR whose every replica starts from the backup."""
    from pygmy.ops.backup import read_backup, restore as write_restore
    from pygmy.ops.nodes import OpsError

    cfg = _config(config, data_dir)
    try:
        cluster_id = write_restore(read_backup(file), cfg, cfg.data_dir)
    except OpsError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"Restored into {cfg.data_dir} as a new cluster, id {cluster_id}.", markup=False)
    out.print(f"Start it with: {_pygmy_command()} up --config {cfg.data_dir / 'pygmy.toml'}", markup=False)


def _with_backends(cfg: Config, work: Callable[[Any, Callable[[str, int, int], None]], Awaitable[Any]], what: str) -> Any:
    """Run an operator task against the backend replicas, with a progress bar on stderr; exit 1 on OpsError."""
    from rich.progress import Progress

    from pygmy.ops.nodes import Backends, OpsError

    if not cfg.cluster_secret:
        err.print(f"[red]error:[/] no cluster secret: none in the configuration, and no {escape(str(secrets_path(cfg)))} "
                  "(give the --config or --data-dir of the cluster)", highlight=False)
        raise typer.Exit(2)

    async def go() -> Any:
        backends = Backends(cfg)
        tasks: dict[str, Any] = {}
        try:
            with Progress(console=err, transient=True) as bar:
                def progress(label: str, done: int, total: int) -> None:
                    if label not in tasks:
                        tasks[label] = bar.add_task(label, total=total)
                    bar.update(tasks[label], completed=done, total=total)

                return await work(backends, progress)
        finally:
            await backends.close()

    try:
        return asyncio.run(go())
    except OpsError as exc:
        err.print(f"[red]error {what}:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def client(
    duration: float = typer.Option(30.0, "--duration", min=0.1, help="Seconds to run."),
    interval: float = typer.Option(2.0, "--interval", min=0.0, help="Mean seconds between requests."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed, to repeat a run."),
    items: int = typer.Option(7, "--items", min=1, help="Pick books with ids 1..N."),
    token: Optional[str] = typer.Option(None, "--token", envvar="PYGMY_ADMIN_TOKEN", help="Admin token for restocks (default: from the configuration)."),
    config: Optional[Path] = ConfigOpt,
    url: str = UrlOpt,
    json: bool = typer.Option(False, "--json", help="Print only a JSON summary of outcomes (for scripts)."),
) -> None:
    """Run the reference's random workload: search, lookup or buy every few seconds; restock now and then."""
    from pygmy.client.workload import run_workload

    admin = token or _config(config).admin_token or None

    async def go() -> Any:
        async with PygmyClient(url, admin_token=admin) as c:
            report = (lambda line: None) if json else out.print
            return await run_workload(c, duration=duration, interval=interval, seed=seed, items=items, report=report)

    outcomes = asyncio.run(go())
    if json:
        summary = {"duration": duration, "requests": sum(outcomes.values()), "outcomes": dict(outcomes)}
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        return
    table = Table(title=f"{sum(outcomes.values())} requests in {duration:g} s")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for outcome, count in sorted(outcomes.items()):
        table.add_row(outcome, str(count))
    out.print(table)


@app.command()
def measure(
    requests: int = typer.Option(1000, "--requests", "-n", min=1, max=100_000, help="Sequential requests of each kind."),
    item: int = typer.Option(1, "--item", help="The book to look up and buy (restock it first: each buy takes a copy)."),
    topic: str = typer.Option("ds", "--topic", help="The topic to search."),
    url: str = UrlOpt,
    json: bool = JsonOpt,
) -> None:
    """Per-tier mean response times of search, lookup and buy (the reference's Tables 2 and 3)."""
    from rich.progress import Progress

    from pygmy.client.measure import TIERS, measure as run_measure, summarise

    async def go() -> Any:
        async with PygmyClient(url) as c:
            with Progress(console=err, transient=True) as progress:
                task = progress.add_task("measuring", total=3 * requests)
                return await run_measure(c, requests, item, topic, lambda: progress.advance(task))

    try:
        summary = summarise(asyncio.run(go()))
    except ApiCallError as exc:
        err.print(f"[red]error ({exc.status} {exc.code}):[/] {exc.message}")
        raise typer.Exit(1) from None
    if json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        return
    table = Table(title=f"Mean (p99) response time in ms, {requests} sequential requests each")
    table.add_column("method")
    for tier in TIERS:
        table.add_column(f"{tier} tier", justify="right")
    for method, tiers in summary.items():
        cells = [f"{tiers[t][0]:.3f} ({tiers[t][1]:.2f})" if t in tiers else "-" for t in TIERS]
        table.add_row(method, *cells)
    out.print(table)


def _register_sim() -> None:
    # The simulator lives with the consensus module; the CLI only exposes it.
    try:
        from pygmy.raft.sim_command import sim
    except ImportError:  # pragma: no cover - present once the Raft module lands
        return
    app.command("sim", help="Run the deterministic Raft simulation over many seeds.")(sim)


def _admin_token(cfg: Config) -> str:
    if not cfg.admin_token:
        err.print(f"[red]error:[/] no admin token: give --token, or run where the cluster runs (it is in "
                  f"{escape(str(secrets_path(cfg)))}; --config / --data-dir name another data dir)", highlight=False)
        raise typer.Exit(2)
    return cfg.admin_token


def _run(call: Callable[[PygmyClient], Awaitable[Answer]], url: str, admin_token: str | None = None) -> Answer:
    async def go() -> Answer:
        async with PygmyClient(url, admin_token=admin_token) as c:
            return await call(c)

    try:
        return asyncio.run(go())
    except ApiCallError as exc:
        where = f" ({exc.status} {exc.code})" if exc.status else ""
        err.print(f"[red]error{where}:[/] {exc.message}")
        raise typer.Exit(1) from None


def _maybe_json(answer: Answer, as_json: bool) -> bool:
    if as_json:
        sys.stdout.write(orjson.dumps(answer.body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return as_json


def _print_books(books: list[dict[str, Any]]) -> None:
    table = Table()
    for col in ("id", "title", "topic", "stock", "cost"):
        table.add_column(col, justify="right" if col in ("id", "stock", "cost") else "left")
    for b in books:
        table.add_row(str(b["id"]), b["title"], b["topic"], str(b["stock"]), f"{b['cost']:.2f}")
    out.print(table)


def _print_health(body: dict[str, Any]) -> None:
    """The status document as the status table (`pygmy status` and `pygmy up` print the same)."""
    from pygmy.ops.status import status_view

    out.print(status_view(body, out.width))


def _pygmy_command() -> str:
    """How to call this very `pygmy` from another shell: its full path unless it is first on PATH."""
    import shutil

    here = Path(sys.executable).parent / "pygmy"
    found = shutil.which("pygmy")
    if found and here.exists() and Path(found).resolve() == here.resolve():
        return "pygmy"
    return str(here) if here.exists() else "pygmy"


def _register_bench() -> None:
    from pygmy.bench.command import bench

    app.add_typer(bench, name="bench", help="Experiments: latency, invalidation, throughput, failover, scale (results folder with CSV, JSON, PNG).")


def _register_delay_proxy() -> None:
    from pygmy.cluster.delay_proxy import main as delay_proxy

    app.command("delay-proxy")(delay_proxy)


def main() -> None:
    _register_sim()
    _register_bench()
    _register_delay_proxy()
    from pygmy.cluster.lab_command import register as register_lab

    register_lab(app)  # partition, heal, partitions (the `up --netns` lab)
    app()


if __name__ == "__main__":
    main()
