package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
)

// Access control (Config.Access): every route has a rule in accessRules,
// looked up by method and route pattern once Echo has routed the request.
// Public routes (health, readiness, the OpenAPI document, the dashboard's
// page and files) need nothing; the others need a valid bearer token (401
// without one) with the rights the rule asks for (403 otherwise). A registered route without a
// rule needs the admin role: a route added later is closed until it is
// given a rule. A request that matched no route (404, 405) needs a valid
// token, so that the route map is not shown to strangers.

// Errors of access control and rate limiting; rows of the error table.
var (
	// errUnauthorized: no token, or one the server does not know (401).
	errUnauthorized = errors.New("unauthorized")
	// errForbidden: a valid token without the rights the request needs (403).
	errForbidden = errors.New("forbidden")
	// errRateLimited: the client sent more requests than http.rate_limit
	// allows (429).
	errRateLimited = errors.New("rate limited")
)

// accessError is an access or rate-limit refusal with a message for the
// client; it matches its kind (errUnauthorized, errForbidden, errRateLimited).
type accessError struct {
	kind error
	msg  string
}

func (e *accessError) Error() string        { return e.msg }
func (e *accessError) Is(target error) bool { return target == e.kind }

// wwwAuthenticate is the challenge of a 401 and 403 (RFC 6750).
const wwwAuthenticate = auth.Challenge

// tokenOf returns the token of a request that passed access control, or nil
// when access control is off (nil may do everything: see auth.Token).
func tokenOf(c echo.Context) *auth.Token { return auth.FromContext(c.Request().Context()) }

// authSelf serves GET /v1/auth/self: what the request's token may do
// (auth.Token.Info), so that a client offers only that; access control
// off: everything.
func (s *Server) authSelf(c echo.Context) error {
	return sendJSON(c, http.StatusOK, tokenOf(c).Info())
}

// rule is what one route needs.
type rule struct {
	// public routes need no token.
	public bool
	// queryToken accepts the token as ?token= too (the WebSocket: browsers
	// cannot set headers on it).
	queryToken bool
	// check refuses a request the token may not make, with errForbidden;
	// nil: any valid token. Errors other than errForbidden (a body too
	// large to check) are answered as they are.
	check func(s *Server, c echo.Context, t *auth.Token) error
}

var publicRule = rule{public: true}

// needRole is a rule that needs role r.
func needRole(r auth.Role, what string) rule {
	return rule{check: func(_ *Server, _ echo.Context, t *auth.Token) error {
		if t.Has(r) {
			return nil
		}
		return forbidden(t, what+" needs the "+roleName(r)+" role")
	}}
}

func roleName(r auth.Role) string { return r.String() }

func forbidden(t *auth.Token, msg string) error {
	return &accessError{kind: errForbidden, msg: msg + "; this is " + t.Describe()}
}

// accessRules maps "METHOD /route/pattern" to its rule.
func (s *Server) accessRules() map[string]rule {
	admin := needRole(auth.RoleAdmin, "this operation on the whole server")
	read := needRole(auth.RoleRead, "this")
	keyRead := rule{check: checkKey(false)}
	keyWrite := rule{check: checkKey(true)}
	r := map[string]rule{
		"GET /healthz":                       publicRule,
		"GET /readyz":                        publicRule,
		"GET /v1/openapi.json":               publicRule, // a description, no data
		"GET /":                              publicRule,
		"GET " + assetsPrefix + ":version/*": publicRule,

		"GET /metrics":      needRole(auth.RoleMetrics, "GET /metrics"),
		"GET /v1/auth/self": {}, // any valid token, a metrics one too: what it may do
		"GET /v1/status":    read,
		"GET /v1/ns":        read, // the answer lists only the namespaces the token sees
		"GET /v1/watch":     {queryToken: true, check: read.check},
		// Socket.IO (realtime/socketio) checks the token itself at its
		// CONNECT: it may come in the auth payload, after the handshake.
		"GET /socket.io/":  publicRule,
		"POST /socket.io/": publicRule,

		"GET /v1/ns/:ns/keys":      {check: checkList},
		"GET /v1/ns/:ns/keys/*":    keyRead,
		"PUT /v1/ns/:ns/keys/*":    keyWrite,
		"PATCH /v1/ns/:ns/keys/*":  keyWrite,
		"DELETE /v1/ns/:ns/keys/*": keyWrite,
		"POST /v1/ns/:ns/keys/*":   keyWrite, // keepalive
		"POST /v1/txn":             {check: checkTxn},

		"GET /v1/ns/:ns/export":  {check: checkNamespace(false)},
		"POST /v1/ns/:ns/import": {check: checkNamespace(true)},
		"POST /v1/ns/:ns/dumps":  admin,
		"GET /v1/dumps":          admin,
		"GET /v1/dumps/*":        admin,
		"DELETE /v1/dumps/*":     admin,

		"POST /v1/snapshots":             admin,
		"GET /v1/snapshots":              admin,
		"POST " + uploadPath:             admin,
		"GET /v1/snapshots/:id":          admin,
		"DELETE /v1/snapshots/:id":       admin,
		"GET /v1/snapshots/:id/export":   admin,
		"POST /v1/snapshots/:id/restore": admin,
		"POST /v1/compact":               admin,
		"POST /v1/defrag":                admin,

		"GET /ctx":           {check: checkCompatQuery},
		"POST /ctx":          {check: checkCompatSet},
		"GET /ctx/all":       {check: checkCompatAll},
		"GET /ctx/history":   {check: checkCompatHistory},
		"GET /ctx/status":    {check: checkCompatStatus},
		"POST /ctx/dump":     admin,
		"GET /ctx/dump/list": admin,
		"GET /ctx/dump/*":    admin,
		"GET /ctx/*":         {check: checkCompatKey(false)},
		"DELETE /ctx/*":      {check: checkCompatKey(true)},
	}
	return r
}

