package oidcrp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/oidcrp/oidcrp/internal/keyedmutex"
)

// staleTempAge is the age past which a temporary file beside the store file
// is taken for the remains of a writer that crashed before renaming it. A
// live writer holds its temporary file for milliseconds.
const staleTempAge = 10 * time.Minute

// fileStoreVersion is the version of the document a FileStore writes and
// the only one it reads.
const fileStoreVersion = 1

// fileStoreDoc is the JSON document a FileStore keeps at its path, for
// example {"version":1,"entries":{"https://op.example":"eyJjbGllbnRfaWQiOi..."}}.
// Values are encoded in standard base64, as encoding/json does for []byte.
type fileStoreDoc struct {
	Version int               `json:"version"`
	Entries map[string][]byte `json:"entries"`
}

// processLocks serializes FileStore locks within this process, keyed by the
// absolute path of the lock file. Waiters queue here instead of polling the
// OS lock, and on systems without flock it is the only lock there is.
var processLocks keyedmutex.Mutex

// FileStore is a CredentialStore and Locker that keeps every key in one JSON
// file, so that a program can reuse its registered clients across restarts
// and several processes on one machine can share them.
//
// The file holds a document such as
//
//	{"version":1,"entries":{"<key>":"<base64 value>"}}
//
// and is created with mode 0600 on the first Save, in a directory created
// with mode 0700 if it is missing. Save and Delete read, modify and rewrite
// the whole file while holding an exclusive lock on the sibling file
// path+".lock"; they write a temporary file in the same directory, sync it
// and rename it over path, so readers never see a partially written file and
// need no lock. A writer that crashes between the two steps leaves its
// temporary file (path+".tmp-" and digits) behind: such files older than ten
// minutes are removed by every Save and Delete and by the first Load of a
// FileStore. If path is a symbolic link, the link itself is replaced by
// the new file. A missing file stores nothing. A file that cannot be decoded
// makes Load, Save and Delete return an error wrapping ErrCorruptStore and
// naming the path; Save and Delete then leave the file untouched.
//
// Lock creates one lock file per key, named path+".lock-" followed by 16 hex
// digits of the SHA-256 of the key, and keeps it afterwards: removing a lock
// file that another process may have opened would break mutual exclusion.
//
// On Unix systems the locks are flock(2) advisory locks, which exclude other
// goroutines, other FileStore values and other processes using the same
// path, provided the file system supports flock (network file systems may
// not). On other systems the locks exclude only callers within the current
// process, so processes sharing a file there may lose concurrent updates.
//
// Use NewFileStore to create a FileStore; it is safe for concurrent use.
type FileStore struct {
	path  string
	swept atomic.Bool // stale temporary files were looked for
}

// NewFileStore returns a FileStore keeping its values in the file at path.
// It does no I/O: the file and its directory are created on the first Save.
func NewFileStore(path string) *FileStore {
	return &FileStore{path: path}
}

// Load returns the value stored under key, or ErrNotFound if the key or the
// whole file is absent.
func (s *FileStore) Load(ctx context.Context, key string) ([]byte, error) {
	if err := s.check(ctx, key); err != nil {
		return nil, err
	}
	if !s.swept.Load() && s.swept.CompareAndSwap(false, true) {
		s.removeStaleTemp()
	}
	entries, err := s.read()
	if err != nil {
		return nil, err
	}
	value, ok := entries[key]
	if !ok {
		return nil, ErrNotFound
	}
	if value == nil {
		value = []byte{}
	}
	return value, nil
}

// Save stores value under key, replacing any previous value.
func (s *FileStore) Save(ctx context.Context, key string, value []byte) error {
	if err := s.check(ctx, key); err != nil {
		return err
	}
	if err := checkValueSize(value); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return s.wrap(err)
	}
	return s.update(ctx, func(entries map[string][]byte) bool {
		entries[key] = value
		return true
	})
}

// Delete removes the value stored under key, if any. It creates nothing when
// the file does not exist.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx, key); err != nil {
		return err
	}
	if _, err := os.Lstat(s.path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return s.update(ctx, func(entries map[string][]byte) bool {
		if _, ok := entries[key]; !ok {
			return false
		}
		delete(entries, key)
		return true
	})
}

