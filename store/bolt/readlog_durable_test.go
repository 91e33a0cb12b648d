package bolt_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/store/bolt"
)

// TestReadLogStopsAtCommittedMark: while commits run, ReadLog never
// returns a change above the committed mark, which is raised only after a
// commit's fsyncs. (bbolt shows a commit to new read transactions once its
// meta page is written, before it is synced; before this check a follower
// was handed such changes thousands of times a second here, and a power
// cut could take them back.)
func TestReadLogStopsAtCommittedMark(t *testing.T) {
	s := openStore(t, bolt.Options{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := s.Put(ctx, "default", fmt.Sprintf("k%d", i), json.RawMessage(`1`), nil, "t")
			if err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	read := 0
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
		rev, _ := s.Committed()
		changes, err := s.ReadLog(rev-min(rev, 3), 10)
		require.NoError(t, err)
		if len(changes) == 0 {
			continue
		}
		read++
		mark, _ := s.Committed()
		require.LessOrEqual(t, changes[len(changes)-1].Revision, mark, "ReadLog returned a change above the committed mark")
	}
	require.NotZero(t, read, "no read returned a change: the test checked nothing")
}
