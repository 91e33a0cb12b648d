package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/jsontext"
	"github.com/framework0/ctxd/internal/query"

	"github.com/labstack/echo/v4"

	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/store"
)

// The Framework0-compatible API: the /ctx routes of Framework0's Enhanced
// Context Server, on one namespace (Config.CompatNamespace), with the same
// fields and statuses, so that its shell scripts, Python client and
// dashboards work unchanged. Errors carry ctxd's {"error":{"code",
// "message"}} and Framework0's "status":"error".
//
//	GET    /ctx?key=K          {"key","value","timestamp","status"}; unknown key: 200, value null
//	GET    /ctx/{key}          the same; unknown key: 404
//	POST   /ctx                {"key","value","who"} -> {"status","key","value","who","timestamp"}; If-Match as v1
//	DELETE /ctx/{key}          {"status","key","who","timestamp"}; If-Match as v1
//	GET    /ctx/all            {"context","history_count","connected_clients","timestamp","status"}
//	GET    /ctx/history        ?key=&who= -> {"history","total_entries","filtered_entries","timestamp","status"}
//	GET    /ctx/status         {"status":"running",...}
//	POST   /ctx/dump           {"format","filename","who","include_history"} (or query) -> the dump written
//	GET    /ctx/dump/list      the dump files
//	GET    /ctx/dump/{file}    download one
//
// GET / is the dashboard (dashboard.go); it links these routes.

// compatWho is who Framework0 recorded when a request named no one.
const compatWho = "api_client"

func (s *Server) compatRoutes() {
	e := s.e
	getAndHead(e, "/ctx", s.compatGetQuery)
	e.POST("/ctx", s.compatSet)
	getAndHead(e, "/ctx/all", s.compatAll)
	getAndHead(e, "/ctx/history", s.compatHistory)
	getAndHead(e, "/ctx/status", s.compatStatus)
	e.POST("/ctx/dump", s.compatDump)
	getAndHead(e, "/ctx/dump/list", s.compatDumpList)
	getAndHead(e, "/ctx/dump/*", s.compatDumpDownload)
	// The key is taken from the escaped path, as on the v1 routes.
	getAndHead(e, "/ctx/*", s.compatGetPath)
	e.DELETE("/ctx/*", s.compatDelete)
}

// compatNS is the namespace of the /ctx API.
func (s *Server) compatNS() string {
	if s.cfg.CompatNamespace == "" {
		return ctxd.DefaultNamespace
	}
	return s.cfg.CompatNamespace
}

// isCompat reports whether the request is one of Framework0's /ctx routes,
// whose errors carry Framework0's "status":"error" beside the error object
// (handleError): every one, from a handler, the gate or the router.
func isCompat(c echo.Context) bool {
	p := c.Request().URL.Path
	return p == "/ctx" || strings.HasPrefix(p, "/ctx/")
}

// compatKeyPath reads the key from the escaped path after "/ctx/".
func compatKeyPath(r *http.Request) (string, error) {
	raw, ok := strings.CutPrefix(r.URL.EscapedPath(), "/ctx/")
	if !ok {
		return "", badRequest("malformed key path")
	}
	return parseKey(raw)
}

// compatWhoOf is who a /ctx change is recorded as (authorOf):
// "api_client" when the request gives no one.
func compatWhoOf(c echo.Context, bodyWho *string) string {
	declared := ""
	if bodyWho != nil {
		declared = *bodyWho
	}
	return authorOf(c, declared, compatWho)
}

// appendValueAnswer appends {"key","value","timestamp","status":"success"}.
func appendValueAnswer(b []byte, key string, value []byte, now time.Time) []byte {
	b = append(b, `{"key":`...)
	b = jsontext.AppendString(b, key)
	b = append(b, `,"value":`...)
	b = appendRaw(b, value)
	b = append(b, `,"timestamp":`...)
	b = jsontext.AppendTime(b, now)
	return append(b, `,"status":"success"}`...)
}

// compatGetQuery serves GET /ctx?key=K. As in Framework0, a key that does
// not exist is a 200 with a null value.
func (s *Server) compatGetQuery(c echo.Context) error {
	key, _ := queryParam(c, "key")
	if key == "" {
		return badRequest(`missing "key" parameter: GET /ctx?key=NAME`)
	}
	rec, err := s.st.Get(s.compatNS(), key)
	if err != nil && !errors.Is(err, ctxd.ErrNotFound) {
		return err
	}
	now := time.Now().UTC()
	return respond(c, http.StatusOK, func(b []byte) []byte { return appendValueAnswer(b, key, rec.Value, now) })
}

