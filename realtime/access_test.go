package realtime_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
)

var (
	wsAdmin  = auth.NewSecret()
	wsTeam   = auth.NewSecret() // write, namespace team, keys app.*
	wsReader = auth.NewSecret() // read, namespace team
)

// authServer is the whole server (testkit.StartServer) with access
// control on.
type authServer struct {
	*testkit.Server
	tokens string // the tokens file
}

func startAuthServer(t *testing.T) *authServer {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	require.NoError(t, os.WriteFile(tokens, []byte("tokens:\n"+
		tokenEntry("ops", wsAdmin, "    roles: [admin]\n")+
		tokenEntry("team-app", wsTeam, "    roles: [write]\n    namespaces: [team]\n    prefixes: [app.]\n")+
		tokenEntry("team-reader", wsReader, "    roles: [read]\n    namespaces: [team]\n")), 0o600))
	return &authServer{Server: testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Auth.Mode, c.Auth.TokensFile = configs.AuthOn, tokens
	})), tokens: tokens}
}

// tokenEntry is one token of a tokens file.
var tokenEntry = testkit.TokenEntry

func (s *authServer) url(q url.Values) string { return s.WatchURL(q) }

func (s *authServer) put(t *testing.T, ns, key, value string) uint64 {
	t.Helper()
	rec, err := s.Backend().Put(t.Context(), ns, key, []byte(value), nil, "test")
	require.NoError(t, err)
	return rec.ModRev
}

func bearer(secret string) http.Header {
	return http.Header{"Authorization": {"Bearer " + secret}}
}

// A client whose token is limited to namespace team, keys app.*, watching
// every namespace, gets only those keys in its snapshot and its changes,
// even when it shares batch frames' subscriptions with an admin client;
// its context_set is limited the same way.
func TestWatchFilteredByToken(t *testing.T) {
	s := startAuthServer(t)
	s.put(t, "team", "app.a", `1`)
	s.put(t, "team", "secret", `"s"`)
	s.put(t, "default", "app.b", `2`)

	q := url.Values{"ns": {"*"}, "snapshot": {"true"}, "batch": {"true"}}
	admin := testkit.DialWatch(t, s.url(q), bearer(wsAdmin))
	qt := url.Values{"ns": {"*"}, "snapshot": {"true"}, "batch": {"true"}, "token": {wsTeam}}
	team := testkit.DialWatch(t, s.url(qt), nil) // ?token=, as browsers send it

	admin.Expect(ctxd.TypeSubscribed)
	snap := admin.Expect(ctxd.TypeContextSnapshot)
	assert.Len(t, snap.Keys, 3)
	team.Expect(ctxd.TypeSubscribed)
	snap = team.Expect(ctxd.TypeContextSnapshot)
	require.Len(t, snap.Keys, 1)
	assert.Equal(t, "app.a", snap.Keys[0].Key)

	var last uint64
	for _, kv := range [][2]string{{"team", "app.c"}, {"team", "secret2"}, {"default", "app.d"}, {"team", "app.e"}, {"other", "x"}} {
		last = s.put(t, kv[0], kv[1], `true`)
	}
	var adminKeys []string
	for _, m := range admin.Changes(last) {
		adminKeys = append(adminKeys, m.NS+"/"+m.Key)
	}
	assert.Equal(t, []string{"team/app.c", "team/secret2", "default/app.d", "team/app.e", "other/x"}, adminKeys)

	// The limited client: app.c and app.e, then its own write, nothing else.
	team.SendJSON(map[string]any{"type": "context_set", "id": 1, "ns": "team", "key": "secret", "value": 3})
	team.SendJSON(map[string]any{"type": "context_set", "id": 2, "ns": "default", "key": "app.x", "value": 3})
	team.SendJSON(map[string]any{"type": "context_set", "id": 3, "ns": "team", "key": "app.f", "value": 3})
	team.SendJSON(map[string]any{"type": "subscribe", "id": 4, "ns": "default"})
	var (
		teamKeys []string
		answers  = map[string]msg{}
	)
	for len(answers) < 4 || len(teamKeys) < 3 {
		m := team.Next()
		switch m.Type {
		case ctxd.TypeContextUpdated:
			teamKeys = append(teamKeys, m.NS+"/"+m.Key)
		default:
			answers[string(m.ID)] = m
		}
	}
	assert.Equal(t, []string{"team/app.c", "team/app.e", "team/app.f"}, teamKeys)
	assert.Equal(t, realtime.CodeForbidden, answers["1"].Code, "%+v", answers["1"])
	assert.Equal(t, realtime.CodeForbidden, answers["2"].Code, "%+v", answers["2"])
	assert.Equal(t, ctxd.TypeContextSetConfirmed, answers["3"].Type, "%+v", answers["3"])
	assert.Equal(t, realtime.CodeForbidden, answers["4"].Code, "%+v", answers["4"])
	rec, err := s.Backend().Get("team", "secret")
	require.NoError(t, err)
	assert.Equal(t, `"s"`, string(rec.Value), "a forbidden context_set wrote")
	got := admin.Changes(answers["3"].Rev)
	assert.Equal(t, "team/app.f", got[len(got)-1].NS+"/"+got[len(got)-1].Key, "the admin client sees the limited client's write")
}

