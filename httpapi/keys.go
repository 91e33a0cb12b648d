package httpapi

import (
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/framework0/ctxd"
)

// getKey serves GET /v1/ns/{ns}/keys/{key}[?rev=R] and, for a raw
// "/history" suffix, the key's history.
func (s *Server) getKey(c echo.Context) error {
	kp, err := parseKeyPath(c.Request())
	if err != nil {
		return err
	}
	if kp.history {
		return s.history(c, kp)
	}
	rev, err := positiveParam(c, "rev")
	if err != nil {
		return err
	}
	var rec ctxd.Record
	if rev == 0 {
		rec, err = s.st.Get(kp.ns, kp.key)
	} else {
		rec, err = s.st.GetAt(kp.ns, kp.key, rev)
	}
	if err != nil {
		return err
	}
	return sendRecord(c, &rec)
}

// putKey serves PUT /v1/ns/{ns}/keys/{key}: the body is the JSON value.
func (s *Server) putKey(c echo.Context) error {
	req := c.Request()
	kp, expect, err := parseKeyWrite(req)
	if err != nil {
		return err
	}
	if err := refusePatchBody(req.Header.Get(echo.HeaderContentType)); err != nil {
		return err
	}
	ttl, err := ttlParam(c, false)
	if err != nil {
		return err
	}
	value, err := readBody(req)
	if err != nil {
		return err
	}
	w := ctxd.Write{Namespace: kp.ns, Key: kp.key, Op: ctxd.OpPut, Value: value, Expect: expect, Who: who(c), TTL: ttl}
	res, err := s.st.Txn(req.Context(), []ctxd.Write{w})
	if err != nil {
		return err
	}
	return sendRecord(c, &res.Records[0])
}

// keyRoute is the route of a key's path, which serves the key, its
// history (GET .../history) and its keepalive (POST .../keepalive).
const keyRoute = "/v1/ns/:ns/keys/*"

// keyPathAllow returns the Allow of a key's path that does not end in
// /keepalive: the key route's methods but POST, which only a keepalive
// takes (keepAlive answers 405 elsewhere). Read from the routes, in
// Echo's order (OPTIONS first, then by name), so that it names what the
// route serves.
func keyPathAllow(e *echo.Echo) string {
	var methods []string
	for _, rt := range e.Routes() {
		if rt.Path == keyRoute && rt.Method != http.MethodPost {
			methods = append(methods, rt.Method)
		}
	}
	slices.Sort(methods)
	return strings.Join(append([]string{http.MethodOptions}, methods...), ", ")
}

// keyPathMethods corrects the router's answer to a method the key route
// has no handler for (an OPTIONS, or a 405) on a key's path that does not
// end in /keepalive: the router's Allow names POST, which that path
// refuses, so a client that trusted OPTIONS was sent a 405 whose Allow
// left POST out. A keepalive's path takes every method the route has
// (a GET reads the key named ".../keepalive"): the router's Allow is
// right there.
func (s *Server) keyPathMethods(c echo.Context, next echo.HandlerFunc) echo.HandlerFunc {
	if c.Path() != keyRoute || strings.HasSuffix(c.Request().URL.EscapedPath(), keepaliveSuffix) {
		return next
	}
	if _, unrouted := c.Get(echo.ContextKeyHeaderAllow).(string); !unrouted {
		return next // the route has a handler for this method
	}
	c.Set(echo.ContextKeyHeaderAllow, s.keyAllow) // the Allow of Echo's 405
	if c.Request().Method != http.MethodOptions {
		return next
	}
	return func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderAllow, s.keyAllow)
		return c.NoContent(http.StatusNoContent)
	}
}

