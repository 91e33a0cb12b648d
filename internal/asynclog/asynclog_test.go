package asynclog_test

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/asynclog"
)

// syncBuffer is an output that records every write.
type syncBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLinesInOrderAfterFlush(t *testing.T) {
	out := &syncBuffer{}
	w := asynclog.New(out, asynclog.Options{})
	defer w.Close()
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				_, _ = fmt.Fprintf(w, "%d %d\n", g, i) // never fails
			}
		})
	}
	wg.Wait()
	w.Flush()
	next := make([]int, writers) // each writer's lines arrive whole and in order
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, got, writers*lines)
	for _, l := range got {
		g, i, ok := strings.Cut(l, " ")
		require.True(t, ok, "line %q", l)
		gn, err := strconv.Atoi(g)
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(next[gn]), i, "writer %d", gn)
		next[gn]++
	}
	require.Zero(t, w.Dropped())
}

func TestCloseWritesEverythingThenWritesDirectly(t *testing.T) {
	out := &syncBuffer{}
	w := asynclog.New(out, asynclog.Options{})
	var want strings.Builder
	for i := range 1000 {
		line := "line " + strconv.Itoa(i) + "\n"
		want.WriteString(line)
		_, _ = w.Write([]byte(line))
	}
	require.NoError(t, w.Close())
	require.Equal(t, want.String(), out.String(), "every line buffered before Close is written")

	_, err := w.Write([]byte("after close\n"))
	require.NoError(t, err)
	require.Equal(t, want.String()+"after close\n", out.String(), "a line after Close is written at once")
	require.NoError(t, w.Close(), "Close again")
	w.Flush() // returns at once after Close
}

// blockingOutput blocks its first write until released.
type blockingOutput struct {
	syncBuffer
	entered, release chan struct{}
	once             sync.Once
}

func (b *blockingOutput) Write(p []byte) (int, error) {
	b.once.Do(func() {
		close(b.entered)
		<-b.release
	})
	return b.syncBuffer.Write(p)
}

func TestFullBufferDropsAndCounts(t *testing.T) {
	out := &blockingOutput{entered: make(chan struct{}), release: make(chan struct{})}
	var w *asynclog.Writer
	var reported []uint64
	w = asynclog.New(out, asynclog.Options{
		MaxBuffered: 10,
		OnDrop: func(n uint64) {
			reported = append(reported, n)
			_, _ = fmt.Fprintf(w, "dropped %d\n", n) // logs through the writer itself
		},
	})
	_, _ = w.Write([]byte("aa1\n"))
	<-out.entered // the goroutine is stuck in the write of aa1
	for _, l := range []string{"aa2\n", "aa3\n", "aa4\n", "aa5\n"} {
		n, err := w.Write([]byte(l))
		require.NoError(t, err, "a write never fails")
		require.Equal(t, len(l), n)
	}
	require.Equal(t, uint64(2), w.Dropped(), "aa4 and aa5 do not fit in 10 bytes behind aa2 and aa3")
	close(out.release)
	w.Flush() // aa2 aa3
	w.Flush() // the OnDrop line
	require.NoError(t, w.Close())
	require.Equal(t, "aa1\naa2\naa3\ndropped 2\n", out.String())
	require.Equal(t, []uint64{2}, reported)
}

func TestLargeLineTakenWhenAlone(t *testing.T) {
	out := &syncBuffer{}
	w := asynclog.New(out, asynclog.Options{MaxBuffered: 8})
	line := strings.Repeat("x", 100) + "\n"
	_, _ = w.Write([]byte(line))
	require.NoError(t, w.Close())
	require.Equal(t, line, out.String())
	require.Zero(t, w.Dropped())
}

type failingOutput struct{}

func (failingOutput) Write([]byte) (int, error) { return 0, errors.New("disk gone") }

func TestFailedWriteCountsItsLines(t *testing.T) {
	w := asynclog.New(failingOutput{}, asynclog.Options{})
	_, _ = w.Write([]byte("a\nb\n")) // two lines in one write, as a batch would be
	w.Flush()
	require.Equal(t, uint64(2), w.Dropped())
	require.NoError(t, w.Close())
}

func TestBatchesLinesWhileWriting(t *testing.T) {
	out := &blockingOutput{entered: make(chan struct{}), release: make(chan struct{})}
	w := asynclog.New(out, asynclog.Options{})
	_, _ = w.Write([]byte("first\n"))
	<-out.entered
	want := "first\n"
	for i := range 100 {
		line := "line " + strconv.Itoa(i) + "\n"
		want += line
		_, _ = w.Write([]byte(line))
	}
	close(out.release)
	require.NoError(t, w.Close(), "Close while lines wait behind a write")
	require.Equal(t, want, out.String(), "every line is written at Close")
	out.mu.Lock()
	defer out.mu.Unlock()
	require.Equal(t, 2, out.writes, "the 100 lines that came during the first write go out in one")
}
