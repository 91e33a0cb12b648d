package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/httpapi"
)

// An export to a client that reads none of it ends after StallTimeout:
// the answer is spooled to a temp file first, which the server would
// otherwise hold (with its descriptor) as long as the client kept the
// connection open.
func TestAnExportToAClientThatDoesNotReadEnds(t *testing.T) {
	e := newEnv(t, envOptions{cfg: httpapi.Config{StallTimeout: 300 * time.Millisecond}})
	value := `"` + strings.Repeat("x", 512<<10) + `"`
	for i := range 48 { // 24 MB: past the spool's memory and the sockets' buffers
		e.put(fmt.Sprintf("k%03d", i), value)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /v1/ns/default/export HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	// The headers come once the export is spooled and its sending began
	// (under load that takes seconds): from then on, read nothing for a
	// while, and the server's writes stall.
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	time.Sleep(3 * time.Second)
	n, err := io.Copy(io.Discard, res.Body)
	assert.Error(t, err, "the connection ended before the body (%d of %d bytes)", n, res.ContentLength)
	assert.Less(t, n, res.ContentLength)
}
