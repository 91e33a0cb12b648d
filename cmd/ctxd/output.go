package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/internal/jsontext"
)

// maxCell bounds a value shown in a table cell.
const maxCell = 60

func (c *common) out() io.Writer { return c.a.stdout }

// printJSON writes v as indented JSON, as the pretty format indents a
// value: down to export.PrettyDepth levels, what is nested deeper compact
// on one line (jsontext.Indent). json.Encoder's indent went to every
// level, in memory: a key's value nested 10,000 levels deep (60 KB) made
// `ctxd get -o json` build and print 200 MB.
func (c *common) printJSON(v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	bw := bufio.NewWriter(c.out())
	_ = jsontext.Indent(bw, bytes.TrimSuffix(b.Bytes(), []byte("\n")), "", "  ", export.PrettyDepth)
	_ = bw.WriteByte('\n')
	return bw.Flush()
}

// table writes rows of tab-separated cells as aligned columns.
func (c *common) table(header string, rows []string) error {
	tw := tabwriter.NewWriter(c.out(), 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	return tw.Flush()
}

// printAs prints what a command got as -o asks: json prints asJSON as a
// whole; value prints value(item), a line per item; table prints header and
// row(item), a row per item.
func printAs[T any](c *common, asJSON any, items []T, value func(T) string, header string, row func(T) string) error {
	switch c.output {
	case outJSON:
		return c.printJSON(asJSON)
	case outValue:
		for _, it := range items {
			if _, err := fmt.Fprintln(c.out(), value(it)); err != nil {
				return err
			}
		}
		return nil
	}
	rows := make([]string, 0, len(items))
	for _, it := range items {
		rows = append(rows, row(it))
	}
	return c.table(header, rows)
}

// orEmpty is s, or an empty slice when s is nil: JSON output shows [],
// not null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// printRecord prints the record of put, get, del and keepalive.
func (c *common) printRecord(rec client.Record) error {
	recs := []client.Record{rec}
	expires := expiresColumn(recs, time.Now())
	return printAs(c, rec, recs, func(r client.Record) string { return valueText(r.Value) },
		recordHeader(expires), func(r client.Record) string { return recordRow(r, expires, c.deleted) })
}

// recordHeader and recordRow are the table columns of a key's state, as
// put, get, del, keepalive and each op of txn print it.
func recordHeader(expires expires) string {
	return "NS\tKEY\tVERSION\tREVISION\tWHO\tUPDATED" + expires.header + "\tVALUE"
}

func recordRow(r client.Record, expires expires, deleted bool) string {
	value := cell(r.Value)
	if deleted {
		value = "(deleted)"
	}
	return strings.Join([]string{
		r.Namespace, r.Key, strconv.FormatUint(r.Version, 10), strconv.FormatUint(r.ModRev, 10),
		r.Who, timeText(r.UpdatedAt) + expires.cell(r), value,
	}, "\t")
}

// printList prints a page of ls. The cursor of a next page goes to stderr in
// table and value output, so that stdout holds only the keys.
func (c *common) printList(page client.ListPage) error {
	page.Records = orEmpty(page.Records)
	expires := expiresColumn(page.Records, time.Now())
	err := printAs(c, page, page.Records, func(r client.Record) string { return r.Key },
		"KEY\tVERSION\tREVISION\tWHO\tUPDATED"+expires.header+"\tVALUE", func(r client.Record) string {
			return strings.Join([]string{
				r.Key, strconv.FormatUint(r.Version, 10), strconv.FormatUint(r.ModRev, 10),
				r.Who, timeText(r.UpdatedAt) + expires.cell(r), cell(r.Value),
			}, "\t")
		})
	if err != nil || c.output == outJSON {
		return err
	}
	if page.Next != "" {
		fmt.Fprintf(c.a.stderr, "more keys: continue with --after %s, or use --all\n", shellQuote(page.Next))
	}
	return nil
}

// shellQuote is s as a POSIX shell word: as it is when it holds only
// characters no shell reads, else in single quotes (a single quote in it
// ends them, is escaped, and opens them again). For the hints to paste
// (ls's next page, restore's undo): in Go's "..." a $, a backtick or a !
// in a key was the shell's, and named another key; a path with a space,
// unquoted, was two words. = is quoted too: zsh (EQUALS, on by default)
// takes a word that starts with it for a command's path.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-./:@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// printHistory prints a page of history. The revision to continue from goes
// to stderr in table and value output.
func (c *common) printHistory(page client.HistoryPage) error {
	page.Changes = orEmpty(page.Changes)
	err := printAs(c, page, page.Changes, func(ch client.Change) string { return valueText(ch.Value) },
		"REVISION\tOP\tVERSION\tWHO\tTIME\tVALUE", func(ch client.Change) string {
			return strings.Join([]string{
				strconv.FormatUint(ch.Revision, 10), ch.Op.String(), strconv.FormatUint(ch.Version, 10),
				ch.Who, timeText(ch.Time), changeCell(ch.Value, ch.Op == ctxd.OpDelete, ch.Expired),
			}, "\t")
		})
	if err != nil || c.output == outJSON {
		return err
	}
	if page.Next != 0 {
		fmt.Fprintf(c.a.stderr, "older changes: continue with --before %d\n", page.Next)
	}
	if page.Truncated {
		fmt.Fprintln(c.a.stderr, "older changes were discarded by compaction")
	}
	return nil
}

// printNamespaces prints the namespaces of ns.
func (c *common) printNamespaces(nss []client.Namespace) error {
	nss = orEmpty(nss)
	asJSON := struct {
		Namespaces []client.Namespace `json:"namespaces"`
	}{nss}
	return printAs(c, asJSON, nss, func(n client.Namespace) string { return n.Name },
		"NAMESPACE\tKEYS", func(n client.Namespace) string { return n.Name + "\t" + strconv.FormatUint(n.Keys, 10) })
}

// printDumps prints the dump files of dumps; in table output, the dump
// folder goes to stderr.
func (c *common) printDumps(list client.DumpList) error {
	list.Dumps = orEmpty(list.Dumps)
	err := printAs(c, list, list.Dumps, func(d client.DumpFile) string { return d.Filename },
		"FILENAME\tSIZE\tCREATED", func(d client.DumpFile) string {
			return d.Filename + "\t" + ctxd.FormatBytes(d.Size) + "\t" + timeText(d.Modified)
		})
	if err != nil || c.output != outTable {
		return err
	}
	_, err = fmt.Fprintf(c.a.stderr, "dump folder on the server: %s\n", list.Directory)
	return err
}

// printStatus prints the server's status and, for a list of instances,
// the one that answered it (server) and each one's readiness (server ""
// and no instances for one server).
func (c *common) printStatus(st client.Status, server string, instances []client.InstanceState) error {
	if c.output == outJSON {
		type instance struct {
			URL   string `json:"url"`
			Ready bool   `json:"ready"`
			Error string `json:"error,omitempty"`
		}
		out := struct {
			client.Status
			Server    string     `json:"server,omitempty"`
			Instances []instance `json:"instances,omitempty"`
		}{Status: st, Server: server}
		for _, in := range instances {
			i := instance{URL: in.URL, Ready: in.Err == nil}
			if in.Err != nil {
				i.Error = in.Err.Error()
			}
			out.Instances = append(out.Instances, i)
		}
		return c.printJSON(out)
	}
	tw := tabwriter.NewWriter(c.out(), 0, 8, 2, ' ', 0)
	var rows [][2]string
	if server != "" {
		rows = append(rows, [2]string{"server", server})
	}
	rows = append(rows, [2]string{"version", st.Version})
	// The alarm first, when there is one: a server whose store failed or
	// whose quota is reached answers its status as any other.
	if st.Alarm != ctxd.AlarmNone {
		rows = append(rows, [2]string{"alarm", st.Alarm + ": " + st.AlarmMessage})
	}
	rows = append(rows, [][2]string{
		{"revision", strconv.FormatUint(st.Revision, 10)},
		{"compacted revision", strconv.FormatUint(st.CompactedRevision, 10)},
	}...)
	if m := st.LastRestore; m != nil && m.DiscardedFrom < m.Revision {
		rows = append(rows, [2]string{"discarded by a restore", fmt.Sprintf("revisions %d to %d (restored from a snapshot at %d)",
			m.DiscardedFrom, m.Revision-1, m.SnapshotRevision)})
	}
	for _, kv := range append(rows, [][2]string{
		{"keys", strconv.FormatUint(st.Keys, 10)},
		{"namespaces", strconv.Itoa(st.Namespaces)},
		{"db size", ctxd.FormatBytes(st.DBSizeBytes)},
		{"schema version", strconv.Itoa(st.SchemaVersion)},
		{"clients", strconv.Itoa(st.Clients)},
		{"uptime", (time.Duration(st.UptimeSeconds) * time.Second).String()},
		{"started at", timeText(st.StartedAt)},
	}...) {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	if len(instances) > 0 {
		fmt.Fprintln(tw) // a column of its own: the URLs are long
	}
	for _, in := range instances {
		state := "ready"
		if in.Err != nil {
			// ctxd's 503 says "not ready: why" itself.
			state = "not ready: " + strings.TrimPrefix(in.Err.Error(), "not ready: ")
		}
		fmt.Fprintf(tw, "%s:\t%s\n", in.URL, state)
	}
	return tw.Flush()
}

// printTokenInfo prints what the token may do (ctxd whoami): its name,
// roles, rights and limits ("all" where it has none; "none" for a token
// that may not read keys at all, a metrics one), or that the server has
// no access control.
func (c *common) printTokenInfo(info client.TokenInfo) error {
	if c.output == outJSON {
		return c.printJSON(info)
	}
	tw := tabwriter.NewWriter(c.out(), 0, 8, 2, ' ', 0)
	rows := [][2]string{{"token", info.Name}}
	if !info.AccessControl {
		rows = [][2]string{{"token", "none needed: the server has no access control, everything is allowed"}}
	}
	limits := func(l []string) string {
		switch {
		case !info.May("read"):
			return "none (it may not read keys)"
		case len(l) == 0:
			return "all"
		}
		q := make([]string, len(l))
		for i, s := range l {
			q[i] = shellQuote(s)
		}
		return strings.Join(q, " ")
	}
	for _, kv := range append(rows, [][2]string{
		{"roles", strings.Join(info.Roles, ", ")},
		{"may", strings.Join(info.Rights, ", ")},
		{"namespaces", limits(info.Namespaces)},
		{"key prefixes", limits(info.Prefixes)},
	}...) {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

// valueText is a value as -o value prints it: a string as is, anything else
// as compact JSON. A missing value (a delete) prints as null.
func valueText(v json.RawMessage) string {
	if len(v) == 0 {
		return "null"
	}
	if v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			return s
		}
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return string(v)
	}
	return b.String()
}

// cell is a value as a table shows it: compact JSON on one line, cut short.
// changeCell is the VALUE cell of a change, as history and watch print
// it: "(deleted)", or "(expired)" for a delete by its deadline, as del
// prints a deleted key.
func changeCell(v json.RawMessage, deleted, expired bool) string {
	switch {
	case deleted && expired:
		return "(expired)"
	case deleted:
		return "(deleted)"
	}
	return cell(v)
}

func cell(v json.RawMessage) string {
	if len(v) == 0 {
		return "null"
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		b.Reset()
		b.Write(v)
	}
	s := strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(b.String())
	if utf8.RuneCountInString(s) > maxCell {
		r := []rune(s)
		s = string(r[:maxCell-3]) + "..."
	}
	return s
}

// expires is a table's EXPIRES column: there only when a record shown
// expires, so that tables of permanent keys (most) stay as they were.
type expires struct {
	header string // "\tEXPIRES" or ""
	now    time.Time
}

func expiresColumn(recs []client.Record, now time.Time) expires {
	for _, r := range recs {
		if !r.ExpiresAt.IsZero() {
			return expires{header: "\tEXPIRES", now: now}
		}
	}
	return expires{}
}

// cell is the record's EXPIRES cell, with the tab before it: "in 29s"
// (the time left, to the second), "-" for a key that never expires, and
// "now" for a deadline passed whose expiry is under way.
func (e expires) cell(r client.Record) string {
	if e.header == "" {
		return ""
	}
	return "\t" + expiresText(r.ExpiresAt, e.now)
}

func expiresText(at, now time.Time) string {
	if at.IsZero() {
		return "-"
	}
	left := at.Sub(now).Round(time.Second)
	if left <= 0 {
		return "now"
	}
	return "in " + left.String()
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
