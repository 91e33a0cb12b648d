package httpapi

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
)

// The UTF-8 check passes valid text through whatever the read sizes (a
// sequence cut between reads is fine) and fails at the first invalid one.
func TestUTF8Reader(t *testing.T) {
	valid := []string{"", "plain", `{"k":"ü/ñ 日本 🙂"}`, strings.Repeat("日本🙂", 5000)}
	invalid := []string{"\xff", "a\xc3", "\xed\xa0\x80", `{"k":"` + "\xc3\x28" + `"}`, strings.Repeat("é", 9000) + "\xe6\x97", "🙂"[:3]}
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half":     func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
	}
	for name, mk := range readers {
		for _, size := range []int{8, 4 << 10} {
			for _, s := range valid {
				got, err := io.ReadAll(&utf8Reader{r: io.NopCloser(mk(s)), size: size})
				assert.NoError(t, err, "%s %d %.20q", name, size, s)
				assert.Equal(t, s, string(got), "%s %d", name, size)
			}
			for _, s := range invalid {
				_, err := io.ReadAll(&utf8Reader{r: io.NopCloser(mk(s)), size: size})
				assert.ErrorIs(t, err, errNotUTF8, "%s %d %.20q", name, size, s)
			}
		}
	}
}
