package localdb_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// Pages set aside go in whole, one entry each, and come out in order with
// every field a pulled row has (an eviction, a notice of the server's);
// Inspect counts their rows. A column this app version does not have
// (stars) is passed over. An entry of one row, as an earlier version
// of tether set pages aside, is still applied.
func TestStashPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := open(t, path)
	s := db.Syncer()
	at := "2026-01-01T00:00:00Z"
	note := func(id string, version int64) wire.Row {
		return wire.Row{Table: "notes", ID: id, Version: version, HLC: fmt.Sprintf("1700000000000.%06d.srv", version), ModifiedBy: "ada",
			Values: map[string]any{"title": id, "at": at, "body": "0", "stars": int64(7)}}
	}
	if _, err := s.ApplyChanges(ctx, []wire.Row{note("gone", 1), note("old", 1)}, "c1"); err != nil {
		t.Fatal(err)
	}
	first := []wire.Row{note("n1", 2), note("old", 2), {Table: "notes", ID: "gone", Version: 2, Evict: true}}
	first[0].Values["body"] = "4"
	first[1].Values["body"] = "5"
	if err := s.StashChanges(ctx, wire.Changes{Changes: first, Cursor: "c2a"}); err != nil {
		t.Fatal(err)
	}
	told := note("n2", 2)
	told.Notify, told.Reason = db.DeviceID(), "brought back: a row references it"
	second := []wire.Row{told, note("n1", 3)}
	second[0].Values["body"], second[1].Values["body"] = "1", "4"
	second[1].Values["title"] = "n1 again" // a later version, in the same transaction
	// The second page as the client reads it off the wire: set aside as
	// the server wrote it.
	body, err := wire.AppendChanges(nil, &wire.Changes{Changes: second, Cursor: "c2b", More: true, Partial: true})
	if err != nil {
		t.Fatal(err)
	}
	secondPage, err := wire.ReadChanges(bytes.NewReader(body))
	if err != nil || secondPage.Raw == nil {
		t.Fatalf("ReadChanges: Raw %q, %v; want the rows' text", secondPage.Raw, err)
	}
	if err := s.StashChanges(ctx, secondPage); err != nil {
		t.Fatal(err)
	}
	// An entry as tether wrote them before: one row, by encoding/json.
	raw, err := sqlitedriver.Open(path, sqlitedriver.Config{BusyTimeout: 5e9})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `INSERT INTO _tether_stash (row) VALUES (?)`,
		`{"table":"notes","id":"n3","version":2,"hlc":"1700000000000.000002.srv","values":{"title":"n3","at":"`+at+`","body":"3","stars":3}}`); err != nil {
		t.Fatal(err)
	}
	var entries int
	if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM _tether_stash`).Scan(&entries); err != nil || entries != 3 {
		t.Errorf("stash: %d entries, %v; want 3, a page each and the old one", entries, err)
	}
	// An older tether, which reads an entry as one row, fails on a page
	// rather than pass over its rows.
	var entry string
	if err := raw.QueryRowContext(ctx, `SELECT row FROM _tether_stash ORDER BY seq LIMIT 1`).Scan(&entry); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(entry), &wire.Row{}); err == nil {
		t.Errorf("a page set aside reads as one row: %.60s", entry)
	}
	if err := raw.QueryRowContext(ctx, `SELECT row FROM _tether_stash ORDER BY seq LIMIT 1 OFFSET 1`).Scan(&entry); err != nil {
		t.Fatal(err)
	}
	if entry != string(secondPage.Raw) {
		t.Errorf("the second page was written again:\n%s\nnot as it came:\n%s", entry, secondPage.Raw)
	}
	raw.Close()
	info, err := localdb.Inspect(ctx, path, localdb.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Stashed != 6 {
		t.Errorf("Inspect: Stashed=%d, want 6 rows", info.Stashed)
	}
	if n, err := s.ApplyChanges(ctx, nil, "c2"); err != nil || n != 5 {
		t.Fatalf("ApplyChanges=%d, %v; want 5 rows written", n, err)
	}
	want := map[string]string{"n1": "n1 again/4", "n2": "n2/1", "n3": "n3/3", "old": "old/5"}
	for id, w := range want {
		var n Note
		if err := db.Get(ctx, &n, id); err != nil {
			t.Fatalf("Get(%s): %v", id, err)
		}
		if got := fmt.Sprintf("%s/%s", n.Title, *n.Body); got != w {
			t.Errorf("%s: %s, want %s", id, got, w)
		}
	}
	if err := db.Get(ctx, &Note{}, "gone"); err == nil {
		t.Error("the evicted row is still there")
	}
	cs, err := db.Conflicts(ctx)
	if err != nil || len(cs) != 1 || cs[0].RowID != "n2" || cs[0].Winning.Values["body"] != "1" || fmt.Sprint(cs[0].Winning.Values["stars"]) != "7" {
		t.Errorf("conflict log=%+v, %v; want n2 as the server sent it", cs, err)
	}
	var left int
	if err := db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM _tether_stash`).Scan(&left); err != nil || left != 0 {
		t.Errorf("stash after apply: %d entries, %v; want empty", left, err)
	}
}

