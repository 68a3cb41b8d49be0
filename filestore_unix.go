//go:build unix

package oidcrp

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"syscall"
	"time"
)

// flockPollInterval is the least time flockFile waits between two attempts
// to take a lock held by someone else; a random jitter of up to the same
// amount is added so that waiters do not retry in step.
const flockPollInterval = 10 * time.Millisecond

// flockSupported reports whether FileStore locks exclude other processes.
const flockSupported = true

// flockFile opens the file at name, creating it with mode 0600 if needed,
// and takes an exclusive flock(2) lock on it. Because flock has no timeout,
// it polls with LOCK_NB until it gets the lock or ctx is done, in which case
// it returns ctx.Err(). Each call uses its own open file description, so the
// lock excludes other calls in this process as well as other processes. The
// returned function releases the lock by closing the file.
func flockFile(ctx context.Context, name string) (unlock func(), err error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, &os.PathError{Op: "flock", Path: name, Err: err}
		}
		wait := time.NewTimer(flockPollInterval + rand.N(flockPollInterval))
		select {
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			f.Close()
			return nil, ctx.Err()
		}
	}
}

// syncDir flushes the directory entry changes of dir, such as a rename, to
// stable storage.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
