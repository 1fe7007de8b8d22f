"""Syncs a device written in Python with a tether-server: it registers,
pulls, pushes new rows, edits and deletes, abandons a push session, checks
its digests against the server's, and prints the rows it holds as JSON.

    python3 demo.py --url http://127.0.0.1:8080 --token TOKEN --schema schema.json

The schema is the server's (tether-server -schema), with a table "notes"
(columns id, title, count, score, done, due, data, tags, note). With
--go-row ID, the row of that id (written by a Go device) must be pulled,
and is edited too.
"""

import argparse
import datetime
import json
import sys

from tether_client import Device, TetherError, blob, digest, format_time


def log(*args):
    print(*args, file=sys.stderr)


def check(cond, what):
    if not cond:
        raise SystemExit("demo: " + what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--go-row", default="")
    args = ap.parse_args()
    with open(args.schema) as f:
        schema = json.load(f)
    tables = {t["name"]: t for t in schema["tables"]}
    priorities = {t["name"]: t.get("priority", 0) for t in schema["tables"]}

    d = Device(args.url, args.token)
    log("register", d.register())
    d.pull()  # a brand-new device may get 410 first: pull rebuilds
    if args.go_row:
        check(("notes", args.go_row) in d.live(), "the Go device's row %s was not pulled" % args.go_row)

    due = datetime.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    for i in (1, 2, 3):
        d.save("notes", "n%d" % i, {
            "title": "note %d" % i, "count": 10 * i, "score": i + 0.5, "done": i == 3,
            "due": format_time(due), "data": blob(b"\x00\x01 bytes %d" % i),
            "tags": json.dumps({"n": i, "tags": ["a", "b"]}), "note": None if i == 2 else "é ✓",
        })
    log("push new rows", d.push(priorities))
    d.pull()

    d.save("notes", "n1", {"title": "note 1, edited", "count": 11})
    d.delete("notes", "n2")
    if args.go_row:
        d.save("notes", args.go_row, {"title": "edited in Python"})
    commit = d.push(priorities)
    log("push edits", commit)
    check(commit["applied"] == (3 if args.go_row else 2), "want every edit applied: %r" % commit)
    d.pull()

    # A session opened, staged and abandoned: its rows never apply.
    session = d.request("POST", "/v1/sessions", {})["session"]
    values = dict(d.live()[("notes", "n1")], title="never")  # a live row carries every column
    row = {"table": "notes", "id": "n9", "hlc": d.stamp(), "values": values}
    d.request("PUT", "/v1/sessions/%s/batches/0" % session, {"rows": [row]})
    d.abandon(session)
    d.abandon(session)  # idempotent
    try:
        d.request("POST", "/v1/sessions/%s/commit" % session, {})
        check(False, "an abandoned session committed")
    except TetherError as e:
        check(e.status == 404 and e.code == "not_found", "commit of an abandoned session: %s" % e)

    # A malformed stamp is refused with the format it wants.
    try:
        d.request("PUT", "/v1/sessions/%s/batches/0?open=1" % "bad-stamp-session",
                  {"rows": [dict(row, hlc="yesterday")]})
        check(False, "a malformed stamp was accepted")
    except TetherError as e:
        check(e.status == 400 and "13 digits" in e.message, "malformed stamp: %s" % e)
        log("a malformed stamp:", e.message)
    d.abandon("bad-stamp-session")

    # The device's digests are the server's.
    live = d.live()
    for td in d.digests():
        rows = {id: v for (t, id), v in live.items() if t == td["table"]}
        n, sha = digest(tables[td["table"]], rows)
        check((n, sha) == (td["rows"], td["sha256"]), "digest of %s: %d %s, the server's %r" % (td["table"], n, sha, td))
        log("digest of %s agrees: %d rows %s" % (td["table"], n, sha))

    json.dump({"%s/%s" % k: v for k, v in sorted(live.items())}, sys.stdout, sort_keys=True, indent=1)
    print()


if __name__ == "__main__":
    main()
