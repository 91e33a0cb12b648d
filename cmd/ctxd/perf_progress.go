package main

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/framework0/ctxd/perf"
)

// perfProgress draws a progress bar of the suite on standard error while
// it runs, when standard error is a terminal. The fraction done is by the
// steps' estimated durations; onStep is perf.Config.OnStep.
func (a *app) perfProgress() (onStep func(perf.Step), stop func()) {
	if !a.interactive() {
		return nil, func() {}
	}
	var mu sync.Mutex
	var cur perf.Step
	var stepStart time.Time
	started := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				a.clearProgressLine()
				return
			case <-t.C:
			}
			mu.Lock()
			step, since := cur, time.Since(stepStart)
			mu.Unlock()
			if step.Total == 0 {
				continue
			}
			a.drawProgress(step, since, time.Since(started))
		}
	})
	onStep = func(s perf.Step) {
		mu.Lock()
		cur, stepStart = s, time.Now()
		mu.Unlock()
	}
	return onStep, func() { close(done); wg.Wait() }
}

const progressWidth = 30

// drawProgress draws one line: bar, percent, step, time left (estimated).
func (a *app) drawProgress(s perf.Step, inStep, elapsed time.Duration) {
	doneEst := s.Done + min(inStep, s.Estimate)
	frac := min(float64(doneEst)/float64(s.Total), 1)
	filled := int(frac * progressWidth)
	left := time.Duration(0)
	if frac > 0.02 {
		left = time.Duration(float64(elapsed)/frac) - elapsed
	}
	fmt.Fprintf(a.stderr, "\r[%s%s] %3.0f%%  %d/%d %s  ~%s left\033[K",
		strings.Repeat("#", filled), strings.Repeat(".", progressWidth-filled), frac*100,
		s.Index+1, s.Count, s.Name, left.Truncate(time.Second))
}

// clearProgressLine erases the progress line, if one is drawn.
func (a *app) clearProgressLine() {
	if a.interactive() {
		fmt.Fprint(a.stderr, "\r\033[K")
	}
}
