package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// checkImportTakesTheTimeLeft: Import checks its writes against
// ctxd.Limits.ForImport, so a put's TTL below limits.min_ttl (what
// remained of a dumped key's deadline) is taken, while Txn refuses it;
// limits.max_ttl still holds for Import.
func checkImportTakesTheTimeLeft(t testing.TB, h Harness) {
	b := open(t, h, Config{Limits: ctxd.Limits{MinTTL: time.Hour, MaxTTL: 2 * time.Hour}})
	short := ctxd.Write{Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "t", TTL: time.Minute}
	_, err := b.Txn(t.Context(), []ctxd.Write{short})
	require.True(t, errors.Is(err, ctxd.ErrInvalid), "Txn refuses a ttl below min_ttl: %v", err)

	res, err := b.Import(t.Context(), []ctxd.Write{short})
	require.NoError(t, err, "Import takes a ttl below min_ttl")
	rec := b.get("default", "k")
	assert.Equal(t, res.Revision, rec.ModRev)
	assert.Equal(t, rec.UpdatedAt.Add(time.Minute), rec.ExpiresAt.In(rec.UpdatedAt.Location()), "the deadline is the ttl given")

	long := short
	long.TTL = 3 * time.Hour
	_, err = b.Import(t.Context(), []ctxd.Write{long})
	assert.True(t, errors.Is(err, ctxd.ErrInvalid), "Import refuses a ttl above max_ttl: %v", err)
	assert.Equal(t, res.Revision, b.Revision(), "the refused import changed nothing")
}
