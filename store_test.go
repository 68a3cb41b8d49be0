package oidcrp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/storetest"
)

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) oidcrp.CredentialStore {
		return new(oidcrp.MemoryStore) // the zero value must be usable
	})
}

func TestFileStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) oidcrp.CredentialStore {
		return oidcrp.NewFileStore(filepath.Join(t.TempDir(), "creds.json"))
	})
}

// relativePathChildEnv marks the child process of TestFileStoreRelativePath.
const relativePathChildEnv = "OIDCRP_RELATIVE_PATH_CHILD"

// TestFileStoreRelativePath runs the store tests on relative paths. They
// run in a child process started in a temporary directory: changing this
// process's working directory would keep every other test waiting.
func TestFileStoreRelativePath(t *testing.T) {
	if os.Getenv(relativePathChildEnv) != "" {
		storetest.Run(t, func(t *testing.T) oidcrp.CredentialStore {
			dir, err := os.MkdirTemp(".", "store-")
			if err != nil {
				t.Fatal(err)
			}
			return oidcrp.NewFileStore(filepath.Join(dir, "creds.json"))
		})
		return
	}
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestFileStoreRelativePath$", "-test.count=1", "-test.v")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), relativePathChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestFileStoreRelativePath/")) {
		t.Fatalf("the child process ran no store test:\n%s", out)
	}
	// The relative paths were resolved against the child's directory.
	if dirs, _ := filepath.Glob(filepath.Join(cmd.Dir, "store-*", "creds.json")); len(dirs) == 0 {
		t.Errorf("no store file under the child's working directory %s", cmd.Dir)
	}
}

func TestStoreValueLimit(t *testing.T) {
	t.Parallel()
	stores := map[string]oidcrp.CredentialStore{
		"MemoryStore": new(oidcrp.MemoryStore),
		"FileStore":   oidcrp.NewFileStore(filepath.Join(t.TempDir(), "creds.json")),
	}
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := s.Save(t.Context(), "k", make([]byte, 1<<20)); err != nil {
				t.Fatalf("Save of 1 MiB: %v", err)
			}
			err := s.Save(t.Context(), "k", make([]byte, 1<<20+1))
			if err == nil || !strings.HasPrefix(err.Error(), "oidcrp: ") {
				t.Fatalf("Save of 1 MiB + 1 byte = %v, want an oidcrp error", err)
			}
			got, err := s.Load(t.Context(), "k")
			if err != nil || len(got) != 1<<20 {
				t.Fatalf("Load after a rejected Save = %d bytes, %v; want the previous 1 MiB value", len(got), err)
			}
		})
	}
}

func TestFileStoreNoIOUntilSave(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "sub", "dir")
	s := oidcrp.NewFileStore(filepath.Join(dir, "creds.json"))
	if _, err := s.Load(t.Context(), "k"); !errors.Is(err, oidcrp.ErrNotFound) {
		t.Fatalf("Load = %v, want ErrNotFound", err)
	}
	if err := s.Delete(t.Context(), "k"); err != nil {
		t.Fatalf("Delete = %v, want nil", err)
	}
	if _, err := os.Stat(filepath.Dir(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load and Delete created files: Stat = %v", err)
	}
	if err := s.Save(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "creds.json")); err != nil {
		t.Fatalf("Save did not create the file: %v", err)
	}
}

func TestFileStorePersists(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "creds.json")
	if err := oidcrp.NewFileStore(path).Save(t.Context(), "https://op.example", []byte("secret\x00\xff")); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, err := oidcrp.NewFileStore(path).Load(t.Context(), "https://op.example")
	if err != nil || string(got) != "secret\x00\xff" {
		t.Fatalf("Load from a new FileStore = %q, %v", got, err)
	}
}

