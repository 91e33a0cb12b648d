package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/jsontext"
)

// Options describe one dump.
type Options struct {
	// Namespace is the namespace to dump.
	Namespace string
	// Who is recorded in the dump as who asked for it.
	Who string
	// History adds the namespace's retained changes, oldest first.
	History bool
	// Time is the dump's timestamp; zero means now.
	Time time.Time
	// SpreadsheetSafe, for CSV only, prefixes with a single quote every
	// text cell (a key, a string value, who) that a spreadsheet would take
	// for a formula: one that starts with =, +, -, @, a tab or a carriage
	// return (CSV injection: anyone who can write a key can put one
	// there). Such cells then no longer hold the value exactly as stored:
	// it is an opt-in, for dumps meant for a spreadsheet.
	SpreadsheetSafe bool
}

// Result describes a dump that was written.
type Result struct {
	// Revision is the revision the dump is consistent at.
	Revision uint64
	// Keys is the number of keys written.
	Keys int
	// Changes is the number of history entries written (0 without History).
	Changes int
	// Bytes is the size of the dump.
	Bytes int64
	// Time is the timestamp recorded in the dump.
	Time time.Time
}

// ErrSpreadsheetSafe refuses Options.SpreadsheetSafe with a format other
// than CSV, rather than ignore it.
var ErrSpreadsheetSafe = errors.New("spreadsheet_safe is for csv dumps only (format=csv)")

// Check reports whether opts can go with format f.
func (opts Options) Check(f Format) error {
	if opts.SpreadsheetSafe && f != CSV {
		return ErrSpreadsheetSafe
	}
	return nil
}

// Write writes a dump of opts.Namespace, read from src, to w in format f. It
// streams: memory use does not depend on the number of keys or changes. The
// output is buffered; Write flushes it before returning.
func Write(w io.Writer, f Format, src Source, opts Options) (Result, error) {
	if err := opts.Check(f); err != nil {
		return Result{}, err
	}
	if opts.Time.IsZero() {
		opts.Time = time.Now()
	}
	opts.Time = opts.Time.UTC()
	cw := &countingWriter{w: w}
	d := &dumper{
		bw:   bufio.NewWriterSize(cw, 64<<10),
		src:  src,
		opts: opts,
		res:  Result{Revision: src.Revision(), Time: opts.Time},
	}
	var err error
	switch f {
	case JSON:
		err = d.json()
	case Pretty:
		err = d.pretty()
	case CSV:
		err = d.csv()
	case TXT:
		err = d.txt()
	default:
		err = fmt.Errorf("%q: %w", string(f), ErrUnknownFormat)
	}
	if err == nil {
		err = d.bw.Flush()
	}
	d.res.Bytes = cw.n
	if err != nil {
		return d.res, fmt.Errorf("dump %s as %s: %w", opts.Namespace, f, err)
	}
	return d.res, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// dumper holds one dump's output and scratch buffers, reused for every key
// so that the cost per key stays constant.
type dumper struct {
	bw   *bufio.Writer
	src  Source
	opts Options
	res  Result
	line []byte       // the line being built
	val  bytes.Buffer // a value compacted
}

// Entry is one history entry: a change, with the value it replaced.
type Entry struct {
	ctxd.Change
	// Before is the value the change replaced: nil for a create, or when
	// history no longer holds it.
	Before json.RawMessage
}

// Action is the Framework0 name of the change: "set" or "delete".
func (e *Entry) Action() string {
	if e.Op == ctxd.OpDelete {
		return "delete"
	}
	return "set"
}

// After is the value after the change: nil for a delete.
func (e *Entry) After() json.RawMessage {
	if e.Op == ctxd.OpDelete {
		return nil
	}
	return e.Value
}

// ForEachEntry calls fn for every retained change of ns in src, oldest
// first, with the value before it; with keep, only for the changes keep
// accepts (the value before costs a read of the key's previous change:
// on etcd two range reads). The Entry is reused between calls.
func ForEachEntry(src Source, ns string, keep func(*ctxd.Change) bool, fn func(e *Entry) error) error {
	var e Entry
	return src.ForEachChange(ns, func(c ctxd.Change) error {
		if keep != nil && !keep(&c) {
			return nil
		}
		e = Entry{Change: c}
		if c.PrevRev != 0 {
			prev, err := src.Change(c.Namespace, c.Key, c.PrevRev)
			if err == nil && prev.Op == ctxd.OpPut {
				e.Before = prev.Value
			}
		}
		return fn(&e)
	})
}

// forEachKey writes a line per key of the dump's namespace, in key order:
// line appends the key's to d.line (d.res.Keys counts the keys before it).
func (d *dumper) forEachKey(line func(r ctxd.Record)) error {
	return d.src.ForEach(d.opts.Namespace, "", func(r ctxd.Record) error {
		line(r)
		d.res.Keys++
		return d.flushLine()
	})
}

// forEachEntry writes a line per history entry of the dump's namespace,
// oldest first: line appends the entry's to d.line (d.res.Changes counts
// the entries up to this one).
func (d *dumper) forEachEntry(line func(e *Entry)) error {
	return ForEachEntry(d.src, d.opts.Namespace, nil, func(e *Entry) error {
		d.res.Changes++
		line(e)
		return d.flushLine()
	})
}

func (d *dumper) flushLine() error {
	_, err := d.bw.Write(d.line)
	d.line = d.line[:0]
	return err
}

// compact appends v as compact JSON (null when empty).
func (d *dumper) compact(b []byte, v []byte) []byte {
	if len(v) == 0 {
		return append(b, "null"...)
	}
	d.val.Reset()
	if err := json.Compact(&d.val, v); err != nil {
		return append(b, v...) // the store validated it; keep it as is
	}
	return append(b, d.val.Bytes()...)
}

// PrettyDepth is how many levels of a value the pretty format indents:
// deeper, the value is written compact on the line of the member or
// element that holds it. Indented to every level, a value's text grew with
// the square of its depth (a 60 KB value nested 10,000 levels deep, the
// deepest a value may be, was a 200 MB dump); so bounded it is 62 KB, and
// any value's text is its size and, per element and closing bracket, at
// most a line break and PrettyDepth indents (jsontext.Indent). Values
// people read are far shallower.
const PrettyDepth = 32

// indent writes v as indented JSON (down to PrettyDepth) after what
// d.line holds (flushed first), streamed (jsontext.Indent): the indented
// text of a value is several times its size, and is never held. A write
// error stays in d.bw for the next flushLine to return.
func (d *dumper) indent(v []byte) {
	if len(v) == 0 {
		d.line = append(d.line, "null"...)
		return
	}
	if !json.Valid(v) {
		d.line = append(d.line, v...) // the store validated it; keep it as is
		return
	}
	if d.flushLine() == nil {
		_ = jsontext.Indent(d.bw, v, "", "  ", PrettyDepth)
	}
}

func appendTime(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, time.RFC3339Nano)
}

