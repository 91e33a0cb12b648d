package ctxd

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// ParseTTL reads a TTL as a client writes it: a Go duration with a unit
// ("30s", "1h30m", "1.5s") or a whole number of seconds ("30"). It checks
// the form only; Limits.ValidateTTL checks the bounds.
func ParseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, Invalidf("ttl is empty: give a duration such as 30s or 1h, or a number of seconds")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 || n > int64(maxTTLSeconds) {
			return 0, Invalidf("ttl %q: must be a positive number of seconds, at most %d", s, maxTTLSeconds)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, Invalidf("ttl %q is not a duration (such as 30s or 1h) or a number of seconds", s)
	}
	if d <= 0 {
		return 0, Invalidf("ttl %q: must be positive", s)
	}
	return d, nil
}

// maxTTLSeconds keeps a TTL in seconds within a time.Duration.
const maxTTLSeconds = int64(1<<63-1) / int64(time.Second)

// ParseTTLJSON reads a TTL given in a JSON body: a string as ParseTTL
// takes it, or a number of seconds (30, 0.5). Absent (nil) is 0: no TTL.
func ParseTTLJSON(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 {
		return 0, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return ParseTTL(s)
	}
	var secs float64
	if err := json.Unmarshal(raw, &secs); err != nil {
		return 0, Invalidf(`ttl must be a duration string ("30s") or a number of seconds, got %s`, raw)
	}
	if secs <= 0 || secs > float64(maxTTLSeconds) {
		return 0, Invalidf("ttl %s: must be a positive number of seconds, at most %d", raw, maxTTLSeconds)
	}
	// A ttl below a nanosecond is 1ns, not 0: 0 means "no ttl", and a key
	// asked to expire at once would never expire (limits.min_ttl refuses it).
	return max(time.Duration(secs*float64(time.Second)), time.Nanosecond), nil
}

// ValidateTTL checks a TTL against the limits' MinTTL and MaxTTL.
func (l Limits) ValidateTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return Invalidf("ttl must be positive")
	}
	if ttl < l.MinTTL {
		return Invalidf("ttl %s is below the minimum of %s (limits.min_ttl)", ttl, l.MinTTL)
	}
	if l.MaxTTL > 0 && ttl > l.MaxTTL {
		return Invalidf("ttl %s is above the maximum of %s (limits.max_ttl)", ttl, l.MaxTTL)
	}
	return nil
}
