"""``kline repair``: rebuild what ``kline.lake.integrity.scan`` finds corrupt, from the source.

- raw day and month files (``raw/bars``, ``raw/adj_factor``, ``raw/stk_limit``) and the
  instrument-fact tables (``reference/``): fetched again from the provider that wrote them,
  over the affected dates (a month file: the logged fetches' dates within its month, written
  as a month file again), for the symbols the ingestion log says were fetched there;
- curated year partitions: rebuilt from raw by validating the year again (quarantine too),
  and so is a curated year missing beside raw bars (a repair interrupted after removing it);
- quarantine day files: validated again over that day;
- derived caches (``features/``, the cached vendor calendar ``_state/calendar``): removed,
  with the Prefect task results that point at them, so the next run recomputes them;
- temporary files left by killed writes: removed.

Runs the domain code directly (no flow run, no Prefect server). Everything is planned before
anything changes: a corrupt file this command cannot rebuild (a raw file of another provider,
a backtest's predictions) is refused up front with ``RepairRefused``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
from dataclasses import dataclass, field

from kline.config import Settings
from kline.lake import Lake
from kline.lake.integrity import IntegrityReport, scan


class RepairRefused(ValueError):
    """A corrupt file that ``repair`` cannot rebuild with the given settings (bad input)."""


@dataclass
class Plan:
    """What to rebuild: raw days per source, reference tables per source, curated years,
    quarantine days, caches to remove, temporary files to remove."""

    raw_days: dict[str, set[dt.date]] = field(default_factory=dict)
    raw_months: dict[str, set[str]] = field(default_factory=dict)  # source -> YYYY-MM
    reference: dict[str, set[str]] = field(default_factory=dict)
    curated_years: set[int] = field(default_factory=set)
    quarantine_days: set[dt.date] = field(default_factory=set)
    remove: list[str] = field(default_factory=list)
    refetched: list[str] = field(default_factory=list)  # raw and reference files fetched again
    revalidated: list[str] = field(default_factory=list)  # quarantine files validated again
    corrupt: list[str] = field(default_factory=list)
    stale_tmp: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.corrupt or self.stale_tmp or self.curated_years)


def plan(lake: Lake, report: IntegrityReport, provider_name: str) -> Plan:
    """Classify the corrupt files of ``report``; raises ``RepairRefused`` naming a file it
    cannot rebuild (before anything is changed)."""
    root = lake.fs._strip_protocol(lake.root).rstrip("/")
    out = Plan(stale_tmp=list(report.stale_tmp), corrupt=sorted(report.corrupt))
    for path in out.corrupt:
        rel = lake.fs._strip_protocol(path)[len(root):].strip("/").split("/")
        stem = rel[-1].removesuffix(".parquet")
        if rel[0] == "raw" and len(rel) == 4 and rel[2].startswith("trade_date="):
            if stem != provider_name:
                raise RepairRefused(f"{path} was fetched from {stem!r}, not from the provider {provider_name!r}: "
                                    f"run `kline repair --provider {stem}`")
            out.raw_days.setdefault(stem, set()).add(dt.date.fromisoformat(rel[2][len("trade_date="):]))
            out.refetched.append(path)
        elif rel[0] == "raw" and len(rel) == 4 and rel[2].startswith("month="):
            if stem != provider_name:
                raise RepairRefused(f"{path} was fetched from {stem!r}, not from the provider {provider_name!r}: "
                                    f"run `kline repair --provider {stem}`")
            out.raw_months.setdefault(stem, set()).add(rel[2][len("month="):])
            out.refetched.append(path)
        elif rel[0] == "reference" and len(rel) == 3:
            if stem != provider_name:
                raise RepairRefused(f"{path} was fetched from {stem!r}, not from the provider {provider_name!r}: "
                                    f"run `kline repair --provider {stem}`")
            out.reference.setdefault(stem, set()).add(rel[1])
            out.refetched.append(path)
        elif rel[:2] == ["curated", "bars"] and len(rel) == 4 and rel[2].startswith("year="):
            out.curated_years.add(int(rel[2][len("year="):]))
        elif rel[:2] == ["quarantine", "bars"] and len(rel) == 4 and rel[2].startswith("trade_date="):
            out.quarantine_days.add(dt.date.fromisoformat(rel[2][len("trade_date="):]))
            out.revalidated.append(path)
        elif rel[0] == "features" or rel[:2] == ["_state", "calendar"]:
            out.remove.append(path)
        else:
            raise RepairRefused(f"{path} is a run's output ({'/'.join(rel[:1])}), not rebuilt by `kline repair`: "
                                "delete it and run the pipeline for its date again")
    # a curated year missing beside raw bars (a repair interrupted after removing it) is rebuilt too
    raw_years = set(lake.raw.table.years())  # folder names: a damaged file is not read
    out.curated_years |= raw_years - set(lake.curated_years())
    for source, days in out.raw_days.items():
        for day in days:
            if not _logged_symbols(lake, source, day):
                raise RepairRefused(f"the ingestion log names no symbol fetched from {source} on {day}: "
                                    f"run `kline backfill --refresh` over {day}")
    for source, months in out.raw_months.items():
        for month in months:
            if _month_span(lake, source, month) is None:
                raise RepairRefused(f"the ingestion log names no fetch from {source} in {month}: "
                                    f"run `kline backfill --refresh` over {month}")
    for source in out.reference:
        if not _logged_symbols(lake, source):
            raise RepairRefused(f"the ingestion log names no fetch from {source}: run `kline backfill --refresh`")
    return out


def _logged_symbols(lake: Lake, source: str, day: dt.date | None = None) -> list[str]:
    """Symbols the ingestion log says were fetched from ``source`` (on ``day`` when given)."""
    out: dict[str, None] = {}
    for e in lake.read_ingest_log():
        if e.get("source") != source:
            continue
        if day is None or dt.date.fromisoformat(e["start"]) <= day <= dt.date.fromisoformat(e["end"]):
            out.update(dict.fromkeys(e.get("symbols", [])))
    return list(out)


def _month_span(lake: Lake, source: str, month: str) -> tuple[dt.date, dt.date, list[str]] | None:
    """The dates of ``month`` (``YYYY-MM``) the ingestion log's fetches from ``source`` covered,
    as one span, and the symbols they fetched; None when no fetch reached that month."""
    first = dt.date.fromisoformat(f"{month}-01")
    last = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    lo = hi = None
    symbols: dict[str, None] = {}
    for e in lake.read_ingest_log():
        if e.get("source") != source:
            continue
        s, t = max(first, dt.date.fromisoformat(e["start"])), min(last, dt.date.fromisoformat(e["end"]))
        if s > t:
            continue
        lo, hi = min(lo or s, s), max(hi or t, t)
        symbols.update(dict.fromkeys(e.get("symbols", [])))
    return None if lo is None else (lo, hi, list(symbols))


def forget_cached_results(lake: Lake, paths: list[str]) -> int:
    """Delete the Prefect task results (``_state/prefect-results``) whose value names one of
    ``paths``, so the task that wrote them runs again instead of returning a removed file."""
    folder = lake.fs._strip_protocol(lake.paths.prefect_results())
    if not paths or not lake.fs.exists(folder):
        return 0
    needles = [p.encode() for p in paths] + [lake.fs._strip_protocol(p).encode() for p in paths]
    removed = 0
    for rec in lake.fs.ls(folder, detail=False):
        try:
            value = base64.b64decode(json.loads(lake.fs.cat_file(rec))["result"])
        except (ValueError, KeyError, TypeError, OSError):
            continue
        if any(n in value for n in needles):
            lake.fs.rm(rec)
            removed += 1
    return removed


def repair(settings: Settings, provider=None) -> list[str]:
    """Rebuild every corrupt file of ``settings.lake`` and remove stale temporary files;
    returns one line per action. ``provider`` (default: from ``settings``) fetches raw again."""
    from kline.ingestion import ingest_range
    from kline.providers import make_provider

    lake = Lake(settings.lake)
    report = scan(lake)
    todo = plan(lake, report, provider.name if provider is not None else settings.provider)
    if provider is None and (todo.raw_days or todo.raw_months or todo.reference):
        from kline.providers import FatalProviderError, ProviderConfigError
        from tasks.secrets import prefect_secret_loader

        try:  # still before any change
            provider = make_provider(settings, token_loader=prefect_secret_loader)
        except (ProviderConfigError, FatalProviderError) as exc:
            raise RepairRefused(str(exc)) from None
    done = []
    for p in todo.stale_tmp:
        lake.fs.rm(lake.fs._strip_protocol(p))
        done.append(f"removed temporary file {p}")
    for p in todo.refetched:  # every fetch merges into what is stored: no damaged file may be left to read
        lake.remove(p)
    for source, tables in sorted(todo.reference.items()):  # all symbols: before the days, which fetch a few
        last = [e for e in lake.read_ingest_log() if e.get("source") == source][-1]
        ingest_range(provider, lake, _logged_symbols(lake, source), dt.date.fromisoformat(last["start"]),
                     dt.date.fromisoformat(last["end"]))
        done.append(f"fetched {', '.join(sorted(tables))} again from {source}")
    for source, days in sorted(todo.raw_days.items()):
        for day in sorted(days):
            symbols = _logged_symbols(lake, source, day)
            ref = ingest_range(provider, lake, symbols, day, day)
            done.append(f"fetched {day} again from {source}: {ref.get('rows', 0)} rows, {len(symbols)} symbols")
    for source, months in sorted(todo.raw_months.items()):
        for month in sorted(months):
            start, end, symbols = _month_span(lake, source, month)
            ref = ingest_range(provider, lake, symbols, start, end, layout="month")
            done.append(f"fetched {start}..{end} again from {source}: {ref.get('rows', 0)} rows, "
                        f"{len(symbols)} symbols")
    if todo.refetched:  # the calendar layers again, from the repaired raw layer, before validating
        from flows._common import use_calendars

        use_calendars(settings)
    for p in todo.revalidated:  # before any validation, which reads the quarantine it replaces
        lake.remove(p)
    spans = [(dt.date(y, 1, 1), dt.date(y, 12, 31), y) for y in sorted(todo.curated_years)]
    spans += [(d, d, None) for d in sorted(todo.quarantine_days)]
    for start, end, year in spans:
        if year is not None:
            lake.remove(lake.paths.curated_bars(year))
            with contextlib.suppress(FileNotFoundError):
                lake.fs.rm(lake.fs._strip_protocol(lake.paths.curated_fingerprint(year)))
        rows = _revalidate(lake, settings, start, end)
        done.append(f"validated {start}..{end} again from raw: {rows} rows"
                    + (f" (curated year {year} rebuilt)" if year is not None else ""))
    for p in todo.remove:
        lake.remove(p)
        n = forget_cached_results(lake, [p])
        done.append(f"removed {p} (a cache, recomputed by the next run; {n} cached task results dropped)")
    return done


def _revalidate(lake: Lake, settings: Settings, start: dt.date, end: dt.date) -> int:
    """Validate the raw bars of ``[start, end]`` again, per source, into curated and quarantine."""
    from kline.validation import validate_chunk

    bars = lake.read_raw_bars(start, end, columns=["symbol", "trade_date", "source"])
    rows = 0
    for source, g in bars.groupby("source", sort=True):
        symbols = sorted(g["symbol"].dropna().astype(str).unique())
        chunk = {"source": source, "start": start.isoformat(), "end": end.isoformat(), "symbols": symbols}
        rows += int(validate_chunk(lake, chunk, settings).get("rows_checked", 0))
    return rows
