package bolt

import "github.com/framework0/ctxd/store"

// The bbolt store is a full storage backend.
var (
	_ store.Backend  = (*Store)(nil)
	_ store.View     = (*View)(nil)
	_ store.Snapshot = (*Snapshot)(nil)
)
