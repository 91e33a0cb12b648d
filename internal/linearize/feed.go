package linearize

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/framework0/ctxd/client"
)

// Feed records the change feed (GET /v1/watch) of a workload's keys while
// the workload runs, for [Resolve]. It follows the servers as the
// workload does: when its connection ends, or stays silent longer than
// the idle timeout (a paused server), it resumes after the last change it
// got (from_rev, from_index), on the next URL when its own cannot be
// reached, so that it holds every change once, in order, across server
// faults.
type Feed struct {
	urls   []string
	ns     string
	prefix string
	idle   time.Duration

	mu      sync.Mutex
	changes []client.WatchEvent
	resumes int
	err     error
	marker  *client.WatchEvent // the end to wait for: key and value
	reached chan struct{}      // closed when marker is in changes

	cancel context.CancelFunc
	done   chan struct{}
}

// FeedIdleTimeout is how long the feed waits on a silent connection before
// it resumes on the next server: the workload writes all the time, so a
// silence that long is a paused server, or one cut off (a resume that was
// not needed costs a reconnection, nothing else).
const FeedIdleTimeout = 2 * time.Second

// StartFeed subscribes to the changes of w's keys (w.Keys must be set:
// its keys' folder, up to the last "/", is the feed's prefix) on w.URLs,
// and returns once a server accepted: every change after that is
// recorded, until [Feed.Stop].
func StartFeed(ctx context.Context, w Workload) (*Feed, error) {
	if len(w.URLs) == 0 || len(w.Keys) == 0 {
		return nil, errors.New("linearize: a feed needs the workload's URLs and keys")
	}
	prefix := w.Keys[0][:strings.LastIndex(w.Keys[0], "/")+1]
	for _, k := range w.Keys {
		if !strings.HasPrefix(k, prefix) {
			return nil, fmt.Errorf("linearize: the keys %q and %q are not in one folder", w.Keys[0], k)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Feed{urls: w.URLs, ns: w.Namespace, prefix: prefix, idle: FeedIdleTimeout,
		reached: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	started := make(chan struct{})
	go f.run(ctx, started)
	select {
	case <-started:
		return f, nil
	case <-f.done:
		cancel()
		if f.err == nil {
			return nil, fmt.Errorf("linearize: start the feed: %w", ctx.Err())
		}
		return nil, f.err
	}
}

// run follows the feed until ctx ends or the servers refuse it for good:
// one Watch of a client of every server, which resumes on the next one
// when its own cannot be reached (client.New), after the last change it
// handed to add.
func (f *Feed) run(ctx context.Context, started chan struct{}) {
	defer close(f.done)
	cl, err := client.New(strings.Join(f.urls, ","), client.WithWho("linearize-feed"), client.WithConnectTimeout(f.idle))
	if err != nil {
		f.fail(err)
		return
	}
	first := true
	opts := client.WatchOptions{
		Prefix: f.prefix, IdleTimeout: f.idle, DialTimeout: f.idle,
		// A pause between attempts on a server that is down.
		MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second,
		OnConnect: func(uint64) {
			if first {
				first = false
				close(started)
				return
			}
			f.mu.Lock()
			f.resumes++
			f.mu.Unlock()
		},
	}
	if f.ns != "" {
		opts.Namespaces = []string{f.ns}
	}
	if err := cl.Watch(ctx, opts, f.add); err != nil {
		f.fail(err)
	}
}

func (f *Feed) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// add records one change.
func (f *Feed) add(ev client.WatchEvent) error {
	if ev.Type != client.EventChange {
		return fmt.Errorf("linearize: the feed says %v: the changes before it are gone", ev)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes = append(f.changes, ev)
	if f.marker != nil && ev.Key == f.marker.Key && string(ev.Value) == string(f.marker.Value) {
		close(f.reached)
		f.marker = nil
	}
	return nil
}

// Stop ends the feed once it holds every change the workload made, and
// returns them (with how many times it resumed: connections after the first). Call
// it after the workload ended: it writes an end marker under the keys'
// prefix through the first server that acknowledges it, waits until the
// feed shows it (every write that took effect before it, so every write
// an operation of the history saw, is then recorded), and leaves the
// marker out.
func (f *Feed) Stop(ctx context.Context) ([]client.WatchEvent, int, error) {
	defer func() {
		f.cancel()
		<-f.done
	}()
	marker := client.WatchEvent{Key: f.prefix + "feed-end-" + randomHex(4), Value: jsonString("end")}
	f.mu.Lock()
	f.marker = &marker
	f.mu.Unlock()
	for i := 0; ; i++ {
		cl, err := client.New(f.urls[i%len(f.urls)], client.WithWho("linearize-feed"))
		if err != nil {
			return nil, 0, err
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = cl.Put(pctx, f.ns, marker.Key, marker.Value, client.PutOptions{})
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("linearize: write the feed's end marker: %w", err)
		}
	}
	select {
	case <-f.reached:
	case <-f.done:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("linearize: the feed did not reach its end marker: %w", ctx.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.resumes, fmt.Errorf("linearize: feed: %w", f.err)
	}
	n := len(f.changes)
	for n > 0 && f.changes[n-1].Key != marker.Key {
		n--
	}
	if n == 0 {
		return nil, f.resumes, errors.New("linearize: the feed ended before its end marker")
	}
	return f.changes[:n-1], f.resumes, nil
}
