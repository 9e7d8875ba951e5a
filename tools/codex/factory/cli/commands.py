"""The click layer: parse options, call one function, map its outcome to output and exit code.

No business logic lives here. Heavy modules are imported inside commands so ``--help`` is fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from tools.codex.factory.errors import FactoryError, UsageError
from tools.codex.factory.records.status import EXIT_INTERRUPTED, EXIT_USAGE
from tools.codex.factory.run.outcome import Outcome
from tools.codex.factory.version import __version__

if TYPE_CHECKING:
    from tools.codex.factory.cli.board import LiveBoard

F = TypeVar("F", bound=Callable[..., Any])
_DEBUG = {"on": False}

# The option that gives each argument the library names in neutral words (ArgumentError.arg).
OPTIONS = {
    "run_id": "--run-id",
    "crank_id": "--crank-id",
    "workers": "--workers",
    "worker": "--worker",
    "patch": "--patch",
    "summary": "--summary",
    "kind": "--kind",
    "repo": "--repo",
    "now": "--now",
    "since": "--since",
    "timeout": "--timeout",
    "resume": "--resume",
}
# Config keys the CLI's options set, shown as their option in config origins and messages.
CONFIG_OPTIONS = {"run.kind": "--kind", "run.base_ref": "--base-ref"}


def error_line(exc: FactoryError) -> str:
    """A library error as the CLI shows it: its option where the message names an argument."""
    from tools.codex.factory.errors import ArgumentError, NotARepoError

    if isinstance(exc, ArgumentError) and exc.arg in OPTIONS:
        return exc.with_option(OPTIONS[exc.arg])
    if isinstance(exc, NotARepoError):
        return str(NotARepoError(exc.path, "pass --repo PATH"))
    return str(exc)


def json_out_option(f: F) -> F:
    return click.option(
        "--json-out",
        "json_out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Also write the command's JSON result to FILE (UTF-8, whatever the shell).",
    )(f)


def json_option(f: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text."
    )(f)


def _resolved(crank: bool) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """The option's callback: ``latest`` (and any ID) becomes the ID the command works on,
    in one place for every command (``run.runref``); the resolution is said on stderr."""

    def callback(
        click_ctx: click.Context, _param: click.Parameter, value: str | None
    ) -> str | None:
        from tools.codex.factory.run import runref

        if value != runref.LATEST:
            return value
        resolved = runref.resolve(_ctx(click_ctx), value, crank=crank)
        click.echo(f"factory: {runref.LATEST} is {resolved}", err=True)
        return resolved

    return callback


def run_id_option(required: bool = True) -> Callable[[F], F]:
    what = "The run to act on (`latest`: the newest run)"
    if required:  # no default at all: click 8.4 lets an explicit default=None satisfy required
        return click.option(
            "--run-id", "run_id", required=True, help=f"{what}.", callback=_resolved(False)
        )
    return click.option(
        "--run-id", "run_id", default=None, help=f"{what}; optional.", callback=_resolved(False)
    )


def crank_id_option(help: str, required: bool = True) -> Callable[[F], F]:
    """--crank-id, where ``latest`` is the newest crank."""
    text = f"{help} (`latest`: the newest crank)"
    if required:
        return click.option("--crank-id", required=True, help=text, callback=_resolved(True))
    return click.option("--crank-id", default=None, help=text, callback=_resolved(True))


def workers_option(f: F) -> F:
    return click.option(
        "--workers", "workers", default=None, help="Comma-separated worker IDs, e.g. A,C."
    )(f)


def _ctx(click_ctx: click.Context) -> Any:
    from tools.codex.factory.run.context import Context

    obj = click_ctx.find_object(Context)
    assert obj is not None
    return obj


def emit(outcome: Outcome, as_json: bool = False, json_out: Path | None = None) -> int:
    """Data to stdout (text or JSON), messages to stderr, JSON copy to --json-out."""
    from tools.codex.factory.cli import render
    from tools.codex.factory.infra import jsonio

    _close_board()
    for msg in outcome.messages:
        say(msg, err=True)
    payload = jsonio.pretty(outcome.data)
    if json_out is not None:
        try:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_bytes(payload)
        except OSError as exc:
            # The operator named a path that cannot be written: their input, a usage error.
            raise UsageError(f"--json-out {json_out}: cannot write ({exc.strerror})") from None
    if as_json:
        sys.stdout.buffer.write(payload)
        sys.stdout.flush()
    else:
        text = render.text(outcome)
        if text:
            say(text)
    return outcome.exit_code


def say(text: str, err: bool = False) -> None:
    """One piece of text to stdout or stderr, its status words coloured on a terminal."""
    from tools.codex.factory.cli import render

    stream = sys.stderr if err else sys.stdout
    click.echo(render.colour(text, render.use_colour(stream)), err=err)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="factory")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Repository to work on (default: the git top level of the current directory).",
)
@click.option(
    "--now",
    default=None,
    metavar="ISO",
    help="Pin the clock (also FACTORY_NOW), e.g. 2026-11-21T20:15:00Z.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Config file to read (also FACTORY_CONFIG; default: "
    "tools/codex/factory/factory.config.json in the repository).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
@click.pass_context
def cli(
    click_ctx: click.Context,
    repo: Path | None,
    now: str | None,
    config_file: Path | None,
    debug: bool,
) -> None:
    """Multi-Codex Factory: validate worker bundles, integrate them in a sandbox, and record
    every step in a hash-chained ledger. Exit codes: 0 PASS, 1 FAIL, 2 usage, 3 BLOCKED."""
    from tools.codex.factory.infra.clock import Clock
    from tools.codex.factory.run.context import Context

    _DEBUG["on"] = debug
    ctx = Context(repo_opt=repo, clock=Clock.from_env(now), debug=debug, config_file=config_file)
    ctx.on_notice = lambda line: say(line, err=True)
    click_ctx.obj = ctx
    click_ctx.call_on_close(ctx.close)


# -- config ----------------------------------------------------------------------------------
@cli.group("config")
def config_group() -> None:
    """Inspect the layered configuration."""


@config_group.command("show")
@json_option
@json_out_option
@click.pass_context
def config_show(click_ctx: click.Context, as_json: bool, json_out: Path | None) -> int:
    """Print the effective config, each value with its origin (default, file, env, cli)."""
    from tools.codex.factory.ops import configview

    return emit(configview.show(_ctx(click_ctx)), as_json, json_out)


@cli.command("schema")
@click.argument("name")
@json_option
@json_out_option
def schema_cmd(name: str, as_json: bool, json_out: Path | None) -> int:
    """Print a JSON Schema the factory reads or writes, e.g. `factory schema plan`."""
    from tools.codex.factory.ops import configview

    return emit(configview.schema(name), as_json, json_out)


# -- ledger ----------------------------------------------------------------------------------
@cli.group("ledger", invoke_without_command=True)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help="Only the last N matching events (read from the end).",
)
@click.option("--raw-events", is_flag=True, help="Print the stored lines unchanged.")
@run_id_option(required=False)
@click.option("--status", default=None, help="Match payload status (PASS, BLOCKED, FAIL, ...).")
@click.option("--kind", default=None, help="Match the run kind.")
@click.option(
    "--actor", default=None, help="Match the actor (e.g. Z_integrator, A_worker, operator)."
)
@click.option(
    "--event-type", default=None, help="Match the event type; a trailing * matches a prefix."
)
@click.option("--rc", type=int, default=None, help="Match a recorded return code.")
@click.option("--since", default=None, metavar="ISO", help="Only events at or after this instant.")
@json_option
@json_out_option
@click.pass_context
def ledger_group(
    click_ctx: click.Context,
    limit: int | None,
    raw_events: bool,
    run_id: str | None,
    status: str | None,
    kind: str | None,
    actor: str | None,
    event_type: str | None,
    rc: int | None,
    since: str | None,
    as_json: bool,
    json_out: Path | None,
) -> int | None:
    """Show ledger events sorted by ts_utc then event_type (subcommands: verify, repair)."""
    if click_ctx.invoked_subcommand is not None:
        return None
    from tools.codex.factory.audit import ledgerview
    from tools.codex.factory.ledger.store import Filter

    if run_id is not None:
        from tools.codex.factory.core.ids import validate_run_id

        validate_run_id(run_id)
    flt = Filter.build(run_id, status, kind, actor, event_type, rc, since)
    return emit(ledgerview.show(_ctx(click_ctx), flt, limit, raw_events), as_json, json_out)


@ledger_group.command("verify")
@click.option(
    "--no-head",
    "no_head",
    is_flag=True,
    help="Accept a missing head file (only if you removed it on purpose).",
)
@json_option
@json_out_option
@click.pass_context
def ledger_verify(
    click_ctx: click.Context, no_head: bool, as_json: bool, json_out: Path | None
) -> int:
    """Check the whole hash chain; print the head or the first bad seq (exit 3)."""
    from tools.codex.factory.audit import ledgerview

    return emit(ledgerview.verify(_ctx(click_ctx), require_head=not no_head), as_json, json_out)


@ledger_group.command("repair")
@json_option
@json_out_option
@click.pass_context
def ledger_repair(click_ctx: click.Context, as_json: bool, json_out: Path | None) -> int:
    """Move a torn last line aside to a side file (nothing deleted) and record it."""
    from tools.codex.factory.audit import ledgerview

    return emit(ledgerview.repair(_ctx(click_ctx)), as_json, json_out)


@ledger_group.command("reindex")
@json_option
@json_out_option
@click.pass_context
def ledger_reindex(click_ctx: click.Context, as_json: bool, json_out: Path | None) -> int:
    """Rebuild the run index from the whole ledger (a cache: nothing is lost)."""
    from tools.codex.factory.audit import ledgerview

    return emit(ledgerview.reindex(_ctx(click_ctx)), as_json, json_out)


@cli.command("runs")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the newest N runs.")
@click.option(
    "--status",
    type=click.Choice(["PASS", "BLOCKED", "FAIL", "RUNNING"], case_sensitive=False),
    default=None,
    help="Only runs with this status (RUNNING: not finished).",
)
@json_option
@json_out_option
@click.pass_context
def runs_cmd(
    click_ctx: click.Context,
    limit: int | None,
    status: str | None,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """List the runs, newest first: ID, kind, status, start, workers and last ledger line."""
    from tools.codex.factory.audit import ledgerview

    return emit(ledgerview.runs(_ctx(click_ctx), status, limit), as_json, json_out)


# -- pipeline ---------------------------------------------------------------------------------
def _new_run_id(
    click_ctx: click.Context, run_id: str | None, resume: bool, crank: bool = False
) -> str | None:
    """The run (crank) ID launch (crank) was given: with --resume, ``latest`` is the newest,
    resolved as every command resolves it (as a new one's ID, the library refuses it)."""
    if not resume:
        return run_id
    option = click.Option(["--crank-id" if crank else "--run-id"])
    return _resolved(crank)(click_ctx, option, run_id)


def _launch_request(
    click_ctx: click.Context,
    base_ref: str | None,
    dry_run: bool,
    run_id: str | None,
    kind: str | None,
    plan: Path | None,
    workers: str | None,
) -> Any:
    from tools.codex.factory.run.launch import LaunchRequest, parse_workers

    ctx = _ctx(click_ctx)
    for key, value in (("run.kind", kind), ("run.base_ref", base_ref)):
        if value is not None:
            ctx.cli_config[key] = value
            ctx.cli_origins[key] = f"cli:{CONFIG_OPTIONS[key]}"
    return LaunchRequest(
        base_ref=ctx.config.get("run.base_ref"),
        dry_run=dry_run,
        run_id=run_id,
        kind=ctx.config.get("run.kind"),
        plan_file=plan,
        workers=parse_workers(workers),
    )


def launch_options(f: F) -> F:
    for opt in reversed(
        [
            click.option(
                "--base-ref",
                default=None,
                help=(
                    "Branch, tag or commit to build on (default: run.base_ref, HEAD). "
                    "Uncommitted work is not in the run: commit it (or stash it) first."
                ),
            ),
            click.option(
                "--dry-run",
                is_flag=True,
                help="Invoke no agent: each worker gets an empty, schema-valid bundle.",
            ),
            click.option(
                "--run-id",
                "run_id",
                default=None,
                help="The new run's ID (default: a fresh one); with launch --resume, the run to "
                "continue (`latest`: the newest run).",
            ),
            click.option(
                "--kind",
                default=None,
                help="Run kind, the first part of the run ID (default: run.kind).",
            ),
            click.option(
                "--plan",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="Plan JSON (`factory schema plan` prints its schema); default: the embedded plan.",
            ),
            workers_option,
        ]
    ):
        f = opt(f)
    return f


@cli.command("preflight")
@click.option(
    "--base-ref", default=None, help="The ref a run would build on (default: run.base_ref)."
)
@run_id_option(required=False)
@json_option
@json_out_option
@click.pass_context
def preflight_cmd(
    click_ctx: click.Context,
    base_ref: str | None,
    run_id: str | None,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Check that a run can start here; one line per failed check, with its fix (exit 3)."""
    from tools.codex.factory.run import pipeline

    return emit(pipeline.cmd_preflight(_ctx(click_ctx), base_ref, run_id), as_json, json_out)


def _progress(as_json: bool) -> Callable[[str], None] | None:
    """Worker progress lines go to stderr; none at all with --json. Checks and scenario
    evaluations are told as their events are recorded (``render.progress_line``), or drawn on
    the live board when stderr is a terminal (the lines then print above it)."""
    if as_json:
        return None
    board = _tell_events(as_json)
    if board is not None:
        return board.say

    def progress(line: str) -> None:
        say(line, err=True)

    return progress


def _tell_events(as_json: bool) -> LiveBoard | None:
    """Progress for the events this command records (none with --json): the live board on a
    terminal (returned), else plain lines."""
    click_ctx = click.get_current_context(silent=True)
    if click_ctx is None or as_json:
        return None
    board = _board(click_ctx)
    _ctx(click_ctx).tell(_event_progress if board is None else board.on_event)
    return board


def _board(click_ctx: click.Context) -> LiveBoard | None:
    """The command's live board (one per command) when stderr is a terminal that moves its
    cursor, else None; loaded only then, so other commands never import it."""
    from tools.codex.factory.cli import render

    meta = click_ctx.meta
    if "factory.board" not in meta:
        meta["factory.board"] = None
        if render.can_redraw(sys.stderr):
            from tools.codex.factory.cli.board import LiveBoard

            board = LiveBoard(sys.stderr, render.use_colour(sys.stderr))
            meta["factory.board"] = board
            click_ctx.call_on_close(board.close)
    board_or_none: LiveBoard | None = meta["factory.board"]
    return board_or_none


def _close_board() -> None:
    """The board stops redrawing before the command's own output follows it."""
    click_ctx = click.get_current_context(silent=True)
    board = click_ctx.meta.get("factory.board") if click_ctx is not None else None
    if board is not None:
        board.close()


def _event_progress(ev: Any) -> None:
    from tools.codex.factory.cli import render

    line = render.progress_line(ev)
    if line is not None:
        say(line, err=True)


@cli.command("launch")
@launch_options
@click.option(
    "--resume",
    is_flag=True,
    help="Continue --run-id: run only the workers without a finished bundle.",
)
@click.option(
    "--no-agents",
    is_flag=True,
    help="Run no agent: every worker is PENDING until `bundle-import` brings its bundle.",
)
@json_option
@json_out_option
@click.pass_context
def launch_cmd(
    click_ctx: click.Context,
    base_ref: str | None,
    dry_run: bool,
    run_id: str | None,
    kind: str | None,
    plan: Path | None,
    workers: str | None,
    resume: bool,
    no_agents: bool,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Create the run folder, manifest, scope locks and one bundle folder per worker; without
    --dry-run or --no-agents, one git worktree and PROMPT.md per worker, and headless agents
    are run."""
    from tools.codex.factory.run import pipeline

    run_id = _new_run_id(click_ctx, run_id, resume)
    req = _launch_request(click_ctx, base_ref, dry_run, run_id, kind, plan, workers)
    req.resume, req.no_agents = resume, no_agents
    req.progress = _progress(as_json)
    return emit(pipeline.cmd_launch(_ctx(click_ctx), req), as_json, json_out)


@cli.command("bundle-validate")
@run_id_option()
@workers_option
@json_option
@json_out_option
@click.pass_context
def bundle_validate_cmd(
    click_ctx: click.Context, run_id: str, workers: str | None, as_json: bool, json_out: Path | None
) -> int:
    """Check every bundle against the rules (files, schemas, scopes, overlaps, names, what git reads) and write VALIDATION.json (BLOCKED: exit 3)."""
    from tools.codex.factory.run import pipeline
    from tools.codex.factory.run.launch import parse_workers

    return emit(
        pipeline.cmd_validate(_ctx(click_ctx), run_id, parse_workers(workers)), as_json, json_out
    )


@cli.command("integrate")
@run_id_option()
@workers_option
@click.option(
    "--keep-worktrees", is_flag=True, help="Keep the workers' worktrees and branches after a PASS."
)
@json_option
@json_out_option
@click.pass_context
def integrate_cmd(
    click_ctx: click.Context,
    run_id: str,
    workers: str | None,
    keep_worktrees: bool,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Apply validated bundles in a sandbox, run the checks, write Z's report and attestations."""
    from tools.codex.factory.run import pipeline
    from tools.codex.factory.run.launch import parse_workers

    _tell_events(as_json)
    return emit(
        pipeline.cmd_integrate(_ctx(click_ctx), run_id, parse_workers(workers), keep_worktrees),
        as_json,
        json_out,
    )


@cli.command("oneshot")
@launch_options
@click.option(
    "--wait",
    is_flag=True,
    help="With interactive workers: poll until each marks itself done (.factory/DONE), collecting as they do.",
)
@click.option(
    "--keep-worktrees", is_flag=True, help="Keep the workers' worktrees and branches after a PASS."
)
@json_option
@json_out_option
@click.pass_context
def oneshot_cmd(
    click_ctx: click.Context,
    base_ref: str | None,
    dry_run: bool,
    run_id: str | None,
    kind: str | None,
    plan: Path | None,
    workers: str | None,
    wait: bool,
    keep_worktrees: bool,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """preflight -> launch -> bundle-validate -> integrate -> summary; exit code = final status.
    Interactive workers without --wait: stops after launch, PENDING, exit 0."""
    from tools.codex.factory.run import pipeline

    req = _launch_request(click_ctx, base_ref, dry_run, run_id, kind, plan, workers)
    req.wait, req.keep_worktrees = wait, keep_worktrees
    req.progress = _progress(as_json)
    return emit(pipeline.cmd_oneshot(_ctx(click_ctx), req), as_json, json_out)


@cli.command("print-report")
@run_id_option()
@json_option
@json_out_option
@click.pass_context
def print_report_cmd(
    click_ctx: click.Context, run_id: str, as_json: bool, json_out: Path | None
) -> int:
    """Print the run's Z_integrator/FINAL_REPORT.txt."""
    from tools.codex.factory.run import pipeline

    return emit(pipeline.cmd_print_report(_ctx(click_ctx), run_id), as_json, json_out)


@cli.command("report")
@run_id_option(required=False)
@crank_id_option("A crank instead of a run (with --html)", required=False)
@click.option(
    "--html",
    "as_html",
    is_flag=True,
    help="Write REPORT.html (one self-contained page) in the run folder and record it.",
)
@json_option
@json_out_option
@click.pass_context
def report_cmd(
    click_ctx: click.Context,
    run_id: str | None,
    crank_id: str | None,
    as_html: bool,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Print the run's FINAL_REPORT.txt; with --html, write REPORT.html (a run's or a crank's)."""
    if (run_id is None) == (crank_id is None):
        raise click.UsageError("give exactly one of --run-id ID or --crank-id ID")
    if crank_id is not None and not as_html:
        raise click.UsageError("--crank-id needs --html (`crank-status` prints a crank)")
    if not as_html:
        from tools.codex.factory.run import pipeline

        assert run_id is not None
        return emit(pipeline.cmd_print_report(_ctx(click_ctx), run_id), as_json, json_out)
    from tools.codex.factory.audit import htmlpage

    if crank_id is not None:
        return emit(htmlpage.write_crank(_ctx(click_ctx), crank_id), as_json, json_out)
    assert run_id is not None
    return emit(htmlpage.write_run(_ctx(click_ctx), run_id), as_json, json_out)


@cli.command("open-report")
@run_id_option()
@click.option("--html", "as_html", is_flag=True, help="Open REPORT.html instead.")
@json_option
@json_out_option
@click.pass_context
def open_report_cmd(
    click_ctx: click.Context, run_id: str, as_html: bool, as_json: bool, json_out: Path | None
) -> int:
    """Open FINAL_REPORT.txt (or REPORT.html) with the platform's opener; headless, print its path."""
    from tools.codex.factory.run import pipeline

    if as_html:
        from tools.codex.factory.audit import htmlpage

        path = htmlpage.html_path(_ctx(click_ctx), run_id)
        return emit(pipeline.cmd_open(_ctx(click_ctx), run_id, "html", path), as_json, json_out)
    return emit(pipeline.cmd_open(_ctx(click_ctx), run_id, "report"), as_json, json_out)


@cli.command("open-run")
@run_id_option()
@json_option
@json_out_option
@click.pass_context
def open_run_cmd(
    click_ctx: click.Context, run_id: str, as_json: bool, json_out: Path | None
) -> int:
    """Open the run folder with the platform's opener; headless, print its path."""
    from tools.codex.factory.run import pipeline

    return emit(pipeline.cmd_open(_ctx(click_ctx), run_id, "run"), as_json, json_out)


# -- audit and operator views --------------------------------------------------------
def _streams(as_json: bool) -> tuple[Callable[[str], None], Callable[[str], None]]:
    """Progress lines go to stdout, or to stderr when stdout carries JSON; notices to stderr."""

    def to_err(line: str) -> None:
        say(line, err=True)

    return (to_err if as_json else say), to_err


@cli.command("ledger-replay")
@run_id_option()
@json_option
@json_out_option
@click.pass_context
def ledger_replay_cmd(
    click_ctx: click.Context, run_id: str, as_json: bool, json_out: Path | None
) -> int:
    """Verify the chain, recompute every decision of a run from its events and compare with the
    artifacts: REPLAY OK (exit 0) or every divergence (exit 3)."""
    from tools.codex.factory.audit import replay

    return emit(replay.replay(_ctx(click_ctx), run_id), as_json, json_out)


@cli.command("watch")
@run_id_option()
@click.option(
    "--timeout",
    type=float,
    default=None,
    metavar="S",
    help="Give up after S seconds (exit 1) if the run has not finished.",
)
@json_option
@json_out_option
@click.pass_context
def watch_cmd(
    click_ctx: click.Context,
    run_id: str,
    timeout: float | None,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Follow the ledger and print the run's events until run.finished; exit with its status."""
    from tools.codex.factory.audit import watch
    from tools.codex.factory.cli import render

    echo, note = _streams(as_json)
    out = watch.follow(
        _ctx(click_ctx), run_id, timeout, lambda ev: echo(render.event_line(ev)), note
    )
    return emit(out, as_json, json_out)


@cli.command("doctor")
@json_option
@json_out_option
@click.pass_context
def doctor_cmd(click_ctx: click.Context, as_json: bool, json_out: Path | None) -> int:
    """Check this machine and repository: one OK/WARN/FAIL line per check, with a fix (FAIL: exit 3)."""
    from tools.codex.factory.ops import doctor

    return emit(doctor.doctor(_ctx(click_ctx)), as_json, json_out)


@cli.command("self-test")
@click.option("--keep", is_flag=True, help="Keep the scratch folder and print where it is.")
@json_option
@json_out_option
def self_test_cmd(keep: bool, as_json: bool, json_out: Path | None) -> int:
    """End-to-end smoke run in a scratch repository in a temp folder (your repository is not touched)."""
    from tools.codex.factory.cli import render
    from tools.codex.factory.ops import selftest

    echo, note = _streams(as_json)
    out = selftest.run_selftest(lambda step: echo(render.step_line(step)), note, keep)
    return emit(out, as_json, json_out)


# -- real workers ----------------------------------------------------------------------
@cli.command("bundle-collect")
@run_id_option()
@workers_option
@json_option
@json_out_option
@click.pass_context
def bundle_collect_cmd(
    click_ctx: click.Context, run_id: str, workers: str | None, as_json: bool, json_out: Path | None
) -> int:
    """Write each worker's bundle from its worktree (diff against the base, notes from .factory/)."""
    from tools.codex.factory.run import collect
    from tools.codex.factory.run.launch import parse_workers

    return emit(
        collect.cmd_collect(_ctx(click_ctx), run_id, parse_workers(workers)), as_json, json_out
    )


@cli.command("bundle-import")
@run_id_option()
@click.option(
    "--worker", "worker", required=True, help="The worker whose bundle the patch becomes, e.g. B."
)
@click.option(
    "--patch",
    "patch",
    required=True,
    type=click.Path(path_type=Path),
    help="A `git diff --binary`, `git format-patch` or PR .patch file.",
)
@click.option(
    "--summary",
    "summary",
    type=click.Path(path_type=Path),
    default=None,
    help="Markdown for SUMMARY.md (default: generated from the patch).",
)
@json_option
@json_out_option
@click.pass_context
def bundle_import_cmd(
    click_ctx: click.Context,
    run_id: str,
    worker: str,
    patch: Path,
    summary: Path | None,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Build a worker's complete bundle from a patch made elsewhere; then validate and integrate."""
    from tools.codex.factory.run import importer

    return emit(
        importer.cmd_import(_ctx(click_ctx), run_id, worker, patch, summary), as_json, json_out
    )


@cli.command("clean")
@run_id_option(required=False)
@click.option(
    "--force", is_flag=True, help="Also remove worktrees holding changes that were never collected."
)
@json_option
@json_out_option
@click.pass_context
def clean_cmd(
    click_ctx: click.Context, run_id: str | None, force: bool, as_json: bool, json_out: Path | None
) -> int:
    """Remove leftover worker worktrees and branches (found via the ledger); refuses uncollected work (exit 3)."""
    from tools.codex.factory.run import clean

    return emit(clean.cmd_clean(_ctx(click_ctx), run_id, force), as_json, json_out)


@cli.command("land")
@run_id_option()
@click.option(
    "--branch",
    default=None,
    help="The new branch (default: factory/result/<RUN_ID>); never an existing one.",
)
@click.option(
    "--commit-message",
    "message",
    default=None,
    help="The commit's message (default: factory: <RUN_ID>).",
)
@click.option("--pr", "open_pr", is_flag=True, help="Push the branch and open a pull request (gh).")
@json_option
@json_out_option
@click.pass_context
def land_cmd(
    click_ctx: click.Context,
    run_id: str,
    branch: str | None,
    message: str | None,
    open_pr: bool,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Commit a PASS run's integrated tree on a new branch (HEAD, index, working tree untouched)."""
    from tools.codex.factory.loop import land

    req = land.LandRequest(run_id, branch, message, open_pr)
    return emit(land.land(_ctx(click_ctx), req), as_json, json_out)


# -- the dark factory ----------------------------------------------------------------------------
@cli.command("crank")
@click.option(
    "--plan",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Plan JSON; every worker needs a headless agent (default: the embedded plan).",
)
@click.option(
    "--manifest",
    "manifest_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Units and execution groups (markdown or .json) instead of a plan.",
)
@click.option(
    "--update-manifest",
    is_flag=True,
    help="Also check off completed units in the manifest file itself.",
)
@click.option("--base-ref", default=None, help="Where the crank starts (default: run.base_ref).")
@click.option("--threshold", default=None, help="Satisfaction to converge at, 0-1 (default 0.80).")
@click.option(
    "--max-iterations",
    type=click.IntRange(1, 1000),
    default=None,
    help="Stop after this many iterations (default 5).",
)
@click.option(
    "--crank-id",
    default=None,
    help="The crank's ID (default: a new one); with --resume, the crank to go on with "
    "(`latest`: the newest crank).",
)
@click.option(
    "--block-on-regression/--no-block-on-regression",
    default=None,
    help="A scenario that passed before and fails now blocks convergence.",
)
@click.option(
    "--gates",
    default=None,
    help="spec=auto|review|skip,plan=..,ship=.. (default: crank.gates, else asked).",
)
@click.option("--resume", is_flag=True, help="Continue --crank-id from its last iteration.")
@click.option(
    "--pr", "open_pr", is_flag=True, help="When it converges, push its branch and open a PR (gh)."
)
@json_option
@json_out_option
@click.pass_context
def crank_cmd(
    click_ctx: click.Context,
    plan: Path | None,
    manifest_file: Path | None,
    update_manifest: bool,
    base_ref: str | None,
    threshold: str | None,
    max_iterations: int | None,
    crank_id: str | None,
    block_on_regression: bool | None,
    gates: str | None,
    resume: bool,
    open_pr: bool,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Run agents, integrate, score the holdout scenarios, feed back, until converged or stalled.

    Exit 0 CONVERGED; 3 STALLED, EXHAUSTED or HALTED (a holdout leak, infrastructure)."""
    from tools.codex.factory.loop import views
    from tools.codex.factory.loop.crank import CrankRequest

    crank_id = _new_run_id(click_ctx, crank_id, resume, crank=True)
    req = CrankRequest(
        plan_file=plan,
        base_ref=base_ref,
        threshold=threshold,
        max_iterations=max_iterations,
        crank_id=crank_id,
        block_on_regression=block_on_regression,
        resume=resume,
        pr=open_pr,
        gates=gates,
        ask=_asker(as_json),
        manifest_file=manifest_file,
        update_manifest=update_manifest,
        progress=_progress(as_json),
    )
    return emit(views.cmd_crank(_ctx(click_ctx), req), as_json, json_out)


def _asker(as_json: bool) -> Callable[[str], str] | None:
    """The question about gates goes to a terminal only (never with --json or piped input)."""
    if as_json or not sys.stdin.isatty():
        return None

    def ask(question: str) -> str:
        click_ctx = click.get_current_context(silent=True)
        board = click_ctx.meta.get("factory.board") if click_ctx is not None else None
        if board is None:
            return str(click.prompt(question, err=True))
        with board.aside():
            return str(click.prompt(question, err=True))

    return ask


@cli.command("approve")
@crank_id_option("The crank waiting for a review.")
@click.option(
    "--gate",
    type=click.Choice(["spec", "plan", "ship", "escalation"]),
    default=None,
    help="The gate.",
)
@click.option(
    "--rest",
    type=click.Choice(["auto", "review", "skip"]),
    default=None,
    help="Set every later gate to this.",
)
@click.option("--note", default="", help="A note recorded with the approval.")
@click.option("--by", default=None, help="Who approves (default: git's user.name and email).")
@json_option
@json_out_option
@click.pass_context
def approve_cmd(
    click_ctx: click.Context,
    crank_id: str,
    gate: str | None,
    rest: str | None,
    note: str,
    by: str | None,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Approve the gate a crank waits at and let it go on (its outcome as `crank` prints it)."""
    from tools.codex.factory.loop import views

    out = views.cmd_approve(_ctx(click_ctx), crank_id, gate, rest, note, by, _progress(as_json))
    return emit(out, as_json, json_out)


@cli.command("reject")
@crank_id_option("The crank waiting for a review.")
@click.option(
    "--gate",
    type=click.Choice(["spec", "plan", "ship", "escalation"]),
    required=True,
    help="The gate.",
)
@click.option("--feedback", default=None, help="For the agents' next iteration (text).")
@click.option(
    "--feedback-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The feedback, from a file (UTF-8).",
)
@click.option("--by", default=None, help="Who rejects (default: git's user.name and email).")
@json_option
@json_out_option
@click.pass_context
def reject_cmd(
    click_ctx: click.Context,
    crank_id: str,
    gate: str,
    feedback: str | None,
    feedback_file: Path | None,
    by: str | None,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Reject the gate a crank waits at: the feedback goes to the agents, the crank goes on."""
    from tools.codex.factory.infra import fsutil
    from tools.codex.factory.loop import views

    if (feedback is None) == (feedback_file is None):
        raise click.UsageError("give exactly one of --feedback TEXT or --feedback-file FILE")
    if feedback_file is not None:
        data = fsutil.read_file(feedback_file, str(feedback_file), limit=1 << 20)
        feedback = data.decode("utf-8", "replace")
    assert feedback is not None
    out = views.cmd_reject(_ctx(click_ctx), crank_id, gate, feedback, by, _progress(as_json))
    return emit(out, as_json, json_out)


@cli.command("gates")
@crank_id_option("The crank.")
@click.argument("settings")
@click.option("--by", default=None, help="Who changes them (default: git's user.name and email).")
@json_option
@json_out_option
@click.pass_context
def gates_cmd(
    click_ctx: click.Context,
    crank_id: str,
    settings: str,
    by: str | None,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Change the gates a crank has not passed yet, e.g. `ship=auto` ("just finish up")."""
    from tools.codex.factory.loop import views

    return emit(views.cmd_gates(_ctx(click_ctx), crank_id, settings, by), as_json, json_out)


@cli.command("crank-status")
@crank_id_option("The crank (default: the latest).", required=False)
@json_option
@json_out_option
@click.pass_context
def crank_status_cmd(
    click_ctx: click.Context, crank_id: str | None, as_json: bool, json_out: Path | None
) -> int:
    """A crank's iteration, satisfaction trajectory and last decision, from the ledger."""
    from tools.codex.factory.loop import views

    return emit(views.cmd_crank_status(_ctx(click_ctx), crank_id), as_json, json_out)


@cli.group("scenarios")
def scenarios_group() -> None:
    """The holdout scenarios: check them, or run them against a tree."""


@scenarios_group.command("check")
@click.option(
    "--base-ref", default=None, help="Read the scenarios from this commit (default: run.base_ref)."
)
@json_option
@json_out_option
@click.pass_context
def scenarios_check_cmd(
    click_ctx: click.Context, base_ref: str | None, as_json: bool, json_out: Path | None
) -> int:
    """Parse and list the scenarios; run nothing (a bad one: exit 2, naming file and line)."""
    from tools.codex.factory.loop import views

    return emit(views.cmd_scenarios_check(_ctx(click_ctx), base_ref), as_json, json_out)


@scenarios_group.command("run")
@run_id_option(required=False)
@click.option("--ref", default=None, help="Evaluate this ref's tree instead of a run's.")
@json_option
@json_out_option
@click.pass_context
def scenarios_run_cmd(
    click_ctx: click.Context,
    run_id: str | None,
    ref: str | None,
    as_json: bool,
    json_out: Path | None,
) -> int:
    """Evaluate the scenarios against a run's integrated tree (--run-id) or a ref (--ref).

    Exit 0 when all pass, 1 when any fails."""
    from tools.codex.factory.loop import views

    _tell_events(as_json)
    return emit(views.cmd_scenarios_run(_ctx(click_ctx), run_id, ref), as_json, json_out)


def run(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code: the one place errors become exit codes."""
    for stream in (sys.stdout, sys.stderr):
        # Text output must not crash on a console whose encoding lacks a character
        # (cp1252 under PowerShell): keep its encoding, escape what it cannot show.
        # JSON goes to the binary buffer as UTF-8 and is unaffected.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        rv = cli.main(args=argv, prog_name="factory", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("factory: interrupted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("factory: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.UsageError as exc:
        # One line, naming the command, instead of click's three-line usage block.
        where = exc.ctx.command_path if exc.ctx is not None else "factory"
        click.echo(
            f"factory: error: {where}: {exc.format_message()} (see `{where} --help`)", err=True
        )
        return EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"factory: error: {exc.format_message()}", err=True)
        return EXIT_USAGE
    except FactoryError as exc:
        if _DEBUG["on"]:
            import traceback

            traceback.print_exc()
        click.echo(f"factory: error: {error_line(exc)}", err=True)
        return exc.exit_code
    except Exception as exc:
        if _DEBUG["on"]:
            import traceback

            traceback.print_exc()
        click.echo(
            f"factory: internal error: {type(exc).__name__}: {exc} (rerun with --debug for a "
            "traceback)",
            err=True,
        )
        return 1
    finally:
        _DEBUG["on"] = False
    return rv if isinstance(rv, int) else 0


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point."""
    sys.exit(run(argv))
