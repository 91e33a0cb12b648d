package perf

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/framework0/ctxd/store/wal"
)

// The walhttp peer: the nethttp handler with durable puts. Each put is a
// record of ctxd's own write-ahead log (package store/wal, on the file
// system of ctxd's data) and is answered once an fdatasync covers it;
// concurrent puts are grouped into one write and one fdatasync, and the
// next group is written while the last one syncs, as ctxd's writer and
// syncer do; a lone put, nothing else under way, is written and synced by
// its own handler, as ctxd's lone writes are. It has nothing else of
// ctxd's: no database file behind the log, no checks, history, feed or
// log line. It is the floor of a durable put on this machine: what ctxd's
// puts would cost if durability were all they paid for over nethttp's.

// maxDurableGroup bounds the puts of one write.
const maxDurableGroup = 1024

// durablePut is a put waiting for its record to be durable.
type durablePut struct {
	ns, key string
	value   []byte
	done    chan putResult
}

type putResult struct {
	rev uint64
	err error
}

// durableLog makes puts durable: a writer goroutine groups and writes
// them, a syncer goroutine fdatasyncs and answers them; a lone put, the
// two idle, does both in its caller's goroutine (ctxd's submitAlone).
// writing and syncing are held by whoever does each part; flying counts
// the groups sent to the syncer and not yet answered, lastLanding the
// puts the last fdatasync answered.
type durableLog struct {
	log         *wal.Log
	store       *bareStore
	queue       chan *durablePut
	written     chan []*durablePut
	stopped     chan struct{}
	syncs       atomic.Int64 // fdatasyncs
	writing     sync.Mutex
	syncing     sync.Mutex
	flying      atomic.Int64
	lastLanding atomic.Int64
}

func openDurableLog(dir string, st *bareStore) (*durableLog, error) {
	log, err := wal.Open(dir, wal.Options{})
	if err != nil {
		return nil, err
	}
	d := &durableLog{
		log: log, store: st,
		queue:   make(chan *durablePut, maxDurableGroup),
		written: make(chan []*durablePut, 64),
		stopped: make(chan struct{}),
	}
	go d.write()
	go d.sync()
	return d, nil
}

// put waits until the put is durable, then applies it to the map and
// returns its revision.
func (d *durableLog) put(ns, key string, value []byte) (uint64, error) {
	p := &durablePut{ns: ns, key: key, value: value, done: make(chan putResult, 1)}
	if !d.putAlone(p) {
		d.queue <- p
	}
	r := <-p.done
	return r.rev, r.err
}

// putAlone writes p and, the syncer idle, makes it durable and answers
// it in the caller's goroutine, when nothing else is under way; it
// reports whether it took p (answered, or handed to the syncer).
func (d *durableLog) putAlone(p *durablePut) bool {
	idle := func() bool { return d.flying.Load() == 0 && len(d.queue) == 0 }
	if d.lastLanding.Load() > 1 || !idle() || !d.writing.TryLock() {
		return false
	}
	if !idle() {
		d.writing.Unlock()
		return false
	}
	group := []*durablePut{p}
	if _, err := d.log.Write(record(p)); err != nil {
		d.writing.Unlock()
		d.answer(group, err)
		return true
	}
	if !d.syncing.TryLock() {
		d.flying.Add(1)
		d.written <- group
		d.writing.Unlock()
		return true
	}
	d.writing.Unlock()
	d.land(group)
	d.syncing.Unlock()
	return true
}

func record(p *durablePut) []byte {
	rec := make([]byte, 0, len(p.ns)+len(p.key)+len(p.value)+2)
	return append(append(append(append(append(rec, p.ns...), 0), p.key...), 0), p.value...)
}

// write takes every put waiting, writes their records with one write,
// and hands the group to the syncer; it never waits for an fdatasync.
func (d *durableLog) write() {
	defer close(d.written)
	var recs [][]byte
	for p := range d.queue {
		d.writing.Lock()
		group := []*durablePut{p}
	more:
		for len(group) < maxDurableGroup {
			select {
			case p, ok := <-d.queue:
				if !ok {
					break more
				}
				group = append(group, p)
			default:
				break more
			}
		}
		recs = recs[:0]
		for _, p := range group {
			recs = append(recs, record(p))
		}
		if _, err := d.log.Write(recs...); err != nil {
			d.writing.Unlock()
			d.answer(group, err)
			continue
		}
		d.flying.Add(1)
		d.written <- group
		d.writing.Unlock()
	}
}

// sync makes every group written so far durable with one fdatasync,
// then answers them, and releases the log's segments behind them (the
// map holds the values).
func (d *durableLog) sync() {
	defer close(d.stopped)
	for group := range d.written {
		groups := int64(1)
	more:
		for {
			select {
			case g, ok := <-d.written:
				if !ok {
					break more
				}
				group = append(group, g...)
				groups++
			default:
				break more
			}
		}
		d.syncing.Lock()
		d.land(group)
		d.flying.Add(-groups)
		d.syncing.Unlock()
	}
}

// land makes every put written so far durable with one fdatasync, and
// answers group. The caller holds syncing.
func (d *durableLog) land(group []*durablePut) {
	last, err := d.log.Sync()
	d.syncs.Add(1)
	if err == nil {
		err = d.log.ReleaseBefore(last + 1)
	}
	d.answer(group, err)
	d.lastLanding.Store(int64(len(group)))
}

func (d *durableLog) answer(group []*durablePut, err error) {
	for _, p := range group {
		if err != nil {
			p.done <- putResult{err: err}
		} else {
			p.done <- putResult{rev: d.store.put(p.ns, p.key, p.value)}
		}
	}
}

// close stops the goroutines once every queued put is answered, and
// closes the log.
func (d *durableLog) close() error {
	close(d.queue)
	<-d.stopped
	return d.log.Close()
}

// startWALPeer starts the handler with readKeys keys of value in
// perf-read, its log in a fresh folder in parent.
func startWALPeer(parent string, readKeys int, value []byte) (*barePeer, error) {
	dir, err := os.MkdirTemp(parent, "ctxd-perf-walhttp-")
	if err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	st := newBareStore(readKeys, value)
	if st.durable, err = openDurableLog(dir, st); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	return serveBare(st, PeerInfo{
		Name:    PeerWALHTTP,
		About:   "the nethttp handler with each put in ctxd's write-ahead log (store/wal), answered after its group's fdatasync, and nothing else of ctxd's: the durable floor",
		Version: runtime.Version(), Durable: true, Process: "in-process", Client: httpClientAbout,
		DataDir: dir, Filesystem: filesystemType(dir),
	}, func() error { return errors.Join(st.durable.close(), os.RemoveAll(dir)) })
}