// ruleFor returns the rule of the request's route.
func (g *gate) ruleFor(c echo.Context) rule {
	key := c.Request().Method + " " + c.Path()
	if r, ok := g.rules[key]; ok {
		return r
	}
	if c.Request().Method == http.MethodHead {
		// A HEAD is its GET without the body: it needs what the GET does.
		if r, ok := g.rules["GET "+c.Path()]; ok {
			return r
		}
	}
	for _, rt := range g.s.e.Routes() {
		if rt.Method+" "+rt.Path == key {
			// A route without a rule: closed to all but admins.
			return needRole(auth.RoleAdmin, "this route (it has no access rule yet)")
		}
	}
	return rule{} // no such route: any valid token, then 404 or 405
}

// checkKey checks the key routes' ns and key (read for GET and HEAD,
// write for PUT and DELETE). A malformed path is left to the handler (400).
func checkKey(write bool) func(*Server, echo.Context, *auth.Token) error {
	return func(_ *Server, c echo.Context, t *auth.Token) error {
		kp, err := parseKeyPath(c.Request())
		if err != nil {
			return nil
		}
		return checkOne(t, kp.ns, kp.key, write)
	}
}

func checkOne(t *auth.Token, ns, key string, write bool) error {
	if write {
		if !t.CanWrite(ns, key) {
			return forbidden(t, "it may not write "+ns+"/"+strconv.Quote(key))
		}
		return nil
	}
	if !t.CanRead(ns, key) {
		return forbidden(t, "it may not read "+ns+"/"+strconv.Quote(key))
	}
	return nil
}

// checkList needs read rights on every key the listing may return: a
// token limited to prefixes must list under one of them.
func checkList(_ *Server, c echo.Context, t *auth.Token) error {
	ns, err := parseNamespace(c.Param("ns"))
	if err != nil {
		return nil
	}
	prefix, _ := queryParam(c, "prefix")
	if t.CanReadPrefix(ns, prefix) {
		return nil
	}
	if t.SeesNamespace(ns) {
		return forbidden(t, "it may list only keys under its prefixes: add ?prefix= with one of them")
	}
	return forbidden(t, "it may not read namespace "+ns)
}

// checkNamespace needs rights on every key of the route's namespace
// (export reads, import writes a whole namespace).
func checkNamespace(write bool) func(*Server, echo.Context, *auth.Token) error {
	return func(_ *Server, c echo.Context, t *auth.Token) error {
		ns, err := parseNamespace(c.Param("ns"))
		if err != nil {
			return nil
		}
		if write && !t.CanWriteAll(ns) {
			return forbidden(t, "importing into "+ns+" needs write rights on the whole namespace")
		}
		if !write && !t.CanReadPrefix(ns, "") {
			return forbidden(t, "exporting "+ns+" needs read rights on the whole namespace")
		}
		return nil
	}
}

// checkTxn checks every op of a transaction. The body is read only for a
// token limited to namespaces or prefixes; one that does not parse is
// left to the handler (400).
func checkTxn(s *Server, c echo.Context, t *auth.Token) error {
	if !t.Has(auth.RoleWrite) {
		return forbidden(t, "a transaction needs the write role")
	}
	if t.Unlimited() {
		return nil
	}
	body, err := s.peekBody(c)
	if err != nil {
		return err
	}
	writes, _, err := decodeTxn(body)
	if err != nil {
		return nil
	}
	for i, w := range writes {
		if !t.CanWrite(w.Namespace, w.Key) {
			return forbidden(t, "ops["+strconv.Itoa(i)+"]: it may not write "+w.Namespace+"/"+strconv.Quote(w.Key))
		}
	}
	return nil
}

func checkCompatQuery(s *Server, c echo.Context, t *auth.Token) error {
	if key, _ := queryParam(c, "key"); key != "" {
		return checkOne(t, s.compatNS(), key, false)
	}
	if !t.SeesNamespace(s.compatNS()) {
		return forbidden(t, "it may not read namespace "+s.compatNS())
	}
	return nil
}

