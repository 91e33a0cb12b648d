package migrations

import "time"

// openTimeout bounds the wait for the file lock held by a running server.
const openTimeout = 2 * time.Second
