package oidcrp

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// failureReportEvery is how often a failure that goes on is reported again.
const failureReportEvery = 10 * time.Minute

// episode logs a failure that repeats once per episode rather than once per
// attempt: the first failure with its cause; while it goes on, one line per
// failureReportEvery counting the failures since the last line; and one
// line when it ends, counting those not reported yet. An
// outage that lasts an hour costs seven lines, whatever the traffic. The
// zero value is ready to use.
type episode struct {
	mu         sync.Mutex
	active     bool
	since      time.Time // first failure of the episode
	reported   time.Time // last line logged
	total      int       // failures in the episode
	unreported int       // failures since the last line
}

// failed records a failure, logging msg at level with err and args when it
// starts an episode, and a count when failureReportEvery has passed since
// the last line. It reports whether it logged.
func (e *episode) failed(log *slog.Logger, level slog.Level, now time.Time, msg string, err error, args ...any) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.total++
	if !e.active {
		e.active, e.since, e.reported, e.total, e.unreported = true, now, now, 1, 0
		log.Log(context.Background(), level, msg, append(args, "err", err)...)
		return true
	}
	e.unreported++
	if now.Sub(e.reported) < failureReportEvery {
		return false
	}
	log.Log(context.Background(), level, msg+"; still failing", append(args, "err", err, "failed_more", e.unreported,
		"failures", e.total, "since", e.since.UTC().Format(time.RFC3339))...)
	e.reported, e.unreported = now, 0
	return true
}

// ended closes the episode, if one is open, logging msg at info level with
// the failures it counted.
func (e *episode) ended(log *slog.Logger, now time.Time, msg string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.active {
		return
	}
	log.Info(msg, append(args, "failed_more", e.unreported, "failures", e.total, "outage", now.Sub(e.since).Round(time.Second))...)
	e.active, e.total, e.unreported = false, 0, 0
}

// copyFrom takes over the state of another episode, so that a rebuilt
// lifecycle does not report the failure of its predecessor again.
func (e *episode) copyFrom(from *episode) {
	from.mu.Lock()
	active, since, reported, total, unreported := from.active, from.since, from.reported, from.total, from.unreported
	from.mu.Unlock()
	e.mu.Lock()
	e.active, e.since, e.reported, e.total, e.unreported = active, since, reported, total, unreported
	e.mu.Unlock()
}

// logRefused logs a request that failed with err. A setup failure
// (ErrUnavailable) is logged at debug level: the lifecycle, or the session
// keys, already logged it once for its whole episode, and an outage must
// not cost one error line per request. Other failures are logged at error
// level.
func (rp *RP) logRefused(msg string, err error) {
	if errors.Is(err, ErrUnavailable) {
		rp.log.Debug(msg, "err", err)
		return
	}
	rp.log.Error(msg, "err", err)
}
