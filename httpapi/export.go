package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/internal/query"
	"github.com/framework0/ctxd/store"
)

// Exports, imports and server-side dumps (the v1 routes; compat.go has the
// Framework0 ones):
//
//	GET  /v1/ns/{ns}/export?format=&rev=&history=   a dump streamed to the client
//	POST /v1/ns/{ns}/import                          a JSON dump applied as one transaction
//	POST /v1/ns/{ns}/dumps?format=&filename=&history=&rev=   a dump written to the dump folder
//	GET  /v1/dumps                                   the dump files
//	GET  /v1/dumps/{filename}                        download one
//	DELETE /v1/dumps/{filename}                      remove one

// errNoDumpDir answers dump requests when Config.Dumps is nil.
var errNoDumpDir = errors.New("server-side dumps are disabled: the server has no dump folder")

// maxDumpHistory is how many recent dumps /ctx/dump/list reports.
const maxDumpHistory = 10

// spoolMemBytes is how much of a response is kept in memory before it is
// spooled to a temp file.
const spoolMemBytes = 1 << 20

// dumps is the dump side of a Server.
type dumps struct {
	dir    *export.Dir // Config.Dumps
	onDump func(ctxd.DumpInfo)

	mu     sync.Mutex
	recent []ctxd.DumpInfo // the last maxDumpHistory server-side dumps, oldest first
}

func newDumps(cfg Config) *dumps { return &dumps{dir: cfg.Dumps, onDump: cfg.OnDump} }

// dumped records a finished dump and calls the hook.
func (d *dumps) dumped(info ctxd.DumpInfo) {
	if info.Filename != "" {
		d.mu.Lock()
		d.recent = append(d.recent, info)
		if len(d.recent) > maxDumpHistory {
			d.recent = append(d.recent[:0], d.recent[len(d.recent)-maxDumpHistory:]...)
		}
		d.mu.Unlock()
	}
	if d.onDump != nil {
		d.onDump(info)
	}
}

// list returns the dump folder and its files, newest first.
func (d *dumps) list() (*export.Dir, []export.FileInfo, error) {
	if d.dir == nil {
		return nil, nil, errNoDumpDir
	}
	infos, err := d.dir.List()
	return d.dir, infos, err
}

// history returns the last server-side dumps, oldest first.
func (d *dumps) history() []ctxd.DumpInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]ctxd.DumpInfo, len(d.recent))
	for i := range d.recent {
		out[i] = d.recent[len(d.recent)-1-i] // newest first
	}
	return out
}

func (s *Server) exportRoutes() {
	e := s.e
	getAndHead(e, "/v1/ns/:ns/export", s.exportNS)
	e.POST("/v1/ns/:ns/import", s.importNS)
	e.POST("/v1/ns/:ns/dumps", s.createDump)
	getAndHead(e, "/v1/dumps", s.listDumps)
	getAndHead(e, "/v1/dumps/*", s.downloadDump)
	e.DELETE("/v1/dumps/*", s.deleteDump)
}

// dumpRequest is what a dump or an export asks for.
type dumpRequest struct {
	ns      string
	format  export.Format
	history bool
	// spreadsheetSafe is export.Options.SpreadsheetSafe (csv only).
	spreadsheetSafe bool
	rev             uint64 // 0: now
	who             string
	// filename is the dump file's name as asked ("" for a default name).
	filename string
}

// parseExportQuery reads the namespace from rawNS (path-escaped), and
// format, history and rev from the query.
func parseExportQuery(c echo.Context, rawNS string) (dumpRequest, error) {
	ns, err := parseNamespace(rawNS)
	if err != nil {
		return dumpRequest{}, err
	}
	r := dumpRequest{ns: ns, who: who(c)}
	fs, _ := queryParam(c, "format")
	f, err := export.ParseFormat(fs)
	if err != nil {
		return r, err
	}
	r.format = f
	if r.history, err = boolParam(c, "history"); err != nil {
		return r, err
	}
	if r.spreadsheetSafe, err = boolParam(c, "spreadsheet_safe"); err != nil {
		return r, err
	}
	if err := r.options().Check(r.format); err != nil {
		return r, err
	}
	if r.rev, err = positiveParam(c, "rev"); err != nil {
		return r, err
	}
	return r, nil
}

