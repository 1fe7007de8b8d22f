package localdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tethersync/tether/internal/sqlitedriver"
)

// KeySize is the length in bytes of an encryption key (Options.Key).
const KeySize = sqlitedriver.KeySize

// Encryption errors.
var (
	// ErrNoEncryption is returned by OpenWith with Options.Key, Encrypt
	// and Rekey in a binary built with the cgo SQLite driver, which cannot
	// encrypt: build with CGO_ENABLED=0 (or -tags tether_purego).
	ErrNoEncryption = errors.New("localdb: " + sqlitedriver.ErrNoEncryption.Error())
	// ErrWrongKey is returned by OpenWith and Rekey when the database
	// cannot be read with the key given: a wrong key, no key for an
	// encrypted database, or a file that is not a database at all.
	ErrWrongKey = errors.New("localdb: wrong encryption key, no key for an encrypted database, or not a database")
	// ErrNotEncrypted is returned by OpenWith with Options.Key and by
	// Rekey for a database that is not encrypted: Encrypt encrypts it in
	// place.
	ErrNotEncrypted = errors.New("localdb: database is not encrypted (localdb.Encrypt encrypts it in place)")
	// ErrAlreadyEncrypted is returned by Encrypt for a file that is not a
	// plain SQLite database (already encrypted, or not a database): Rekey
	// changes the key of an encrypted one.
	ErrAlreadyEncrypted = errors.New("localdb: database is already encrypted or not a database (localdb.Rekey changes the key)")
)

// sqliteHeader starts every plain SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// isPlain reports whether the file at path is a plain SQLite database;
// false for a missing or empty file.
func isPlain(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, len(sqliteHeader))
	if _, err := io.ReadFull(f, head); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		return false, err
	}
	return bytes.Equal(head, sqliteHeader), nil
}

// checkKey returns the error of opening path with key (nil: no key) before
// anything touches the file.
func checkKey(path string, key []byte) error {
	if key == nil {
		return nil
	}
	if !sqlitedriver.Encryption {
		return ErrNoEncryption
	}
	if len(key) != KeySize {
		return fmt.Errorf("localdb: encryption key of %d bytes, want %d", len(key), KeySize)
	}
	plain, err := isPlain(path)
	if err != nil {
		return err
	}
	if plain {
		return ErrNotEncrypted
	}
	return nil
}

// Encrypt encrypts the plain database at path in place with key (KeySize
// bytes), keeping every row, pending change and sync state: it writes an
// encrypted copy beside the file and renames it over the file, so a crash
// leaves either the plain or the encrypted database. The database must be
// closed (no DB open on it, in this process or another). Open it from then
// on with Options.Key.
//
// Encrypt returns ErrNoEncryption in a cgo build and ErrAlreadyEncrypted
// when the file is not a plain SQLite database.
func Encrypt(ctx context.Context, path string, key []byte) error {
	if err := checkKey("", key); err != nil {
		return fmt.Errorf("localdb: encrypt %s: %w", path, err)
	}
	plain, err := isPlain(path)
	if err != nil {
		return fmt.Errorf("localdb: encrypt %s: %w", path, err)
	}
	if !plain {
		return fmt.Errorf("localdb: encrypt %s: %w", path, ErrAlreadyEncrypted)
	}
	if err := rewrite(ctx, path, nil, key); err != nil {
		return fmt.Errorf("localdb: encrypt %s: %w", path, err)
	}
	return nil
}

// Rekey changes the key of the encrypted database at path from oldKey to
// newKey in place, keeping every row, as Encrypt does; a nil newKey
// decrypts it. The database must be closed.
//
// Rekey returns ErrNoEncryption in a cgo build, ErrNotEncrypted for a
// plain database and ErrWrongKey when oldKey does not open it; the file is
// then unchanged.
func Rekey(ctx context.Context, path string, oldKey, newKey []byte) error {
	if oldKey == nil {
		return fmt.Errorf("localdb: rekey %s: no old key (localdb.Encrypt encrypts a plain database)", path)
	}
	if err := checkKey(path, oldKey); err != nil {
		return fmt.Errorf("localdb: rekey %s: %w", path, err)
	}
	if err := checkKey("", newKey); err != nil {
		return fmt.Errorf("localdb: rekey %s: new key: %w", path, err)
	}
	if err := rewrite(ctx, path, oldKey, newKey); err != nil {
		return fmt.Errorf("localdb: rekey %s: %w", path, err)
	}
	return nil
}

// rewrite copies the database at path, read with key from (nil: plain),
// into a new file written with key to (nil: plain) by VACUUM INTO, and
// renames the copy over path.
func rewrite(ctx context.Context, path string, from, to []byte) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	tmp := path + ".rekey"
	for _, p := range []string{tmp, tmp + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	src, err := sqlitedriver.Open(path, sqlitedriver.Config{Key: from})
	if err != nil {
		return err
	}
	defer src.Close()
	src.SetMaxOpenConns(1)
	// Every change in the WAL goes into the main file first, so that no
	// plain WAL is left beside an encrypted database.
	if _, err := src.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		if sqlitedriver.IsNotADatabase(err) {
			return ErrWrongKey
		}
		return err
	}
	dst, err := sqlitedriver.DSN(tmp, sqlitedriver.Config{Key: to})
	if err != nil {
		return err
	}
	if _, err := src.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("copy: %w", err)
	}
	if err := src.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			os.Remove(tmp)
			return err
		}
	}
	return os.Rename(tmp, path)
}