// keepAlive serves POST /v1/ns/{ns}/keys/{key}/keepalive?ttl=: the key's
// deadline moves to ttl from now, with no new version (If-Match works).
func (s *Server) keepAlive(c echo.Context) error {
	req := c.Request()
	if !strings.HasSuffix(req.URL.EscapedPath(), keepaliveSuffix) {
		// A key itself takes no POST: its keepalive is a path of its own.
		c.Response().Header().Set(echo.HeaderAllow, s.keyAllow)
		return echo.NewHTTPError(http.StatusMethodNotAllowed, "POST on a key is a keepalive: "+keysPrefix+"{ns}/keys/{key}"+keepaliveSuffix+"?ttl=")
	}
	kp, expect, err := parseKeyWrite(req)
	if err != nil {
		return err
	}
	ttl, err := ttlParam(c, true)
	if err != nil {
		return err
	}
	rec, err := s.st.KeepAlive(req.Context(), kp.ns, kp.key, ttl, expect)
	if err != nil {
		return err
	}
	return sendRecord(c, &rec)
}

// patchKey serves PATCH /v1/ns/{ns}/keys/{key}: the body is a JSON Merge
// Patch (Content-Type application/merge-patch+json) or a JSON Patch
// (application/json-patch+json), applied by the store to the key's value
// as it is when the write commits.
func (s *Server) patchKey(c echo.Context) error {
	req := c.Request()
	kp, expect, err := parseKeyWrite(req)
	if err != nil {
		return err
	}
	typ, err := patchType(req.Header.Get(echo.HeaderContentType))
	if err != nil {
		return err
	}
	doc, err := readBody(req)
	if err != nil {
		return err
	}
	rec, err := s.st.Patch(req.Context(), kp.ns, kp.key, ctxd.Patch{Type: typ, Doc: doc}, expect, who(c))
	if err != nil {
		return err
	}
	return sendRecord(c, &rec)
}

// patchType reads a PATCH's Content-Type (parameters such as charset are
// ignored): 415 for anything but the two patch media types.
func patchType(contentType string) (ctxd.PatchType, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err == nil {
		switch t := ctxd.PatchType(mt); t {
		case ctxd.MergePatch, ctxd.JSONPatch:
			return t, nil
		}
	}
	return "", unsupportedMediaType("a PATCH body is " + string(ctxd.MergePatch) + " (RFC 7396) or " +
		string(ctxd.JSONPatch) + " (RFC 6902); Content-Type is " + strconv.Quote(contentType))
}

// refusePatchBody refuses (415) a PUT whose Content-Type is a patch
// type: a PUT stores its body as the whole value, so a client that sent
// a patch meant a PATCH, and would lose every member its patch does not
// name. Any other Content-Type, or none, is a PUT's (curl -d sends a
// form type): its body is read as the JSON value, whatever it says.
func refusePatchBody(contentType string) error {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil
	}
	switch ctxd.PatchType(mt) {
	case ctxd.MergePatch, ctxd.JSONPatch:
		return unsupportedMediaType("a PUT stores its body as the whole value, and a " + mt +
			" body is a patch: send it with PATCH to change part of the value")
	}
	return nil
}

// ttlParam reads ?ttl= (ctxd.ParseTTL): 0 when absent, unless required.
func ttlParam(c echo.Context, required bool) (time.Duration, error) {
	v, ok := queryParam(c, "ttl")
	if !ok {
		if required {
			return 0, badRequest("ttl is required: ?ttl=30s (or a number of seconds)")
		}
		return 0, nil
	}
	return ctxd.ParseTTL(v)
}

// deleteKey serves DELETE /v1/ns/{ns}/keys/{key}. The answer is the deleted
// key's last version with a null value and the delete's revision.
func (s *Server) deleteKey(c echo.Context) error {
	req := c.Request()
	kp, expect, err := parseKeyWrite(req)
	if err != nil {
		return err
	}
	rec, err := s.st.Delete(req.Context(), kp.ns, kp.key, expect, who(c))
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, func(b []byte) []byte { return appendRecord(b, &rec) })
}

