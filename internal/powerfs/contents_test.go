package powerfs

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The paged contents behave as a plain byte slice would, and a shared copy
// (the durable one) never sees later changes.
func TestContentsMatchAByteSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var c contents
	want := []byte{}
	var snaps []contents
	var snapWant [][]byte
	grow := func(n int64) {
		for int64(len(want)) < n {
			want = append(want, 0)
		}
	}
	for range 2000 {
		off, n := rng.Int64N(5*pageSize), rng.Int64N(2*pageSize)
		switch rng.IntN(6) {
		case 0, 1:
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.IntN(255) + 1)
			}
			c.writeAt(b, off)
			grow(off + n)
			copy(want[off:], b)
		case 2:
			c.truncate(off)
			if off < int64(len(want)) {
				want = want[:off]
			}
			grow(off)
		case 3:
			keep := rng.IntN(2) == 0
			c.allocate(off, n, keep)
			if !keep {
				grow(off + n)
			}
		case 4:
			c.zero(off, n, rng.IntN(2) == 0)
			for i := off; i < off+n && i < int64(len(want)); i++ {
				want[i] = 0
			}
		case 5:
			snaps = append(snaps, c.share())
			snapWant = append(snapWant, bytes.Clone(want))
		}
		require.Equal(t, int64(len(want)), c.size)
		require.Equal(t, want, c.bytes())
	}
	for i := range snaps {
		assert.Equal(t, snapWant[i], snaps[i].bytes(), "snapshot %d", i)
	}
	b := make([]byte, 10)
	assert.Equal(t, 0, c.readAt(b, c.size))
}

func TestSectors(t *testing.T) {
	o := op{kind: opWrite, off: 500, data: make([]byte, 1100)}
	var got [][2]int64
	for _, s := range o.sectors() {
		got = append(got, [2]int64{s.off, int64(len(s.data))})
	}
	assert.Equal(t, [][2]int64{{500, 12}, {512, 512}, {1024, 512}, {1536, 64}}, got)
}