// json writes the JSON format, one key or history entry per line.
// "expires_at" is there only when a key of the dump expires; an entry's
// "expires_at" is the deadline its put set, "expired" marks an expiry:
//
//	{"timestamp":"...","who":"...","revision":N,"namespace":"...","format":"json","include_history":B,"context":{
//	"key":value,
//	...
//	},"key_count":N,"expires_at":{
//	"key":"deadline",
//	...
//	},"history":[
//	{"revision":N,"timestamp":"...","key":"...","action":"set","before":V,"after":V,"who":"...","version":N[,"expires_at":"..."][,"expired":true]},
//	...
//	],"history_count":N}
func (d *dumper) json() error {
	b := append(d.line[:0], `{"timestamp":"`...)
	b = appendTime(b, d.opts.Time)
	b = append(b, `","who":`...)
	b = jsontext.AppendString(b, d.opts.Who)
	b = append(b, `,"revision":`...)
	b = strconv.AppendUint(b, d.res.Revision, 10)
	b = append(b, `,"namespace":`...)
	b = jsontext.AppendString(b, d.opts.Namespace)
	b = append(b, `,"format":"json","include_history":`...)
	b = strconv.AppendBool(b, d.opts.History)
	b = append(b, `,"context":{`...)
	d.line = b
	expiring := 0
	err := d.forEachKey(func(r ctxd.Record) {
		if !r.ExpiresAt.IsZero() {
			expiring++
		}
		if d.res.Keys > 0 {
			d.line = append(d.line, ',')
		}
		d.line = append(d.line, '\n')
		d.line = jsontext.AppendString(d.line, r.Key)
		d.line = append(d.line, ':')
		d.line = d.compact(d.line, r.Value)
	})
	if err != nil {
		return err
	}
	if d.res.Keys > 0 {
		d.line = append(d.line, '\n')
	}
	d.line = append(d.line, `},"key_count":`...)
	d.line = strconv.AppendInt(d.line, int64(d.res.Keys), 10)
	if expiring > 0 {
		if err := d.jsonDeadlines(); err != nil {
			return err
		}
	}
	if d.opts.History {
		d.line = append(d.line, `,"history":[`...)
		err := d.forEachEntry(func(e *Entry) {
			if d.res.Changes > 1 {
				d.line = append(d.line, ',')
			}
			d.line = append(d.line, '\n')
			d.line = d.appendEntry(d.line, e)
		})
		if err != nil {
			return err
		}
		if d.res.Changes > 0 {
			d.line = append(d.line, '\n')
		}
		d.line = append(d.line, `],"history_count":`...)
		d.line = strconv.AppendInt(d.line, int64(d.res.Changes), 10)
	}
	d.line = append(d.line, "}\n"...)
	return d.flushLine()
}

