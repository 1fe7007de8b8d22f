"""A small reference client of the tether sync API, standard library only.

It is a device: it registers, keeps its rows in memory, pushes its edits in
push sessions and pulls the rows others changed, as docs/protocol.md says.
It is a reference for the protocol, not a product: a real device keeps its
rows, cursor and pending edits in a database, so that they survive a
restart.
"""

import base64
import datetime
import hashlib
import json
import secrets
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


class TetherError(Exception):
    """An error answer of the server: its HTTP status, code and message."""

    def __init__(self, status, code, message):
        super().__init__("%d %s: %s" % (status, code, message))
        self.status, self.code, self.message = status, code, message


def format_time(t):
    """Returns a time column's value: RFC 3339, UTC, 9 fraction digits."""
    t = t.astimezone(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%06d000Z" % t.microsecond


def blob(data):
    """Returns a blob column's value: standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


class Device:
    """A device of one user: its id, key, clock, rows and pending edits."""

    def __init__(self, url, token, device=None, key=None, tenant=None):
        self.url = url.rstrip("/")
        self.token = token
        # 1 to 64 ASCII letters, digits and dashes.
        self.device = device or "py-" + uuid.uuid4().hex[:12]
        # 32 to 128 letters, digits, - and _: 32 random bytes, base64url.
        self.key = key or secrets.token_urlsafe(32)
        self.tenant = tenant
        self.cursor = ""
        self.rows = {}  # (table, id) -> row as pulled: values, version
        self.pending = {}  # (table, id) -> {"values", "deleted", "changed"}
        self.own = []  # ids of committed sessions not pulled past yet
        self._ms, self._counter = 0, 0

    # --- HTTP ---

    def request(self, method, path, body=None, device=True):
        """Sends one request and returns its decoded JSON answer; raises
        TetherError for an error answer."""
        headers = {"Authorization": "Bearer " + self.token}
        if device:
            headers["X-Tether-Device"] = self.device
            headers["X-Tether-Device-Key"] = self.key
        if self.tenant:
            headers["X-Tether-Tenant"] = self.tenant
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read())["error"]
            except (ValueError, KeyError):
                err = {"code": "", "message": e.reason}
            raise TetherError(e.code, err["code"], err["message"]) from None

    # --- the clock ---

    def stamp(self):
        """Returns a new clock stamp of this device, later than every stamp
        it made or saw: 13 digits of milliseconds, 6 of counter, device."""
        ms = int(time.time() * 1000)
        if ms > self._ms:
            self._ms, self._counter = ms, 0
        else:
            self._counter += 1
            if self._counter > 999999:
                self._ms, self._counter = self._ms + 1, 0
        return "%013d.%06d.%s" % (self._ms, self._counter, self.device)

    def _see(self, hlc):
        """Moves the clock past a stamp pulled from the server."""
        ms, counter = int(hlc[:13]), int(hlc[14:20])
        if (ms, counter) > (self._ms, self._counter):
            self._ms, self._counter = ms, counter

    # --- the API ---

    def register(self, schema=None):
        """Registers the device (idempotent with the same key)."""
        body = {"device": self.device}
        if schema is not None:
            body["schema"] = schema
        out = self.request("POST", "/v1/devices", body)
        self.tenant = out.get("tenant") or self.tenant
        return out

    def abandon(self, session):
        """Drops an open push session and what it staged (idempotent)."""
        return self.request("DELETE", "/v1/sessions/" + urllib.parse.quote(session))

    def digests(self, columns=None):
        """The server's digest of each table's live rows."""
        if columns is None:
            return self.request("GET", "/v1/digest", device=False)["tables"]
        return self.request("POST", "/v1/digest", {"columns": columns}, device=False)["tables"]

    # --- local edits ---

    def save(self, table, id, values):
        """Records an insert or an edit of the columns in values."""
        p = self.pending.setdefault((table, id), {"values": {}, "changed": set()})
        p["deleted"] = False
        p["values"].update(values)
        p["changed"].update(values)

    def delete(self, table, id):
        """Records a delete."""
        p = self.pending.setdefault((table, id), {"values": {}, "changed": set()})
        p["deleted"] = True

    def live(self):
        """The rows the device holds, with its pending edits: (table, id)
        -> values."""
        out = {k: dict(r["values"]) for k, r in self.rows.items()}
        for k, p in self.pending.items():
            if p["deleted"]:
                out.pop(k, None)
            else:
                out.setdefault(k, {}).update(p["values"])
        return out

    # --- push ---

    def push(self, priorities):
        """Pushes every pending edit in one session: one batch per table
        (rows of one table per batch), tables in priority order, the last
        batch committing the session. Returns the commit's answer, or None
        when nothing is pending."""
        if not self.pending:
            return None
        session = str(uuid.uuid4())
        by_table = {}
        for (table, id), p in self.pending.items():
            r = self.rows.get((table, id))
            row = {"table": table, "id": id, "hlc": self.stamp()}
            if r:
                row["base"] = r["version"]
                row["changed"] = sorted(p["changed"])  # the columns edited
                values = dict(r["values"])
                values.update(p["values"])
            else:
                values = dict(p["values"])  # a new row: every column
            if p["deleted"]:
                row["deleted"] = True
            row["values"] = values
            by_table.setdefault(table, []).append(row)
        tables = sorted(by_table, key=lambda t: (priorities[t], t))
        commit = None
        for seq, table in enumerate(tables):
            params = {"attempt": "1"}
            if seq == 0:
                params["open"] = "1"
            if seq == len(tables) - 1:
                params["commit"] = "1"
            path = "/v1/sessions/%s/batches/%d?%s" % (session, seq, urllib.parse.urlencode(params))
            ack = self.request("PUT", path, {"rows": by_table[table]})
            commit = ack.get("commit")
        self._committed(commit, by_table)
        self.own.append(session)
        del self.own[:-64]  # own= names at most 64 sessions
        return commit

    def _committed(self, commit, by_table):
        """Takes a commit's answer: pushed rows are now the server's at its
        version, but for the conflicts and counted rows, taken as given."""
        pushed = {(r["table"], r["id"]): r for rows in by_table.values() for r in rows}
        self.pending.clear()
        for key, r in pushed.items():
            if r.get("deleted"):
                self.rows.pop(key, None)
            else:
                self.rows[key] = {"values": r["values"], "version": commit["version"]}
        for c in commit.get("conflicts") or []:
            self._take(c["row"])
        for r in commit.get("counted") or []:
            self._take(r)

    # --- pull ---

    def _take(self, row):
        """Applies a pulled row."""
        key = (row["table"], row["id"])
        if row.get("hlc"):
            self._see(row["hlc"])
        if row.get("deleted") or row.get("evict"):
            self.rows.pop(key, None)
        else:
            self.rows[key] = {"values": row["values"], "version": row["version"]}

    def pull(self, limit=1000):
        """Pulls every page of changes after the cursor; a 410 rebuilds from
        a snapshot first. Pages marked partial are applied together with
        the page that completes them."""
        held = []
        while True:
            q = {"cursor": self.cursor, "limit": str(limit)}
            if self.own:
                q["own"] = ",".join(self.own)
            try:
                page = self.request("GET", "/v1/changes?" + urllib.parse.urlencode(q))
            except TetherError as e:
                if e.status != 410:
                    raise
                self.rebuild()
                continue
            held.extend(page["changes"])
            self.cursor = page["cursor"]
            if not page.get("partial"):
                for row in held:
                    self._take(row)
                held = []
            if not page["more"]:
                self.own = []  # pulled past every session pushed
                return

    def rebuild(self, limit=1000):
        """Replaces the rows with a snapshot of the server's, then sets the
        cursor to the snapshot's resume point."""
        rows, cursor = {}, ""
        while True:
            q = {"cursor": cursor, "limit": str(limit)}
            page = self.request("GET", "/v1/snapshot?" + urllib.parse.urlencode(q))
            for row in page["rows"]:
                rows[(row["table"], row["id"])] = {"values": row["values"], "version": row["version"]}
            cursor = page["cursor"]
            if not page["more"]:
                self.rows, self.cursor, self.own = rows, page["resume"], []
                return


# --- digests, as entity.Digest computes them ---

def _uvarint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(s):
    b = s.encode("utf-8")
    return _uvarint(len(b)) + b


def _value(kind, v):
    if v is None:
        return b"n"
    if kind in ("text", "time", "json"):
        return b"s" + _string(v)
    if kind == "integer":
        return b"i" + struct.pack(">q", v)
    if kind == "real":
        return b"f" + struct.pack(">d", float(v))
    if kind == "bool":
        return b"t" if v else b"F"
    if kind == "blob":
        data = base64.b64decode(v)
        return b"b" + _uvarint(len(data)) + data
    raise ValueError("unknown kind %r" % kind)


def digest(table, rows):
    """The digest of a table's live rows, as GET /v1/digest answers it:
    table is the schema's table ({"name", "columns": [...]}, id first),
    rows maps id -> values. Returns (rows, sha256 hex)."""
    inner = hashlib.sha256()
    for id in sorted(rows, key=lambda s: s.encode("utf-8")):  # byte order
        b = _string(id) + b"L"
        for c in table["columns"][1:]:
            b += _value(c["kind"], rows[id].get(c["name"]))
        inner.update(b)
    outer = hashlib.sha256(struct.pack(">Q", len(rows)) + inner.digest())
    return len(rows), outer.hexdigest()