// compatGetPath serves GET /ctx/{key}; a key that does not exist is a 404.
func (s *Server) compatGetPath(c echo.Context) error {
	key, err := compatKeyPath(c.Request())
	if err != nil {
		return err
	}
	rec, err := s.st.Get(s.compatNS(), key)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	return respond(c, http.StatusOK, func(b []byte) []byte { return appendValueAnswer(b, key, rec.Value, now) })
}

// compatSet serves POST /ctx with {"key","value","who"}; without "who",
// ?who= or X-Ctxd-Who, else api_client. As in Framework0, a missing or null
// value is a 400 (v1 stores null like any value). If-Match works as on v1:
// a precondition a client states is never ignored.
func (s *Server) compatSet(c echo.Context) error {
	req := c.Request()
	expect, err := parseIfMatch(req)
	if err != nil {
		return err
	}
	body, err := readBody(req)
	if err != nil {
		return err
	}
	var in struct {
		Key   *string         `json:"key"`
		Value json.RawMessage `json:"value"`
		Who   *string         `json:"who"`
		// TTL (optional, ctxd's addition) makes the key expire.
		TTL json.RawMessage `json:"ttl"`
	}
	if err := decodeObject(body, &in); err != nil {
		return err
	}
	ttl, err := ctxd.ParseTTLJSON(in.TTL)
	if err != nil {
		return err
	}
	if in.Key == nil || *in.Key == "" {
		return badRequest(`missing "key": send {"key": "name", "value": ...}`)
	}
	if len(in.Value) == 0 || string(in.Value) == "null" {
		return badRequest(`missing "value" (null is not a value here): send {"key": "name", "value": ...}`)
	}
	author := compatWhoOf(c, in.Who)
	res, err := s.st.Txn(req.Context(), []ctxd.Write{{Namespace: s.compatNS(), Key: *in.Key, Op: ctxd.OpPut, Value: in.Value, Expect: expect, Who: author, TTL: ttl}})
	if err != nil {
		return err
	}
	rec := &res.Records[0]
	return respond(c, http.StatusOK, func(b []byte) []byte {
		b = append(b, `{"status":"success","key":`...)
		b = jsontext.AppendString(b, rec.Key)
		b = append(b, `,"value":`...)
		b = appendRaw(b, rec.Value)
		b = append(b, `,"who":`...)
		b = jsontext.AppendString(b, rec.Who)
		b = append(b, `,"timestamp":`...)
		b = jsontext.AppendTime(b, rec.UpdatedAt)
		if !rec.ExpiresAt.IsZero() {
			b = append(b, `,"expires_at":`...)
			b = jsontext.AppendTime(b, rec.ExpiresAt)
		}
		return append(b, '}')
	})
}

// decodeObject decodes a JSON object body into v (a pointer to a struct;
// unknown fields are ignored, as Framework0 did).
func decodeObject(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return badRequest("the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		return badRequest("the body is not a valid JSON object: " + ctxd.DecodeErrorMessage(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("the body has data after the JSON object")
	}
	if err := ctxd.CheckDuplicateMembers(trimmed, "value"); err != nil {
		return err
	}
	return nil
}

// compatDelete serves DELETE /ctx/{key} (who: ?who= or X-Ctxd-Who;
// If-Match as on v1).
func (s *Server) compatDelete(c echo.Context) error {
	key, err := compatKeyPath(c.Request())
	if err != nil {
		return err
	}
	expect, err := parseIfMatch(c.Request())
	if err != nil {
		return err
	}
	rec, err := s.st.Delete(c.Request().Context(), s.compatNS(), key, expect, compatWhoOf(c, nil))
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, func(b []byte) []byte {
		b = append(b, `{"status":"success","key":`...)
		b = jsontext.AppendString(b, rec.Key)
		b = append(b, `,"who":`...)
		b = jsontext.AppendString(b, rec.Who)
		b = append(b, `,"timestamp":`...)
		b = jsontext.AppendTime(b, rec.UpdatedAt)
		return append(b, '}')
	})
}

// compatAll serves GET /ctx/all: every key of the namespace and the number
// of changes history holds, from one consistent read.
func (s *Server) compatAll(c echo.Context) error {
	ns := s.compatNS()
	return s.sendSpooled(c, func(w io.Writer) (http.Header, error) {
		bw := &lineWriter{w: w}
		bw.b = append(bw.b, `{"context":{`...)
		changes := 0
		err := s.st.View(func(v store.View) error {
			n := 0
			err := v.ForEach(ns, "", func(r ctxd.Record) error {
				if n > 0 {
					bw.b = append(bw.b, ',')
				}
				n++
				bw.b = jsontext.AppendString(bw.b, r.Key)
				bw.b = append(bw.b, ':')
				bw.b = appendRaw(bw.b, r.Value)
				return bw.flushIfFull()
			})
			if err != nil {
				return err
			}
			return v.ForEachChange(ns, func(ctxd.Change) error { changes++; return nil })
		})
		if err != nil {
			return nil, err
		}
		bw.b = append(bw.b, `},"history_count":`...)
		bw.b = strconv.AppendInt(bw.b, int64(changes), 10)
		bw.b = append(bw.b, `,"connected_clients":`...)
		bw.b = strconv.AppendInt(bw.b, int64(s.clients()), 10)
		bw.b = append(bw.b, `,"timestamp":`...)
		bw.b = jsontext.AppendTime(bw.b, time.Now().UTC())
		bw.b = append(bw.b, `,"status":"success"}`...)
		return jsonHeader(), bw.flush()
	})
}

