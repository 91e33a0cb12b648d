package testkit

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Scrape reads the /metrics of the server at url into a map from
// name{labels} to value.
func Scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	res, body := Send(t, http.DefaultClient, NewRequest(t, http.MethodGet, url+"/metrics", ""))
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", body)
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	return out
}
