package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/framework0/ctxd"
)

type (
	// DumpInfo describes a dump written by the server.
	DumpInfo = ctxd.DumpInfo
	// DumpFile is a dump file in the server's dump folder.
	DumpFile = ctxd.DumpFile
	// DumpList is the server's dump folder and its dump files, newest first.
	DumpList = ctxd.DumpList
)

// ExportOptions select what an export or a server-side dump holds.
type ExportOptions struct {
	// Format is json (the default), pretty, csv or txt.
	Format string
	// Rev, when non-zero, dumps the namespace as it was at that revision.
	Rev uint64
	// History adds the namespace's changes.
	History bool
	// SpreadsheetSafe, for csv only, prefixes with a single quote the text
	// cells a spreadsheet would take for a formula (CSV injection; see
	// the README's dump formats).
	SpreadsheetSafe bool
}

// query is the query of an export or a dump: the options, then the name,
// value pairs of extra (see params).
func (o ExportOptions) query(extra ...string) url.Values {
	return params(append([]string{"format", o.Format, "rev", numParam(o.Rev), "history", boolParam(o.History),
		"spreadsheet_safe", boolParam(o.SpreadsheetSafe)}, extra...)...)
}

// Export streams a dump of ns, taken by the server from one consistent
// read, to w, and returns the revision it is consistent at.
func (c *Client) Export(ctx context.Context, ns string, opts ExportOptions, w io.Writer) (uint64, error) {
	ns = orDefault(ns)
	return c.export(ctx, "export "+ns, nsPath(ns)+"/export", opts.query("who", c.whoOr("")), w)
}

// export streams the dump at path to w, and returns the revision it is
// consistent at; what names it in errors.
func (c *Client) export(ctx context.Context, what, path string, q url.Values, w io.Writer) (uint64, error) {
	resp, err := c.stream(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return 0, wrap(what, err)
	}
	defer resp.Body.Close()
	rev, _ := strconv.ParseUint(resp.Header.Get("X-Ctxd-Revision"), 10, 64)
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return 0, fmt.Errorf("%s: got %d of %d bytes", what, n, resp.ContentLength)
	}
	return rev, nil
}

// Dump has the server write a dump of ns into its dump folder, named
// filename (the format's extension is added when missing; a file of that
// name is replaced) or, when filename is "", context_dump_<time>.<format>.
func (c *Client) Dump(ctx context.Context, ns, filename string, opts ExportOptions) (DumpInfo, error) {
	ns = orDefault(ns)
	q := opts.query("filename", filename, "who", c.whoOr(""))
	return call[DumpInfo](ctx, c, "dump "+ns, request{method: http.MethodPost, path: nsPath(ns) + "/dumps", query: q, write: true})
}

// Dumps lists the dump files on the server.
func (c *Client) Dumps(ctx context.Context) (DumpList, error) {
	return call[DumpList](ctx, c, "list dumps", request{method: http.MethodGet, path: "/v1/dumps"})
}

// DeleteDump removes the server's dump file name; the server logs the
// client's who (WithWho) with it.
func (c *Client) DeleteDump(ctx context.Context, name string) error {
	err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/dumps/" + url.PathEscape(name), query: params("who", c.who), write: true})
	return wrap("delete dump "+name, err)
}

// DownloadDump copies the server's dump file name to w.
func (c *Client) DownloadDump(ctx context.Context, name string, w io.Writer) error {
	resp, err := c.stream(ctx, http.MethodGet, "/v1/dumps/"+url.PathEscape(name), nil, nil)
	if err != nil {
		return wrap("download dump "+name, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("download dump %s: %w", name, err)
	}
	return nil
}

// ImportResult is the outcome of an import.
type ImportResult struct {
	Namespace string `json:"ns"`
	// Imported is the number of keys written.
	Imported int `json:"imported"`
	// SkippedExpired is the number of keys not written because the
	// deadline the dump gave them ("expires_at") had passed; a key whose
	// deadline is still ahead is written with the time left as its TTL.
	SkippedExpired int `json:"skipped_expired"`
	// Revision is the store's revision after the import.
	Revision uint64 `json:"revision"`
}

// ImportOptions are the optional parts of an import.
type ImportOptions struct {
	// Who overrides the client's default who.
	Who string
}

// Import sends a JSON dump (ctxd's, or Framework0's) read from r; the
// server puts every key of it into ns in one transaction, or none. Import
// never closes r, even when it is an io.Closer: that is the caller's.
// opts is at most one ImportOptions (variadic, so that calls written
// before it had options stay as they are; more than one is an error).
func (c *Client) Import(ctx context.Context, ns string, r io.Reader, opts ...ImportOptions) (ImportResult, error) {
	ns = orDefault(ns)
	var o ImportOptions
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		return ImportResult{}, fmt.Errorf("import into %s: %w", ns, ctxd.Invalidf("give at most one ImportOptions, not %d", len(opts)))
	}
	resp, err := c.stream(ctx, http.MethodPost, nsPath(ns)+"/import", params("who", c.whoOr(o.Who)), r)
	if err != nil {
		return ImportResult{}, wrap("import into "+ns, err)
	}
	defer resp.Body.Close()
	var out ImportResult
	if err := decodeAnswer(resp, &out, true); err != nil {
		return ImportResult{}, fmt.Errorf("import into %s: %w", ns, err)
	}
	return out, nil
}

// stream sends a request and returns the response of a 2xx answer for the
// caller to read and close; any other answer is an *APIError.
func (c *Client) stream(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Response, error) {
	// The one stream that is not a GET is Import: a write, whose body is
	// read once (a connection that took it cannot hand it to another).
	if body != nil {
		// Hide a Close (an *os.File's): net/http closes a request's body,
		// and the reader is the caller's, who may go on using it (the next
		// instance too, after a request that failed). (Hidden too: the
		// length of a *bytes.Reader, so it is sent chunked.)
		body = struct{ io.Reader }{body}
	}
	resp, err := c.exchange(func(base string) (*http.Request, error) {
		u := base + path
		if len(query) > 0 {
			u += "?" + query.Encode()
		}
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return nil, fmt.Errorf("build request: %v", err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, nil
	}, method != http.MethodGet, body == nil, method == http.MethodGet) // a GET: an export, a download
	if err != nil {
		return nil, err // a *url.Error: no answer (for Import sent in full, outcome unknown); or, after other instances, the last one's refusal
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, c.answerError(resp, method != http.MethodGet)
	}
	return resp, nil
}