// compatHistory serves GET /ctx/history?key=&who=: the namespace's changes
// in the order they happened, each with the value before and after it.
func (s *Server) compatHistory(c echo.Context) error {
	ns := s.compatNS()
	keyFilter, _ := queryParam(c, "key")
	whoFilter, _ := queryParam(c, "who")
	return s.sendSpooled(c, func(w io.Writer) (http.Header, error) {
		bw := &lineWriter{w: w}
		bw.b = append(bw.b, `{"history":[`...)
		total, kept := 0, 0
		token := tokenOf(c)
		err := s.st.View(func(v store.View) error {
			keep := func(c *ctxd.Change) bool {
				if !token.CanRead(ns, c.Key) {
					// Not counted either: a token limited to some keys
					// learns nothing of the others' changes.
					return false
				}
				total++
				return (keyFilter == "" || c.Key == keyFilter) && (whoFilter == "" || c.Who == whoFilter)
			}
			return export.ForEachEntry(v, ns, keep, func(e *export.Entry) error {
				if kept > 0 {
					bw.b = append(bw.b, ',')
				}
				kept++
				bw.b = append(bw.b, `{"timestamp":`...)
				bw.b = jsontext.AppendTime(bw.b, e.Time)
				bw.b = append(bw.b, `,"key":`...)
				bw.b = jsontext.AppendString(bw.b, e.Key)
				bw.b = append(bw.b, `,"before":`...)
				bw.b = appendRaw(bw.b, e.Before)
				bw.b = append(bw.b, `,"after":`...)
				bw.b = appendRaw(bw.b, e.After())
				bw.b = append(bw.b, `,"who":`...)
				bw.b = jsontext.AppendString(bw.b, e.Who)
				bw.b = append(bw.b, `,"action":"`...)
				bw.b = append(bw.b, e.Action()...)
				bw.b = append(bw.b, `"}`...)
				return bw.flushIfFull()
			})
		})
		if err != nil {
			return nil, err
		}
		bw.b = append(bw.b, `],"total_entries":`...)
		bw.b = strconv.AppendInt(bw.b, int64(total), 10)
		bw.b = append(bw.b, `,"filtered_entries":`...)
		bw.b = strconv.AppendInt(bw.b, int64(kept), 10)
		bw.b = append(bw.b, `,"timestamp":`...)
		bw.b = jsontext.AppendTime(bw.b, time.Now().UTC())
		bw.b = append(bw.b, `,"status":"success"}`...)
		return jsonHeader(), bw.flush()
	})
}

func jsonHeader() http.Header {
	return http.Header{echo.HeaderContentType: contentTypeJSON}
}

// lineWriter builds output in a buffer and writes it out in chunks.
type lineWriter struct {
	w io.Writer
	b []byte
}

func (l *lineWriter) flushIfFull() error {
	if len(l.b) < 32<<10 {
		return nil
	}
	return l.flush()
}

func (l *lineWriter) flush() error {
	_, err := l.w.Write(l.b)
	l.b = l.b[:0]
	return err
}

// compatStatusResponse is the body of GET /ctx/status.
type compatStatusResponse struct {
	Status           string    `json:"status"`
	Version          string    `json:"version"`
	Namespace        string    `json:"namespace"`
	Revision         uint64    `json:"revision"`
	Keys             uint64    `json:"keys"`
	ConnectedClients int       `json:"connected_clients"`
	UptimeSeconds    int64     `json:"uptime_seconds"`
	DumpDirectory    string    `json:"dump_directory"`
	Timestamp        time.Time `json:"timestamp"`
}

// compatStatus serves GET /ctx/status.
func (s *Server) compatStatus(c echo.Context) error {
	ns := s.compatNS()
	st, err := s.st.Status()
	if err != nil {
		return err
	}
	nss, err := s.st.Namespaces()
	if err != nil {
		return err
	}
	out := compatStatusResponse{
		Status: "running", Version: s.cfg.Version, Namespace: ns, Revision: st.Revision,
		ConnectedClients: s.clients(), UptimeSeconds: int64(time.Since(s.started) / time.Second),
		Timestamp: time.Now().UTC(),
	}
	if nss, err = s.visibleNamespaces(c, nss); err != nil { // the keys the token may read
		return err
	}
	for _, n := range nss {
		if n.Name == ns {
			out.Keys = n.Keys
		}
	}
	if s.dumps.dir != nil {
		out.DumpDirectory = s.dumps.dir.Path()
	}
	return sendJSON(c, http.StatusOK, out)
}

