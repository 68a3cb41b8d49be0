package redisstore

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLoggerReceivesRedisLines: with Options.Logger, go-redis's own
// unstructured lines ("failed to dial after 1 attempts") reach the
// application's slog logger as structured records instead of stderr. It
// needs no Redis: it dials a port where nothing listens.
func TestLoggerReceivesRedisLines(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more

	var buf lockedBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	client := redis.NewClient(&redis.Options{Addr: addr, DialerRetries: 1, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	s := New(client, Options{Logger: log})
	if _, err := s.Load(context.Background(), "k"); err == nil {
		t.Fatal("Load succeeded without Redis")
	}
	got := buf.String()
	if !strings.Contains(got, "level=WARN") || !strings.Contains(got, "failed to dial after") || !strings.Contains(got, "logger=go-redis") {
		t.Fatalf("go-redis's line did not reach the slog logger; it got:\n%s", got)
	}
}
