package oidcrp_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
)

// TestFileStoreRemovesStaleTempFiles: a crash between writing the temporary
// file and renaming it leaves the temporary file behind. The store removes
// such files once they are old, but never a recent one, which may be a live
// writer's, nor the temporary files of another store in the same directory.
func TestFileStoreRemovesStaleTempFiles(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"Load", "Save"} {
		t.Run(first, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "creds.json")
			plant := func(name string, age time.Duration) {
				t.Helper()
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(`{"version":1,"entr`), 0o600); err != nil {
					t.Fatal(err)
				}
				if age > 0 {
					old := time.Now().Add(-age)
					if err := os.Chtimes(p, old, old); err != nil {
						t.Fatal(err)
					}
				}
			}
			plant("creds.json.tmp-1111", time.Hour) // a crashed writer's
			plant("creds.json.tmp-2222", 0)         // perhaps a live writer's
			plant("other.json.tmp-3333", time.Hour) // another store's
			plant("creds.json.tmp-", 2*time.Hour)   // not a name the store makes… but its pattern
			s := oidcrp.NewFileStore(path)
			var err error
			if first == "Load" {
				_, err = s.Load(t.Context(), "k")
			} else {
				err = s.Save(t.Context(), "k", []byte("v"))
			}
			if err != nil && first == "Save" {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			for _, gone := range []string{"creds.json.tmp-1111", "creds.json.tmp-"} {
				if slices.Contains(names, gone) {
					t.Errorf("stale %s left after %s: %v", gone, first, names)
				}
			}
			for _, kept := range []string{"creds.json.tmp-2222", "other.json.tmp-3333"} {
				if !slices.Contains(names, kept) {
					t.Errorf("%s removed by %s: %v", kept, first, names)
				}
			}
		})
	}
}
