"""`apimon`: a thin command line over the Python API.

Results go to stdout (a table, or JSON with --json); logs and progress go to stderr and
--quiet silences them. Exit codes: 0 ran fine, 1 ran and found a problem, 2 error.
Heavy modules are imported inside the commands, so that `apimon --help` stays fast.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from apimon.errors import ApimonError, WarehouseBusy

F = TypeVar("F", bound=Callable[..., Any])
EXIT_OK, EXIT_PROBLEM, EXIT_ERROR = 0, 1, 2


class _Group(click.Group):
    """Turns every error into one line on stderr and exit code 2; a traceback on --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WarehouseBusy as exc:
            click.echo(f"busy: {exc}", err=True)
            ctx.exit(EXIT_PROBLEM)
        except ApimonError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_ERROR)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # The reader of stdout went away (`apimon ... | head`): stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(EXIT_OK)
        except Exception as exc:
            if ctx.meta.get("apimon.debug"):
                traceback.print_exc()
            else:
                click.echo(
                    f"error: apimon crashed: {type(exc).__name__}: {exc} "
                    "(run again with --debug for the traceback, and report it)",
                    err=True,
                )
            ctx.exit(EXIT_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="apimon")
@click.option("--debug", is_flag=True, help="Show the traceback of unexpected errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """apimon: a DuckDB monitoring warehouse for machine-learning prediction APIs."""
    ctx.meta["apimon.debug"] = debug


def common_options(func: F) -> F:
    """--project, --json, --quiet and --verbose, shared by every command."""

    @click.option(
        "--project",
        "-p",
        envvar="APIMON_PROJECT",
        type=click.Path(file_okay=False, path_type=Path),
        help="Project folder with apimon.toml (env APIMON_PROJECT; default: current folder).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress or log lines on stderr.")
    @click.option("--verbose", "-v", count=True, help="More log lines on stderr (-vv: SQL).")
    @functools.wraps(func)
    def wrapper(*args: Any, quiet: bool, verbose: int, **kwargs: Any) -> Any:
        _configure_logging(quiet, verbose)
        click.get_current_context().meta["apimon.quiet"] = quiet
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _configure_logging(quiet: bool, verbose: int) -> None:
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("apimon")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _quiet() -> bool:
    return bool(click.get_current_context().meta.get("apimon.quiet"))


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr (hidden with --quiet or when stderr is not a terminal)."""
    if _quiet() or total <= 0 or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) for row in rows) if rows else False
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    click.echo(line(headers))
    click.echo(line(["-" * w for w in widths]))
    for row in cells:
        click.echo(line(row))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def _day(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ApimonError(f"'{value}' is not a day: write it as YYYY-MM-DD") from exc


@main.command()
@common_options
@click.option("--source", "sources", multiple=True, help="Only this source (repeatable).")
@click.option(
    "--wait",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for another apimon command that is writing the warehouse.",
)
def ingest(project: Path | None, as_json: bool, sources: tuple[str, ...], wait: float) -> None:
    """Load new log lines of every source into the warehouse."""
    from apimon.config import load_project
    from apimon.ingest import ingest as run_ingest

    loaded = load_project(project)
    with _progress("ingest", _bytes_to_read(loaded, sources)) as bar:
        report = run_ingest(loaded, sources=sources or None, progress=bar, wait_seconds=wait)
    if as_json:
        _print_json(report.as_dict())
        return
    _print_table(
        ["source", "files read", "unchanged", "lines read", "loaded", "quarantined"],
        [
            [s.source, s.files_read, s.files_unchanged, s.lines_read, s.loaded, s.quarantined]
            for s in report.sources
        ],
    )
    for source in report.sources:
        for reason, count in source.reasons.most_common():
            click.echo(f"  {source.source}: {count:,} quarantined: {reason}")
    if report.quarantined:
        click.echo("see them with: apimon quarantine")


def _bytes_to_read(project: Any, sources: Sequence[str]) -> int:
    from apimon.logfiles import discover

    total = 0
    for source in project.settings.sources:
        if sources and source.label not in sources:
            continue
        try:
            files, _ = discover(project, source)
        except ApimonError:
            continue  # the ingest itself reports it
        total += sum(f.size for f in files)
    return total


@main.command()
@common_options
@click.option("--skip-ingest", is_flag=True, help="Only rebuild the views from what is loaded.")
@click.option(
    "--wait",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for another apimon command that is writing the warehouse.",
)
def refresh(project: Path | None, as_json: bool, skip_ingest: bool, wait: float) -> None:
    """Ingest new lines, then bring the views and every model's flat table up to date."""
    from apimon.config import load_project
    from apimon.refresh import refresh as run_refresh

    loaded = load_project(project)
    with _progress("ingest", 0 if skip_ingest else _bytes_to_read(loaded, ())) as bar:
        report = run_refresh(loaded, skip_ingest=skip_ingest, progress=bar, wait_seconds=wait)
    if as_json:
        _print_json(report.as_dict())
    else:
        if report.ingest:
            i = report.ingest
            click.echo(
                f"ingest: {i.lines_read:,} lines read, {i.loaded:,} loaded, "
                f"{i.quarantined:,} quarantined"
            )
        _print_table(
            ["model", "days built", "flat rows", "evaluated rows", "versions"],
            [
                [m.model, m.days_built, m.flat_rows, m.evaluated_rows,
                 ", ".join(f"{v} ({n:,})" for v, n in m.versions)]
                for m in report.views.models
            ],
        )  # fmt: skip
        for warning in report.warnings:
            click.echo(f"warning: {warning}")
    if report.warnings:
        sys.exit(EXIT_PROBLEM)


@main.command()
@common_options
@click.option("--model", "model_name", help="Only this model.")
@click.option("--since", help="First day (YYYY-MM-DD).")
@click.option("--until", help="Last day (YYYY-MM-DD).")
@click.option(
    "--window",
    "windows",
    multiple=True,
    type=click.Choice(["day", "week", "month", "all"]),
    help="Window kind (repeatable; default: the [drift] windows of apimon.toml).",
)
@click.option(
    "--baseline",
    default="reference",
    show_default=True,
    type=click.Choice(["reference", "previous"]),
    help="Compare with the training data, or with the window just before.",
)
@click.option(
    "--wait",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for another apimon command that is writing the warehouse.",
)
def evaluate(
    project: Path | None,
    as_json: bool,
    model_name: str | None,
    since: str | None,
    until: str | None,
    windows: tuple[str, ...],
    baseline: str,
    wait: float,
) -> None:
    """Evaluate drift over windows of days and store the results."""
    from apimon.checks import evaluate_checks
    from apimon.config import load_project
    from apimon.drift.run import run_evaluations
    from apimon.ingest import finish_run, start_run
    from apimon.views import build_views
    from apimon.warehouse import writing

    loaded = load_project(project)
    if model_name:
        loaded.model(model_name)
    with writing(loaded.database_path, "evaluate", wait_seconds=wait) as con:
        con.execute("begin transaction")
        try:
            run_id = start_run(con, loaded, "evaluate")
            views = build_views(con, loaded, run_id)
            shapes = [
                m.shape for m in views.models
                if m.shape is not None and (model_name is None or m.model == model_name)
            ]  # fmt: skip
            report = run_evaluations(
                con, loaded, shapes, run_id, windows=windows or None, baseline=baseline,
                since=_day(since), until=_day(until),
            )  # fmt: skip
            evaluate_checks(con, loaded, run_id)
            finish_run(con, run_id)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    if as_json:
        _print_json(report.as_dict())
        return
    _print_table(
        ["model", "window", "start", "end", "baseline", "rows", "status", "drifting columns"],
        [
            [e.model, e.window.kind, e.window.start, e.window.end, e.baseline, e.current_rows,
             e.status, [c.column.name for c in e.columns if c.drifted]]
            for e in report.evaluations
        ],
    )  # fmt: skip


@main.command()
@common_options
@click.option("--model", "model_name", help="Only this model (and its endpoint).")
@click.option(
    "--fail-on",
    type=click.Choice(["warning", "error"]),
    help="Exit 1 when an endpoint, a model or the log store is at this status or worse.",
)
@click.option("--fail-on-drift", is_flag=True, help="Exit 1 when a latest verdict is drift.")
def status(
    project: Path | None,
    as_json: bool,
    model_name: str | None,
    fail_on: str | None,
    fail_on_drift: bool,
) -> None:
    """Show each endpoint and model with its status and failing checks, then the drift verdicts."""
    from apimon.checks import STATUS_HEADERS, STATUS_LEVELS, status_report, status_rows
    from apimon.config import load_project
    from apimon.drift.run import column_status, latest_status
    from apimon.warehouse import connect

    loaded = load_project(project)
    if model_name:
        loaded.model(model_name)
    with connect(loaded.database_path, read_only=True) as con:
        report = status_report(con, model_name)
        latest = latest_status(con, model_name)
        details = {row["evaluation_id"]: column_status(con, row["evaluation_id"]) for row in latest}
    if as_json:
        drift = [{**row, "columns": details[row["evaluation_id"]]} for row in latest]
        _print_json({**report.as_dict(), "drift": drift})
    else:
        _print_table(STATUS_HEADERS, status_rows(report))
        click.echo("")
        if not latest:
            click.echo("no evaluation yet: run `apimon refresh` (or `apimon evaluate`)")
        else:
            click.echo("latest drift verdicts:")
        _print_table(
            ["model", "window", "start", "end", "rows", "status", "drift share", "drifting"],
            [
                [r["model"], r["window"], r["window_start"], r["window_end"], r["current_rows"],
                 r["status"], r["drift_share"], r["drifting_columns"] or []]
                for r in latest
            ],
        )  # fmt: skip
        for row in latest:
            if row["window"] != "day":
                continue
            click.echo(f"\n{row['model']}, {row['window_start']}:")
            _print_table(
                ["column", "role", "psi", "ks", "wasserstein/std", "js", "p (adjusted)", "drift"],
                [
                    [c["column_name"], c["role"], c["psi"], c["ks_statistic"],
                     c["wasserstein_norm"], c["js_distance"], c["pvalue_adjusted"],
                     "yes" if c["drifted"] else ("no" if c["drifted"] is False else "")]
                    for c in details[row["evaluation_id"]]
                ],
            )  # fmt: skip
    failing = fail_on is not None and STATUS_LEVELS[report.status] >= STATUS_LEVELS[fail_on]
    drifting = fail_on_drift and any(r["status"] in ("drift", "partial drift") for r in latest)
    if failing or drifting:
        sys.exit(EXIT_PROBLEM)


@main.command()
@common_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write (default: report.html in the project folder).",
)
def report(project: Path | None, as_json: bool, output: Path | None) -> None:
    """Write one self-contained HTML report: statuses, traffic, drift, performance, quality."""
    from apimon.config import load_project
    from apimon.report import write_report

    path = write_report(load_project(project), output)
    if as_json:
        _print_json({"report": str(path)})
    else:
        click.echo(f"wrote {path}")


