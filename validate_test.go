package ctxd_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// A value's strings must name Unicode characters: a surrogate pair's
// escapes are one character, half of one alone is refused (anywhere: a
// string, a member name, after other escapes), and what only looks like
// an escape (an escaped backslash before "ud800") is text.
func TestCanonicalValueRefusesLoneSurrogates(t *testing.T) {
	for _, v := range []string{
		`"\ud83c\udf89"`, `"\uD83C\uDF89"`, `{"\ud83c\udf89":[1,"\u00e9"]}`, `"\\ud800"`, `"\\\ud83c\udf89"`,
		`"a\"\\\/\b\f\n\r\t\u0000z"`, `"é🎉"`, `1`, `null`, `"\\"`,
	} {
		got, err := ctxd.DefaultLimits.CanonicalValue([]byte(v))
		require.NoError(t, err, "%s", v)
		assert.Equal(t, v, string(got))
	}
	for _, v := range []string{
		`"\ud800"`, `"\udc00"`, `"\uDBFF"`, `"x\udfffy"`, `"\ud800\u0041"`, `"\ud800\ud800"`, `"\ud800\n"`,
		`{"\udc00":1}`, `["ok","\\",  "\ud800"]`, `"\\\ud800"`, `"\udc00\ud800"`,
	} {
		_, err := ctxd.DefaultLimits.CanonicalValue([]byte(v))
		require.ErrorIs(t, err, ctxd.ErrInvalid, "%s", v)
		assert.Contains(t, err.Error(), "lone surrogate", "%s", v)
	}
}
