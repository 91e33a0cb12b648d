// Package yamldoc holds what the YAML files ctxd reads (the config file,
// the tokens file) share: one document per file. A second document
// ("---") would be ignored by a decoder that reads one, and what it holds
// with it, silently; an empty one, the trailing "---" templating tools
// leave, is fine.
package yamldoc

import (
	"errors"
	"io"

	"go.yaml.in/yaml/v3"
)

// Empty reports whether doc, a decoded document, holds nothing: no node,
// or null.
func Empty(doc *yaml.Node) bool {
	return len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null"
}

// SecondDocument reads what dec holds after its first document and
// returns the line of the first further document that is not empty (0
// when there is none), or the error that reading it met.
func SecondDocument(dec *yaml.Decoder) (line int, err error) {
	for {
		var more yaml.Node
		err := dec.Decode(&more)
		if errors.Is(err, io.EOF) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		if !Empty(&more) {
			return more.Line, nil
		}
	}
}
