package ctxd_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// Every error of the data model has one status and one code, also when
// wrapped; anything else is not the model's to classify.
func TestClassify(t *testing.T) {
	unknownOutcome := fmt.Errorf("%w: %w", ctxd.ErrOutcomeUnknown, context.Canceled)
	for _, tt := range []struct {
		err    error
		status int
		code   string
	}{
		{ctxd.ErrNotFound, http.StatusNotFound, ctxd.CodeNotFound},
		{&ctxd.ConflictError{Namespace: "n", Key: "k", Expected: 1, Current: 2}, http.StatusConflict, ctxd.CodeConflict},
		{&ctxd.CompactedError{Requested: 1, Compacted: 5}, http.StatusGone, ctxd.CodeCompacted},
		{ctxd.ErrFutureRevision, http.StatusBadRequest, ctxd.CodeFutureRevision},
		{ctxd.TooLargef("key is %d bytes", 2000), http.StatusRequestEntityTooLarge, ctxd.CodeTooLarge},
		{ctxd.Invalidf("key is empty"), http.StatusBadRequest, ctxd.CodeBadRequest},
		{fmt.Errorf("restore: %w", ctxd.ErrBadSnapshot), http.StatusUnprocessableEntity, ctxd.CodeBadSnapshot},
		{ctxd.ErrNotSupported, http.StatusNotImplemented, ctxd.CodeNotSupported},
		{&ctxd.QuotaError{Used: 2 << 20, Quota: 1 << 20}, http.StatusInsufficientStorage, ctxd.CodeInsufficientStorage},
		{ctxd.ErrClosed, http.StatusServiceUnavailable, ctxd.CodeUnavailable},
		{ctxd.ErrUnavailable, http.StatusServiceUnavailable, ctxd.CodeUnavailable},
		{context.DeadlineExceeded, http.StatusServiceUnavailable, ctxd.CodeUnavailable},
		// A write that may have applied wraps the context's error too: it
		// must never read as "refused".
		{unknownOutcome, http.StatusServiceUnavailable, ctxd.CodeOutcomeUnknown},
	} {
		status, code, ok := ctxd.Classify(fmt.Errorf("op: %w", tt.err))
		assert.True(t, ok, "%v", tt.err)
		assert.Equal(t, tt.status, status, "%v", tt.err)
		assert.Equal(t, tt.code, code, "%v", tt.err)
	}
	_, _, ok := ctxd.Classify(errors.New("disk on fire"))
	assert.False(t, ok, "an error outside the model is internal, for the transport to log")
}

// The typed errors match their sentinels.
func TestTypedErrorsMatchTheirSentinels(t *testing.T) {
	assert.ErrorIs(t, &ctxd.ConflictError{}, ctxd.ErrConflict)
	assert.ErrorIs(t, &ctxd.CompactedError{}, ctxd.ErrCompacted)
	assert.Contains(t, (&ctxd.CompactedError{Requested: 3, RestoredFrom: 2}).Error(), "restored from a snapshot at revision 2")
	assert.ErrorIs(t, &ctxd.QuotaError{}, ctxd.ErrInsufficientStorage)
}

// A quota error says how full the database is and what to do.
func TestQuotaErrorMessage(t *testing.T) {
	full := (&ctxd.QuotaError{Used: 3 << 20, Quota: 2 << 20}).Error()
	assert.Contains(t, full, "uses 3.0 MiB of its 2.0 MiB quota (storage.quota_bytes)")
	big := (&ctxd.QuotaError{Used: 1 << 20, Quota: 2 << 20, Need: 1536 << 10}).Error()
	assert.Contains(t, big, "a write adding about 1.5 MiB would pass it, the database uses 1.0 MiB of its 2.0 MiB quota")
	for _, hint := range []string{"POST /v1/compact", "delete keys", "POST /v1/defrag", "raise storage.quota_bytes"} {
		assert.Contains(t, full, hint)
	}
}

// A patch's kind comes from its name, or from the document's shape.
func TestParsePatchType(t *testing.T) {
	cases := []struct {
		name, doc string
		want      ctxd.PatchType
	}{
		{"", ` [{"op":"add"}]`, ctxd.JSONPatch},
		{"", `{"a":[1]}`, ctxd.MergePatch},
		{"", `"x"`, ctxd.MergePatch},
		{"merge", `[1]`, ctxd.MergePatch},
		{"json", `{}`, ctxd.JSONPatch},
		{string(ctxd.MergePatch), `[]`, ctxd.MergePatch},
		{string(ctxd.JSONPatch), `{}`, ctxd.JSONPatch},
	}
	for _, c := range cases {
		got, err := ctxd.ParsePatchType(c.name, []byte(c.doc))
		if err != nil || got != c.want {
			t.Errorf("ctxd.ParsePatchType(%q, %s) = %q, %v; want %q", c.name, c.doc, got, err, c.want)
		}
	}
	if _, err := ctxd.ParsePatchType("xml", []byte(`{}`)); !errors.Is(err, ctxd.ErrInvalid) {
		t.Errorf("an unknown type: %v", err)
	}
}

// ErrorsOf is Classify's reverse: every code of the table names errors
// that Classify answers with that code, and none of the context's.
func TestErrorsOfIsClassifysReverse(t *testing.T) {
	for _, code := range ctxd.ErrorCodes() {
		errs := ctxd.ErrorsOf(code)
		require.NotEmpty(t, errs, code)
		for _, err := range errs {
			_, got, ok := ctxd.Classify(err)
			assert.True(t, ok)
			assert.Equal(t, code, got, "%v", err)
			assert.NotErrorIs(t, err, context.Canceled)
			assert.NotErrorIs(t, err, context.DeadlineExceeded)
		}
	}
	assert.Empty(t, ctxd.ErrorsOf("no_such_code"))
}
