package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// RedisLogger adapts l to go-redis's logging interface, for
// redis.SetLogger: every line go-redis prints ("redis: connection pool:
// failed to dial after 5 attempts: …") becomes a warning record of l with
// the line as its message and the attribute logger=go-redis. Options.Logger
// installs it for you.
func RedisLogger(l *slog.Logger) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return redisLogger{l}
}

type redisLogger struct{ l *slog.Logger }

// Printf implements go-redis's internal.Logging.
func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	if !r.l.Enabled(ctx, slog.LevelWarn) {
		return
	}
	r.l.Log(ctx, slog.LevelWarn, strings.TrimSpace(fmt.Sprintf(format, v...)), "logger", "go-redis")
}
