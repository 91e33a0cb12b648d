package bolt

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/framework0/ctxd"
)

// A group's keepalive of a key that a later write of the same group
// replaced (or deleted) is superseded: the deadline heap keeps the
// write's deadline (or none), which writes look up by the key's revision
// now. A keepalive after the group's write of its key (it extends that
// write's revision) moves the deadline. Before, the heap took the
// keepalive last either way: the replaced key's lookup found no deadline
// and a patch made it permanent.
func TestDeadlinesPublishSkipsSupersededKeepAlives(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	put := func(key string, rev uint64, at time.Time) *change {
		c := &change{}
		c.Change = ctxd.Change{Namespace: "default", Key: key, Op: ctxd.OpPut, Revision: rev, ExpiresAt: at}
		return c
	}
	del := func(key string, rev uint64) *change {
		c := &change{}
		c.Change = ctxd.Change{Namespace: "default", Key: key, Op: ctxd.OpDelete, Revision: rev}
		return c
	}
	keepalive := func(key string, modRev uint64, at time.Time) *extend {
		return &extend{ns: "default", key: key, modRev: modRev, expiresAt: at}
	}
	d := newDeadlines()
	d.publish([]*change{put("replaced", 1, t0), put("deleted", 2, t0), put("kept", 3, t0)}, nil)

	// One group: keepalives of all three at their revisions, then a put
	// of "replaced" and a delete of "deleted"; and a put of "new" followed
	// by a keepalive of it.
	d.publish(
		[]*change{put("replaced", 4, t0.Add(time.Hour)), del("deleted", 5), put("new", 6, t0.Add(time.Hour))},
		[]*extend{keepalive("replaced", 1, t0.Add(time.Minute)), keepalive("deleted", 2, t0.Add(time.Minute)),
			keepalive("kept", 3, t0.Add(time.Minute)), keepalive("new", 6, t0.Add(2*time.Hour))},
	)
	name := func(key string) nsKeyName { return nsKeyName{"default", key} }
	assert.Equal(t, t0.Add(time.Hour), d.get(name("replaced"), 4), "the later put's deadline")
	assert.True(t, d.get(name("deleted"), 2).IsZero(), "a deleted key has none")
	assert.Equal(t, t0.Add(time.Minute), d.get(name("kept"), 3), "a keepalive alone moves it")
	assert.Equal(t, t0.Add(2*time.Hour), d.get(name("new"), 6), "a keepalive after the put moves the put's")
	next, ok := d.next()
	assert.True(t, ok)
	assert.Equal(t, t0.Add(time.Minute), next, "the earliest: kept's")
}
