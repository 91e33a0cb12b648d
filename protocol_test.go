package ctxd

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDecodeErrorMessage(t *testing.T) {
	var m struct {
		IfVersion *uint64 `json:"if_version"`
		Key       string  `json:"key"`
		Nested    struct {
			Flag bool `json:"flag"`
		} `json:"nested"`
	}
	for in, want := range map[string]string{
		`{"if_version":"3"}`:        `"if_version" must be a whole number, 0 or more, not a string`,
		`{"if_version":-1}`:         `"if_version" must be a whole number, 0 or more, not -1`,
		`{"if_version":1.5}`:        `"if_version" must be a whole number, 0 or more, not 1.5`,
		`{"key":5}`:                 `"key" must be a string, not a number`,
		`{"key":{}}`:                `"key" must be a string, not an object`,
		`{"nested":{"flag":"yes"}}`: `"nested.flag" must be true or false, not a string`,
		`[1]`:                       `must be an object, not an array`,
		`{"key":`:                   `unexpected end of JSON input`,
		`{"nested":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`: "arrays and objects nest more than 10000 deep (encoding/json's limit, counting the request document's own levels)",
	} {
		assert.Equal(t, want, DecodeErrorMessage(json.Unmarshal([]byte(in), &m)), in)
	}
}