// jsonDeadlines writes the "expires_at" member: key -> deadline of every
// key of the dump that expires, one per line. It reads the keys a second
// time (the source is consistent, so it sees the same keys) rather than
// holding the deadlines in memory while "context" streams: the dump's
// memory stays constant, and a namespace without expiring keys (the
// caller counts them) pays nothing.
func (d *dumper) jsonDeadlines() error {
	d.line = append(d.line, `,"expires_at":{`...)
	n := 0
	err := d.src.ForEach(d.opts.Namespace, "", func(r ctxd.Record) error {
		if r.ExpiresAt.IsZero() {
			return nil
		}
		if n > 0 {
			d.line = append(d.line, ',')
		}
		n++
		d.line = append(d.line, '\n')
		d.line = jsontext.AppendString(d.line, r.Key)
		d.line = append(d.line, `:"`...)
		d.line = appendTime(d.line, r.ExpiresAt)
		d.line = append(d.line, '"')
		return d.flushLine()
	})
	if err != nil {
		return err
	}
	d.line = append(d.line, "\n}"...)
	return nil
}

// appendEntry appends a history entry as a JSON object.
func (d *dumper) appendEntry(b []byte, e *Entry) []byte {
	b = append(b, `{"revision":`...)
	b = strconv.AppendUint(b, e.Revision, 10)
	b = append(b, `,"timestamp":"`...)
	b = appendTime(b, e.Time)
	b = append(b, `","key":`...)
	b = jsontext.AppendString(b, e.Key)
	b = append(b, `,"action":"`...)
	b = append(b, e.Action()...)
	b = append(b, `","before":`...)
	b = d.compact(b, e.Before)
	b = append(b, `,"after":`...)
	b = d.compact(b, e.After())
	b = append(b, `,"who":`...)
	b = jsontext.AppendString(b, e.Who)
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, e.Version, 10)
	if !e.ExpiresAt.IsZero() {
		b = append(b, `,"expires_at":"`...)
		b = appendTime(b, e.ExpiresAt)
		b = append(b, '"')
	}
	if e.Expired {
		b = append(b, `,"expired":true`...)
	}
	return append(b, '}')
}

const (
	rule    = "================================================================================\n"
	subrule = "----------------------------------------\n"
)

