package perf

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/store/wal"
)

// TestWALPeerAnswersDurablePuts checks that the walhttp peer is the
// durable floor it claims to be: a put is answered only once the log's
// fdatasync covers its record (the log's last durable record is at or
// past it when the answer arrives), concurrent puts share writes and
// fdatasyncs, and every answered put is in the log when it is reopened.
func TestWALPeerAnswersDurablePuts(t *testing.T) {
	p, err := startWALPeer(t.TempDir(), 0, nil)
	require.NoError(t, err)
	dir, d := p.about.DataDir, p.store.durable
	require.True(t, p.about.Durable)

	const clients, each = 16, 25
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				url := fmt.Sprintf("%s/v1/ns/%s/keys/c%d-%d", p.about.URL, nsWrite, c, i)
				req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(`{"n":1}`))
				if !assert.NoError(t, err) {
					return
				}
				resp, err := http.DefaultClient.Do(req)
				if !assert.NoError(t, err) {
					return
				}
				_ = resp.Body.Close()
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				// The puts are applied in the order of their records, so
				// the n-th answered put is record n: durable by now.
				rev := p.store.revision()
				assert.GreaterOrEqual(t, d.log.LastSeq(), rev, "a put was answered before its record was durable")
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, clients*each, p.store.revision())
	require.EqualValues(t, clients*each, d.log.LastSeq())
	syncs := d.syncs.Load()
	t.Logf("%d puts in %d fdatasyncs", clients*each, syncs)
	require.Less(t, syncs, int64(clients*each), "concurrent puts share fdatasyncs")

	_, err = p.store.durable.log.Append([]byte("after")) // the log still takes appends: not failed
	require.NoError(t, err)
	require.NoError(t, p.close())
	require.NoDirExists(t, dir, "the peer's folder is removed when it stops")
}

// TestDurableLogKeepsAnsweredPuts reopens a durable log after puts and
// finds each answered put's record in it, in answer order (the release
// after each fdatasync never deletes the segment being appended to).
func TestDurableLogKeepsAnsweredPuts(t *testing.T) {
	dir := t.TempDir()
	st := newBareStore(0, nil)
	d, err := openDurableLog(dir, st)
	require.NoError(t, err)
	for i := range 10 {
		rev, err := d.put("ns", fmt.Sprintf("k%d", i), []byte(`1`))
		require.NoError(t, err)
		require.EqualValues(t, i+1, rev)
	}
	require.NoError(t, d.close())

	log, err := wal.Open(dir, wal.Options{})
	require.NoError(t, err)
	defer log.Close()
	var got []string
	require.NoError(t, log.Replay(0, func(seq uint64, rec []byte) error {
		got = append(got, strings.ReplaceAll(string(rec), "\x00", "/"))
		return nil
	}))
	require.Len(t, got, 10)
	require.Equal(t, "ns/k0/1", got[0])
	require.Equal(t, "ns/k9/1", got[9])
}
