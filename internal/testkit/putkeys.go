package testkit

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
)

// PutKeys puts n keys, "k0" to "k<n-1>", in namespace ns of st, each set to
// value by who, in transactions of 100 writes: data large enough for what
// only a big namespace does (a spool file, a failing writer mid-dump).
func PutKeys(t testing.TB, st store.Backend, ns string, n int, value json.RawMessage, who string) {
	t.Helper()
	writes := make([]ctxd.Write, 0, 100)
	for i := range n {
		writes = append(writes, ctxd.Write{Namespace: ns, Key: "k" + strconv.Itoa(i), Op: ctxd.OpPut, Value: value, Who: who})
		if len(writes) == cap(writes) || i == n-1 {
			_, err := st.Txn(context.Background(), writes)
			require.NoError(t, err)
			writes = writes[:0]
		}
	}
}
