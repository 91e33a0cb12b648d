package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// Expiring keys over the wire, through the OpenAPI validator: a put with a
// TTL shows ExpiresAt in put, get and list answers, a keepalive moves it
// without a new version, a put without TTL clears it, and an export
// imported elsewhere keeps the deadline while a passed one is counted in
// SkippedExpired.
func TestExpiringKeys(t *testing.T) {
	ctx := context.Background()
	c := realServer(t)

	put, err := c.Put(ctx, "", "run/lock", json.RawMessage(`"w7"`), PutOptions{TTL: time.Hour})
	require.NoError(t, err)
	require.False(t, put.ExpiresAt.IsZero())
	assert.True(t, put.UpdatedAt.Add(time.Hour).Equal(put.ExpiresAt), "%s", put.ExpiresAt)
	got, err := c.Get(ctx, "", "run/lock", GetOptions{})
	require.NoError(t, err)
	assert.True(t, put.ExpiresAt.Equal(got.ExpiresAt))
	page, err := c.List(ctx, "", ListOptions{NoValues: true})
	require.NoError(t, err)
	require.Len(t, page.Records, 1)
	assert.True(t, put.ExpiresAt.Equal(page.Records[0].ExpiresAt))

	ka, err := c.KeepAlive(ctx, "", "run/lock", 2*time.Hour, KeepAliveOptions{IfVersion: Expect(1)})
	require.NoError(t, err)
	assert.Equal(t, uint64(1), ka.Version, "a keepalive makes no version")
	assert.True(t, ka.ExpiresAt.After(put.ExpiresAt))
	_, err = c.KeepAlive(ctx, "", "run/lock", time.Hour, KeepAliveOptions{IfVersion: Expect(7)})
	assert.True(t, IsConflict(err), "%v", err)

	_, err = c.Put(ctx, "", "perm", json.RawMessage(`1`), PutOptions{})
	require.NoError(t, err)
	var dump bytes.Buffer
	_, err = c.Export(ctx, "", ExportOptions{}, &dump)
	require.NoError(t, err)
	assert.Contains(t, dump.String(), `"expires_at":{`)

	res, err := c.Import(ctx, "copy", bytes.NewReader(dump.Bytes()))
	require.NoError(t, err)
	assert.Equal(t, 2, res.Imported)
	assert.Equal(t, 0, res.SkippedExpired)
	cp, err := c.Get(ctx, "copy", "run/lock", GetOptions{})
	require.NoError(t, err)
	assert.False(t, cp.ExpiresAt.Before(ka.ExpiresAt), "the deadline came along: %s, %s", cp.ExpiresAt, ka.ExpiresAt)

	passed := strings.Replace(dump.String(), ka.ExpiresAt.UTC().Format(time.RFC3339Nano), "2001-01-01T00:00:00Z", 1)
	require.NotEqual(t, dump.String(), passed)
	res, err = c.Import(ctx, "copy2", strings.NewReader(passed))
	require.NoError(t, err)
	assert.Equal(t, 1, res.Imported)
	assert.Equal(t, 1, res.SkippedExpired)
	_, err = c.Get(ctx, "copy2", "run/lock", GetOptions{})
	assert.True(t, IsNotFound(err), "%v", err)

	// A put without TTL makes the key permanent again.
	perm, err := c.Put(ctx, "", "run/lock", json.RawMessage(`"w8"`), PutOptions{})
	require.NoError(t, err)
	assert.True(t, perm.ExpiresAt.IsZero())

	// A TTL that is negative (a deadline already passed, minus now) is
	// refused, not taken for none: the key would never expire.
	_, err = c.Put(ctx, "", "run/late", json.RawMessage(`1`), PutOptions{TTL: -time.Second})
	assert.True(t, errors.Is(err, ctxd.ErrInvalid), "%v", err)
	_, err = c.Get(ctx, "", "run/late", GetOptions{})
	assert.True(t, IsNotFound(err), "nothing written: %v", err)
	_, err = c.KeepAlive(ctx, "", "run/lock", -time.Second, KeepAliveOptions{})
	assert.True(t, errors.Is(err, ctxd.ErrInvalid), "%v", err)
}

// TxnTTL gives a transaction's put a TTL as a time.Duration, as
// PutOptions.TTL does (TxnOp.TTL is the wire's JSON): the key expires
// that long after the transaction; 0 is none; a negative one is refused,
// never taken for none.
func TestTxnTTL(t *testing.T) {
	ctx := context.Background()
	c := realServer(t)
	res, err := c.Txn(ctx, []TxnOp{
		{Op: "put", Key: "lease", Value: json.RawMessage(`1`), TTL: TxnTTL(90 * time.Minute)},
		{Op: "put", Key: "short", Value: json.RawMessage(`1`), TTL: TxnTTL(1500 * time.Millisecond)},
		{Op: "put", Key: "perm", Value: json.RawMessage(`1`), TTL: TxnTTL(0)},
	}, TxnOptions{})
	require.NoError(t, err)
	require.Len(t, res.Records, 3)
	assert.True(t, res.Records[0].UpdatedAt.Add(90*time.Minute).Equal(res.Records[0].ExpiresAt), "%s", res.Records[0].ExpiresAt)
	assert.True(t, res.Records[1].UpdatedAt.Add(1500*time.Millisecond).Equal(res.Records[1].ExpiresAt), "%s", res.Records[1].ExpiresAt)
	assert.True(t, res.Records[2].ExpiresAt.IsZero())

	_, err = c.Txn(ctx, []TxnOp{{Op: "put", Key: "late", Value: json.RawMessage(`1`), TTL: TxnTTL(-time.Second)}}, TxnOptions{})
	assert.True(t, errors.Is(err, ctxd.ErrInvalid), "%v", err)
}

// Import records the who its options give, as every other write does;
// without, the client's (WithWho).
func TestImportWho(t *testing.T) {
	ctx := context.Background()
	c := realServer(t)
	_, err := c.Import(ctx, "a", strings.NewReader(`{"context":{"k":1}}`), ImportOptions{Who: "restore-job"})
	require.NoError(t, err)
	rec, err := c.Get(ctx, "a", "k", GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "restore-job", rec.Who)
	_, err = c.Import(ctx, "b", strings.NewReader(`{"context":{"k":1}}`))
	require.NoError(t, err)
	rec, err = c.Get(ctx, "b", "k", GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "client-test", rec.Who)
}