// compatDumpRequest is the JSON body of POST /ctx/dump; every field is
// optional, and may be given as a query parameter instead.
type compatDumpRequest struct {
	Format         *string         `json:"format"`
	Filename       *string         `json:"filename"`
	Who            *string         `json:"who"`
	IncludeHistory json.RawMessage `json:"include_history"`
}

// compatDumpResponse is the answer to POST /ctx/dump.
type compatDumpResponse struct {
	Status    string    `json:"status"`
	Filename  string    `json:"filename"`
	Format    string    `json:"format"`
	Path      string    `json:"path"`
	KeyCount  int       `json:"key_count"`
	FileSize  int64     `json:"file_size"`
	Timestamp time.Time `json:"timestamp"`
	Who       string    `json:"who"`
}

// compatDump serves POST /ctx/dump: a dump of the namespace written to the
// dump folder. Parameters come from the query, then the JSON body (which
// wins); the format defaults to json, who to api_client. Without a
// filename the dump is named context_dump_YYYYMMDD_HHMMSS.<format>; with
// one, a file of that name is replaced.
func (s *Server) compatDump(c echo.Context) error {
	r := dumpRequest{ns: s.compatNS(), who: compatWhoOf(c, nil)}
	formatName, _ := queryParam(c, "format")
	r.filename, _ = queryParam(c, "filename")
	var err error
	if r.history, err = boolParam(c, "include_history"); err != nil {
		return err
	}
	body, err := readBody(c.Request())
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) > 0 {
		var in compatDumpRequest
		if err := decodeObject(body, &in); err != nil {
			return err
		}
		if in.Format != nil {
			formatName = *in.Format
		}
		if in.Filename != nil {
			r.filename = *in.Filename
		}
		if in.Who != nil && *in.Who != "" {
			// Held to a change's rules, as ?who= and X-Ctxd-Who are
			// (refuseBadWho): it goes as given into the file's header
			// and the context_dumped message.
			r.who = compatWhoOf(c, in.Who)
			if err := ctxd.ValidateWho(r.who); err != nil {
				return err
			}
		}
		if len(in.IncludeHistory) > 0 {
			if r.history, err = jsonBool(in.IncludeHistory); err != nil {
				return err
			}
		}
	}
	if r.format, err = export.ParseFormat(formatName); err != nil {
		return err
	}
	info, err := s.dumpToFile(r)
	if err != nil {
		return err
	}
	return sendJSON(c, http.StatusOK, compatDumpResponse{
		Status: "success", Filename: info.Filename, Format: info.Format, Path: info.Path,
		KeyCount: info.KeyCount, FileSize: info.FileSize, Timestamp: info.Timestamp, Who: info.Who,
	})
}

// jsonBool reads include_history: a JSON boolean, or a string or number
// that query.ParseBool accepts ("true", "1", ...); null is false.
func jsonBool(raw json.RawMessage) (bool, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return false, badRequest(`"include_history" must be true or false`)
	}
	switch x := v.(type) {
	case nil:
		return false, nil
	case bool:
		return x, nil
	case string:
		if b, ok := query.ParseBool(x); ok {
			return b, nil
		}
	case float64:
		if x == 0 || x == 1 {
			return x == 1, nil
		}
	}
	return false, badRequest(`"include_history" must be true or false; got ` + string(raw))
}

// compatDumpListResponse is the answer to GET /ctx/dump/list.
type compatDumpListResponse struct {
	Status        string          `json:"status"`
	DumpDirectory string          `json:"dump_directory"`
	DumpCount     int             `json:"dump_count"`
	DumpFiles     []ctxd.DumpFile `json:"dump_files"`
	DumpHistory   []ctxd.DumpInfo `json:"dump_history"`
	Timestamp     time.Time       `json:"timestamp"`
}

// compatDumpList serves GET /ctx/dump/list: the dump files, newest first,
// and the last dumps this server wrote.
func (s *Server) compatDumpList(c echo.Context) error {
	dir, infos, err := s.dumps.list()
	if err != nil {
		return err
	}
	return sendJSON(c, http.StatusOK, compatDumpListResponse{
		Status: "success", DumpDirectory: dir.Path(), DumpCount: len(infos), DumpFiles: dumpFiles(infos),
		DumpHistory: s.dumps.history(), Timestamp: time.Now().UTC(),
	})
}

// compatDumpDownload serves GET /ctx/dump/{filename}.
func (s *Server) compatDumpDownload(c echo.Context) error {
	return s.sendDumpFile(c, "/ctx/dump/")
}
