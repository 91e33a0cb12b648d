package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/framework0/ctxd"
)

// Progress on standard error, for the commands that can take more than a
// second on a large database. It is drawn only when standard error is a
// terminal, so scripts and logs get clean output.

func (a *app) interactive() bool {
	f, ok := a.stderr.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// spinner shows what is running and for how long until stop is called.
func (a *app) spinner(what string) (stop func()) {
	if !a.interactive() {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		frames := `|/-\`
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			fmt.Fprintf(a.stderr, "\r%c %s %s ", frames[i%len(frames)], what, time.Since(start).Truncate(100*time.Millisecond))
			select {
			case <-done:
				fmt.Fprintf(a.stderr, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// progressWriter counts bytes written through it and draws the count.
type progressWriter struct {
	a     *app
	w     io.Writer
	what  string
	n     int64
	last  time.Time
	start time.Time
}

func (a *app) progress(what string, w io.Writer) *progressWriter {
	return &progressWriter{a: a, w: w, what: what, start: time.Now()}
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if p.a.interactive() && time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		secs := time.Since(p.start).Seconds()
		fmt.Fprintf(p.a.stderr, "\r%s %s (%s/s) ", p.what, ctxd.FormatBytes(p.n), ctxd.FormatBytes(int64(float64(p.n)/max(secs, 0.001))))
	}
	return n, err
}

func (p *progressWriter) done() {
	if p.a.interactive() {
		fmt.Fprintf(p.a.stderr, "\r\033[K")
	}
}
