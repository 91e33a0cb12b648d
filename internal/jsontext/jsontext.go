// Package jsontext appends JSON text to byte slices without reflection,
// for the hot paths that write records, changes and dumps by hand. Its
// output matches encoding/json's, except that it does not HTML-escape.
// Indent formats JSON as json.Indent does, down to a depth, written as it
// goes.
package jsontext

import (
	"io"
	"time"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// AppendString appends s as a quoted JSON string. Control characters, quote
// and backslash are escaped; invalid UTF-8 becomes U+FFFD; U+2028 and U+2029
// are escaped so the output is also safe inside JavaScript.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendTime appends t as a quoted RFC 3339 string with nanoseconds, as
// time.Time's MarshalJSON does.
func AppendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// Writer is what Indent writes to (a *bufio.Writer is one).
type Writer interface {
	io.Writer
	io.ByteWriter
	io.StringWriter
}

// Indent writes src, which must be valid JSON (json.Valid), to w as
// json.Indent formats it: each element of an object or array on a line
// of its own, beginning with prefix and indent once per level of nesting,
// without the leading and trailing spaces json.Indent keeps; but only down
// to maxDepth levels: what is nested deeper is written compact (as
// json.Compact writes it) on the line of the member or element holding it.
// Indented to any depth, the text of a deeply nested value grows with the
// square of its depth (a 60 KB value nested 10,000 levels is 200 MB). So
// bounded, only the elements within maxDepth levels get a line, which
// begins with at most maxDepth indents: the text is the value's and at
// most that much per such element (a 60 KB value nested 10,000 levels,
// indented to 32: 62 KB; TestIndentIsBoundedByItsDepth). It holds
// nothing, and writes the text as it is made.
func Indent(w Writer, src []byte, prefix, indent string, maxDepth int) error {
	var (
		depth int
		// open: the last token opened an object or array, whose first
		// element (if it has one) goes on a new line.
		open bool
		err  error
	)
	// newline starts the line of an element at depth, when it is shallow
	// enough to have lines.
	newline := func() {
		if depth > maxDepth {
			return
		}
		_ = w.WriteByte('\n')
		_, _ = w.WriteString(prefix)
		for range depth {
			_, err = w.WriteString(indent)
		}
	}
	for i := 0; i < len(src) && err == nil; i++ {
		c := src[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		if open && c != '}' && c != ']' {
			open = false
			depth++
			newline()
		}
		switch c {
		case '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			_, err = w.Write(src[i:min(j+1, len(src))])
			i = j
		case '{', '[':
			open = true
			err = w.WriteByte(c)
		case '}', ']':
			if open {
				open = false
			} else {
				// The closing bracket goes on a line of its own when
				// the elements it closes had theirs.
				inner := depth
				depth--
				if inner <= maxDepth {
					newline()
				}
			}
			err = w.WriteByte(c)
		case ',':
			err = w.WriteByte(c)
			newline()
		case ':':
			if depth > maxDepth {
				err = w.WriteByte(c)
			} else {
				_, err = w.WriteString(": ")
			}
		default: // numbers, true, false, null
			err = w.WriteByte(c)
		}
	}
	return err
}

// Depth returns how deep src nests arrays and objects (0 for a scalar),
// reading brackets outside strings only; src need not be valid JSON.
func Depth(src []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(src); i++ {
		switch c := src[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}