// options are the export options of r.
func (r dumpRequest) options() export.Options {
	return export.Options{Namespace: r.ns, Who: r.who, History: r.history, SpreadsheetSafe: r.spreadsheetSafe}
}

// boolParam reads an optional boolean query parameter (see query.ParseBool:
// true/1/yes/on or no value, false/0/no/off, in any case); absent is false.
func boolParam(c echo.Context, name string) (bool, error) { return boolParamOr(c, name, false) }

// boolParamOr is boolParam with def when the parameter is absent.
func boolParamOr(c echo.Context, name string, def bool) (bool, error) {
	s, ok := queryParam(c, name)
	if !ok {
		return def, nil
	}
	b, err := query.BoolParam(name, s)
	if err != nil {
		return false, badRequest(err.Error())
	}
	return b, nil
}

// writeDump writes the dump r asks for to w, from one consistent read, and
// describes it.
func (s *Server) writeDump(w io.Writer, r dumpRequest) (ctxd.DumpInfo, error) {
	if err := ctxd.ValidateNamespace(r.ns); err != nil {
		return ctxd.DumpInfo{}, err
	}
	if r.rev != 0 {
		if err := s.st.CheckRevision(r.rev); err != nil {
			return ctxd.DumpInfo{}, err
		}
	}
	var res export.Result
	write := func(src export.Source) error {
		var err error
		res, err = export.Write(w, r.format, src, r.options())
		return err
	}
	var err error
	if past, ok := s.st.(store.PastViewer); ok && r.rev != 0 {
		err = past.ViewAt(r.rev, func(v store.View) error { return write(v) })
	} else {
		err = s.st.View(func(v store.View) error {
			if r.rev == 0 {
				return write(v)
			}
			past, err := export.AtRevision(v, r.rev)
			if err != nil {
				return err
			}
			return write(past)
		})
	}
	if err != nil {
		return ctxd.DumpInfo{}, err
	}
	if r.rev != 0 {
		// A compaction that passed rev while the dump was read may have
		// removed history it needed: refuse rather than risk a wrong dump.
		if err := s.st.CheckRevision(r.rev); err != nil {
			return ctxd.DumpInfo{}, err
		}
	}
	return ctxd.DumpInfo{
		Format: string(r.format), Namespace: r.ns, Revision: res.Revision, KeyCount: res.Keys,
		IncludeHistory: r.history, HistoryCount: res.Changes, SpreadsheetSafe: r.spreadsheetSafe, FileSize: res.Bytes,
		Who: r.who, Timestamp: res.Time,
	}, nil
}

// dumpToFile writes the dump r asks for into the dump folder: under
// r.filename (with the format's extension added), replacing a file of that
// name, or under a fresh default name. It calls the dump hook.
func (s *Server) dumpToFile(r dumpRequest) (ctxd.DumpInfo, error) {
	dir := s.dumps.dir
	if dir == nil {
		return ctxd.DumpInfo{}, errNoDumpDir
	}
	name, replace := r.filename, true
	if name == "" {
		name, replace = export.DefaultName(r.format, time.Now()), false
	} else {
		var err error
		if name, err = export.DumpName(name, r.format); err != nil {
			return ctxd.DumpInfo{}, err
		}
	}
	var (
		info ctxd.DumpInfo
		fi   export.FileInfo
	)
	err := buildOvertaken(r.rev != 0, func() (err error) {
		fi, err = dir.Create(name, replace, func(w io.Writer) error {
			var err error
			if info, err = s.writeDump(w, r); err == nil {
				failpoint.Hit(failpoint.DumpBeforeRename)
			}
			return err
		})
		return err
	})
	if err != nil {
		return ctxd.DumpInfo{}, err
	}
	info.Filename, info.Path, info.FileSize = fi.Name, fi.Path, fi.Size
	s.log.Info().Str("file", fi.Path).Str("ns", r.ns).Str("format", string(r.format)).
		Uint64("revision", info.Revision).Int("keys", info.KeyCount).Int64("bytes", fi.Size).
		Str("who", r.who).Msg("dump written")
	s.dumps.dumped(info)
	s.pruneDumps(dir, fi.Name)
	return info, nil
}

