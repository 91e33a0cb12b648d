package export_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// A dump taken while 8 writers keep writing holds exactly what the store
// held at the revision it records.
func TestDumpWhileWriting(t *testing.T) {
	st := openStore(t, bolt.Options{})
	const writers, keysPerWriter = 8, 40
	keyOf := func(w, k int) string { return "w" + strconv.Itoa(w) + "/k" + strconv.Itoa(k) }

	ctx, cancel := context.WithCancel(bg)
	var wg sync.WaitGroup
	var writes [writers]int
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Writes use bg, not ctx: each one started completes, so the
			// store is idle when the cleanup checks it.
			for i := 0; ctx.Err() == nil; i++ {
				key := keyOf(w, i%keysPerWriter)
				var err error
				if i%5 == 4 {
					_, err = st.Delete(bg, "default", key, nil, "writer")
					if errors.Is(err, ctxd.ErrNotFound) {
						err = nil
					}
				} else {
					_, err = st.Put(bg, "default", key, []byte(`{"writer":`+strconv.Itoa(w)+`,"i":`+strconv.Itoa(i)+`}`), nil, "writer")
				}
				if !assert.NoError(t, err) {
					return
				}
				writes[w]++
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	for rev, changed := st.Committed(); rev < 50; rev, changed = st.Committed() {
		<-changed
	}
	var revs []uint64
	for i := 0; i < 12; i++ {
		f := export.JSON
		if i%2 == 1 {
			f = export.CSV
		}
		var buf bytes.Buffer
		var res export.Result
		require.NoError(t, st.View(func(v store.View) error {
			var err error
			res, err = export.Write(&buf, f, v, export.Options{Namespace: "default", Who: "t"})
			return err
		}))
		got := map[string]string{}
		if f == export.JSON {
			d := decodeStrict[jsonDump](t, buf.Bytes())
			require.Equal(t, res.Revision, d.Revision)
			for k, v := range d.Context {
				got[k] = string(v)
			}
		} else {
			rows, err := csv.NewReader(&buf).ReadAll()
			require.NoError(t, err)
			for _, row := range rows[1:] {
				got[row[0]] = row[1]
			}
		}
		for w := range writers {
			for k := range keysPerWriter {
				key := keyOf(w, k)
				want, err := st.GetAt("default", key, res.Revision)
				if errors.Is(err, ctxd.ErrNotFound) {
					assert.NotContains(t, got, key, "%s at revision %d", key, res.Revision)
					continue
				}
				require.NoError(t, err)
				assert.Equal(t, string(want.Value), got[key], "%s at revision %d", key, res.Revision)
			}
		}
		revs = append(revs, res.Revision)
	}
	cancel()
	wg.Wait()
	total := 0
	for _, n := range writes {
		total += n
	}
	t.Logf("dumps at revisions %v while %d writes went in", revs, total)
	assert.Greater(t, revs[len(revs)-1], revs[0], "the writers kept writing between dumps")
}