func checkCompatKey(write bool) func(*Server, echo.Context, *auth.Token) error {
	return func(s *Server, c echo.Context, t *auth.Token) error {
		key, err := compatKeyPath(c.Request())
		if err != nil {
			return nil
		}
		return checkOne(t, s.compatNS(), key, write)
	}
}

// checkCompatSet checks POST /ctx, whose key is in the body.
func checkCompatSet(s *Server, c echo.Context, t *auth.Token) error {
	if !t.Has(auth.RoleWrite) || !t.SeesNamespace(s.compatNS()) {
		return forbidden(t, "it may not write namespace "+s.compatNS())
	}
	if t.Unlimited() {
		return nil
	}
	body, err := s.peekBody(c)
	if err != nil {
		return err
	}
	var in struct {
		Key *string `json:"key"`
	}
	if decodeObject(body, &in) != nil || in.Key == nil {
		return nil
	}
	return checkOne(t, s.compatNS(), *in.Key, true)
}

// checkCompatStatus checks GET /ctx/status, which counts the keys of the
// compat namespace the token may read.
func checkCompatStatus(s *Server, _ echo.Context, t *auth.Token) error {
	if !t.SeesNamespace(s.compatNS()) {
		return forbidden(t, "it may not read namespace "+s.compatNS())
	}
	return nil
}

func checkCompatAll(s *Server, _ echo.Context, t *auth.Token) error {
	if !t.CanReadPrefix(s.compatNS(), "") {
		return forbidden(t, "GET /ctx/all needs read rights on the whole namespace "+s.compatNS())
	}
	return nil
}

func checkCompatHistory(s *Server, c echo.Context, t *auth.Token) error {
	if key, _ := queryParam(c, "key"); key != "" {
		return checkOne(t, s.compatNS(), key, false)
	}
	if !t.CanReadPrefix(s.compatNS(), "") {
		return forbidden(t, "the history of every key needs read rights on the whole namespace "+s.compatNS()+": add ?key=")
	}
	return nil
}

// visibleNamespaces keeps the namespaces the request's token may read,
// each with the number of its keys the token may read: a token limited
// to prefixes is told no more of other keys than a listing would (GET
// /v1/ns, /v1/status, /ctx/status).
func (s *Server) visibleNamespaces(c echo.Context, nss []ctxd.Namespace) ([]ctxd.Namespace, error) {
	t := tokenOf(c)
	if t.Unlimited() {
		return nss, nil
	}
	out := nss[:0:0]
	for _, n := range nss {
		if !t.SeesNamespace(n.Name) {
			continue
		}
		if ps := t.ReadablePrefixes(n.Name); len(ps) != 1 || ps[0] != "" {
			n.Keys = 0
			for _, p := range ps {
				k, err := s.st.Count(n.Name, p)
				if err != nil {
					return nil, err
				}
				n.Keys += k
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// credentials returns the request's secret: the bearer token of the
// Authorization header, else (when allowed) ?token=. given reports whether
// the request carried any credentials.
func credentials(c echo.Context, queryToken bool) (secret string, given bool) {
	h := c.Request().Header.Get(echo.HeaderAuthorization)
	if h != "" {
		scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", true
		}
		return strings.TrimSpace(tok), true
	}
	if queryToken {
		if tok, ok := queryParam(c, "token"); ok {
			return tok, true
		}
	}
	return "", false
}

// authenticate returns the request's token, or a 401 error with its
// WWW-Authenticate challenge set.
func (g *gate) authenticate(c echo.Context, r rule) (*auth.Token, error) {
	secret, given := credentials(c, r.queryToken)
	if t := g.access.Authenticate(secret); t != nil {
		return t, nil
	}
	h := c.Response().Header()
	if !given {
		h.Set(echo.HeaderWWWAuthenticate, wwwAuthenticate)
		msg := "this server needs an access token: send Authorization: Bearer <token> (ctxd --token or CTXD_TOKEN)"
		if r.queryToken {
			msg += ", or ?token=<token> on the WebSocket URL"
		}
		return nil, &accessError{kind: errUnauthorized, msg: msg}
	}
	h.Set(echo.HeaderWWWAuthenticate, wwwAuthenticate+`, error="invalid_token"`)
	return nil, &accessError{kind: errUnauthorized,
		msg: "the access token is not valid (unknown, revoked, or not sent as Authorization: Bearer <token>)"}
}

// authorize applies r to a request made with t; a refusal sets the
// WWW-Authenticate challenge of a 403.
func (g *gate) authorize(c echo.Context, r rule, t *auth.Token) error {
	if r.check == nil {
		return nil
	}
	err := r.check(g.s, c, t)
	if errors.Is(err, errForbidden) {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, auth.ChallengeScope)
	}
	return err
}
