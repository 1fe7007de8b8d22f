package localdb_test

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/localdb"
)

var (
	key1 = bytes.Repeat([]byte{0x11}, localdb.KeySize)
	key2 = bytes.Repeat([]byte{0x22}, localdb.KeySize)
)

// secret is a value that must not appear in an encrypted file's bytes.
const secret = "needle-7f3a9c-known-plaintext"

func noteRegistry(t *testing.T) *entity.Registry {
	t.Helper()
	reg := entity.NewRegistry()
	if err := reg.Register(Note{}); err != nil {
		t.Fatal(err)
	}
	return reg
}

func openKey(t *testing.T, path string, key []byte) (*localdb.DB, error) {
	t.Helper()
	return localdb.OpenWith(ctx, path, noteRegistry(t), localdb.Options{Key: key})
}

// fileHas reports whether the file at path holds s.
func fileHas(t *testing.T, path, s string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(s))
}

// saveSecrets saves n notes titled secret, the first rows dirty (pending).
func saveSecrets(t *testing.T, db *localdb.DB, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		note := Note{Title: secret}
		if err := db.Save(ctx, &note); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, note.ID)
	}
	return ids
}

// checkNotes checks that db holds the notes ids, titled secret and
// dirty, and wantPending pending rows.
func checkNotes(t *testing.T, db *localdb.DB, ids []string, wantPending int) {
	t.Helper()
	for _, id := range ids {
		var n Note
		if err := db.Get(ctx, &n, id); err != nil {
			t.Fatalf("Get(%s): %v", id, err)
		}
		if n.Title != secret || !n.Dirty {
			t.Errorf("Get(%s)=%+v, want title %q, dirty", id, n, secret)
		}
	}
	if got := pending(t, db); got != wantPending {
		t.Errorf("Pending=%d, want %d", got, wantPending)
	}
}

// snapshot returns the names and bytes of the files in dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// TestEncryptionRefusedWithCgo: the cgo driver cannot encrypt, and says
// how to get a build that can.
func TestEncryptionRefusedWithCgo(t *testing.T) {
	if sqlitedriver.Encryption {
		t.Skip("the pure-Go driver encrypts: see the other TestEncrypt tests")
	}
	path := filepath.Join(t.TempDir(), "app.db")
	_, err := openKey(t, path, key1)
	if !errors.Is(err, localdb.ErrNoEncryption) {
		t.Fatalf("OpenWith(Key) = %v, want ErrNoEncryption", err)
	}
	for _, want := range []string{"pure-Go", "CGO_ENABLED=0", "tether_purego"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused open made the file: %v", err)
	}
	if err := localdb.Encrypt(ctx, path, key1); !errors.Is(err, localdb.ErrNoEncryption) {
		t.Errorf("Encrypt = %v, want ErrNoEncryption", err)
	}
	if err := localdb.Rekey(ctx, path, key1, key2); !errors.Is(err, localdb.ErrNoEncryption) {
		t.Errorf("Rekey = %v, want ErrNoEncryption", err)
	}
}

func needEncryption(t *testing.T) {
	t.Helper()
	if !sqlitedriver.Encryption {
		t.Skip("the cgo driver cannot encrypt (TestEncryptionRefusedWithCgo); CI runs this with CGO_ENABLED=0")
	}
}