// pretty writes a report for people, as Framework0's pretty dump: a header,
// then each key (in key order) with its value indented, then the history.
func (d *dumper) pretty() error {
	b := append(d.line[:0], rule...)
	b = append(b, "ctxd context dump - pretty format\n"...)
	b = append(b, rule...)
	b = append(b, "\nTimestamp: "...)
	b = appendTime(b, d.opts.Time)
	b = append(b, "\nRequested by: "...)
	b = append(b, d.opts.Who...)
	b = append(b, "\nNamespace: "...)
	b = append(b, d.opts.Namespace...)
	b = append(b, "\nRevision: "...)
	b = strconv.AppendUint(b, d.res.Revision, 10)
	b = append(b, "\nInclude history: "...)
	b = strconv.AppendBool(b, d.opts.History)
	b = append(b, "\n\nContext data:\n"...)
	b = append(b, subrule...)
	d.line = b
	err := d.forEachKey(func(r ctxd.Record) {
		d.line = append(d.line, r.Key...)
		d.line = append(d.line, ": "...)
		d.indent(r.Value)
		if !r.ExpiresAt.IsZero() {
			d.line = append(d.line, "\n  (expires at "...)
			d.line = appendTime(d.line, r.ExpiresAt)
			d.line = append(d.line, ')')
		}
		d.line = append(d.line, "\n\n"...)
	})
	if err != nil {
		return err
	}
	d.line = append(d.line, "Total keys: "...)
	d.line = strconv.AppendInt(d.line, int64(d.res.Keys), 10)
	d.line = append(d.line, '\n')
	if d.opts.History {
		d.line = append(d.line, "\nChange history:\n"...)
		d.line = append(d.line, subrule...)
		err := d.forEachEntry(func(e *Entry) {
			b := strconv.AppendInt(d.line, int64(d.res.Changes), 10)
			b = append(b, ". ["...)
			b = appendTime(b, e.Time)
			b = append(b, "] "...)
			b = append(b, e.Who...)
			if e.Op == ctxd.OpDelete {
				b = append(b, " deleted "...)
			} else {
				b = append(b, " set "...)
			}
			b = append(b, e.Key...)
			b = append(b, " (revision "...)
			b = strconv.AppendUint(b, e.Revision, 10)
			b = append(b, ", version "...)
			b = strconv.AppendUint(b, e.Version, 10)
			b = append(b, ")\n   Before: "...)
			b = d.compact(b, e.Before)
			b = append(b, "\n   After:  "...)
			b = d.compact(b, e.After())
			d.line = append(b, "\n\n"...)
		})
		if err != nil {
			return err
		}
		d.line = append(d.line, "Total changes: "...)
		d.line = strconv.AppendInt(d.line, int64(d.res.Changes), 10)
		d.line = append(d.line, '\n')
	}
	return d.flushLine()
}

// csvHeader starts every CSV dump; csvAction is added with history.
const (
	csvHeader = "Key,Value,Type,Version,Revision,Who,Updated_At,Expires_At"
	csvAction = ",Action"
)

// csv writes RFC 4180 CSV (CRLF line ends, fields quoted when needed). A
// row per key; Expires_At is the key's deadline, empty when it has none.
// With history, an Action column ("current" on key rows) and then a row
// per change ("set" or "delete", the value after the change, the change's
// revision, time and the deadline its put set).
func (d *dumper) csv() error {
	b := append(d.line[:0], csvHeader...)
	if d.opts.History {
		b = append(b, csvAction...)
	}
	d.line = append(b, "\r\n"...)
	err := d.forEachKey(func(r ctxd.Record) {
		d.csvRow(r.Key, r.Value, r.Version, r.ModRev, r.Who, r.UpdatedAt, r.ExpiresAt, "current")
	})
	if err != nil {
		return err
	}
	if d.opts.History {
		err = d.forEachEntry(func(e *Entry) {
			d.csvRow(e.Key, e.Value, e.Version, e.Revision, e.Who, e.Time, e.ExpiresAt, e.Action())
		})
		if err != nil {
			return err
		}
	}
	return d.flushLine()
}

func (d *dumper) csvRow(key string, value []byte, version, rev uint64, who string, t, expires time.Time, action string) {
	b := d.appendCSVText(d.line, key)
	b = append(b, ',')
	typ := jsonType(value)
	if typ == "string" {
		var s string
		if json.Unmarshal(value, &s) == nil {
			b = d.appendCSVText(b, s)
		} else {
			b = appendCSV(b, string(value))
		}
	} else if len(value) == 0 {
		typ = "" // a delete: no value
	} else {
		d.val.Reset()
		if json.Compact(&d.val, value) != nil {
			d.val.Reset()
			d.val.Write(value)
		}
		b = appendCSVBytes(b, d.val.Bytes())
	}
	b = append(b, ',')
	b = append(b, typ...)
	b = append(b, ',')
	b = strconv.AppendUint(b, version, 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, rev, 10)
	b = append(b, ',')
	b = d.appendCSVText(b, who)
	b = append(b, ',')
	b = appendTime(b, t)
	b = append(b, ',')
	if !expires.IsZero() {
		b = appendTime(b, expires)
	}
	if d.opts.History {
		b = append(b, ',')
		b = append(b, action...)
	}
	d.line = append(b, "\r\n"...)
}