func TestFileStoreFormat(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "creds.json")
	s := oidcrp.NewFileStore(path)
	if err := s.Save(t.Context(), "https://op.example", []byte("hello")); err != nil {
		t.Fatalf("Save: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version int               `json:"version"`
		Entries map[string]string `json:"entries"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("file is not JSON: %v\n%s", err, data)
	}
	if doc.Version != 1 || len(doc.Entries) != 1 || doc.Entries["https://op.example"] != "aGVsbG8=" {
		t.Fatalf("file = %s, want version 1 and the base64 value aGVsbG8=", data)
	}

	// A document written by hand is readable.
	hand := `{"version":1,"entries":{"a":"d29ybGQ=","b":""}}`
	if err := os.WriteFile(path, []byte(hand), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(t.Context(), "a"); err != nil || string(got) != "world" {
		t.Fatalf("Load(a) = %q, %v", got, err)
	}
	if got, err := s.Load(t.Context(), "b"); err != nil || len(got) != 0 {
		t.Fatalf("Load(b) = %q, %v", got, err)
	}
}

// fileStoreTempFiles returns the names of leftover temporary files in dir.
func fileStoreTempFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestFileStoreNoTempFilesLeft(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := oidcrp.NewFileStore(filepath.Join(dir, "creds.json"))
	for i := range 20 {
		key := string(rune('a' + i%5))
		if err := s.Save(t.Context(), key, bytes.Repeat([]byte{byte(i)}, 100*i)); err != nil {
			t.Fatalf("Save: %v", err)
		}
		if i%3 == 0 {
			if err := s.Delete(t.Context(), key); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		}
	}
	if names := fileStoreTempFiles(t, dir); len(names) > 0 {
		t.Fatalf("temporary files left behind: %v", names)
	}
}

func TestFileStoreCorrupt(t *testing.T) {
	t.Parallel()
	docs := map[string]string{
		"NotJSON":       "not json at all",
		"Empty":         "",
		"Truncated":     `{"version":1,"entries":{"k":"dg==`,
		"WrongVersion":  `{"version":2,"entries":{"k":"dg=="}}`,
		"NoVersion":     `{"entries":{"k":"dg=="}}`,
		"BadBase64":     `{"version":1,"entries":{"k":"not base64!"}}`,
		"WrongType":     `{"version":1,"entries":["k"]}`,
		"Null":          `null`,
		"TrailingData":  `{"version":1,"entries":{}} {}`,
		"StringVersion": `{"version":"1","entries":{}}`,
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "creds.json")
			if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			s := oidcrp.NewFileStore(path)

			_, err := s.Load(t.Context(), "k")
			if !errors.Is(err, oidcrp.ErrCorruptStore) || errors.Is(err, oidcrp.ErrNotFound) {
				t.Fatalf("Load = %v, want an error matching ErrCorruptStore", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "oidcrp: file store "+path+": corrupt: ") {
				t.Errorf("Load error %q does not name the path and the cause", msg)
			}
			if err := s.Save(t.Context(), "k", []byte("new")); !errors.Is(err, oidcrp.ErrCorruptStore) {
				t.Errorf("Save = %v, want an error matching ErrCorruptStore", err)
			}
			if err := s.Delete(t.Context(), "k"); !errors.Is(err, oidcrp.ErrCorruptStore) {
				t.Errorf("Delete = %v, want an error matching ErrCorruptStore", err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != doc {
				t.Errorf("file changed to %q, want it left as %q", got, doc)
			}
			if names := fileStoreTempFiles(t, dir); len(names) > 0 {
				t.Errorf("temporary files left behind: %v", names)
			}
		})
	}
}

func TestFileStoreCorruptErrorUnwrapsCause(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "creds.json")
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := oidcrp.NewFileStore(path).Load(t.Context(), "k")
	var syntaxErr *json.SyntaxError
	if !errors.As(err, &syntaxErr) {
		t.Fatalf("Load = %v, want an error wrapping *json.SyntaxError", err)
	}
}

// wantFileStoreFailure checks that err is a real failure naming path: neither nil,
// nor ErrNotFound, nor ErrCorruptStore.
func wantFileStoreFailure(t *testing.T, what string, err error, path string) {
	t.Helper()
	if err == nil || errors.Is(err, oidcrp.ErrNotFound) || errors.Is(err, oidcrp.ErrCorruptStore) {
		t.Fatalf("%s = %v, want a read or write failure", what, err)
	}
	if !strings.HasPrefix(err.Error(), "oidcrp: file store "+path+": ") {
		t.Errorf("%s error %q does not name the path", what, err)
	}
}

func TestFileStorePathIsDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "creds.json")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	s := oidcrp.NewFileStore(path)
	_, err := s.Load(t.Context(), "k")
	wantFileStoreFailure(t, "Load", err, path)
	wantFileStoreFailure(t, "Save", s.Save(t.Context(), "k", []byte("v")), path)
	wantFileStoreFailure(t, "Delete", s.Delete(t.Context(), "k"), path)
	if names := fileStoreTempFiles(t, dir); len(names) > 0 {
		t.Errorf("temporary files left behind: %v", names)
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Errorf("the directory at path was replaced: %v", err)
	}
}

