// Package query holds the rules for query parameter values that the REST
// API (package httpapi) and the WebSocket endpoint (package realtime) share,
// so that a parameter reads the same everywhere.
package query

import (
	"fmt"
	"strings"
)

// ParseBool reads a boolean value, in any case: "true", "t", "1", "yes"
// and "on" are true; "false", "f", "0", "no", "off" and "" are false. ok
// is false for anything else. It accepts everything either former parser
// did (strconv.ParseBool's "t" and "f" included), so no client's URL
// stopped working.
func ParseBool(s string) (v, ok bool) {
	switch strings.ToLower(s) {
	case "true", "t", "1", "yes", "on":
		return true, true
	case "false", "f", "0", "no", "off", "":
		return false, true
	}
	return false, false
}

// BoolParam reads the query parameter name, given with the value s: as
// ParseBool, except that a parameter given without a value is true
// ("?dry_run" asks for a dry run, where it ran a real restore); with the
// message of the 400 that refuses anything else.
func BoolParam(name, s string) (bool, error) {
	if s == "" {
		return true, nil
	}
	v, ok := ParseBool(s)
	if !ok {
		return false, fmt.Errorf("%s must be true or false (or 1/0, yes/no, on/off); got %q", name, s)
	}
	return v, nil
}
