"""The ``kline`` command line.

Exit codes: 0 done, 1 a pipeline stage failed, 2 bad usage or input (one plain line on
stderr naming the problem; nothing is written to the lake), 3 a corrupt lake file (named;
``kline repair`` rebuilds it), 4 a lake write failed on a disk fault (path and errno named;
the previous version is intact), 5 the Prefect API at PREFECT_API_URL could not be reached
or went away mid-run (one line; the stages finished before are cached, so re-running the
same command resumes). Prefect and Great Expectations
are imported only by the commands that run flows, so ``--help`` and ``status`` stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_CORRUPT, EXIT_DISK = 3, 4  # kline.lake.files.CorruptFileError / LakeWriteError .exit_code
EXIT_API = 5
# Prefect's client retries a lost API 5 times by default (2+4+...+32 s per request, over a
# minute each); 3 rides out a restart of a few seconds and lets a dead server end the run soon
API_RETRIES = "3"


class UsageError(Exception):
    """Bad usage or input: exit 2 with this message."""


def _parse_date(value: str, name: str) -> dt.date:
    from flows._common import parse_date

    try:
        return parse_date(value, name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _symbols(value: str | None) -> list[str] | None:
    if value is None:
        return None
    syms = [s.strip() for s in value.split(",") if s.strip()]
    if not syms:
        raise UsageError("--symbols: no symbol given")
    return syms


@contextlib.contextmanager
def _universe_override(args: argparse.Namespace):
    """``--universe`` as the ``universe`` setting (``KLINE_UNIVERSE``) for this command only:
    the flows, run in this process, resolve their settings the same way."""
    value = getattr(args, "universe", None)
    if value is None:
        yield
        return
    if not value.strip(" ,"):
        raise UsageError("--universe: no universe given")
    if getattr(args, "symbols", None) is not None:
        raise UsageError("give --symbols or --universe, not both")
    value = value.strip()
    from kline.universe import NAMES

    if value not in NAMES and "." in value and not value.startswith("file:") and "," not in value:
        value += ","  # one code (600519.SH) is a list of one, not a universe name
    before = os.environ.get("KLINE_UNIVERSE")
    os.environ["KLINE_UNIVERSE"] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("KLINE_UNIVERSE", None)
        else:
            os.environ["KLINE_UNIVERSE"] = before


def _settings(args: argparse.Namespace):
    from flows._common import calendar_codes, resolve_settings, use_calendars
    from kline.calendar import CalendarError, configure, run_layers
    from kline.config import ConfigError
    from kline.lake.files import CorruptFileError
    from kline.providers import ProviderConfigError

    try:
        settings = resolve_settings(
            getattr(args, "config", None),
            getattr(args, "lake", None),
            getattr(args, "provider", None),
            _symbols(getattr(args, "symbols", None)),
            getattr(args, "source", None),
            getattr(args, "calendar", None),
        )
    except (ConfigError, ProviderConfigError, CalendarError) as exc:
        raise UsageError(str(exc)) from None
    try:
        use_calendars(settings)  # the settings' holidays and the lake's cached vendor calendar
    except CalendarError as exc:
        raise UsageError(str(exc)) from None
    except CorruptFileError:
        if getattr(args, "func", None) not in (cmd_status, cmd_repair):
            raise
        # status and repair must work on a damaged lake: the calendars without what the lake holds
        configure(run_layers(settings.calendar, calendar_codes(settings)))
    return settings


def _check_inputs(settings, dates: Sequence[dt.date]) -> None:
    """Everything that can be refused before any work: provider, symbols, settings, dates."""
    from flows._common import checked
    from kline.providers import FatalProviderError, check_provider_name, make_provider
    from tasks.secrets import prefect_secret_loader

    try:  # every refusal (unknown provider, bad symbol, setting or date) is a ValueError; an unreadable
        # vendor file is a FatalProviderError
        check_provider_name(settings.provider)
        checked(settings, dates)
        provider = make_provider(settings, token_loader=prefect_secret_loader)  # read only for a secret_block
        if settings.provider == "file":  # a file that cannot be read is bad input, not a failed run
            for sym, path in provider.resolve(settings.symbols).items():
                if provider.date_range([sym]) is None:
                    raise UsageError(f"{path}: no rows")
    except (ValueError, FatalProviderError) as exc:
        raise UsageError(str(exc)) from None


def _print_table(head: list[str], rows: list[dict], empty: str, fmt=str) -> None:
    """``rows`` as left-aligned columns ``head`` (cells through ``fmt``), or ``empty``."""
    if not rows:
        print(empty)
        return
    table = [head, *([fmt(r.get(h, "")) for h in head] for r in rows)]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)))


def _print_status_table(rows: list[dict]) -> None:
    _print_table(["symbol", "first", "last", "rows", "missing", "quarantined", "last_ingested"], rows,
                 "the lake holds no bars yet")


def cmd_status(args: argparse.Namespace) -> int:
    from flows._common import calendar_codes
    from kline.calendar import calendar_info
    from kline.lake import Lake
    from kline.lake.files import CorruptFileError
    from kline.lake.integrity import scan
    from kline.status import calendar_lines, lake_status

    settings = _settings(args)
    lake = Lake(settings.lake)
    integrity = scan(lake)
    rows, calendars, unreadable = [], [], None
    try:  # both read the lake (calendars derived from raw dates read the raw files' dates)
        rows = lake_status(lake, settings)
        calendars = [calendar_info(c) for c in sorted(calendar_codes(settings))]
    except CorruptFileError as exc:  # named below with the others
        unreadable = str(exc)
    if args.json:
        print(json.dumps({"lake": lake.root, "symbols": rows, "calendars": calendars,
                          "integrity": integrity.to_dict()}, indent=2, default=str))
    else:
        print(f"lake: {lake.root}")
        if unreadable:
            print(f"per-symbol table unavailable: {unreadable}")
        else:
            _print_status_table(rows)
        print("\n".join(calendar_lines(calendars) + integrity.lines()))
    return EXIT_OK if integrity.clean and unreadable is None else EXIT_CORRUPT


def cmd_repair(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from flows.repair import RepairRefused, repair
    from kline.providers import check_provider_name

    if not os.path.isdir(settings.lake) and "://" not in settings.lake:
        raise UsageError(f"no lake at {settings.lake}")
    try:
        check_provider_name(settings.provider)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        done = repair(settings)
    except RepairRefused as exc:  # refused while planning: nothing changed
        raise UsageError(str(exc)) from None
    print("\n".join(done) if done else "nothing to repair: every Parquet file matches its recorded hash")
    return EXIT_OK


def _run_flow(fn, **params) -> tuple[int, Any]:
    from flows.api_loss import quiet_console

    quiet_console()  # a lost API: one line per failed call on the console, not a traceback each
    state = fn(**params, return_state=True)
    if state.is_completed():
        return EXIT_OK, state.result()
    with contextlib.suppress(Exception):  # a lake file's fault: its own line and exit code
        exc = state.result(raise_on_failure=False)
        if isinstance(getattr(exc, "exit_code", None), int) and getattr(exc, "path", None):
            print(f"kline: {exc}", file=sys.stderr)
            return exc.exit_code, None
    print(f"kline: the pipeline failed: {state.message or state.name}", file=sys.stderr)
    return EXIT_FAILED, None


def _flow_params(args: argparse.Namespace, settings) -> dict[str, Any]:
    return {
        "symbols": _symbols(args.symbols),
        "provider": args.provider,
        "lake": settings.lake,
        "config_file": args.config,
        "source": args.source,
        "calendar": args.calendar,
        "refresh": args.refresh,
    }


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    day = _parse_date(args.date, "--date") if args.date else None
    _check_inputs(settings, [day] if day else [])
    from flows.daily import daily_flow
    from kline.lake import Lake
    from kline.status import lake_status

    code, result = _run_flow(daily_flow, run_date=day.isoformat() if day else None,
                             **_flow_params(args, settings))
    if code == EXIT_OK:
        lake = Lake(settings.lake)
        if not result.get("trading_day", True):
            why = " (provisional session with no bar for any symbol: treated as closed)" if result.get("provisional") else ""
            print(f"{result['run_date']} is not a trading day{why}: nothing to do")
        else:
            _print_status_table(lake_status(lake, settings))
            if result.get("excluded_symbols"):
                print(f"left out of modelling (run-date bar quarantined): {', '.join(result['excluded_symbols'])}")
            if result.get("summary"):
                print(result["summary"])
            info = result.get("calendar") or {}
            if result.get("provisional") or result.get("forecast_provisional"):
                what = result["run_date"] if result.get("provisional") else "the next session"
                print(f"PROVISIONAL: {what} is past the published calendar (known through "
                      f"{info.get('known_through')}, {info.get('source')}); see the report")
        print(f"Output: {result.get('report') or lake.root}")
    return code


_progress_open = False  # a progress bar is drawn without its newline yet


def _terminal_progress(done: int, total: int, label: str) -> None:
    global _progress_open
    _progress_open = done < total
    width = 30
    filled = int(width * done / max(total, 1))
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}{end}")
    sys.stderr.flush()


def cmd_backfill(args: argparse.Namespace) -> int:
    settings = _settings(args)
    start, end = _parse_date(args.start, "--start"), _parse_date(args.end, "--end")
    if start > end:
        raise UsageError(f"reversed range: --start {start} is after --end {end}")
    from flows._common import cap_end

    end, note = cap_end(settings, end)
    if note:
        if start > end:
            raise UsageError(f"{note}: nothing to backfill from {start}")
        print(f"kline: {note}", file=sys.stderr)
    _check_inputs(settings, [start, end])
    from flows import backfill as bf
    from kline.lake import Lake

    bf.progress_listeners.append(_terminal_progress)
    code, result = _run_flow(bf.backfill_flow, start=start.isoformat(), end=end.isoformat(),
                             replay=args.replay, models=not args.data_only, **_flow_params(args, settings))
    if code == EXIT_OK:
        for sym, notes in sorted((result.get("row_notes") or {}).items()):
            print(f"{sym}: vendor file rows " + ", ".join(f"{k.replace('_', ' ')} {v if not isinstance(v, list) else len(v)}"
                                                         for k, v in notes.items()))
        if result.get("summary"):
            print(result["summary"])
        last_report = result.get("report") or next((r for r in reversed(result.get("reports", [])) if r), None)
        print(f"Output: {last_report or Lake(settings.lake).root}")
    return code


def cmd_models(args: argparse.Namespace) -> int:
    from kline.lake import Lake
    from kline.registry import list_models

    settings = _settings(args)
    rows = list_models(Lake(settings.lake))
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return EXIT_OK

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, bool):
            return "*" if v else ""
        return "" if v is None else str(v)

    _print_table(["name", "version", "champion", "train_start", "train_end", "test_start", "test_end",
                  "mase", "rmse", "directional_accuracy", "epochs"], rows, "no models registered yet", fmt)
    return EXIT_OK


def _docs_server(settings, args: argparse.Namespace):
    """The reports / Data Docs server for ``settings.lake`` (``--host``/``--port`` win)."""
    from kline.serving import DocsServer

    host = getattr(args, "host", None) or settings.serve.host
    port = settings.serve.port if getattr(args, "port", None) is None else args.port
    return DocsServer(settings.lake, host=host, port=port, public_url=settings.serve.public_url)


def cmd_docs(args: argparse.Namespace) -> int:
    from kline.serving import DocsServerError

    settings = _settings(args)
    if args.port is not None and not 0 <= args.port <= 65535:
        raise UsageError(f"--port: not a port number: {args.port}")
    try:
        server = _docs_server(settings, args)
    except DocsServerError as exc:
        raise UsageError(str(exc)) from None
    print(f"serving reports at {server.public_url}/reports/ and Data Docs at "
          f"{server.public_url}/validation/docs/index.html (lake {server.lake.root}, read-only); Ctrl-C to stop",
          flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return EXIT_OK


def _setup(settings, check: bool) -> int:
    """Create or update (or, with ``check``, only compare) kline's objects on the server."""
    from kline.config import ConfigError
    from kline.monitoring import check_alerts

    if not os.environ.get("PREFECT_API_URL"):
        raise UsageError("setup needs a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    try:
        check_alerts(settings.alerts)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    from flows import operations

    if check:
        changes = operations.drift(settings)
        for c in changes:
            print(f"drift: {c}")
        print("no drift" if not changes else f"{len(changes)} object(s) differ: run `kline setup`")
        return EXIT_FAILED if changes else EXIT_OK
    for c in operations.apply(settings):
        print(c)
    return EXIT_OK


def cmd_setup(args: argparse.Namespace) -> int:
    return _setup(_settings(args), args.check)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from flows.deployments import DAILY_CRON, DAILY_TIMEZONE, serve_deployments
    from kline.serving import DocsServerError

    if not args.no_setup and os.environ.get("PREFECT_API_URL"):
        _setup(settings, check=False)
    try:  # the scheduler matters more than the docs: a busy port only costs the links
        docs = _docs_server(settings, args).start()
        print(f"serving reports and Data Docs at {docs.public_url}/ (read-only)", flush=True)
    except DocsServerError as exc:
        docs = None
        print(f"kline: not serving reports and Data Docs: {exc}", file=sys.stderr)
    print(f"serving deployments 'kline-daily/daily' (cron {DAILY_CRON}, {DAILY_TIMEZONE}, one run at a time) and "
          f"'kline-backfill/backfill' on lake {settings.lake}; Ctrl-C to stop (the schedule stays active)", flush=True)
    try:
        serve_deployments({"lake": args.lake, "config_file": args.config}, limit=args.limit, settings=settings)
    finally:
        if docs is not None:
            docs.close()
    return EXIT_OK


def _add_common(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("--lake", help="lake root (default ./data_lake; env KLINE_LAKE)")
    p.add_argument("--config", help="settings file (default ./kline.toml if present)")
    if data:
        p.add_argument("--symbols", help="comma-separated codes, e.g. 000001.SH,600519.SH")
        p.add_argument("--provider", help="synthetic (default), tushare or file")
        p.add_argument("--source", help="file provider: a CSV/Parquet file or a folder of them")
        p.add_argument("--calendar", help="file provider: exchange calendar for non-A-share symbols (e.g. XNYS)")
        p.add_argument("--refresh", action="store_true", help="ignore cached task results and redo every stage")
        p.add_argument("--universe", help="default (the symbols setting), csi300, all (point in time: the members "
                       "as of each run date), a comma-separated list of codes, or file:codes.txt; replaces the "
                       "universe setting (env KLINE_UNIVERSE)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kline",
        description="Daily A-share bars into a Parquet lake, validated, modelled and reported, on Prefect.",
        epilog="Exit codes: 0 done, 1 a pipeline stage failed, 2 bad usage or input, 3 a corrupt lake file "
               "(`kline repair`), 4 a lake write failed on a disk fault, 5 the Prefect API could not be "
               "reached or went away (re-run to resume from the cached stages).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func, help: str, data: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=func)
        _add_common(p, data)
        return p

    p = command("run", cmd_run, "run the daily pipeline for one date (default: the latest session)", data=True)
    p.add_argument("--date", help="run date YYYY-MM-DD (default: the latest closed XSHG session: today's "
                   "only after calendar.close_cutoff, 17:30 Asia/Shanghai)")
    p = command("backfill", cmd_backfill, "ingest and validate a historical range in row-sized chunks, then model "
                "and report its end", data=True)
    p.add_argument("--start", required=True, help="first date YYYY-MM-DD")
    p.add_argument("--end", required=True, help="last date YYYY-MM-DD (not in the future; today's session "
                   "before the close cutoff is capped to the previous one)")
    p.add_argument("--replay", action="store_true",
                   help="run the daily pipeline as of every session in the range (point in time)")
    p.add_argument("--data-only", action="store_true",
                   help="ingest and validate only; no training, backtest or report")
    p = command("status", cmd_status, "what the lake holds, per symbol")
    p.add_argument("--calendar", help="exchange calendar of non-A-share symbols (e.g. XNYS)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = command("repair", cmd_repair, "rebuild corrupt lake files from the source (raw: fetched again; curated: "
                "validated again; feature caches: removed) and remove temporary files of killed writes")
    p.add_argument("--provider", help="the provider that wrote the raw files to fetch again (default: settings)")
    p.add_argument("--source", help="file provider: a CSV/Parquet file or a folder of them")
    p = command("models", cmd_models, "registered model versions with their spans and metrics")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = command("serve", cmd_serve, "serve the daily (scheduled) and backfill deployments, and the reports "
                "and Data Docs, from this process")
    p.add_argument("--limit", type=int, help="most flow runs at once")
    p.add_argument("--port", type=int, help="port of the reports / Data Docs server (default [serve] port, 4210)")
    p.add_argument("--no-setup", action="store_true",
                   help="do not run `kline setup` first (it runs when PREFECT_API_URL names a server)")
    p = command("docs", cmd_docs, "serve the lake's reports and Data Docs over HTTP, read-only")
    p.add_argument("--host", help="address to bind (default [serve] host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default [serve] port, 4210; 0 picks a free one)")
    p = command("setup", cmd_setup, "create or update the work pool, vendor budget, alert block and automations "
                "on the Prefect server at PREFECT_API_URL (idempotent)")
    p.add_argument("--check", action="store_true", help="change nothing; list what differs and exit 1 if anything does")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # kline runs offline by design: the temporary Prefect server must not phone home
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", API_RETRIES)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, bad usage is 2
        return int(exc.code or 0)
    try:
        with _universe_override(args):
            return args.func(args)
    except UsageError as exc:
        print(f"kline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        code = getattr(exc, "exit_code", None)
        if isinstance(code, int) and getattr(exc, "path", None):
            print(f"kline: {exc}", file=sys.stderr)  # a corrupt lake file or a disk fault outside a flow
            return code
        from flows.api_loss import api_lost

        lost = api_lost(exc)
        if lost is None:
            raise
        url = os.environ.get("PREFECT_API_URL") or "the temporary Prefect server"
        why = " ".join(str(lost).split()) or type(lost).__name__
        print(f"{chr(10) if _progress_open else ''}kline: lost the Prefect API at {url} ({why}); the stages "
              "finished before are cached: re-run the same command once the server is back", file=sys.stderr)
        if argv is None:  # the program itself, not a caller in process: end now, or Prefect's event and log
            # workers retry every queued item against the dead API for minutes; nothing of kline's is
            # pending (every lake write is atomic and already done or abandoned)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_API)
        return EXIT_API


if __name__ == "__main__":
    sys.exit(main())
