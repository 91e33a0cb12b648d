package perf

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// noOpCompleted stands for the numbers of a run in which no request
// succeeded: there is no rate or latency to give.
const noOpCompleted = "no op completed"

// unsettledMark and unsettledWarning flag sizes read before the server
// applied every write it acknowledged (DiskPoint.Unsettled).
const (
	unsettledMark    = "(unsettled)"
	unsettledWarning = "the server had not applied every write it acknowledged to its database file when the sizes were read, after waiting for it: they lag the writes (marked " + unsettledMark + ")"
)

// busyElsewhere is the CPU, in cores, other processes may use during a run
// before the table flags it.
const busyElsewhere = 0.2

// Summary is one line on the machine, the target and the settings.
func (r *Report) Summary() string {
	m := r.Machine
	cpu := m.CPU
	if cpu == "" {
		cpu = "unknown CPU"
	}
	target := r.Target.Mode + " server"
	if r.Target.Mode == "remote" {
		target += " " + r.Target.URL
	} else if r.Target.Filesystem != "" {
		target += " (data on " + r.Target.Filesystem + ")"
	}
	return fmt.Sprintf("%s, %d cores (%s), %s %s/%s, load average %.1f at the start and %.1f at the end (this run's own load included); %gs windows after %gs warm-up, %d-byte values",
		target, m.Cores, cpu, m.GoVersion, m.OS, m.Arch, m.LoadAverage, m.LoadAverageEnd, r.Settings.DurationSeconds, r.Settings.WarmupSeconds, r.Settings.ValueSize)
}

