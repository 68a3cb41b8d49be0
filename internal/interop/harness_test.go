package interop

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// fakeTB records how requireNodeModules ends a test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) {
	f.failed = fmt.Sprint(args...)
	runtime.Goexit()
}

func runRequireNodeModules(dir string) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		requireNodeModules(f, dir)
	}()
	<-done
	return f
}

// TestUnpreparedSuite checks that without the npm packages the interop tests
// skip with the commands that prepare them, or fail under CI; they never
// install anything themselves.
func TestUnpreparedSuite(t *testing.T) {
	dir := t.TempDir()

	t.Setenv("CI", "")
	f := runRequireNodeModules(dir)
	if f.failed != "" || !strings.Contains(f.skipped, "./scripts/test.sh") || !strings.Contains(f.skipped, "npm ci") {
		t.Errorf("without CI: skipped %q, failed %q; want a skip naming ./scripts/test.sh and npm ci", f.skipped, f.failed)
	}

	t.Setenv("CI", "true")
	f = runRequireNodeModules(dir)
	if f.skipped != "" || !strings.Contains(f.failed, "./scripts/test.sh") {
		t.Errorf("under CI: skipped %q, failed %q; want a failure naming ./scripts/test.sh", f.skipped, f.failed)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("the suite's directory holds %v (%v) afterwards, want it left empty", entries, err)
	}
}