// TestEncryptedFileHidesValues: a value written through a keyed DB is in
// neither the main file nor the WAL, and reads back.
func TestEncryptedFileHidesValues(t *testing.T) {
	needEncryption(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	db, err := openKey(t, path, key1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ids := saveSecrets(t, db, 20)
	// The rows are in the WAL now (the DB is open, nothing checkpointed).
	if st, err := os.Stat(path + "-wal"); err != nil || st.Size() == 0 {
		t.Fatalf("WAL: %v, size %v; want a WAL holding the writes", err, st)
	}
	for _, p := range []string{path, path + "-wal"} {
		if fileHas(t, p, secret) {
			t.Errorf("%s holds %q in plain text", filepath.Base(p), secret)
		}
	}
	checkNotes(t, db, ids, len(ids))
	if _, err := db.SQL().ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	if fileHas(t, path, secret) {
		t.Errorf("main file holds %q in plain text after a checkpoint", secret)
	}
	db.Close()

	// The same writes without a key are in the file: the check above sees
	// plain text when there is some.
	plain := filepath.Join(dir, "plain.db")
	pdb := open(t, plain)
	saveSecrets(t, pdb, 1)
	if !fileHas(t, plain+"-wal", secret) {
		t.Fatalf("plain WAL does not hold %q: the check cannot see plain text", secret)
	}
}

// TestEncryptedWrongKey: a wrong key, or none, is refused by name and
// changes no byte of any file.
func TestEncryptedWrongKey(t *testing.T) {
	needEncryption(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	db, err := openKey(t, path, key1)
	if err != nil {
		t.Fatal(err)
	}
	ids := saveSecrets(t, db, 3)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	for name, key := range map[string][]byte{"wrong key": key2, "no key": nil} {
		_, err := openKey(t, path, key)
		if !errors.Is(err, localdb.ErrWrongKey) {
			t.Errorf("%s: OpenWith = %v, want ErrWrongKey", name, err)
		}
		if err := localdb.Rekey(ctx, path, key2, key1); !errors.Is(err, localdb.ErrWrongKey) {
			t.Errorf("%s: Rekey with the wrong old key = %v, want ErrWrongKey", name, err)
		}
		if after := snapshot(t, dir); !sameFiles(before, after) {
			t.Errorf("%s: files changed: %v, were %v", name, slices.Sorted(maps.Keys(after)), slices.Sorted(maps.Keys(before)))
		}
	}
	db, err = openKey(t, path, key1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkNotes(t, db, ids, len(ids))
}

// TestRekeyKeepsRows: after Rekey every row and pending change is there
// under the new key, and the old key no longer opens the file.
func TestRekeyKeepsRows(t *testing.T) {
	needEncryption(t)
	path := filepath.Join(t.TempDir(), "app.db")
	db, err := openKey(t, path, key1)
	if err != nil {
		t.Fatal(err)
	}
	ids := saveSecrets(t, db, 50)
	db.Close()
	if err := localdb.Rekey(ctx, path, key1, key2); err != nil {
		t.Fatal(err)
	}
	if _, err := openKey(t, path, key1); !errors.Is(err, localdb.ErrWrongKey) {
		t.Fatalf("old key after Rekey: %v, want ErrWrongKey", err)
	}
	db, err = openKey(t, path, key2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkNotes(t, db, ids, len(ids))
	if fileHas(t, path, secret) {
		t.Errorf("rekeyed file holds %q in plain text", secret)
	}
}

// TestEncryptPlainInPlace: a plain database with pending changes (some in
// its WAL) becomes encrypted with every row and change kept; a key on the
// plain file is refused until then.
func TestEncryptPlainInPlace(t *testing.T) {
	needEncryption(t)
	path := filepath.Join(t.TempDir(), "app.db")
	db, err := localdb.Open(ctx, path, noteRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	ids := saveSecrets(t, db, 30)
	var del Note
	if err := db.Get(ctx, &del, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(ctx, &del); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if !fileHas(t, path, secret) {
		t.Fatalf("plain file does not hold %q", secret)
	}
	if _, err := openKey(t, path, key1); !errors.Is(err, localdb.ErrNotEncrypted) {
		t.Fatalf("OpenWith(Key) on a plain file = %v, want ErrNotEncrypted", err)
	}
	if err := localdb.Encrypt(ctx, path, key1); err != nil {
		t.Fatal(err)
	}
	if fileHas(t, path, secret) {
		t.Errorf("encrypted file holds %q in plain text", secret)
	}
	if err := localdb.Encrypt(ctx, path, key1); !errors.Is(err, localdb.ErrAlreadyEncrypted) {
		t.Errorf("Encrypt twice = %v, want ErrAlreadyEncrypted", err)
	}
	db, err = openKey(t, path, key1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got Note
	if err := db.Get(ctx, &got, ids[0]); !errors.Is(err, localdb.ErrNotFound) {
		t.Errorf("deleted note: Get = %v, want ErrNotFound", err)
	}
	checkNotes(t, db, ids[1:], len(ids)) // the deletion is pending too
}
