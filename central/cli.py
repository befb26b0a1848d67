"""Command line: `/usr/bin/python3 -m central <command>`.

  migrate [--revision head] | migrate --downgrade REV
  serve [--host H] [--port P] [--workers N] [--no-migrate]
  gateway create|rotate|revoke|list NAME      (NAME = the gateway_id the agent sends)
  viewer  create|rotate|revoke|list NAME
  partitions list | create --table T --month YYYY-MM
  partitions drop --table T --before YYYY-MM --yes-delete-data --note WHY

Tokens are printed once, alone on stdout (so `TOKEN=$(python3 -m central gateway create gw1)`
works); everything else goes to stderr. Only the token's SHA-256 is stored.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from central import accounts, partitions

# More would only queue on the PostgreSQL connections (each worker holds a pool) and on the
# cores; docs/SCALING.md has the measurements.
MAX_WORKERS = 64


def _settings():
    from pydantic import ValidationError

    from central.settings import get_settings
    try:
        return get_settings()
    except ValidationError:
        print("error: DATABASE_URL is not set (e.g. postgresql://user:pass@127.0.0.1:5432/central)",
              file=sys.stderr)
        raise SystemExit(2)


def _engine():
    from central.db import make_engine
    return make_engine(_settings())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m central", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("migrate", help="apply Alembic migrations (default: up to head)")
    m.add_argument("--revision", default="head", help="upgrade target (default head)")
    m.add_argument("--downgrade", metavar="REV", help="downgrade to REV instead (e.g. base)")

    s = sub.add_parser("serve", help="run the API with uvicorn (CENTRAL_WORKERS processes)")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--workers", type=_worker_count, default=None, metavar="N",
                   help="worker processes (default CENTRAL_WORKERS or 1); the schema is "
                        "upgraded once, before they start")
    s.add_argument("--no-migrate", action="store_true", help="do not upgrade the schema first")

    for kind in ("gateway", "viewer"):
        k = sub.add_parser(kind, help=f"manage {kind}s and their tokens")
        ksub = k.add_subparsers(dest="action", required=True)
        ksub.add_parser("create", help="create and print its token once").add_argument("name")
        r = ksub.add_parser("rotate", help="issue a new token (prints it); old ones revoked")
        r.add_argument("name")
        r.add_argument("--keep-old", action="store_true",
                       help="keep the old tokens valid (revoke them later with revoke --old-tokens)")
        v = ksub.add_parser("revoke", help=f"revoke the {kind} and all its tokens")
        v.add_argument("name")
        v.add_argument("--old-tokens", action="store_true",
                       help="revoke only the tokens older than the newest one")
        ksub.add_parser("list", help="names, state, live token prefixes")

    t = sub.add_parser("partitions", help="monthly partitions of the data tables")
    tsub = t.add_subparsers(dest="action", required=True)
    tsub.add_parser("list", help="each partition, its range and rows (DEFAULT counted)")
    c = tsub.add_parser("create", help="create a month's partition (moves its rows out of "
                                       "DEFAULT); ingest does this itself inside its window")
    c.add_argument("--table", required=True, choices=sorted(partitions.PARTITION_KEYS))
    c.add_argument("--month", required=True, help="YYYY-MM (UTC)")
    d = tsub.add_parser("drop", help="DELETE DATA: drop the months wholly before --before "
                                     "(refused without --yes-delete-data)")
    d.add_argument("--table", required=True, choices=sorted(partitions.PARTITION_KEYS))
    d.add_argument("--before", required=True, help="YYYY-MM: months ending by its start go")
    d.add_argument("--yes-delete-data", action="store_true",
                   help="really drop them (without it: list what would go, change nothing)")
    d.add_argument("--note", default="", help="why, recorded in dropped_partitions and the log")
    return p


def _partitions(args) -> int:
    """`partitions ...`: dropping is refused unless asked for in so many words."""
    engine = _engine()
    conn = engine.raw_connection()
    try:
        if args.action == "list":
            for p in partitions.listing(conn):
                span = "DEFAULT" if p.low is None else f"{p.low:%Y-%m-%d} .. {p.high:%Y-%m-%d}"
                print(f"{p.table}\t{p.name}\t{span}\t{p.rows} rows"
                      f"{'' if p.low is not None else ' (counted)'}")
            return 0
        if args.action == "create":
            partitions.create_month(conn, args.table, partitions.parse_month(args.month),
                                    lock_timeout=None)
            print(f"partition {partitions.partition_name(args.table, partitions.parse_month(args.month))} "
                  "exists", file=sys.stderr)
            return 0
        before = partitions.parse_month(args.before)
        doomed = partitions.droppable(conn, args.table, before)
        conn.rollback()
        if not args.yes_delete_data:
            for p in doomed:
                print(f"would drop {p.name} (~{p.rows} rows)", file=sys.stderr)
            print(f"refused: dropping deletes data for good (raw events are the audit trail); "
                  f"{len(doomed)} partition(s) would go. Add --yes-delete-data (and --note WHY) "
                  "to drop them.", file=sys.stderr)
            return 2
        if not args.note.strip():
            print("refused: say why with --note (it is recorded with the drop)", file=sys.stderr)
            return 2
        for name, rows in partitions.drop_before(conn, args.table, before, args.note.strip()):
            print(f"dropped {name} ({rows} rows)", file=sys.stderr)
        return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()
        engine.dispose()


def _worker_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"between 1 and {MAX_WORKERS}")
    return value


def configure_logging() -> None:
    """Our own loggers only: uvicorn configures its loggers itself, and a root handler would
    print each of its lines twice. Also called in each worker process (central/workers.py)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("central", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    try:
        if args.command == "migrate":
            from central import migrate
            url = _settings().sqlalchemy_url()
            if args.downgrade:
                migrate.downgrade(url, args.downgrade)
            else:
                migrate.upgrade(url, args.revision)
            return 0
        if args.command == "serve":
            import uvicorn

            from central import migrate
            from central.app import create_app
            settings = _settings()
            workers = args.workers or settings.workers
            if not 1 <= workers <= MAX_WORKERS:
                print(f"error: CENTRAL_WORKERS must be between 1 and {MAX_WORKERS}",
                      file=sys.stderr)
                return 2
            # Once, here, before any worker exists: N workers never race on the schema.
            if not args.no_migrate:
                migrate.upgrade(settings.sqlalchemy_url())
            host, port = args.host or settings.host, args.port or settings.port
            if workers > 1:
                from central import workers as supervisor
                return supervisor.serve(host, port, workers, settings.log_level)
            uvicorn.run(create_app(settings), host=host, port=port,
                        log_level=settings.log_level, workers=1, proxy_headers=False)
            return 0
        if args.command == "partitions":
            return _partitions(args)
        kind = args.command
        if args.action == "list":
            for row in accounts.listing(_engine(), kind):
                state = "revoked" if row["revoked_at"] else "active"
                tokens = ",".join(p + "..." for p in row["live_tokens"] or []) or "-"
                print(f"{row['name']}\t{state}\tcreated {row['created_at']:%Y-%m-%dT%H:%M:%SZ}"
                      f"\ttokens {tokens}")
            return 0
        if args.action == "create":
            token = accounts.create(_engine(), kind, args.name)
            print(f"created {kind} {args.name!r}; this token is shown only once:", file=sys.stderr)
            print(token)
            return 0
        if args.action == "rotate":
            token = accounts.rotate(_engine(), kind, args.name, keep_old=args.keep_old)
            print(f"new token for {kind} {args.name!r}"
                  f"{' (old tokens still valid)' if args.keep_old else ' (old tokens revoked)'}; "
                  "shown only once:", file=sys.stderr)
            print(token)
            return 0
        if args.action == "revoke":
            n = accounts.revoke(_engine(), kind, args.name, old_tokens_only=args.old_tokens)
            what = "old tokens" if args.old_tokens else f"{kind} and its tokens"
            print(f"revoked {what} of {args.name!r} ({n} token(s))", file=sys.stderr)
            return 0
    except accounts.AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2