// Lock takes the exclusive lock named key, waiting until it is free or ctx
// is done. It creates the store's directory if needed, but not the store
// file, and never conflicts with the lock Save and Delete take internally.
func (s *FileStore) Lock(ctx context.Context, key string) (unlock func(), err error) {
	if err := s.check(ctx, ""); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, s.wrap(err)
	}
	sum := sha256.Sum256([]byte(key))
	unlock, err = lockFile(ctx, s.path+".lock-"+hex.EncodeToString(sum[:8]))
	if err != nil {
		return nil, s.wrap(fmt.Errorf("lock %q: %w", key, err))
	}
	return unlock, nil
}

// check reports whether the store is usable for key under ctx.
func (s *FileStore) check(ctx context.Context, key string) error {
	if s.path == "" {
		return errors.New("oidcrp: file store: empty path")
	}
	if err := ctx.Err(); err != nil {
		return s.wrap(err)
	}
	if !utf8.ValidString(key) {
		return s.wrap(errors.New("key is not valid UTF-8"))
	}
	return nil
}

// wrap prefixes err with the package and the store's path.
func (s *FileStore) wrap(err error) error {
	return fmt.Errorf("oidcrp: file store %s: %w", s.path, err)
}

// read decodes the store file. A missing file yields an empty map.
func (s *FileStore) read() (map[string][]byte, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return make(map[string][]byte), nil
	}
	if err != nil {
		return nil, s.wrap(err)
	}
	var doc fileStoreDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, &corruptError{path: s.path, err: err}
	}
	if doc.Version != fileStoreVersion {
		return nil, &corruptError{path: s.path, err: fmt.Errorf("unsupported version %d", doc.Version)}
	}
	if doc.Entries == nil {
		doc.Entries = make(map[string][]byte)
	}
	return doc.Entries, nil
}

// update applies change to the stored entries under the store's write lock
// and rewrites the file if change reports that it modified them.
func (s *FileStore) update(ctx context.Context, change func(entries map[string][]byte) bool) error {
	unlock, err := lockFile(ctx, s.path+".lock")
	if err != nil {
		return s.wrap(err)
	}
	defer unlock()
	s.swept.Store(true)
	s.removeStaleTemp()

	entries, err := s.read()
	if err != nil {
		return err
	}
	if !change(entries) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return s.wrap(err)
	}
	data, err := json.Marshal(fileStoreDoc{Version: fileStoreVersion, Entries: entries})
	if err != nil {
		return s.wrap(err)
	}
	if err := s.replace(append(data, '\n')); err != nil {
		return s.wrap(err)
	}
	return nil
}

// replace atomically replaces the store file with one holding data: it
// writes and syncs a temporary file in the same directory, renames it over
// the store file and syncs the directory.
func (s *FileStore) replace(data []byte) error {
	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, base+".tmp-*")
	if err != nil {
		return err
	}
	if err := writeSynced(f, data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), s.path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return syncDir(dir)
}

// removeStaleTemp removes the temporary files of writers that crashed before
// renaming them: regular files named like those replace creates, older than
// staleTempAge. Failures are ignored; the next write tries again.
func (s *FileStore) removeStaleTemp() {
	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := base + ".tmp-"
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTempAge {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// writeSynced makes f a private file holding data, flushed to stable
// storage, and closes it.
func writeSynced(f *os.File, data []byte) error {
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// corruptError reports a store file that cannot be decoded. It matches both
// ErrCorruptStore and the decoding error.
type corruptError struct {
	path string
	err  error
}

func (e *corruptError) Error() string {
	return "oidcrp: file store " + e.path + ": corrupt: " + e.err.Error()
}

func (e *corruptError) Unwrap() []error {
	return []error{ErrCorruptStore, e.err}
}

// lockFile takes the exclusive lock represented by the file at name, first
// among the goroutines of this process and then, where the system supports
// it, among processes. It returns ctx.Err() if ctx is done first. The
// returned function releases the lock and is safe to call more than once.
func lockFile(ctx context.Context, name string) (unlock func(), err error) {
	id, err := filepath.Abs(name)
	if err != nil {
		id = name
	}
	unlockProcess, err := processLocks.Lock(ctx, id)
	if err != nil {
		return nil, err
	}
	unlockOS, err := flockFile(ctx, name)
	if err != nil {
		unlockProcess()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			unlockOS()
			unlockProcess()
		})
	}, nil
}
