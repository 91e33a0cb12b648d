package ctxd_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// JSON text's strings must name Unicode characters: a surrogate pair's
// escapes are one character, half of one alone is refused (anywhere: a
// string, a member name, after other escapes), and what only looks like
// an escape (an escaped backslash before "ud800") is text. The same
// verdict whole (a value, CanonicalValue) and in pieces cut anywhere (a
// request body as it is read, SurrogateCheck).
func TestLoneSurrogatesAreRefused(t *testing.T) {
	pieces := func(v string, cut int) error {
		var c ctxd.SurrogateCheck
		for _, p := range []string{v[:cut], v[cut:]} {
			if err := c.Write([]byte(p)); err != nil {
				return err
			}
		}
		return c.End()
	}
	for _, v := range []string{
		`"\ud83c\udf89"`, `"\uD83C\uDF89"`, `{"\ud83c\udf89":[1,"\u00e9"]}`, `"\\ud800"`, `"\\\ud83c\udf89"`,
		`"a\"\\\/\b\f\n\r\t\u0000z"`, `"é🎉"`, `1`, `null`, `"\\"`,
	} {
		got, err := ctxd.DefaultLimits.CanonicalValue([]byte(v))
		require.NoError(t, err, "%s", v)
		assert.Equal(t, v, string(got))
		for cut := range len(v) + 1 {
			require.NoError(t, pieces(v, cut), "%s cut at %d", v, cut)
		}
	}
	for _, v := range []string{
		`"\ud800"`, `"\udc00"`, `"\uDBFF"`, `"x\udfffy"`, `"\ud800\u0041"`, `"\ud800\ud800"`, `"\ud800\n"`,
		`{"\udc00":1}`, `["ok","\\",  "\ud800"]`, `"\\\ud800"`, `"\udc00\ud800"`,
	} {
		_, err := ctxd.DefaultLimits.CanonicalValue([]byte(v))
		require.ErrorIs(t, err, ctxd.ErrInvalid, "%s", v)
		assert.Contains(t, err.Error(), "lone surrogate", "%s", v)
		for cut := range len(v) + 1 {
			require.ErrorIs(t, pieces(v, cut), ctxd.ErrInvalid, "%s cut at %d", v, cut)
		}
	}
	// A body that ends after a high half (not JSON either).
	assert.ErrorIs(t, ctxd.CheckSurrogates([]byte(`"\ud800`)), ctxd.ErrInvalid)
}

// Text json.Valid refuses only for its depth is named as such, not "not
// valid JSON".
func TestTooDeepIsNamed(t *testing.T) {
	const depth = 10000 // encoding/json's
	deep := []byte(strings.Repeat("[", depth+1) + strings.Repeat("]", depth+1))
	_, err := ctxd.CompactJSON(deep)
	require.ErrorIs(t, err, ctxd.ErrInvalid)
	assert.Contains(t, err.Error(), "value nests arrays and objects 10001 deep, more than 10000")
	_, err = ctxd.CompactJSON([]byte(`["[[[", {"a":"\"{{"}`))
	assert.Contains(t, err.Error(), "value is not valid JSON", "brackets in strings do not count")
	ok := []byte(strings.Repeat("[", depth) + strings.Repeat("]", depth))
	_, err = ctxd.CompactJSON(ok)
	assert.NoError(t, err)
}

// An object that names a member twice is refused, but not inside the
// members named opaque (values are stored as sent).
func TestCheckDuplicateMembers(t *testing.T) {
	for doc, dup := range map[string]string{
		`{"key":"a","value":1,"key":"b"}`:                     "key",
		`{"ops":[{"op":"put","key":"a","op":"delete"}]}`:      "op",
		`[{"op":"add","path":"/n","op":"remove"}]`:            "op",
		`{"a":{"b":1,"b":2}}`:                                 "b",
		`{"ops":[],"ops":[{"op":"put","key":"k","value":1}]}`: "ops",
	} {
		err := ctxd.CheckDuplicateMembers([]byte(doc), "value")
		assert.ErrorIs(t, err, ctxd.ErrInvalid, doc)
		assert.ErrorContains(t, err, `member "`+dup+`" is given twice`, doc)
	}
	for _, doc := range []string{
		`{"key":"a","value":{"x":1,"x":2}}`, // a value as sent
		`{"key":"a","value":[{"x":1,"x":2}],"who":"w"}`,
		`[{"a":1},{"a":2}]`, // one each
		`{"a":"a","b":"a"}`,
		`not JSON`, // left to its decoder
	} {
		assert.NoError(t, ctxd.CheckDuplicateMembers([]byte(doc), "value"), doc)
	}
}