func TestFileStoreParentIsFile(t *testing.T) {
	t.Parallel()
	parent := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(parent, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(parent, "creds.json")
	s := oidcrp.NewFileStore(path)
	_, err := s.Load(t.Context(), "k")
	wantFileStoreFailure(t, "Load", err, path)
	wantFileStoreFailure(t, "Save", s.Save(t.Context(), "k", []byte("v")), path)
	_, err = s.Lock(t.Context(), "k")
	wantFileStoreFailure(t, "Lock", err, path)
}

func TestFileStoreEmptyPath(t *testing.T) {
	t.Parallel()
	s := oidcrp.NewFileStore("")
	if _, err := s.Load(t.Context(), "k"); err == nil || errors.Is(err, oidcrp.ErrNotFound) {
		t.Errorf("Load = %v, want an error", err)
	}
	if err := s.Save(t.Context(), "k", nil); err == nil {
		t.Errorf("Save succeeded, want an error")
	}
}

func TestFileStoreRejectsInvalidUTF8Key(t *testing.T) {
	t.Parallel()
	s := oidcrp.NewFileStore(filepath.Join(t.TempDir(), "creds.json"))
	// encoding/json would turn both keys into "\uFFFD", merging them.
	if err := s.Save(t.Context(), "\xff", []byte("v")); err == nil {
		t.Errorf("Save with an invalid UTF-8 key succeeded")
	}
	if _, err := s.Load(t.Context(), "\xfe"); err == nil || errors.Is(err, oidcrp.ErrNotFound) {
		t.Errorf("Load with an invalid UTF-8 key = %v, want an error", err)
	}
}

func TestFileStoreLockThenSave(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "creds.json")
	s := oidcrp.NewFileStore(path)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	unlock, err := s.Lock(ctx, "https://op.example")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer unlock()
	// The lock holder can use the store, even through another FileStore.
	if err := oidcrp.NewFileStore(path).Save(ctx, "https://op.example", []byte("v")); err != nil {
		t.Fatalf("Save while holding the lock: %v", err)
	}
	if err := s.Delete(ctx, "https://op.example"); err != nil {
		t.Fatalf("Delete while holding the lock: %v", err)
	}
}

func TestFileStoreLockSharedByInstances(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "creds.json")
	unlock, err := oidcrp.NewFileStore(path).Lock(t.Context(), "k")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if unlock2, err := oidcrp.NewFileStore(path).Lock(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			unlock2()
		}
		t.Fatalf("Lock through a second FileStore on the same path = %v, want context.DeadlineExceeded", err)
	}
	other := filepath.Join(filepath.Dir(path), "other.json")
	unlock3, err := oidcrp.NewFileStore(other).Lock(t.Context(), "k")
	if err != nil {
		t.Fatalf("Lock on another path: %v", err)
	}
	unlock3()
}

func FuzzFileStoreLoad(f *testing.F) {
	for _, seed := range []string{
		`{"version":1,"entries":{"k":"dmFsdWU="}}`,
		`{"version":1,"entries":{"other":"dmFsdWU="}}`,
		`{"version":1,"entries":{"k":null}}`,
		`{"version":1,"entries":null}`,
		`{"version":1}`,
		`{"version":2,"entries":{}}`,
		`{"version":1,"entries":{"k":"%%%"}}`,
		`{"version":1e400}`,
		`{"version":1,"entries":{"\ud800":"","k\u0000":""}}`,
		"{\"version\":1,\"entries\":{\"\xff\":\"\"}}",
		`null`,
		`[]`,
		``,
		"\x00\x01",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "creds.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s := oidcrp.NewFileStore(path)
		_, err := s.Load(t.Context(), "k")
		corrupt := errors.Is(err, oidcrp.ErrCorruptStore)
		if err != nil && !corrupt && !errors.Is(err, oidcrp.ErrNotFound) {
			t.Fatalf("Load = %v, want a value, ErrNotFound or ErrCorruptStore", err)
		}

		err = s.Save(t.Context(), "k", []byte("new"))
		if corrupt {
			if !errors.Is(err, oidcrp.ErrCorruptStore) {
				t.Fatalf("Save over a corrupt file = %v, want ErrCorruptStore", err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
				t.Fatalf("Save changed a corrupt file")
			}
			return
		}
		if err != nil {
			t.Fatalf("Save over a readable file: %v", err)
		}
		if got, err := s.Load(t.Context(), "k"); err != nil || string(got) != "new" {
			t.Fatalf("Load after Save = %q, %v", got, err)
		}
	})
}
