package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/store/bolt"
)

// noDefragStore is a backend that has no file of its own to defragment,
// as a remote engine: its Defrag says so.
type noDefragStore struct{ *bolt.Store }

func (noDefragStore) Defrag(context.Context) (ctxd.DefragResult, error) {
	return ctxd.DefragResult{}, ctxd.ErrNotSupported
}

// An operation the backend cannot do is 501 not_supported, and the rest of
// the API keeps working on it.
func TestNotSupportedIs501(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.ts.Config.Handler = httpapi.New(noDefragStore{e.st.Store}, httpapi.Config{}, zerolog.Nop()).Handler()
	r := e.do("POST", "/v1/defrag", "")
	requireError(t, r, http.StatusNotImplemented, "not_supported")
	assert.Contains(t, string(r.body), "not supported by this storage backend")
	assert.Equal(t, http.StatusOK, e.do("PUT", "/v1/ns/default/keys/a", "1").status)
	assert.Equal(t, http.StatusOK, e.do("POST", "/v1/compact", "").status)
}