// client_stats tells a client whose token is limited (to namespaces or
// prefixes) the types of its own token's clients only: it listed every
// client's registered type, an admin's service included. The count is the
// server's, as /v1/status's; an unlimited token sees every type.
func TestClientStatsOfALimitedToken(t *testing.T) {
	s := startAuthServer(t)
	q := url.Values{"ns": {"team"}}
	dial := func(secret, clientType string) *testkit.WS {
		c := testkit.DialWatch(t, s.url(q), bearer(secret))
		c.Expect(ctxd.TypeSubscribed)
		if clientType != "" {
			c.SendJSON(map[string]any{"type": "client_register", "client_type": clientType})
			c.Expect(ctxd.TypeRegistrationConfirmed)
		}
		return c
	}
	admin := dial(wsAdmin, "billing-worker")
	dial(wsTeam, "agent")
	teamToo := dial(wsTeam, "")
	reader := dial(wsReader, "")
	stats := func(c *testkit.WS) (int, map[string]int) {
		c.SendJSON(map[string]any{"type": "client_stats"})
		m := c.Expect(ctxd.TypeClientStats)
		return m.ConnectedClients, m.ClientsByType
	}
	n, byType := stats(admin)
	assert.Equal(t, 4, n)
	assert.Equal(t, map[string]int{"billing-worker": 1, "agent": 1, "unregistered": 2}, byType)
	n, byType = stats(teamToo)
	assert.Equal(t, 4, n)
	assert.Equal(t, map[string]int{"agent": 1, "unregistered": 1}, byType, "its own token's clients only")
	n, byType = stats(reader)
	assert.Equal(t, 4, n)
	assert.Equal(t, map[string]int{"unregistered": 1}, byType, "itself only")
}

// A read-only token may watch but not write; the upgrade is refused with
// 401 without a valid token and 403 for a namespace the token cannot read.
func TestWatchUpgradeChecks(t *testing.T) {
	s := startAuthServer(t)
	for _, tc := range []struct {
		name   string
		q      url.Values
		hdr    http.Header
		status int
	}{
		{"no token", url.Values{}, nil, http.StatusUnauthorized},
		{"bad token", url.Values{"token": {"ctxd_nope"}}, nil, http.StatusUnauthorized},
		{"bad header", url.Values{}, bearer("ctxd_nope"), http.StatusUnauthorized},
		{"namespace outside", url.Values{"ns": {"default"}}, bearer(wsTeam), http.StatusForbidden},
		{"one namespace outside", url.Values{"ns": {"team,default"}}, bearer(wsReader), http.StatusForbidden},
	} {
		_, resp, err := testkit.DialWatchErr(s.url(tc.q), tc.hdr)
		require.Error(t, err, tc.name)
		require.NotNil(t, resp, tc.name)
		assert.Equal(t, tc.status, resp.StatusCode, tc.name)
		if tc.status == http.StatusForbidden {
			assert.Equal(t, auth.ChallengeScope, resp.Header.Get("WWW-Authenticate"), "%s: the challenge of every 403", tc.name)
		}
		resp.Body.Close()
	}

	r := testkit.DialWatch(t, s.url(url.Values{"ns": {"team"}}), bearer(wsReader))
	r.Expect(ctxd.TypeSubscribed)
	r.SendJSON(map[string]any{"type": "context_set", "id": 1, "ns": "team", "key": "app.z", "value": 1})
	m := r.Expect(ctxd.TypeError)
	assert.Equal(t, realtime.CodeForbidden, m.Code)
	rev := s.put(t, "team", "anything", `1`)
	assert.Equal(t, rev, r.Expect(ctxd.TypeContextUpdated).Rev, "a namespace-wide reader sees every key of it")
}

