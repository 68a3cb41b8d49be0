package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/redis/go-redis/v9"
)

// The revocation record (oidcrp.Revoker) is four Redis keys sharing the
// hash tag {revocations}, so that its scripts work with Redis Cluster too.
// No store key collides with them: a store key's Redis keys end in :v,
// :lock or :gen.
//
//	<prefix>{revocations}:meta    a hash: "v", the version, incremented by
//	                              every write; "epoch", random, set when
//	                              the record is created
//	<prefix>{revocations}:entries a hash: key -> "<at>:<until>", unix ms
//	<prefix>{revocations}:order   a sorted set: key, scored by the version
//	                              that last changed it
//	<prefix>{revocations}:expiry  a sorted set: key, scored by its until
//
// A cursor is "<epoch>.<version>". Revoked with the current cursor reads
// the version and nothing else; with an older one, the keys scored above
// it. Both writing and reading are one Lua script each, so a reader never
// sees a version without the entries it covers, whatever the number of
// concurrent writers. Each write also removes up to pruneBatch expired
// entries. If the record is lost (a flushed or replaced Redis), the next
// write starts a new epoch, and readers holding a cursor of the old one
// read everything again.
const revocationsTag = "{revocations}"

// pruneBatch bounds the expired entries one Revoke removes.
const pruneBatch = 100

// maxRevocationKey is the longest revocation key, in bytes.
const maxRevocationKey = 64

func (s *Store) revocationKeys() []string {
	p := s.prefix + revocationsTag + ":"
	return []string{p + "meta", p + "entries", p + "order", p + "expiry"}
}

// Revoke records that the sessions named by key ended at at, until until
// (see oidcrp.Revoker), keeping the later times of an entry already there.
// It needs no lock: the record is changed atomically by a Lua script.
func (s *Store) Revoke(ctx context.Context, key string, at, until time.Time) error {
	if err := s.check(ctx, "revoke", key); err != nil {
		return err
	}
	if len(key) > maxRevocationKey {
		return fmt.Errorf("oidcrp: redis store: revoke: key of %d bytes, limit %d", len(key), maxRevocationKey)
	}
	var epoch [8]byte
	rand.Read(epoch[:])
	err := revokeScript.Run(ctx, s.client, s.revocationKeys(), key, at.UnixMilli(), until.UnixMilli(),
		time.Now().UnixMilli(), hex.EncodeToString(epoch[:]), pruneBatch).Err()
	if err != nil {
		return s.fail(ctx, "revoke", key, err)
	}
	return nil
}

// Revoked returns the revocations recorded after the cursor since ("" for
// all) and the next cursor (see oidcrp.Revoker). It costs one round trip,
// which carries only the version when nothing changed. Entries past their
// until are left out.
func (s *Store) Revoked(ctx context.Context, since string) ([]oidcrp.Revocation, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, since, fmt.Errorf("oidcrp: redis store: revoked: %w", err)
	}
	epoch, version := "", "0"
	if i := strings.LastIndexByte(since, '.'); i > 0 {
		if _, err := strconv.ParseUint(since[i+1:], 10, 63); err == nil {
			epoch, version = since[:i], since[i+1:]
		}
	}
	res, err := revokedScript.Run(ctx, s.client, s.revocationKeys(), epoch, version).StringSlice()
	if err != nil {
		return nil, since, s.fail(ctx, "revoked", since, err)
	}
	if len(res) < 2 || len(res)%2 != 0 {
		return nil, since, fmt.Errorf("oidcrp: redis store: revoked: malformed reply of %d elements", len(res))
	}
	cursor := ""
	if res[0] != "" {
		cursor = res[0] + "." + res[1]
	}
	now := time.Now().UnixMilli()
	var out []oidcrp.Revocation
	for i := 2; i < len(res); i += 2 {
		at, until, ok := parseTimes(res[i+1])
		if !ok {
			return nil, since, fmt.Errorf("%w: redis revocation record: entry %q is %q", oidcrp.ErrCorruptStore, res[i], res[i+1])
		}
		if until <= now {
			continue
		}
		out = append(out, oidcrp.Revocation{Key: res[i], At: time.UnixMilli(at), Until: time.UnixMilli(until)})
	}
	return out, cursor, nil
}

// parseTimes parses "<at>:<until>".
func parseTimes(v string) (at, until int64, ok bool) {
	a, u, ok := strings.Cut(v, ":")
	if !ok {
		return 0, 0, false
	}
	at, err1 := strconv.ParseInt(a, 10, 64)
	until, err2 := strconv.ParseInt(u, 10, 64)
	return at, until, err1 == nil && err2 == nil
}

// Scripts of the revocation record. KEYS are those of revocationKeys: meta,
// entries, order, expiry. Times are unix milliseconds, kept as the decimal
// strings they came as: Lua's numbers are doubles, exact for them, but
// tostring may print them in exponent form.
var (
	// revokeScript records ARGV[1] with at ARGV[2] and until ARGV[3] at
	// time ARGV[4], keeping the later times of an entry already there, in
	// the epoch ARGV[5] if the record is new, and prunes up to ARGV[6]
	// expired entries. It returns the version.
	revokeScript = redis.NewScript(`
local key, at, untl, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[5])
local cur = redis.call('HGET', KEYS[2], key)
local changed = true
if cur then
  local sep = string.find(cur, ':', 1, true)
  local a, u = string.sub(cur, 1, sep - 1), string.sub(cur, sep + 1)
  changed = false
  if tonumber(at) > tonumber(a) then changed = true else at = a end
  if tonumber(untl) > tonumber(u) then changed = true else untl = u end
end
if changed and tonumber(untl) > now then
  local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
  redis.call('HSET', KEYS[2], key, at .. ':' .. untl)
  redis.call('ZADD', KEYS[3], v, key)
  redis.call('ZADD', KEYS[4], untl, key)
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[4], 'LIMIT', 0, tonumber(ARGV[6]))
if #dead > 0 then
  redis.call('HDEL', KEYS[2], unpack(dead))
  redis.call('ZREM', KEYS[3], unpack(dead))
  redis.call('ZREM', KEYS[4], unpack(dead))
end
return redis.call('HGET', KEYS[1], 'v') or '0'
`)

	// revokedScript returns the epoch and version, then key and "<at>:<until>"
	// of every entry changed after version ARGV[2] of epoch ARGV[1] (every
	// entry if the epoch is another). An empty record has epoch "".
	revokedScript = redis.NewScript(`
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'v')
local epoch, v = meta[1], meta[2] or '0'
if not epoch then return {'', '0'} end
local from = '0'
if ARGV[1] == epoch then from = ARGV[2] end
local out = {epoch, v}
if tonumber(from) >= tonumber(v) then return out end
local keys = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. from, '+inf')
for _, k in ipairs(keys) do
  local e = redis.call('HGET', KEYS[2], k)
  if e then
    out[#out + 1] = k
    out[#out + 1] = e
  end
end
return out
`)
)
