//go:build unix

package oidcrp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// wantFileMode checks the permission bits of the file at path.
func wantFileMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %v, want %v", path, got, want)
	}
}

// TestFileStoreModes is not parallel: the umask is process-wide.
func TestFileStoreModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	base := t.TempDir()
	dir := filepath.Join(base, "a", "b")
	path := filepath.Join(dir, "creds.json")
	s := NewFileStore(path)
	if err := s.Save(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Save: %v", err)
	}
	unlock, err := s.Lock(t.Context(), "k")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	unlock()

	wantFileMode(t, filepath.Join(base, "a"), 0o700)
	wantFileMode(t, dir, 0o700)
	wantFileMode(t, path, 0o600)
	wantFileMode(t, path+".lock", 0o600)
	locks, err := filepath.Glob(path + ".lock-*")
	if err != nil || len(locks) != 1 {
		t.Fatalf("key lock files = %v, %v; want one", locks, err)
	}
	wantFileMode(t, locks[0], 0o600)

	// A file with looser permissions is tightened by the next write.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(t.Context(), "k", []byte("w")); err != nil {
		t.Fatalf("Save: %v", err)
	}
	wantFileMode(t, path, 0o600)
}

func TestFileStoreKeyLockName(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "creds.json")
	unlock, err := NewFileStore(path).Lock(t.Context(), "https://op.example")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer unlock()
	// The first 16 hex digits of sha256("https://op.example").
	if _, err := os.Stat(path + ".lock-" + "d18dc5af9847bddd"); err != nil {
		t.Fatalf("lock file: %v", err)
	}
}

func TestFileStoreUnreadable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "creds.json")
	s := NewFileStore(path)
	if err := s.Save(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	if f, err := os.Open(path); err == nil {
		f.Close()
		t.Skip("a file with mode 000 is readable, as it is for root")
	}
	_, err := s.Load(t.Context(), "k")
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorruptStore) {
		t.Fatalf("Load = %v, want a permission error", err)
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("Load = %v, want an error matching os.ErrPermission", err)
	}
}

func TestFileStoreReadOnlyDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "creds.json")
	s := NewFileStore(path)
	if err := s.Save(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if f, err := os.CreateTemp(dir, "probe-*"); err == nil {
		f.Close()
		os.Remove(f.Name())
		t.Skip("a read-only directory is writable, as it is for root")
	}
	if err := s.Save(t.Context(), "k", []byte("w")); err == nil {
		t.Fatalf("Save into a read-only directory succeeded")
	}
	if got, err := s.Load(t.Context(), "k"); err != nil || string(got) != "v" {
		t.Fatalf("Load after a failed Save = %q, %v; want the previous value", got, err)
	}
}

// TestFlockExcludesWithinProcess checks the OS lock alone, without the
// in-process lock in front of it: two open file descriptions of one lock
// file exclude each other even in the same process.
func TestFlockExcludesWithinProcess(t *testing.T) {
	t.Parallel()
	name := filepath.Join(t.TempDir(), "lock")
	unlock, err := flockFile(t.Context(), name)
	if err != nil {
		t.Fatalf("flockFile: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if unlock2, err := flockFile(ctx, name); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			unlock2()
		}
		t.Fatalf("second flockFile = %v, want context.DeadlineExceeded", err)
	}
	unlock()
	unlock, err = flockFile(t.Context(), name)
	if err != nil {
		t.Fatalf("flockFile after unlock: %v", err)
	}
	unlock()
}

// The helper process environment: the store path and the process number.
const (
	fileStoreHelperPathEnv = "OIDCRP_FILESTORE_HELPER_PATH"
	fileStoreHelperIDEnv   = "OIDCRP_FILESTORE_HELPER_ID"
)

const (
	fileStoreHelperProcs      = 3
	fileStoreHelperGoroutines = 20
)

// TestFileStoreLockAcrossProcesses runs fileStoreHelperProcs copies of the test
// binary, each running TestFileStoreHelperProcess on one store file.
func TestFileStoreLockAcrossProcesses(t *testing.T) {
	t.Parallel()
	if !flockSupported {
		t.Skip("FileStore locks exclude only goroutines of one process here")
	}
	path := filepath.Join(t.TempDir(), "creds.json")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	cmds := make([]*exec.Cmd, fileStoreHelperProcs)
	outputs := make([]bytes.Buffer, fileStoreHelperProcs)
	for i := range cmds {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFileStoreHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), fileStoreHelperPathEnv+"="+path, fileStoreHelperIDEnv+"="+strconv.Itoa(i))
		cmd.Stdout = &outputs[i]
		cmd.Stderr = &outputs[i]
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting helper process: %v", err)
		}
		cmds[i] = cmd
	}
	// Release the helpers at once, so that they contend for the lock.
	if err := os.WriteFile(path+".start", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper process %d: %v\n%s", i, err, outputs[i].Bytes())
		}
	}
	if t.Failed() {
		return
	}

	s := NewFileStore(path)
	got, err := s.Load(t.Context(), "counter")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := strconv.Itoa(fileStoreHelperProcs * fileStoreHelperGoroutines); string(got) != want {
		t.Errorf("counter = %s after %s locked increments", got, want)
	}
	entries, err := s.read()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(entries), 1+fileStoreHelperProcs*fileStoreHelperGoroutines; got != want {
		t.Errorf("store has %d entries, want %d: concurrent saves lost updates", got, want)
	}
}

// TestFileStoreHelperProcess is the body of a helper process of
// TestFileStoreLockAcrossProcesses; it does nothing in a normal test run.
// Each of its goroutines increments a counter under Lock, then saves its own
// key without a lock.
func TestFileStoreHelperProcess(t *testing.T) {
	path := os.Getenv(fileStoreHelperPathEnv)
	if path == "" {
		return
	}
	id := os.Getenv(fileStoreHelperIDEnv)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		if _, err := os.Stat(path + ".start"); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("not started")
		case <-time.After(5 * time.Millisecond):
		}
	}

	s := NewFileStore(path)
	var wg sync.WaitGroup
	for g := range fileStoreHelperGoroutines {
		wg.Go(func() {
			if err := incrementLocked(ctx, s, "counter"); err != nil {
				t.Error(err)
			}
			if err := s.Save(ctx, fmt.Sprintf("seen-%s-%d", id, g), []byte("1")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// incrementLocked adds one to the integer stored under key, under a lock.
func incrementLocked(ctx context.Context, s *FileStore, key string) error {
	unlock, err := s.Lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	n := 0
	v, err := s.Load(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	default:
		if n, err = strconv.Atoi(string(v)); err != nil {
			return err
		}
	}
	time.Sleep(time.Millisecond) // widen the window for lost updates
	return s.Save(ctx, key, []byte(strconv.Itoa(n+1)))
}
