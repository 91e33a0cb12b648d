package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Process is a child process: an etcd member or a ctxd instance.
type Process struct {
	Cmd   *exec.Cmd
	ready chan struct{} // closed when its standard output says ReadyLine
	done  chan struct{} // closed when it has exited
	err   error         // cmd.Wait's result, once done is closed
}

// Start starts cmd, whose standard output must be unset: Start reads it
// for ReadyLine (Ready) and drops the rest. The child gets a process
// group of its own (a Ctrl-C in the terminal reaches the parent alone,
// which stops the children in order) and, on Linux, SIGTERM when the
// parent dies.
func Start(cmd *exec.Cmd) (*Process, error) {
	cmd.SysProcAttr = childAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, ready: make(chan struct{}), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		said := false
		for sc.Scan() {
			if !said && strings.TrimSpace(sc.Text()) == ReadyLine {
				said = true
				close(p.ready)
			}
		}
		_, _ = io.Copy(io.Discard, out)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Ready is closed once the process said it is ready.
func (p *Process) Ready() <-chan struct{} { return p.ready }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is cmd.Wait's result; call it after Done is closed.
func (p *Process) Err() error { return p.err }

// WaitReady waits until the process is ready, has exited (an error), or
// timeout has passed (an error).
func (p *Process) WaitReady(timeout time.Duration) error {
	select {
	case <-p.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited before it was ready: %v", p.Cmd.Path, p.err)
	case <-time.After(timeout):
		return fmt.Errorf("%s not ready after %v", p.Cmd.Path, timeout)
	}
}

// WaitAllReady waits until every process of ps is ready (the members
// of a new cluster, started at once). When one exits first, timeout
// passes or ctx ends, it returns an error and the index in ps of the
// process it is about: the one that exited, the first one not ready, or
// -1 (ctx).
func WaitAllReady(ctx context.Context, ps []*Process, timeout time.Duration) (int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	exited := make(chan int, len(ps))
	stop := make(chan struct{})
	defer close(stop)
	for i, p := range ps {
		go func() {
			select {
			case <-p.ready:
			case <-p.done:
				exited <- i
			case <-stop:
			}
		}()
	}
	for i, p := range ps {
		select {
		case <-p.ready:
		case j := <-exited:
			return j, fmt.Errorf("exited before it was ready: %v", ps[j].err)
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-deadline.C:
			return i, fmt.Errorf("not ready after %v", timeout)
		}
	}
	return -1, nil
}

// Kill sends SIGKILL (when the process still runs) and waits for it to
// exit: a crash, nothing flushed or closed.
func (p *Process) Kill() {
	select {
	case <-p.done:
	default:
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Stop sends SIGTERM and waits for the process to exit; after timeout
// it is killed, and Stop says so.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	// A child paused with SIGSTOP (trying a fault) would otherwise wait
	// for the timeout and be killed.
	continueAfterSignal(p.Cmd.Process)
	select {
	case <-p.done:
		var exit *exec.ExitError
		if errors.As(p.err, &exit) && !exit.Exited() {
			return nil // ended by the signal itself: a process that does not handle it
		}
		return p.err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not stop within %v of SIGTERM: killed", p.Cmd.Path, timeout)
	}
}

// MemberCommand is the command that runs member m of cluster with bin,
// a build of cmd/ctxd-cluster: `bin member ...`.
func MemberCommand(bin string, m Member, cluster []Member, logLevel string) *exec.Cmd {
	args := []string{"member",
		"--name", m.Name, "--data", m.Dir, "--client-url", m.ClientURL, "--peer-url", m.PeerURL,
		"--initial-cluster", InitialCluster(cluster), "--log-level", logLevel}
	if m.ListenPeerURL != "" {
		args = append(args, "--listen-peer-url", m.ListenPeerURL)
	}
	if m.UnsafeNoFsync {
		args = append(args, "--unsafe-no-fsync")
	}
	if m.SnapshotCount > 0 {
		args = append(args, "--snapshot-count", strconv.FormatUint(m.SnapshotCount, 10))
	}
	return exec.Command(bin, args...)
}

// ParseInitialCluster is the inverse of InitialCluster: the members'
// names and peer URLs (their other fields empty).
func ParseInitialCluster(s string) ([]Member, error) {
	var ms []Member
	for part := range strings.SplitSeq(s, ",") {
		name, peer, ok := strings.Cut(part, "=")
		if !ok || name == "" || peer == "" {
			return nil, fmt.Errorf("initial cluster %q: want name=peerURL pairs, comma-separated", s)
		}
		ms = append(ms, Member{Name: name, PeerURL: peer})
	}
	return ms, nil
}

// Leader is the index in endpoints of the member that is the raft leader
// now, asking each member that answers within timeout.
func Leader(ctx context.Context, endpoints []string, timeout time.Duration) (int, error) {
	var errs []error
	for _, ep := range endpoints {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: timeout, Logger: zap.NewNop()})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		st, err := cli.Status(sctx, ep)
		cancel()
		_ = cli.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		if st.Leader == 0 {
			errs = append(errs, fmt.Errorf("%s: no leader", ep))
			continue
		}
		if st.Leader == st.Header.MemberId {
			for i, e := range endpoints {
				if e == ep {
					return i, nil
				}
			}
		}
	}
	return -1, fmt.Errorf("no member says it leads: %w", errors.Join(errs...))
}

// MoveLeader hands the raft leadership to the member at endpoints[to]:
// it asks that member its ID, then the leader (found as Leader does) to
// transfer to it, and returns once etcd says the transfer is done. A
// member already leading is left so.
func MoveLeader(ctx context.Context, endpoints []string, to int, timeout time.Duration) error {
	leader, err := Leader(ctx, endpoints, timeout)
	if err != nil || leader == to {
		return err
	}
	id := func(ep string) (*clientv3.Client, uint64, error) {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: timeout, Logger: zap.NewNop()})
		if err != nil {
			return nil, 0, err
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		st, err := cli.Status(sctx, ep)
		if err != nil {
			_ = cli.Close()
			return nil, 0, fmt.Errorf("%s: %w", ep, err)
		}
		return cli, st.Header.MemberId, nil
	}
	target, targetID, err := id(endpoints[to])
	if err != nil {
		return err
	}
	_ = target.Close()
	cli, _, err := id(endpoints[leader])
	if err != nil {
		return err
	}
	defer cli.Close()
	mctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.MoveLeader(mctx, targetID); err != nil {
		return fmt.Errorf("move the leadership from %s to %s: %w", endpoints[leader], endpoints[to], err)
	}
	return nil
}