// appendCSVText appends the text cell s (a key, a string value, who):
// with Options.SpreadsheetSafe, one a spreadsheet would take for a formula
// gets a leading single quote, which makes it text there. Numbers, objects
// and arrays (their compact JSON starts with a digit, "-" followed by a
// digit, "{" or "[") are JSON's, and spreadsheets read them as numbers
// and text already.
func (d *dumper) appendCSVText(b []byte, s string) []byte {
	if d.opts.SpreadsheetSafe && len(s) > 0 {
		switch s[0] {
		case '=', '+', '-', '@', '\t', '\r':
			return appendCSV(b, "'"+s)
		}
	}
	return appendCSV(b, s)
}

// appendCSV appends s as one CSV field, quoted when it holds a comma, a
// quote, a line break or leading or trailing space.
func appendCSV(b []byte, s string) []byte {
	if !csvNeedsQuotes(s) {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

func appendCSVBytes(b []byte, v []byte) []byte {
	if !csvNeedsQuotes(v) {
		return append(b, v...)
	}
	b = append(b, '"')
	for _, c := range v {
		if c == '"' {
			b = append(b, '"')
		}
		b = append(b, c)
	}
	return append(b, '"')
}

func csvNeedsQuotes[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	if s[0] == ' ' || s[0] == '\t' || s[len(s)-1] == ' ' || s[len(s)-1] == '\t' {
		return true
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', '"', '\r', '\n':
			return true
		}
	}
	return false
}

// jsonType names the JSON type of a value: string, number, boolean, null,
// object or array.
func jsonType(v []byte) string {
	for _, c := range v {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '"':
			return "string"
		case '{':
			return "object"
		case '[':
			return "array"
		case 't', 'f':
			return "boolean"
		case 'n':
			return "null"
		}
		return "number"
	}
	return "null"
}

// txt writes key=value lines under a short header. A string is written as
// is unless it holds a control character (then as a JSON string); any
// other value as compact JSON. An expiring key's line is followed by a
// comment "# expires_at <deadline>", so that readers of key=value lines,
// which skip comments, read the dump as before. With history, a line per
// change follows.
func (d *dumper) txt() error {
	b := append(d.line[:0], "# ctxd dump of namespace "...)
	b = append(b, d.opts.Namespace...)
	b = append(b, " at revision "...)
	b = strconv.AppendUint(b, d.res.Revision, 10)
	b = append(b, "\n# taken "...)
	b = appendTime(b, d.opts.Time)
	b = append(b, " by "...)
	b = appendLine(b, d.opts.Who)
	d.line = append(b, '\n')
	err := d.forEachKey(func(r ctxd.Record) {
		d.line = append(d.line, r.Key...)
		d.line = append(d.line, '=')
		d.line = d.txtValue(d.line, r.Value)
		d.line = append(d.line, '\n')
		if !r.ExpiresAt.IsZero() {
			d.line = append(d.line, "# expires_at "...)
			d.line = appendTime(d.line, r.ExpiresAt)
			d.line = append(d.line, '\n')
		}
	})
	if err != nil {
		return err
	}
	d.line = append(d.line, "# "...)
	d.line = strconv.AppendInt(d.line, int64(d.res.Keys), 10)
	d.line = append(d.line, " keys\n"...)
	if d.opts.History {
		d.line = append(d.line, "# history, oldest first: time revision who action key=value\n"...)
		err := d.forEachEntry(func(e *Entry) {
			b := appendTime(d.line, e.Time)
			b = append(b, ' ')
			b = strconv.AppendUint(b, e.Revision, 10)
			b = append(b, ' ')
			b = appendLine(b, e.Who)
			b = append(b, ' ')
			b = append(b, e.Action()...)
			b = append(b, ' ')
			b = append(b, e.Key...)
			if e.Op == ctxd.OpPut {
				b = append(b, '=')
				b = d.txtValue(b, e.Value)
			}
			d.line = append(b, '\n')
		})
		if err != nil {
			return err
		}
		d.line = append(d.line, "# "...)
		d.line = strconv.AppendInt(d.line, int64(d.res.Changes), 10)
		d.line = append(d.line, " changes\n"...)
	}
	return d.flushLine()
}

func (d *dumper) txtValue(b []byte, v []byte) []byte {
	if jsonType(v) == "string" {
		var s string
		if json.Unmarshal(v, &s) == nil && !hasControl(s) {
			return append(b, s...)
		}
	}
	return d.compact(b, v)
}

// appendLine appends s, as a JSON string if it would break the line.
func appendLine(b []byte, s string) []byte {
	if hasControl(s) {
		return jsontext.AppendString(b, s)
	}
	return append(b, s...)
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
