package export

import (
	"fmt"
	"strings"
)

// Format is a dump format.
type Format string

// The formats.
const (
	JSON   Format = "json"
	Pretty Format = "pretty"
	CSV    Format = "csv"
	TXT    Format = "txt"
)

// Formats lists every format, in the order they are documented.
var Formats = []Format{JSON, Pretty, CSV, TXT}

// ErrUnknownFormat is returned by ParseFormat for a name that is not a format.
var ErrUnknownFormat = fmt.Errorf("unknown dump format (use %s, %s, %s or %s)", JSON, Pretty, CSV, TXT)

// ParseFormat returns the format named s, in any case; "" is JSON.
func ParseFormat(s string) (Format, error) {
	if s == "" {
		return JSON, nil
	}
	f := Format(strings.ToLower(s))
	for _, known := range Formats {
		if f == known {
			return f, nil
		}
	}
	return "", fmt.Errorf("%q: %w", s, ErrUnknownFormat)
}

// Ext is the format's file extension, with its dot: the format's name, as
// Framework0 named its dump files (".json", ".pretty", ".csv", ".txt").
func (f Format) Ext() string { return "." + string(f) }

// ContentType is the format's media type.
func (f Format) ContentType() string {
	switch f {
	case JSON:
		return "application/json"
	case CSV:
		return "text/csv; charset=utf-8"
	}
	return "text/plain; charset=utf-8"
}

// FormatOfName returns the format whose extension ends name, if any.
func FormatOfName(name string) (Format, bool) {
	for _, f := range Formats {
		if strings.HasSuffix(name, f.Ext()) {
			return f, true
		}
	}
	return "", false
}