// pruneDumps applies the dump folder's retention (dumps.keep,
// dumps.max_bytes) after the dump just written. A failure is logged, not
// returned: the dump itself was written. While another dump is being
// written into the folder, the next dump prunes instead.
func (s *Server) pruneDumps(dir *export.Dir, just string) {
	removed, ran, err := dir.Prune(s.cfg.DumpRetention, just)
	if !ran && err == nil {
		s.log.Debug().Msg("dumps not pruned: another dump is being written into the folder; the next dump prunes")
	}
	if len(removed) > 0 {
		s.log.Info().Strs("removed", removed).Int("keep", s.cfg.DumpRetention.Keep).
			Int64("max_bytes", s.cfg.DumpRetention.MaxBytes).Msg("dumps pruned")
	}
	if err != nil {
		s.log.Error().Err(err).Msg("pruning the dump folder failed")
	}
}

// exportNS serves GET /v1/ns/{ns}/export: the dump, sent as an attachment
// named <ns>-r<revision>.<format>, with its revision in X-Ctxd-Revision.
func (s *Server) exportNS(c echo.Context) error {
	r, err := parseExportQuery(c, c.Param("ns"))
	if err != nil {
		return err
	}
	var info ctxd.DumpInfo
	err = s.sendSpooled(c, func(w io.Writer) (http.Header, error) {
		var err error
		if info, err = s.writeDump(w, r); err != nil {
			return nil, err
		}
		h := http.Header{}
		h.Set(echo.HeaderContentType, r.format.ContentType())
		h.Set("X-Ctxd-Revision", strconv.FormatUint(info.Revision, 10))
		h.Set(echo.HeaderContentDisposition, attachment(r.ns+"-r"+strconv.FormatUint(info.Revision, 10)+r.format.Ext()))
		return h, nil
	})
	if err != nil {
		return err
	}
	s.dumps.dumped(info)
	return nil
}

// attachment is a Content-Disposition for a download of a file name made of
// [A-Za-z0-9._-] (dump names, namespaces).
func attachment(name string) string {
	return `attachment; filename="` + name + `"`
}

// sendSpooled answers 200 with what fill writes and the headers it returns.
// fill's output is kept in memory up to spoolMemBytes and in an unlinked
// temp file beyond, then sent: the store's read transaction ends before a
// slow client is served, an error while writing is still a clean error
// answer, and the answer has a Content-Length. No answer's temp file
// passes Config.MaxSpoolBytes, and all of them together pass it by at most
// the leader's part (spool.reserve): one that would pass it is a 503
// instead, with Retry-After when the others' bytes are what it lacked.
func (s *Server) sendSpooled(c echo.Context, fill func(w io.Writer) (http.Header, error)) error {
	var (
		sp *spool
		h  http.Header
	)
	_, atRev := queryParam(c, "rev")
	// Closed however fill ends, a panic included (callSafely recovers it):
	// a spool left open would keep its bytes, its file and, as the leader,
	// the role for good.
	defer func() {
		if sp != nil {
			sp.close()
		}
	}()
	err := buildOvertaken(atRev, func() (err error) {
		if sp != nil {
			sp.close() // an attempt a compaction overtook
		}
		sp = &spool{dir: s.dumps.dir, held: &s.spooled, leader: &s.spoolLeader, max: s.cfg.MaxSpoolBytes}
		h, err = fill(sp)
		return err
	})
	if errors.Is(err, errSpoolFull) {
		c.Response().Header().Set("Retry-After", "5")
	}
	if err != nil {
		return err
	}
	res := c.Response()
	for k, v := range h {
		res.Header()[k] = v
	}
	res.Header().Set(echo.HeaderContentLength, strconv.FormatInt(sp.size, 10))
	res.WriteHeader(http.StatusOK)
	// A client that reads nothing would hold the temp file (and its
	// descriptor) as long as it keeps the connection: each write must
	// make progress within StallTimeout (the server has no write timeout:
	// a large export takes its time). The deadline goes with the answer.
	w := stalling{w: res, rc: http.NewResponseController(res), stall: s.cfg.StallTimeout}
	defer func() { _ = w.rc.SetWriteDeadline(time.Time{}) }()
	if sp.f == nil {
		_, err = w.Write(sp.mem.Bytes())
	} else if _, err = sp.f.Seek(0, io.SeekStart); err == nil {
		_, err = io.Copy(w, sp.f)
	}
	if err != nil {
		s.log.Debug().Err(err).Msg("send response")
	}
	return nil
}

