package robustness_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
)

// TestBinariesServe: both binaries this package runs start and answer.
func TestBinariesServe(t *testing.T) {
	for _, bin := range []string{ctxdBin, failpointBin} {
		p := testkit.StartServe(t, bin, t.TempDir(), testkit.ServeOptions{})
		resp, err := http.Get(p.URL + "/readyz")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		p.Kill()
	}
}