// context_dumped goes only to clients that may read the whole namespace
// dumped.
func TestWatchDumpNoticeFiltered(t *testing.T) {
	s := startAuthServer(t)
	s.put(t, "team", "app.a", `1`)
	reader := testkit.DialWatch(t, s.url(url.Values{"ns": {"team"}}), bearer(wsReader))
	reader.Expect(ctxd.TypeSubscribed)
	team := testkit.DialWatch(t, s.url(url.Values{"ns": {"team"}}), bearer(wsTeam))
	team.Expect(ctxd.TypeSubscribed)

	req, err := http.NewRequest("POST", s.URL+"/v1/ns/team/dumps?format=json&filename=d1", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+wsAdmin)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)

	assert.Equal(t, "d1.json", reader.Expect(ctxd.TypeContextDumped).Filename)
	// The limited client gets the next change, with no notice before it.
	rev := s.put(t, "team", "app.b", `2`)
	assert.Equal(t, rev, team.Expect(ctxd.TypeContextUpdated).Rev)
}

// A reload of the tokens file (what SIGHUP does) that revokes a token
// closes the connections opened with it: an error frame of code
// token_revoked, then close 1008 with reason token_revoked. A token
// removed and a token whose rights were cut (it may no longer read its
// namespace) are both revoked; a client whose token is unchanged stays
// connected and goes on receiving changes.
func TestWatchClosedWhenTokenRevoked(t *testing.T) {
	s := startAuthServer(t)
	q := url.Values{"ns": {"team"}}
	admin := testkit.DialWatch(t, s.url(q), bearer(wsAdmin))
	admin.Expect(ctxd.TypeSubscribed)
	reader := testkit.DialWatch(t, s.url(q), bearer(wsReader))
	reader.Expect(ctxd.TypeSubscribed)
	qt := url.Values{"ns": {"team"}, "batch": {"true"}, "token": {wsTeam}}
	team := testkit.DialWatch(t, s.url(qt), nil)
	team.Expect(ctxd.TypeSubscribed)
	rev := s.put(t, "team", "app.a", `1`)
	for _, c := range []*wsClient{admin, reader, team} {
		assert.Equal(t, rev, c.Expect(ctxd.TypeContextUpdated).Rev)
	}

	// team-reader removed; team-app may now read namespace other only.
	require.NoError(t, os.WriteFile(s.tokens, []byte("tokens:\n"+
		tokenEntry("ops", wsAdmin, "    roles: [admin]\n")+
		tokenEntry("team-app", wsTeam, "    roles: [read]\n    namespaces: [other]\n")), 0o600))
	start := time.Now()
	loaded, revoked, err := s.Server.Server().Access().Reload()
	require.NoError(t, err)
	assert.Equal(t, 2, loaded)
	assert.Equal(t, 2, revoked)
	for name, c := range map[string]*wsClient{"removed": reader, "rights cut": team} {
		m := c.Expect(ctxd.TypeError)
		assert.Equal(t, ctxd.CodeTokenRevoked, m.Code, name)
		want := map[string]string{ // whether its reconnection would be refused, and why
			"removed":    `token "team-reader" was removed by a reload of the tokens file: a connection with it is refused (401)`,
			"rights cut": `token "team-app"'s rights were changed by a reload of the tokens file: it may no longer watch namespace "team" (a connection asking for it is refused, 403)`,
		}[name]
		assert.Equal(t, want, m.Message, name)
		_, err := c.NextErr()
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce, name)
		assert.Equal(t, websocket.ClosePolicyViolation, ce.Code, name)
		assert.Equal(t, ctxd.CodeTokenRevoked, ce.Text, name)
	}
	t.Logf("revoked clients closed %v after the reload began", time.Since(start))
	assert.Equal(t, uint64(2), s.Hub().Stats().Revoked)

	rev = s.put(t, "team", "app.b", `2`)
	assert.Equal(t, rev, admin.Expect(ctxd.TypeContextUpdated).Rev, "an unchanged token goes on")
	admin.SendJSON(map[string]any{"type": "ping", "id": 1})
	assert.Equal(t, rev, admin.Expect(ctxd.TypePong).Rev)
	testkit.Eventually(t, func() bool { return s.Hub().Clients() == 1 }, "the revoked clients are gone")

	// The team token, as now granted, connects again where it may read.
	_, resp, err := testkit.DialWatchErr(s.url(qt), nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp.Body.Close()
	other := testkit.DialWatch(t, s.url(url.Values{"ns": {"other"}}), bearer(wsTeam))
	other.Expect(ctxd.TypeSubscribed)
}