// buildOvertaken runs build, the build of an answer or a dump, and runs
// it again, up to buildAttempts in all, while it fails with compacted: a
// compaction that passed the revision it read at (on etcd: by any
// instance, or by etcd itself) fails its reads, and nothing was sent or
// kept yet. One at a revision the request asked for (atRev) would fail
// again: it runs once.
func buildOvertaken(atRev bool, build func() error) error {
	for attempt := 1; ; attempt++ {
		err := build()
		if !errors.Is(err, ctxd.ErrCompacted) || atRev || attempt == buildAttempts {
			return err
		}
	}
}

// buildAttempts is how many times an answer or a dump that a compaction
// overtook is built.
const buildAttempts = 3

// DefaultStallTimeout is Config.StallTimeout by default.
const DefaultStallTimeout = time.Minute

// stalling gives each read of a request's body (r) and each write of its
// answer (w) stall to complete: the connection's deadline moves with the
// progress, instead of the server's read timeout bounding the whole.
type stalling struct {
	r     io.Reader
	w     io.Writer
	rc    *http.ResponseController
	stall time.Duration
}

func (s stalling) Read(p []byte) (int, error) {
	_ = s.rc.SetReadDeadline(time.Now().Add(s.stall))
	return s.r.Read(p)
}

func (s stalling) Write(p []byte) (int, error) {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
	return s.w.Write(p)
}

// serveFile serves a file download with http.ServeContent (ranges and
// conditional requests: a large snapshot's download resumes with Range),
// but answers its refusals in the API's JSON, as every error: ServeContent
// writes a 412 with no body and a 416 as plain text.
func serveFile(c echo.Context, name string, modified time.Time, f io.ReadSeeker) error {
	w := &fileAnswer{ResponseWriter: c.Response()}
	http.ServeContent(w, byteRangesOnly(c.Request()), name, modified, f)
	switch w.refused {
	case http.StatusPreconditionFailed:
		return errPreconditionFailed
	case http.StatusRequestedRangeNotSatisfiable:
		return errRangeNotSatisfiable
	}
	return nil
}

// byteRangesOnly is r as ServeContent should see it: a Range of a unit
// other than bytes (lines=1-2) is dropped, as RFC 9110 (14.2) has a
// server ignore a unit it does not know and send the whole file;
// ServeContent answered it 416. The unit's case does not matter
// (Bytes=0-9 is a bytes range), which ServeContent does not know either.
func byteRangesOnly(r *http.Request) *http.Request {
	rng := r.Header.Get("Range")
	if rng == "" || strings.HasPrefix(rng, "bytes=") {
		return r
	}
	unit, spec, _ := strings.Cut(rng, "=")
	r = r.Clone(r.Context())
	if strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		r.Header.Set("Range", "bytes="+spec)
	} else {
		r.Header.Del("Range")
	}
	return r
}

// fileAnswer passes ServeContent's answer on, except a refusal (412,
// 416), which it keeps back for the API's error answer.
type fileAnswer struct {
	http.ResponseWriter
	refused int
}

