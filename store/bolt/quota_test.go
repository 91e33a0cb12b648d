package bolt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// The store's side of the storage quota: what counts, which writes it
// refuses (a partial restore included), and when its alarm clears. The
// HTTP, WebSocket and metrics side is server/quota_test.go.
func TestQuota(t *testing.T) {
	ctx := context.Background()
	const quota = 512 << 10
	s := openStore(t, bolt.Options{QuotaBytes: quota})
	st, err := s.Status()
	require.NoError(t, err)
	assert.Equal(t, int64(quota), st.QuotaBytes)
	assert.Empty(t, st.QuotaAlarm)
	assert.GreaterOrEqual(t, st.UsedBytes, st.InUseBytes)

	value := json.RawMessage(`"` + strings.Repeat("v", 16<<10) + `"`)
	var err507 error
	n := 0
	for ; n < 200; n++ {
		key := fmt.Sprintf("k%03d", n)
		if _, err507 = s.Put(ctx, "default", key, value, nil, "test"); err507 == nil {
			continue
		}
		// Refused again once the committer has applied every write: the
		// refusal then stands while nothing is freed.
		testkit.Eventually(t, func() bool { return s.Stats().Pending == 0 }, "the committer applies every write")
		if _, err507 = s.Put(ctx, "default", key, value, nil, "test"); err507 != nil {
			n++
			break
		}
	}
	var qe *ctxd.QuotaError
	require.ErrorAs(t, err507, &qe, "the quota never refused a write")
	assert.ErrorIs(t, err507, ctxd.ErrInsufficientStorage)
	assert.Equal(t, int64(quota), qe.Quota)
	assert.Greater(t, qe.Used+qe.Need, qe.Quota)
	st, err = s.Status()
	require.NoError(t, err)
	assert.NotEmpty(t, st.QuotaAlarm, "the refusal stands until space is freed")
	rev := s.Revision()

	// A transaction with a put is refused whole; one of deletes passes.
	_, err = s.Txn(ctx, []ctxd.Write{
		{Namespace: "default", Key: "k000", Op: ctxd.OpDelete, Who: "test"},
		{Namespace: "default", Key: "new", Op: ctxd.OpPut, Value: value, Who: "test"},
	})
	require.ErrorIs(t, err, ctxd.ErrInsufficientStorage)
	assert.Equal(t, rev, s.Revision(), "a refused transaction changed nothing")
	// Deletes pass; a partial restore that would put the keys back is an
	// ordinary write, refused.
	var deletes []ctxd.Write
	for i := range n - 1 {
		deletes = append(deletes, ctxd.Write{Namespace: "default", Key: fmt.Sprintf("k%03d", i), Op: ctxd.OpDelete, Who: "test"})
	}
	full, _ := writeSnapshot(t, s) // holds the keys
	_, err = s.Import(ctx, deletes)
	require.NoError(t, err, "deletes pass the quota")
	_, err = s.Restore(ctx, full, ctxd.RestoreOptions{Namespaces: []string{"default"}, Who: "test"})
	require.ErrorIs(t, err, ctxd.ErrInsufficientStorage, "a partial restore adds data")

	// Compaction frees the deleted keys' history: the alarm clears with no
	// write, and writes work again.
	_, err = s.CompactKeep(ctx, s.Revision(), 1)
	require.NoError(t, err)
	st, err = s.Status()
	require.NoError(t, err)
	assert.Empty(t, st.QuotaAlarm)
	assert.Less(t, st.UsedBytes, int64(quota)/2)
	s.put("default", "again", string(value))
	assert.GreaterOrEqual(t, s.Stats().QuotaRefused, uint64(3), "the put, the transaction and the partial restore")
}
