//go:build !unix

package oidcrp

import "context"

// flockSupported reports whether FileStore locks exclude other processes.
const flockSupported = false

// flockFile is a no-op on systems without flock(2): FileStore locks there
// exclude only goroutines of the current process, through processLocks.
func flockFile(ctx context.Context, name string) (unlock func(), err error) {
	return func() {}, nil
}

// syncDir does nothing: these systems cannot, or need not, sync a directory
// to make a rename durable.
func syncDir(dir string) error {
	return nil
}
