package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"testing"
)

// buildExample builds the example binary for a test that runs it as a
// process (the build cache makes all but the first build a link).
func buildExample(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the example: %v", err)
	}
	path := filepath.Join(t.TempDir(), "example")
	if out, err := exec.Command(goTool, "build", "-o", path, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the example: %v: %s", err, out)
	}
	return path
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
