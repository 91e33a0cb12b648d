package httpapi

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
)

const (
	// headerWho names the author of a change when ?who= is absent.
	headerWho = "X-Ctxd-Who"
	// defaultWho is recorded when a request names no author.
	defaultWho = "api"
	// keysPrefix starts every key route's path.
	keysPrefix = "/v1/ns/"
	// historySuffix, raw (not %2F-escaped) at the end of a GET key path,
	// selects the history route.
	historySuffix = "/history"
	// keepaliveSuffix, raw at the end of a POST key path, selects the
	// keepalive route (a key named ".../keepalive" is sent %2F-escaped).
	keepaliveSuffix = "/keepalive"
)

// keyPath is what a key route's path names.
type keyPath struct {
	ns      string
	key     string
	history bool
}

// parseKeyPath reads namespace and key from the escaped request path
// "/v1/ns/{ns}/keys/{key}". Echo routes on the raw path, so the key's "%2F"
// and "/" stay distinct until here: a raw "/history" suffix on GET (or HEAD)
// selects the history route, "%2Fhistory" is part of the key.
func parseKeyPath(r *http.Request) (keyPath, error) {
	p := r.URL.EscapedPath()
	rest, ok := strings.CutPrefix(p, keysPrefix)
	if !ok {
		return keyPath{}, badRequest("malformed key path " + strconv.Quote(p))
	}
	rawNS, rawKey, ok := strings.Cut(rest, "/")
	if !ok {
		return keyPath{}, badRequest("malformed key path " + strconv.Quote(p))
	}
	rawKey, ok = strings.CutPrefix(rawKey, "keys/")
	if !ok {
		return keyPath{}, badRequest("malformed key path " + strconv.Quote(p))
	}
	var kp keyPath
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if k, ok := strings.CutSuffix(rawKey, historySuffix); ok {
			rawKey, kp.history = k, true
		}
	}
	if r.Method == http.MethodPost {
		k, ok := strings.CutSuffix(rawKey, keepaliveSuffix)
		if !ok {
			return keyPath{}, badRequest("POST on a key is a keepalive: " + keysPrefix + "{ns}/keys/{key}" + keepaliveSuffix)
		}
		rawKey = k
	}
	ns, err := parseNamespace(rawNS)
	if err != nil {
		return keyPath{}, err
	}
	kp.ns = ns
	if kp.key, err = parseKey(rawKey); err != nil {
		return keyPath{}, err
	}
	return kp, nil
}

// parseNamespace unescapes a raw namespace path segment. The store checks
// the name itself.
func parseNamespace(raw string) (string, error) { return unescapeName(raw, "namespace") }

// parseKey unescapes a key's raw path (the v1 and the /ctx routes). The
// store checks the key itself.
func parseKey(raw string) (string, error) { return unescapeName(raw, "key") }

// unescapeName unescapes the raw path of a name that must not be empty;
// what ("key", "namespace") names it in the error.
func unescapeName(raw, what string) (string, error) {
	name, err := url.PathUnescape(raw)
	if err != nil {
		return "", badRequest(what + " is not a valid path-escaped string: " + err.Error())
	}
	if name == "" {
		return "", badRequest(what + " must not be empty")
	}
	return name, nil
}

// parseIfMatch reads the expected version from If-Match: a decimal version,
// bare or in double quotes ("3"). 0 means "the key must not exist". Weak
// validators (W/"3"), "*" and lists are refused: a compare-and-swap needs one
// exact version. It returns nil when the header is absent.
//
// If-None-Match: * (HTTP's "create only", as a generic client sends it) is
// If-Match: 0; it was ignored, and the put overwrote the key. Another
// If-None-Match on a write is refused, not ignored.
func parseIfMatch(r *http.Request) (*uint64, error) {
	hs := r.Header["If-Match"]
	if none, ok := r.Header["If-None-Match"]; ok {
		if len(none) != 1 || strings.TrimSpace(none[0]) != "*" {
			return nil, badRequest("If-None-Match on a write takes only * (the key must not exist, as If-Match: 0); got " + strconv.Quote(strings.Join(none, ", ")))
		}
		if len(hs) > 0 {
			return nil, badRequest("give If-Match or If-None-Match: *, not both")
		}
		var zero uint64
		return &zero, nil
	}
	if len(hs) == 0 {
		return nil, nil
	}
	h := strings.TrimSpace(hs[0])
	if len(hs) > 1 {
		h = strings.Join(hs, ", ")
	} else if h == "" {
		return nil, nil
	}
	v := h
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	n, err := parseUint(v)
	if err != nil {
		return nil, badRequest("If-Match must be one version number, like 3 or \"3\" (0: the key must not exist); got " + strconv.Quote(h))
	}
	return &n, nil
}

