package ctxd_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/framework0/ctxd"
)

// RevisionEnd finds the end of a revision of several changes (an etcd
// transaction's), of one, and of the last one.
func TestRevisionEnd(t *testing.T) {
	changes := []ctxd.Change{{Revision: 4}, {Revision: 5}, {Revision: 5}, {Revision: 5}, {Revision: 7}}
	for _, c := range []struct{ first, end int }{{0, 1}, {1, 4}, {2, 4}, {3, 4}, {4, 5}} {
		assert.Equal(t, c.end, ctxd.RevisionEnd(changes, c.first), "from %d", c.first)
	}
}