func (w *fileAnswer) WriteHeader(code int) {
	if code == http.StatusPreconditionFailed || code == http.StatusRequestedRangeNotSatisfiable {
		w.refused = code
		h := w.Header()
		h.Del("X-Content-Type-Options") // http.Error's, with its text/plain
		h.Del(echo.HeaderContentDisposition)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *fileAnswer) Write(p []byte) (int, error) {
	if w.refused != 0 {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

func (w *fileAnswer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// DefaultMaxSpoolBytes is Config.MaxSpoolBytes by default.
const DefaultMaxSpoolBytes = 1 << 30

// errSpoolFull refuses an answer whose temp file would take the spooled
// bytes past Config.MaxSpoolBytes while others hold some: clients that
// read slowly (each held up to StallTimeout) must not fill the disk. The
// others' bytes come back when their answers end: a retry may fit.
var errSpoolFull = fmt.Errorf("%w: answers being sent hold http.max_spool_bytes of temp files: try again shortly", ctxd.ErrUnavailable)

// errSpoolTooLarge refuses an answer whose temp file alone would pass
// Config.MaxSpoolBytes: a retry would be refused again. Without it one
// answer could fill the disk the store writes to (a namespace of large
// values, with history; a pretty export, whose lines of up to 32 indents
// make a value of small elements many times its size), and the store's
// own writes would then fail.
var errSpoolTooLarge = fmt.Errorf("%w: the answer is larger than http.max_spool_bytes", ctxd.ErrUnavailable)

// spool is an io.Writer that keeps up to spoolMemBytes in memory and the
// rest in a temp file that is already unlinked.
type spool struct {
	dir  *export.Dir
	mem  bytes.Buffer
	f    *os.File
	size int64
	// held counts the file bytes of every spool being built or sent,
	// against max (reserve); mine is this one's part.
	held *atomic.Int64
	max  int64
	mine int64
	// leader is the spool that goes on past max while it fits alone
	// (reserve); shared like held (nil: none, every spool may be refused).
	leader *atomic.Pointer[spool]
	// err is the refusal that ended the spool: every later write
	// returns it.
	err error
}

// reserve counts n more file bytes against max, which every spool
// shares. Bytes that would take the total past it are refused,
// errSpoolTooLarge when this spool alone would pass it, else errSpoolFull,
// and the spool ends at once (refuse): its file is closed and its bytes
// given back, so that the others go on. One answer is never refused for
// the others' sake: the oldest spool that spills (or, once it ended, the
// first to meet the bound) is the leader, goes on while it fits alone,
// and hands the role on when it ends; so of several answers that spill together one always goes if it
// fits alone (two that met the bound at the same moment were both
// refused), and the total passes max by at most the leader's part: at
// most twice max. No answer's temp file passes max: letting one grow as
// it needed let a single export fill the disk the store writes to. The
// price: a spool already in is refused mid-way, and what it built is
// lost, when others took the room (errSpoolFull, which an answer larger
// than max may also get before it learns it is).
func (sp *spool) reserve(n int64) error {
	if sp.held == nil {
		return nil
	}
	if sp.leader != nil && sp.mine == 0 {
		sp.leader.CompareAndSwap(nil, sp) // the oldest spool that spills leads
	}
	for {
		total := sp.held.Load()
		if total+n > sp.max {
			break
		}
		if sp.held.CompareAndSwap(total, total+n) {
			sp.mine += n
			return nil
		}
	}
	if sp.mine+n > sp.max {
		sp.refuse(fmt.Errorf("%w (%d bytes) on its own: a retry would be refused again; ask for less (without history; in a format other than pretty, which puts each element of a value on a line of its own) or raise the setting", errSpoolTooLarge, sp.max))
		return sp.err
	}
	if sp.leader != nil && (sp.leader.Load() == sp || sp.leader.CompareAndSwap(nil, sp)) {
		sp.held.Add(n)
		sp.mine += n
		return nil
	}
	sp.refuse(errSpoolFull)
	return sp.err
}

// refuse ends the spool with err: its file (already unlinked) is closed,
// which frees its space, and its bytes are given back.
func (sp *spool) refuse(err error) {
	sp.err = err
	sp.mem = bytes.Buffer{}
	sp.close()
}

func (sp *spool) Write(p []byte) (int, error) {
	if sp.err != nil {
		return 0, sp.err
	}
	if sp.f == nil && sp.mem.Len()+len(p) <= spoolMemBytes {
		sp.size += int64(len(p))
		return sp.mem.Write(p)
	}
	if err := sp.reserve(int64(sp.mem.Len() + len(p))); err != nil {
		return 0, err
	}
	if sp.f == nil {
		var err error
		if sp.dir != nil {
			sp.f, err = sp.dir.Spool()
		} else {
			sp.f, err = tempSpool()
		}
		if err != nil {
			return 0, err
		}
		if _, err := sp.f.Write(sp.mem.Bytes()); err != nil {
			return 0, err
		}
		sp.mem = bytes.Buffer{}
	}
	n, err := sp.f.Write(p)
	sp.size += int64(n)
	return n, err
}

// close ends the spool: it may be called more than once.
func (sp *spool) close() {
	if sp.f != nil {
		_ = sp.f.Close()
		sp.f = nil
	}
	if sp.leader != nil {
		sp.leader.CompareAndSwap(sp, nil)
	}
	if sp.held != nil {
		sp.held.Add(-sp.mine)
		sp.mine = 0
	}
}

// tempSpool is a spool file in the system's temp folder, for a server
// without a dump folder.
func tempSpool() (*os.File, error) {
	f, err := os.CreateTemp("", "ctxd-spool-*")
	if err != nil {
		return nil, err
	}
	_ = os.Remove(f.Name())
	return f, nil
}

// importResponse is the answer to POST /v1/ns/{ns}/import.
type importResponse struct {
	Namespace string `json:"ns"`
	Imported  int    `json:"imported"`
	// SkippedExpired counts the keys of the dump whose deadline had
	// already passed: they are not put (see importNS).
	SkippedExpired int    `json:"skipped_expired"`
	Revision       uint64 `json:"revision"`
}

// importNS serves POST /v1/ns/{ns}/import: the body is a JSON dump (ctxd's
// or Framework0's); every key of its "context" is put, in one transaction.
// Keys not in the dump are left alone. A malformed dump, a duplicate key or
// a bad key or value is a 400 and writes nothing.
//
// A key the dump's "expires_at" gives a deadline is put with what remains
// of it as its TTL, so it expires when it would have on the server it was
// dumped from. A key whose deadline has passed is skipped and counted, not
// put and expired at once: an import must not replace a live key of {ns}
// with a value that vanishes the next second, nor write two changes (a put
// and its expiry) that say nothing.
func (s *Server) importNS(c echo.Context) error {
	req := c.Request()
	ns, err := parseNamespace(c.Param("ns"))
	if err != nil {
		return err
	}
	if err := ctxd.ValidateNamespace(ns); err != nil {
		return err
	}
	author := who(c)
	var writes []ctxd.Write
	seen := map[string]bool{}
	deadlines := map[string]time.Time{}
	err = export.ReadJSON(req.Body, func(key string, value json.RawMessage) error {
		if seen[key] {
			return badRequest("the dump holds key " + strconv.Quote(key) + " twice")
		}
		seen[key] = true
		writes = append(writes, ctxd.Write{Namespace: ns, Key: key, Op: ctxd.OpPut, Value: value, Who: author})
		return nil
	}, func(key string, at time.Time) error {
		if _, dup := deadlines[key]; dup {
			return badRequest("the dump's expires_at holds key " + strconv.Quote(key) + " twice")
		}
		deadlines[key] = at
		return nil
	})
	if err != nil {
		return oversized(err)
	}
	writes, skipped, err := applyDeadlines(writes, deadlines, time.Now())
	if err != nil {
		return err
	}
	out := importResponse{Namespace: ns, Imported: len(writes), SkippedExpired: skipped}
	if len(writes) == 0 {
		st, err := s.st.Status()
		if err != nil {
			return err
		}
		out.Revision = st.Revision
		return sendJSON(c, http.StatusOK, out)
	}
	res, err := s.st.Import(req.Context(), writes)
	if err != nil {
		return err
	}
	out.Revision = res.Revision
	s.log.Info().Str("ns", ns).Int("keys", len(writes)).Uint64("revision", res.Revision).Str("who", author).Msg("dump imported")
	return sendJSON(c, http.StatusOK, out)
}

// applyDeadlines gives each write whose key has a deadline the time left
// until it (at now) as its TTL, and drops the writes whose deadline has
// passed; it answers how many it dropped. A deadline for a key the dump's
// "context" does not hold is a bad dump.
func applyDeadlines(writes []ctxd.Write, deadlines map[string]time.Time, now time.Time) ([]ctxd.Write, int, error) {
	if len(deadlines) == 0 {
		return writes, 0, nil
	}
	kept := writes[:0]
	for _, w := range writes {
		at, ok := deadlines[w.Key]
		if !ok {
			kept = append(kept, w)
			continue
		}
		delete(deadlines, w.Key)
		left := at.Sub(now)
		if left == math.MaxInt64 { // Sub saturates: centuries ahead
			return nil, 0, badRequest("the dump's expires_at for key " + strconv.Quote(w.Key) + ", " + at.Format(time.RFC3339) + ", is too far ahead")
		}
		if left > 0 {
			w.TTL = left
			kept = append(kept, w)
		}
	}
	for key := range deadlines {
		return nil, 0, badRequest("the dump's expires_at names key " + strconv.Quote(key) + ", which its context does not hold")
	}
	return kept, len(writes) - len(kept), nil
}

// createDump serves POST /v1/ns/{ns}/dumps?format=&filename=&history=&rev=:
// a dump written to the dump folder, described in the answer.
func (s *Server) createDump(c echo.Context) error {
	r, err := parseExportQuery(c, c.Param("ns"))
	if err != nil {
		return err
	}
	r.filename, _ = queryParam(c, "filename")
	info, err := s.dumpToFile(r)
	if err != nil {
		return err
	}
	return sendJSON(c, http.StatusOK, info)
}

func dumpFiles(infos []export.FileInfo) []ctxd.DumpFile {
	out := make([]ctxd.DumpFile, len(infos))
	for i, fi := range infos {
		out[i] = ctxd.DumpFile{Filename: fi.Name, Path: fi.Path, Size: fi.Size, Created: fi.Modified, Modified: fi.Modified}
	}
	return out
}

// listDumps serves GET /v1/dumps: the dump files, newest first.
func (s *Server) listDumps(c echo.Context) error {
	dir, infos, err := s.dumps.list()
	if err != nil {
		return err
	}
	return sendJSON(c, http.StatusOK, ctxd.DumpList{Directory: dir.Path(), Dumps: dumpFiles(infos)})
}

// downloadDump serves GET /v1/dumps/{filename}.
func (s *Server) downloadDump(c echo.Context) error {
	return s.sendDumpFile(c, "/v1/dumps/")
}

// dumpInPath returns the dump folder and the dump filename the rest of
// the escaped path after prefix names (unescaped, not checked yet: the
// folder's methods check it before anything is opened).
func (s *Server) dumpInPath(c echo.Context, prefix string) (*export.Dir, string, error) {
	dir := s.dumps.dir
	if dir == nil {
		return nil, "", errNoDumpDir
	}
	raw, ok := strings.CutPrefix(c.Request().URL.EscapedPath(), prefix)
	if !ok {
		return nil, "", badRequest("malformed dump path")
	}
	name, err := url.PathUnescape(raw)
	if err != nil {
		return nil, "", badRequest("dump filename is not a valid path-escaped string: " + err.Error())
	}
	return dir, name, nil
}

// deleteDump serves DELETE /v1/dumps/{filename}.
func (s *Server) deleteDump(c echo.Context) error {
	dir, name, err := s.dumpInPath(c, "/v1/dumps/")
	if err != nil {
		return err
	}
	if err := dir.Remove(name); err != nil {
		return err
	}
	s.log.Info().Str("file", name).Str("who", who(c)).Msg("dump deleted")
	return sendJSON(c, http.StatusOK, map[string]string{"deleted": name})
}

// sendDumpFile sends the dump file named by the rest of the escaped path
// after prefix. A name that breaks the filename rule (a slash, "..", an
// encoded one, ...) is a 400, before anything is opened.
func (s *Server) sendDumpFile(c echo.Context, prefix string) error {
	dir, name, err := s.dumpInPath(c, prefix)
	if err != nil {
		return err
	}
	f, fi, err := dir.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	res := c.Response()
	ct := "application/octet-stream"
	if format, ok := export.FormatOfName(name); ok {
		ct = format.ContentType()
	}
	res.Header().Set(echo.HeaderContentType, ct)
	res.Header().Set(echo.HeaderContentDisposition, attachment(name))
	return serveFile(c, name, fi.Modified, f)
}