@main.command()
@common_options
def metrics(project: Path | None, as_json: bool) -> None:
    """Print statuses and key metrics in the Prometheus text format (for a textfile collector)."""
    from apimon.config import load_project
    from apimon.metrics import metric_families, prometheus_text
    from apimon.warehouse import connect

    loaded = load_project(project)
    with connect(loaded.database_path, read_only=True) as con:
        families = metric_families(con, loaded)
    if as_json:
        _print_json([f.as_dict() for f in families])
    else:
        click.echo(prometheus_text(families), nl=False)


@main.command("export-queries")
@common_options
@click.option("--model", "model_name", help="The model (default: the only one).")
@click.option("--since", help="First day (YYYY-MM-DD).")
@click.option("--until", help="Last day (YYYY-MM-DD).")
@click.option(
    "--format", "file_format", default="parquet", show_default=True,
    type=click.Choice(["parquet", "csv"]), help="File format.",
)  # fmt: skip
@click.option("--unlabelled-only", is_flag=True, help="Only queries without a label yet.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="File.")
def export_queries_command(
    project: Path | None,
    as_json: bool,
    model_name: str | None,
    since: str | None,
    until: str | None,
    file_format: str,
    unlabelled_only: bool,
    output: Path,
) -> None:
    """Write logged features, prediction and keys, one row per key, for relabelling."""
    from apimon.config import load_project
    from apimon.export import export_queries

    loaded = load_project(project)
    if model_name is None:
        if len(loaded.settings.models) != 1:
            names = ", ".join(m.name for m in loaded.settings.models) or "none"
            raise ApimonError(f"name the model with --model (configured: {names})")
        model_name = loaded.settings.models[0].name
    count = export_queries(
        loaded, model_name, output, since=_day(since), until=_day(until),
        file_format=file_format, unlabelled_only=unlabelled_only,
    )  # fmt: skip
    if as_json:
        _print_json({"model": model_name, "rows": count, "output": str(output)})
    else:
        click.echo(f"wrote {count:,} queries of {model_name} to {output}")


@main.command()
@click.argument("name", required=False)
@click.option(
    "--dialect",
    default="duckdb",
    show_default=True,
    type=click.Choice(["duckdb", "spark", "trino", "bigquery", "snowflake", "postgres"]),
    help="Write the SQL in this dialect (translated by sqlglot).",
)
@common_options
def sql(project: Path | None, as_json: bool, name: str | None, dialect: str) -> None:
    """Print the SQL of a view (without NAME: list the views)."""
    from apimon.config import load_project
    from apimon.views import view_names, view_sql
    from apimon.warehouse import connect

    loaded = load_project(project)
    with connect(loaded.database_path, read_only=True) as con:
        if name is None:
            names = view_names(con, loaded)
            if as_json:
                _print_json(names)
            else:
                click.echo("\n".join(names))
            return
        text = view_sql(con, loaded, name, dialect)
    if as_json:
        _print_json({"name": name, "dialect": dialect, "sql": text})
    else:
        click.echo(text)


@main.command()
@common_options
@click.option("--host", help="Address to bind (default: [collector] host, 127.0.0.1).")
@click.option("--port", type=int, help="Port to bind (default: [collector] port; 0: a free one).")
def serve(project: Path | None, as_json: bool, host: str | None, port: int | None) -> None:
    """Run the Event collector: accept events over HTTP, append them durably, until Ctrl-C."""
    from apimon.collector import serve as run_serve
    from apimon.config import load_project

    quiet = _quiet()

    def ready(bound_host: str, bound_port: int) -> None:
        if not quiet:
            click.echo(f"listening on http://{bound_host}:{bound_port}/events", err=True)

    stats = run_serve(load_project(project), host=host, port=port, ready=ready)
    if as_json:
        _print_json(stats.as_dict())
        return
    click.echo(
        f"stopped: {stats.events_accepted:,} events accepted in {stats.requests_accepted:,} "
        f"requests, {stats.fsyncs:,} fsyncs, {sum(stats.rejected.values()):,} requests rejected"
    )


@main.command()
@common_options
@click.option("--since", help="First day to list (YYYY-MM-DD).")
@click.option("--until", help="Last day to list (YYYY-MM-DD).")
def partitions(project: Path | None, as_json: bool, since: str | None, until: str | None) -> None:
    """List the days of the log store with their rows, quarantined lines and sources."""
    from apimon.config import load_project
    from apimon.store import list_partitions
    from apimon.warehouse import connect

    loaded = load_project(project)
    with connect(loaded.database_path, read_only=True) as con:
        days = list_partitions(con, _day(since), _day(until))
    if as_json:
        _print_json([d.as_dict() for d in days])
        return
    _print_table(
        ["day", "rows", "quarantined", "files", "sources", "first event", "last event"],
        [
            [
                d.day,
                d.rows,
                d.quarantined,
                d.files,
                d.sources,
                d.first_event.strftime("%H:%M:%S") if d.first_event else None,
                d.last_event.strftime("%H:%M:%S") if d.last_event else None,
            ]
            for d in days
        ],
    )


@main.command()
@common_options
@click.option("--keep-days", type=int, help="Keep the last N days (today, UTC, counts as one).")
@click.option("--before", help="Drop every day before this one (YYYY-MM-DD).")
def prune(project: Path | None, as_json: bool, keep_days: int | None, before: str | None) -> None:
    """Drop old days from the log store (their files are not loaded again)."""
    from apimon.config import load_project
    from apimon.store import prune as run_prune

    report = run_prune(load_project(project), keep_days=keep_days, before=_day(before))
    if as_json:
        _print_json(report.as_dict())
        return
    click.echo(
        f"dropped {report.days} days before {report.cutoff}: {report.rows:,} rows, "
        f"{report.quarantined:,} quarantined lines"
    )


@main.command()
@common_options
@click.argument("days", nargs=-1, required=True)
def reload(project: Path | None, as_json: bool, days: tuple[str, ...]) -> None:
    """Rebuild the given days (YYYY-MM-DD) from the log files that fed them."""
    from apimon.config import load_project
    from apimon.store import reload_days

    chosen = [d for d in (_day(v) for v in days) if d is not None]
    report = reload_days(load_project(project), chosen)
    if as_json:
        _print_json(report.as_dict())
        return
    click.echo(
        f"reloaded {len(report.days)} days from {report.files} files: "
        f"{report.rows_before:,} rows before, {report.rows_after:,} after, "
        f"{report.quarantined_after:,} lines quarantined"
    )


@main.command()
@common_options
@click.option("--limit", default=20, show_default=True, help="How many lines to show.")
@click.option("--reason", help="Only lines whose reason starts with this text.")
def quarantine(project: Path | None, as_json: bool, limit: int, reason: str | None) -> None:
    """Show the lines kept aside, with their file, line number and reason."""
    from apimon.config import load_project
    from apimon.warehouse import connect

    loaded = load_project(project)
    with connect(loaded.database_path, read_only=True) as con:
        summary = con.execute(
            "select split_part(reason, ':', 1) as kind, count(*) from quarantine "
            "group by kind order by count(*) desc, kind"
        ).fetchall()
        lines = con.execute(
            "select source_file, line_no, reason, raw from quarantine "
            "where ? is null or starts_with(reason, ?) order by run_id, source_file, line_no "
            "limit ?",
            [reason, reason, limit],
        ).fetchall()
    if as_json:
        _print_json(
            {
                "by_reason": dict(summary),
                "lines": [
                    {"file": f, "line": n, "reason": r, "raw": raw} for f, n, r, raw in lines
                ],
            }
        )
        return
    _print_table(["reason", "lines"], summary)
    if lines:
        click.echo("")
        _print_table(
            ["file", "line", "reason", "text"],
            [[_shorten(f, 60, left=True), n, r, _shorten(raw, 60)] for f, n, r, raw in lines],
        )


def _shorten(text: str | None, width: int, *, left: bool = False) -> str:
    """Cut text to width characters for a table cell, marking the cut with '…'."""
    if text is None or len(text) <= width:
        return text or ""
    return "…" + text[-(width - 1) :] if left else text[: width - 1] + "…"


@main.command()
@common_options
@click.option("--rows", default=100_000, show_default=True, help="How many queries to generate.")
@click.option("--seed", default=42, show_default=True, help="Seed of the generator.")
def demo(project: Path | None, as_json: bool, rows: int, seed: int) -> None:
    """Fill the embedded default project with a month of traffic and run every step on it."""
    from apimon.demo import run_demo

    summary = run_demo(project, rows=rows, seed=seed, progress=not _quiet())
    if as_json:
        _print_json(summary.as_dict())
        return
    for line in summary.lines():
        click.echo(line)