// WriteTable prints the report for a terminal: one table per kind of
// result, the targets, and a loud line when there were errors.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "ctxd perf: %s\n", r.Summary())
	if r.Interrupted {
		fmt.Fprintln(w, "INTERRUPTED: the run was stopped before its end; what did not finish is missing or partial")
	}
	if r.Machine.LoadAverage > float64(r.Machine.Cores)/2 {
		fmt.Fprintf(w, "note: the machine was busy with other work when the run started (load average %.1f, %d cores): numbers are lower than on a quiet machine\n",
			r.Machine.LoadAverage, r.Machine.Cores)
	}
	if r.Target.Filesystem == "tmpfs" {
		fmt.Fprintln(w, "WARNING: the database is on tmpfs: fsync costs nothing there, write numbers are not meaningful")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
	disturbed := false
	if len(r.Runs) > 0 {
		fmt.Fprintln(tw)
		row("RUN", "OPS/S", "±", "P50", "P90", "P99", "P99.9", "MAX", "ERRORS", "WRITES/COMMIT", "COMMIT")
		for _, x := range r.Runs {
			if x.Database == "large" {
				continue // in the at-scale table
			}
			l := x.Latency
			perCommit, commit := "", ""
			if c := x.Commits; c != nil {
				perCommit, commit = formatValue(c.WritesPerCommit, ""), ms(c.CommitMs)
			}
			name := x.Name
			if x.OtherCPUCores >= busyElsewhere {
				name += " (!)"
				disturbed = true
			}
			if x.Ops == 0 { // not a 0 that reads as a measurement
				row(name, noOpCompleted, "", "", "", "", "", "", fmt.Sprint(x.Errors), perCommit, commit)
				continue
			}
			row(name, formatValue(x.OpsPerSec, ""), formatValue(x.OpsPerSecSpread, ""),
				ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max), fmt.Sprint(x.Errors), perCommit, commit)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if disturbed {
		fmt.Fprintf(w, "  (!) other processes kept %.2f cores or more busy during the run: its numbers are lower than this machine can do\n", busyElsewhere)
	}
	for _, n := range r.commitNotes() {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, x := range r.Runs {
		if x.WindowExtended {
			fmt.Fprintf(w, "note: %s: no request started in its %s window was answered by its end; the window was extended to %s, until one was: its numbers rest on %d (a longer --duration measures more)\n",
				x.Name, duration(x.DurationSeconds), duration(x.ElapsedSeconds), x.Ops)
		}
		if x.Rate > 0 && !x.WindowExtended && x.ElapsedSeconds > x.DurationSeconds*1.1 {
			fmt.Fprintf(w, "note: %s fell behind its fixed rate: %d/s offered, %s/s sustained (its %gs window took %.1fs; latencies count the wait from each intended send time)\n",
				x.Name, x.Rate, formatValue(x.OpsPerSec, ""), x.DurationSeconds, x.ElapsedSeconds)
		}
	}
	for _, x := range r.Runs {
		if x.Reads != nil && x.Writes != nil {
			fmt.Fprintf(w, "  %s: %s, %s\n", x.Name, sideLatency("reads", *x.Reads), sideLatency("writes", *x.Writes))
		}
		if c := x.CAS; c != nil {
			rates := noOpCompleted
			if x.Ops > 0 {
				rates = fmt.Sprintf("%s increments/s, %s conflicts/s", formatValue(c.SuccessesPerSec, ""), formatValue(c.ConflictsPerSec, ""))
			}
			fmt.Fprintf(w, "  %s: %s; counters add up to %d of %d increments: %s\n", x.Name, rates, c.CounterSum, c.TotalSuccesses, c.CounterCheck)
		}
	}
	if len(r.Fanout) > 0 {
		fmt.Fprintln(tw)
		row("FANOUT", "SUBSCRIBERS", "WRITES/S", "ACK→ARRIVAL P50", "P99", "MAX", "SEND→ARRIVAL P50", "P99", "DELIVERED", "MISSED", "DUPLICATES", "ERRORS", "CHANGES/FRAME", "CONNECT")
		for _, f := range r.Fanout {
			ack, send := f.AckToArrival, f.SendToArrival
			row(f.Name, commas(int64(f.Subscribers)), writesCell(f),
				latencyOf(ack, ack.P50), latencyOf(ack, ack.P99), latencyOf(ack, ack.Max),
				latencyOf(send, send.P50), latencyOf(send, send.P99),
				commas(f.Deliveries), missedCell(f), commas(f.Duplicates), commas(f.Errors), changesPerFrameCell(f), measuredSecs(f.ConnectSeconds))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, f := range r.Fanout {
			// A peer's run beside ctxd's with the same subscribers and rate.
			if mine := findFanout(r, f.Subscribers, f.Rate); f.Peer != "" && mine != nil && mine.AckToArrival.P99 > 0 && f.AckToArrival.P99 > 0 {
				fmt.Fprintf(w, "  %s vs %s's feed: ack→arrival p99 %s vs %s (%.2fx), writes/s %s vs %s\n",
					mine.Name, f.Peer, ms(mine.AckToArrival.P99), ms(f.AckToArrival.P99), mine.AckToArrival.P99/f.AckToArrival.P99,
					formatValue(mine.WritesPerSec, ""), formatValue(f.WritesPerSec, ""))
			}
		}
		for _, f := range r.Fanout {
			if m := f.Memory; m != nil {
				fmt.Fprintf(w, "  %s: server memory per 1,000 subscribers: %s (%s RSS, %s heap with them; %s)\n%s",
					f.Name, m.perUnit(), byteSize(m.After.RSSBytes), byteSize(m.After.HeapBytes), m.beforeAndWhere(), m.unmeasuredLine())
			}
		}
	}
	for _, d := range r.DiskGrowth {
		fmt.Fprintln(tw)
		row(strings.ToUpper(d.Name), "VERSIONS/KEY", "VERSIONS", "LOGICAL", "FILE", "IN USE", "FILE B/VERSION", "FOLDER ON DISK", "OF WHICH WAL")
		points := append(append([]DiskPoint{}, d.Points...), d.AfterCompaction, d.AfterDefrag)
		unsettled := 0
		for _, p := range points {
			onDisk, wal := "", ""
			if p.DiskBytes > 0 {
				onDisk, wal = byteSize(p.DiskBytes), byteSize(p.WALBytes)
			}
			label := fmt.Sprintf("%s, %s keys", p.Stage, commas(int64(p.Keys)))
			if p.Unsettled {
				label += " " + unsettledMark
				unsettled++
			}
			row(label, fmt.Sprint(p.VersionsPerKey), commas(p.Versions),
				byteSize(p.LogicalBytes), byteSize(p.FileBytes), byteSize(p.InUseBytes), formatValue(p.BytesPerVersion, ""), onDisk, wal)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "  writes %.1f s, compaction %.2f s, defrag %.2f s (writes paused %s)\n",
			d.WriteSeconds, d.CompactSeconds, d.DefragSeconds, ms(d.DefragPauseMs))
		if unsettled > 0 {
			fmt.Fprintf(w, "  WARNING: %s: at %d of its points %s\n", d.Name, unsettled, unsettledWarning)
		}
		if d.Errors > 0 {
			fmt.Fprintf(w, "  %d ERRORS in %s: its numbers are suspect\n", d.Errors, d.Name)
		}
		if m := d.Memory; m != nil {
			fmt.Fprintf(w, "  server memory per 10,000 keys: %s (%s RSS, %s heap at the end; %s)\n%s",
				m.perUnit(), byteSize(m.After.RSSBytes), byteSize(m.After.HeapBytes), m.beforeAndWhere(), m.unmeasuredLine())
		}
	}
	if err := r.writeAtScaleTable(w); err != nil {
		return err
	}
	if err := r.writePeersTable(w); err != nil {
		return err
	}
	if len(r.Snapshot) > 0 {
		fmt.Fprintln(tw)
		row("SNAPSHOT", "FILE", "SNAPSHOT", "DUMP (JSON)", "EXPORT (JSON)", "RESTORE", "ERRORS")
		for _, s := range r.Snapshot {
			file := measuredBytes(s.FileBytes)
			if s.Unsettled {
				file += " " + unsettledMark
			}
			// A step the run ended or failed before was not timed: its 0 is
			// no time.
			row(s.Name, file, measuredSecs(s.SnapshotSeconds), measuredSecs(s.DumpSeconds), measuredSecs(s.ExportSeconds), measuredSecs(s.RestoreSeconds), commas(s.Errors))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, s := range r.Snapshot {
			if s.Unsettled {
				fmt.Fprintf(w, "  WARNING: %s: %s\n", s.Name, unsettledWarning)
			}
		}
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "\nskipped %s: %s\n", s.Scenario, s.Reason)
	}
	if len(r.Targets) > 0 {
		tt := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tt)
		fmt.Fprintln(tt, "TARGET\tWANT\tGOT\tMET")
		for _, t := range r.Targets {
			met := t.Met
			if t.Met == metYesWithErrors {
				met = fmt.Sprintf("yes, with %d errors", t.Errors)
			}
			fmt.Fprintf(tt, "%s\t%s\t%s\t%s\n", t.Name, t.Want, t.Got, met)
		}
		if err := tt.Flush(); err != nil {
			return err
		}
	}
	if r.Errors > 0 {
		fmt.Fprintf(w, "\n!!! %d ERRORS in this run: its numbers are suspect !!!\n", r.Errors)
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  step %s failed: %s\n", f.Step, f.Error)
		}
		for _, samples := range r.errorSamples() {
			fmt.Fprintf(w, "  %s\n", samples)
		}
	}
	return nil
}

// errorSamples lists "name: N errors, e.g. message" for every part with errors.
func (r *Report) errorSamples() []string {
	var out []string
	add := func(name string, e RunErrors) {
		if e.Errors == 0 {
			return
		}
		line := fmt.Sprintf("%s: %d errors", name, e.Errors)
		if len(e.ErrorSamples) > 0 {
			line += ", e.g. " + e.ErrorSamples[0]
		}
		out = append(out, line)
	}
	for _, x := range r.Runs {
		add(x.Name, x.RunErrors)
	}
	for _, x := range r.Fanout {
		add(x.Name, x.RunErrors)
	}
	for _, x := range r.DiskGrowth {
		add(x.Name, x.RunErrors)
	}
	for _, x := range r.Snapshot {
		add(x.Name, x.RunErrors)
	}
	for _, c := range r.Comparisons {
		for _, x := range c.Results {
			add(c.Name+" "+x.Peer, x.RunErrors)
		}
	}
	return out
}

// writePeersTable prints the comparisons: each server's medians, then
// ctxd's as ratios of each peer's.
func (r *Report) writePeersTable(w io.Writer) error {
	if len(r.Comparisons) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nPEERS: the same runs against each server, %d round(s) in turn, medians\n", r.Settings.Rounds)
	for _, p := range r.Peers {
		if p.Error != "" {
			fmt.Fprintf(w, "  %s: DID NOT START, not compared: %s\n", p.Name, p.Error)
			continue
		}
		durable := "durable"
		if !p.Durable {
			durable = "NOT durable"
		}
		fmt.Fprintf(w, "  %s: %s (%s, %s; %s)\n", p.Name, p.About, p.Version, durable, p.Process)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
	fmt.Fprintln(tw)
	row("RUN", "SERVER", "OPS/S", "±", "P50", "P99", "ERRORS", "CTXD÷ OPS/S", "P50", "P99")
	for _, c := range r.Comparisons {
		for i, x := range c.Results {
			name := ""
			if i == 0 {
				name = c.Name
			}
			cells := []string{name, x.Peer, formatValue(x.OpsPerSec, ""), formatValue(x.OpsPerSecSpread, ""), ms(x.P50), ms(x.P99), fmt.Sprint(x.Errors), "", "", ""}
			if x.OpsPerSec == 0 { // no round answered a request
				cells[2], cells[3], cells[4], cells[5] = noOpCompleted, "", "", ""
			}
			for _, q := range c.Ratios {
				if q.Peer == x.Peer {
					cells[7], cells[8], cells[9] = ratio(q.OpsPerSec), ratio(q.P50), ratio(q.P99)
				}
			}
			row(cells...)
		}
	}
	return tw.Flush()
}

// noWriteAcknowledged stands for the write rate of a fan-out run none of
// whose writes was acknowledged.
const noWriteAcknowledged = "no write acknowledged"

// writesCell is a fan-out run's writes/s for a table: "no write
// acknowledged" rather than a 0, and how many writes failed beside it
// (the rate counts only the acknowledged ones).
func writesCell(f FanoutRun) string {
	cell := formatValue(f.WritesPerSec, "")
	if f.Writes == 0 {
		cell = noWriteAcknowledged
	}
	if f.FailedWrites > 0 {
		cell += fmt.Sprintf(" (%s failed)", commas(f.FailedWrites))
	}
	return cell
}

// missedCell is a fan-out run's missed deliveries for a table: "not
// measured" when none of its writes was acknowledged (a missed one is an
// acknowledged write's change a subscriber did not get), not a 0.
func missedCell(f FanoutRun) string {
	if f.Writes == 0 {
		return notMeasured
	}
	return commas(f.Missed)
}

// changesPerFrameCell is a fan-out run's changes per frame for a table:
// "not measured" when no frame carried one of its changes, not 0.00.
func changesPerFrameCell(f FanoutRun) string {
	if f.Frames == 0 {
		return notMeasured
	}
	return fmt.Sprintf("%.2f", f.ChangesPerFrame)
}

// latencyOf is one of l's latencies for a table: empty when it recorded
// none (a fan-out run with no delivery), not a 0.
func latencyOf(l Latency, v float64) string {
	if l.Count == 0 {
		return ""
	}
	return ms(v)
}

// sideLatency is the p50 and p99 of one side of a mixed run, what (reads
// or writes): "reads p50 1.20 ms p99 3.40 ms", or "no reads answered"
// when none was, not latencies of 0.
func sideLatency(what string, l Latency) string {
	if l.Count == 0 {
		return "no " + what + " answered"
	}
	return fmt.Sprintf("%s p50 %s p99 %s", what, ms(l.P50), ms(l.P99))
}

// ratio prints a ratio of two numbers ("-" when one was missing).
func ratio(v float64) string {
	if v == 0 {
		return "-"
	}
	return formatValue(v, "x")
}

// signedBytes prints a growth in bytes with its sign.
func signedBytes(n int64) string {
	if n < 0 {
		return "-" + byteSize(-n)
	}
	return "+" + byteSize(n)
}

// perBytes prints a growth per unit with its sign, or "not measurable"
// for 0 (see memoryUse).
func perBytes(n int64) string {
	if n == 0 {
		return "not measurable"
	}
	return signedBytes(n)
}

// perUnit is m's growth per unit for the table: "RSS +45.0 MiB, heap
// +30.1 MiB", either "not measurable".
func (m *MemoryUse) perUnit() string {
	return fmt.Sprintf("RSS %s, heap %s", perBytes(m.RSSPer), perBytes(m.HeapPer))
}

// beforeAndWhere is the memory before and where it was read, for the table.
func (m *MemoryUse) beforeAndWhere() string {
	return fmt.Sprintf("%s RSS, %s heap before; %s", byteSize(m.Before.RSSBytes), byteSize(m.Before.HeapBytes), processAbout(m.Process))
}

// commitNotes say why runs that write have blank writes/commit and
// commit columns (runs[].commits_unmeasured), one note per reason: a
// token that may not read /metrics left them blank with no word why.
func (r *Report) commitNotes() []string {
	var reasons []string
	runs := map[string]int{}
	for _, x := range r.Runs {
		if x.CommitsUnmeasured == "" {
			continue
		}
		if runs[x.CommitsUnmeasured] == 0 {
			reasons = append(reasons, x.CommitsUnmeasured)
		}
		runs[x.CommitsUnmeasured]++
	}
	notes := make([]string, 0, len(reasons))
	for _, why := range reasons {
		notes = append(notes, fmt.Sprintf("writes/commit and commit not measured (runs that write: %d): the server's metrics could not be read: %s", runs[why], why))
	}
	return notes
}

// unmeasuredLine says, on a line of its own, why a growth was not
// measurable; empty when both were.
func (m *MemoryUse) unmeasuredLine() string {
	if m.Unmeasured == "" {
		return ""
	}
	return "    not measurable: " + m.Unmeasured + "\n"
}

// processAbout says where a measured server's memory came from.
func processAbout(process string) string {
	switch process {
	case processOwn:
		return "the server alone in its process, after collecting its garbage"
	case processShared:
		return "the server in the suite's process: the load generator's memory is included"
	default:
		return "from the server's /metrics: its heap includes garbage not yet collected"
	}
}

func ms(v float64) string { return formatValue(v, "ms") }

// duration prints seconds as a Go duration, to the microsecond below a
// second and to the millisecond above: 1µs, 312µs, 1.25s.
func duration(v float64) string {
	d := time.Duration(v * float64(time.Second))
	if d >= time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// secs is a time in seconds for the tables: in ms below a second, and in
// µs below a millisecond, as the latency columns (ms), so that a time
// measured (kept to the microsecond: round6) never reads 0 ms.
func secs(v float64) string {
	switch {
	case v >= 1:
		return fmt.Sprintf("%.2f s", v)
	case v*1000 < 0.9995: // what ms prints in µs
		return ms(v * 1000)
	default:
		return fmt.Sprintf("%.0f ms", v*1000)
	}
}
