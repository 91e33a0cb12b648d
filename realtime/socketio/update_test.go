package socketio

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// TestUpdateEventMatchesEncodingJSON: the hand-written context_updated is
// the same JSON that json.Marshal gives for the same fields.
func TestUpdateEventMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6789, time.FixedZone("x", 3600))
	for _, ch := range []ctxd.Change{
		{Namespace: "default", Key: "k", Value: json.RawMessage(`{"a":[1,"<b>"]}`), Who: "w", Time: at, Op: ctxd.OpPut, Version: 3, Revision: 42},
		{Namespace: "team-a", Key: "q\"\\\n\u2028é<&>", Who: "", Time: at, Op: ctxd.OpDelete, Version: 7, Revision: 1},
		{Namespace: "default", Key: "empty", Time: at, Op: ctxd.OpPut, Version: 1, Revision: 2},
	} {
		got := updateEvent(&ch, 0, 1)
		require.True(t, strings.HasPrefix(got, sioEvent), got)
		v := ch.Value
		if ch.Op == ctxd.OpDelete || len(v) == 0 {
			v = json.RawMessage("null")
		}
		want, err := json.Marshal([]any{ctxd.TypeContextUpdated, map[string]any{
			"key": ch.Key, "value": v, "who": ch.Who, "timestamp": ch.Time.UTC(),
			"ns": ch.Namespace, "op": ch.Op.String(), "version": ch.Version, "rev": ch.Revision,
		}})
		require.NoError(t, err)
		var g, w any
		require.NoError(t, json.Unmarshal([]byte(got[len(sioEvent):]), &g), got)
		require.NoError(t, json.Unmarshal(want, &w))
		assert.Equal(t, w, g)
	}
}