// A session set aside over many pages is applied in order, whatever the
// pages hold; a page that cannot be read, late in the stash, fails the
// apply with an error naming it, and nothing of the session is applied:
// the stash is kept for a later try.
func TestStashManyPagesAndABadOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := open(t, path)
	s := db.Syncer()
	note := func(id string, version int64, title string) wire.Row {
		return wire.Row{Table: "notes", ID: id, Version: version, HLC: fmt.Sprintf("1700000000000.%06d.srv", version),
			Values: map[string]any{"title": title, "at": "2026-01-01T00:00:00Z"}}
	}
	// 40 pages of 50 rows: the same 100 ids written over and over, each
	// page a later version, the last write of each the one that stays.
	for p := range 40 {
		var rows []wire.Row
		for i := range 50 {
			id := fmt.Sprintf("n%03d", (p*50+i)%100)
			rows = append(rows, note(id, int64(p+2), fmt.Sprint("page ", p)))
		}
		if err := s.StashChanges(ctx, wire.Changes{Changes: rows, Cursor: fmt.Sprint("c", p)}); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := sqlitedriver.Open(path, sqlitedriver.Config{BusyTimeout: 5e9})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Page 30 goes bad: a time that is not one.
	var good string
	if err := raw.QueryRowContext(ctx, `SELECT row FROM _tether_stash ORDER BY seq LIMIT 1 OFFSET 30`).Scan(&good); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(good, `"2026-01-01T00:00:00Z"`, `"yesterday"`, 1)
	if _, err := raw.ExecContext(ctx, `UPDATE _tether_stash SET row = ? WHERE row = ?`, bad, good); err != nil {
		t.Fatal(err)
	}
	_, err = s.ApplyChanges(ctx, nil, "c40")
	if err == nil || !strings.Contains(err.Error(), "column at") {
		t.Fatalf("ApplyChanges with a bad page: %v, want an error naming the column", err)
	}
	var n, entries int
	if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM notes`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d notes applied (%v), want none", n, err)
	}
	if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM _tether_stash`).Scan(&entries); err != nil || entries != 40 {
		t.Errorf("%d entries left (%v), want the 40", entries, err)
	}
	// Mended, it applies: every row as its last page wrote it.
	if _, err := raw.ExecContext(ctx, `UPDATE _tether_stash SET row = ? WHERE row = ?`, good, bad); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ApplyChanges(ctx, nil, "c40"); err != nil || n != 2000 {
		t.Fatalf("ApplyChanges=%d, %v; want the 2,000 rows written", n, err)
	}
	for _, id := range []string{"n000", "n049", "n050", "n099"} {
		var got Note
		if err := db.Get(ctx, &got, id); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: "page 38", false: "page 39"}[id < "n050"]; got.Title != want {
			t.Errorf("%s: %q, want %q", id, got.Title, want)
		}
	}
}
