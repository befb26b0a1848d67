"""Command line: `/usr/bin/python3 -m central <command>`.

  migrate [--revision head] | migrate --downgrade REV
  serve [--host H] [--port P] [--workers N] [--no-migrate]
  gateway create|rotate|revoke|list NAME      (NAME = the gateway_id the agent sends)
  viewer  create|rotate|revoke|list NAME

Tokens are printed once, alone on stdout (so `TOKEN=$(python3 -m central gateway create gw1)`
works); everything else goes to stderr. Only the token's SHA-256 is stored.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from central import accounts

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
    return p


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
