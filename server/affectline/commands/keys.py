"""`affectline keys create|list|revoke`: the API keys of analysts and partner systems."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from affectline.auth.scopes import SCOPES
from affectline.commands.flags import add_db_flags

if TYPE_CHECKING:  # imported when run: `affectline --help` stays fast
    from affectline.storage.api_key_store import ApiKeyStore

USAGE_HINT = """\
created API key {key_id} ({name}; scopes {scopes}; expires {expires}). The key is printed once,
above, and stored only hashed: keep it in a secret store. Send it with every call that needs it:
  native gRPC:          metadata  authorization: Bearer <key>
  gRPC-web / Connect:   header    Authorization: Bearer <key>
  JSON-RPC:             header    Authorization: Bearer <key>
  e.g. curl -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \\
       -d '{{"videoId": "demo"}}' localhost:8080/affectline.v1.AnalyticsService/GetVideoTimeline"""


def add_parser(subparsers: Any) -> None:
    keys = subparsers.add_parser(
        "keys", help="create, list and revoke API keys (analytics and admin access)",
        description="API keys let analysts and partner systems call AnalyticsService (scope analytics:read) "
        "and the admin services (scope admin, which implies every scope). Viewers never need one.",
    )
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    create = sub.add_parser("create", help="make a key; prints it once on stdout (usage hints on stderr)",
                            description="Example: KEY=$(affectline keys create --name dashboard --scope analytics:read)")
    create.add_argument("--name", required=True, help="who or what uses the key (shown by `keys list`)")
    create.add_argument("--scope", action="append", required=True, choices=SCOPES, dest="scopes",
                        help="a scope the key grants; repeat for several")
    create.add_argument("--expires-in-days", type=float, help="the key stops working after this many days (default: never)")
    lst = sub.add_parser("list", help="every key: id, name, scopes, created, expires, revoked, last used (never secrets)")
    revoke = sub.add_parser("revoke", help="stop a key working (running servers notice within AFFECTLINE_API_KEY_CACHE_S)")
    revoke.add_argument("key_id", metavar="ID", help="the key's id, as `keys list` shows it")
    for p in (create, lst, revoke):
        add_db_flags(p)


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at is not None else "-"


def _create(store: ApiKeyStore, args: argparse.Namespace) -> int:
    from affectline.auth.issuing import issue_key

    if args.expires_in_days is not None and args.expires_in_days <= 0:
        raise ValueError("--expires-in-days must be > 0")
    expires = datetime.now(UTC) + timedelta(days=args.expires_in_days) if args.expires_in_days else None
    credential = issue_key(store, args.name, args.scopes, expires_at=expires)
    print(credential.token, flush=True)  # stdout holds only the key, for KEY=$(affectline keys create ...)
    record = store.get(credential.key_id)
    print(USAGE_HINT.format(key_id=record.key_id, name=record.name, scopes=",".join(record.scopes),
                            expires=_when(record.expires_at) if record.expires_at else "never"), file=sys.stderr)
    return 0


def _list(store: ApiKeyStore, args: argparse.Namespace) -> int:
    print("id\tname\tscopes\tcreated\texpires\trevoked\tlast used")
    for k in store.list():
        print(f"{k.key_id}\t{k.name}\t{','.join(k.scopes)}\t{_when(k.created_at)}\t{_when(k.expires_at)}\t"
              f"{_when(k.revoked_at)}\t{_when(k.last_used_at)}")
    return 0


def _revoke(store: ApiKeyStore, args: argparse.Namespace) -> int:
    # Accept a pasted key too, but use only its id: the secret is not needed to revoke.
    key_id = args.key_id.removeprefix("afk_").partition("_")[0]
    record = store.revoke(key_id, datetime.now(UTC))
    if record is None:
        raise LookupError(f"no API key with id {key_id!r} (see `affectline keys list`)")
    print(f"revoked {record.key_id} ({record.name}) at {_when(record.revoked_at)}; running servers refuse it "
          "within AFFECTLINE_API_KEY_CACHE_S (default 30 s)")
    return 0


_COMMANDS = {"create": _create, "list": _list, "revoke": _revoke}


def run(args: argparse.Namespace) -> int:
    from affectline.config import settings_from_env
    from affectline.storage.api_key_store import ApiKeyStore
    from affectline.storage.database import make_engine, upgrade

    settings = settings_from_env().with_overrides(database_url=args.database_url, data_dir=args.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)  # like `videos`: works on a data dir no server has opened yet
        return _COMMANDS[args.keys_command](ApiKeyStore(engine), args)
    finally:
        engine.dispose()