// parseUint accepts only plain decimal digits (no sign, no spaces).
func parseUint(s string) (uint64, error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseUint(s, 10, 64)
}

// beyond64Bits reports whether s is plain decimal digits, a number too
// large for 64 bits. (ParseUint reports the overflow before it has read
// every character, so the digits are checked here.)
func beyond64Bits(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return errors.Is(err, strconv.ErrRange) && strings.Trim(s, "0123456789") == ""
}

// queryParam returns a query parameter and whether it was given at all.
func queryParam(c echo.Context, name string) (string, bool) {
	if c.Request().URL.RawQuery == "" {
		return "", false
	}
	vs, ok := c.QueryParams()[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// positiveParam reads an optional query parameter that must be an integer
// >= 1; absent gives 0.
func positiveParam(c echo.Context, name string) (uint64, error) {
	s, ok := queryParam(c, name)
	if !ok {
		return 0, nil
	}
	n, err := parseUint(s)
	if err != nil || n == 0 {
		return 0, badRequest(name + " must be an integer >= 1; got " + strconv.Quote(s))
	}
	return n, nil
}

// limitParam reads ?limit=, an integer >= 1; absent gives 0 (the store's
// default). Values above ctxd.MaxListLimit are capped, one too large for
// 64 bits too: it is larger than the maximum all the same (README).
func limitParam(c echo.Context) (int, error) {
	n, err := positiveParam(c, "limit")
	if err != nil {
		if s, _ := queryParam(c, "limit"); beyond64Bits(s) {
			return ctxd.MaxListLimit, nil
		}
		return 0, err
	}
	if n > ctxd.MaxListLimit {
		n = ctxd.MaxListLimit
	}
	return int(n), nil
}

// who returns who a change the request makes is recorded as (authorOf,
// for a request whose body names no one), "api" when it gives none.
func who(c echo.Context) string { return authorOf(c, "", defaultWho) }

// authorOf returns who a change the request makes is recorded as
// (auth.Token.Author): the who its body gives (bodyWho), else ?who=, else
// the X-Ctxd-Who header, else fallback; under its token's name on a
// server whose auth.who is token.
func authorOf(c echo.Context, bodyWho, fallback string) string {
	declared := bodyWho
	if declared == "" {
		declared, _ = queryParam(c, "who")
	}
	if declared == "" {
		declared = c.Request().Header.Get(headerWho)
	}
	return auth.FromContext(c.Request().Context()).Author(declared, fallback)
}

// readBody reads the whole request body once. The body limit middleware has
// already capped it at Config.MaxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if n := r.ContentLength; n >= 0 {
		b = make([]byte, n)
		_, err = io.ReadFull(r.Body, b)
	} else {
		b, err = io.ReadAll(r.Body)
	}
	if err != nil {
		return nil, bodyError(err)
	}
	return b, nil
}

// bodyReader passes a request body through, turning a failed read (a body
// cut short, over its limit, not UTF-8) into the API error bodyError makes
// of it, for a handler that streams the body into a store call: the
// store's error then answers 4xx, not 500.
type bodyReader struct{ r io.Reader }

func (b bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = bodyError(err)
	}
	return n, err
}

// oversized maps a failed read of a body over its limit (anywhere in err's
// chain) to 413 too_large, and leaves any other error alone.
func oversized(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return bodyTooLarge(mbe.Limit)
	}
	return err
}

// bodyError turns a failed body read into an API error.
func bodyError(err error) error {
	if e := oversized(err); e != err {
		return e
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body ended early (shorter than its Content-Length, or its chunks cut short)")
	}
	return badRequest("reading request body: " + err.Error())
}