// history serves GET /v1/ns/{ns}/keys/{key}/history?limit=&before=.
func (s *Server) history(c echo.Context, kp keyPath) error {
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	before, err := positiveParam(c, "before")
	if err != nil {
		return err
	}
	var page ctxd.HistoryPage
	opts := ctxd.HistoryOptions{Before: before}
	for size := 0; ; {
		opts.Limit = min(pageChunk, limit-len(page.Changes))
		chunk, err := s.st.History(kp.ns, kp.key, opts)
		if err != nil {
			return err
		}
		page.Next, page.Truncated = chunk.Next, chunk.Truncated
		for i := range chunk.Changes {
			if size >= s.cfg.MaxPageBytes {
				// Full: the next page starts below the last change here.
				page.Next, page.Truncated = page.Changes[len(page.Changes)-1].Revision, false
				break
			}
			page.Changes = append(page.Changes, chunk.Changes[i])
			size += len(chunk.Changes[i].Value)
		}
		if page.Next == 0 || len(page.Changes) >= limit || size >= s.cfg.MaxPageBytes {
			break
		}
		opts.Before = chunk.Next
	}
	if page.Changes == nil {
		page.Changes = []ctxd.Change{}
	}
	return respond(c, http.StatusOK, func(b []byte) []byte { return appendHistoryPage(b, &page) })
}

// A page of a listing or a history is read from the store pageChunk
// entries at a time, and ends early, with its cursor to go on, once its
// values pass Config.MaxPageBytes: 1000 values of 1 MiB were one answer
// of 1 GiB, built in memory (about 5 GB of it), for a request any reader
// may send.
const (
	pageChunk           = 100
	DefaultMaxPageBytes = 16 << 20
)

// listKeys serves GET /v1/ns/{ns}/keys?prefix=&after=&limit=&values=,
// and ?count=true: {"count":N}, the number of keys under the prefix.
func (s *Server) listKeys(c echo.Context) error {
	ns, err := parseNamespace(c.Param("ns"))
	if err != nil {
		return err
	}
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	values, err := boolParamOr(c, "values", true)
	if err != nil {
		return err
	}
	count, err := boolParam(c, "count")
	if err != nil {
		return err
	}
	prefix, _ := queryParam(c, "prefix")
	if err := ctxd.ValidatePrefix(prefix); err != nil {
		return err
	}
	after, _ := queryParam(c, "after")
	if count {
		if after != "" {
			return badRequest("count=true counts every key under the prefix: after is not allowed with it")
		}
		n, err := s.st.Count(ns, prefix)
		if err != nil {
			return err
		}
		return respond(c, http.StatusOK, func(b []byte) []byte {
			b = append(b, `{"count":`...)
			b = strconv.AppendUint(b, n, 10)
			return append(b, '}')
		})
	}
	var page ctxd.ListPage
	opts := ctxd.ListOptions{Prefix: prefix, After: after, NoValues: !values}
	for size := 0; ; {
		opts.Limit = limit - len(page.Records)
		if values {
			opts.Limit = min(opts.Limit, pageChunk)
		}
		chunk, err := s.st.List(ns, opts)
		if err != nil {
			return err
		}
		page.Next = chunk.Next
		for i := range chunk.Records {
			if size >= s.cfg.MaxPageBytes {
				// Full: the next page starts after the last key here.
				page.Next = page.Records[len(page.Records)-1].Key
				break
			}
			page.Records = append(page.Records, chunk.Records[i])
			size += len(chunk.Records[i].Value)
		}
		if page.Next == "" || len(page.Records) >= limit || size >= s.cfg.MaxPageBytes {
			break
		}
		opts.After = chunk.Next
	}
	if page.Records == nil {
		page.Records = []ctxd.Record{}
	}
	return respond(c, http.StatusOK, func(b []byte) []byte { return appendListPage(b, &page, values) })
}

// sendRecord answers 200 with rec and its version as ETag.
func sendRecord(c echo.Context, rec *ctxd.Record) error {
	setETag(c, rec.Version)
	return respond(c, http.StatusOK, func(b []byte) []byte { return appendRecord(b, rec) })
}

// parseKeyWrite reads what a write to one key names: the key's path and
// the version it expects (If-Match), if any.
func parseKeyWrite(req *http.Request) (keyPath, *uint64, error) {
	kp, err := parseKeyPath(req)
	if err != nil {
		return keyPath{}, nil, err
	}
	expect, err := parseIfMatch(req)
	return kp, expect, err
}
