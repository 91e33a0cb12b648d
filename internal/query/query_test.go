package query_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/query"
)

func TestParseBool(t *testing.T) {
	for _, tt := range []struct {
		in    string
		v, ok bool
	}{
		{"true", true, true},
		{"TRUE", true, true},
		{"True", true, true},
		{"1", true, true},
		{"yes", true, true},
		{"Yes", true, true},
		{"on", true, true},
		{"ON", true, true},
		{"false", false, true},
		{"FALSE", false, true},
		{"0", false, true},
		{"no", false, true},
		{"NO", false, true},
		{"off", false, true},
		{"Off", false, true},
		{"", false, true},
		// Refused.
		{"maybe", false, false},
		{"2", false, false},
		{"2x", false, false},
		{"-1", false, false},
		{"t", true, true},
		{"T", true, true},
		{"f", false, true},
		{"F", false, true},
		{"y", false, false},
		{"n", false, false},
		{" true", false, false},
		{"true ", false, false},
		{"01", false, false},
		{"truee", false, false},
	} {
		v, ok := query.ParseBool(tt.in)
		if v != tt.v || ok != tt.ok {
			t.Errorf("ParseBool(%q) = %v, %v; want %v, %v", tt.in, v, ok, tt.v, tt.ok)
		}
	}
}

// A query parameter given without a value is true ("?dry_run" asks for a
// dry run); a value is read as ParseBool reads it.
func TestBoolParam(t *testing.T) {
	for s, want := range map[string]bool{"": true, "true": true, "0": false, "off": false} {
		got, err := query.BoolParam("dry_run", s)
		require.NoError(t, err, "%q", s)
		assert.Equal(t, want, got, "%q", s)
	}
	_, err := query.BoolParam("dry_run", "maybe")
	assert.ErrorContains(t, err, `dry_run must be true or false`)
}
