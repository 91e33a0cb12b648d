package etcd

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/framework0/ctxd"
)

// A write is "unavailable" (nothing applied) only when etcd's client
// says it never sent it, or etcd refused ctxd's user; a connection that broke after sending, or a
// member that stopped with the proposal in flight, may have applied it:
// outcome unknown. The errors are the etcd client's own texts (the
// first was seen in the cluster linearizability test, robustness).
func TestWriteErrorOnlyCallsUnsentWritesUnavailable(t *testing.T) {
	for _, c := range []struct {
		err  error
		sent bool
		want error
	}{
		{status.Error(codes.Unavailable, "error reading from server: EOF"), true, ctxd.ErrOutcomeUnknown},
		{status.Error(codes.Unavailable, "transport is closing"), true, ctxd.ErrOutcomeUnknown},
		{status.Error(codes.Unavailable, "there is no connection available"), true, ctxd.ErrUnavailable},
		{status.Error(codes.Unavailable, "there is no address available"), true, ctxd.ErrUnavailable},
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:2379: connect: connection refused"`), true, ctxd.ErrUnavailable},
		{status.Error(codes.Unavailable, "error reading from server: EOF"), false, ctxd.ErrUnavailable},
		{rpctypes.ErrStopped, true, ctxd.ErrOutcomeUnknown},
		{rpctypes.ErrStopped, false, ctxd.ErrUnavailable},
		{rpctypes.ErrNoLeader, true, ctxd.ErrUnavailable},
		{context.DeadlineExceeded, true, ctxd.ErrOutcomeUnknown},
		{context.DeadlineExceeded, false, ctxd.ErrUnavailable},
		// etcd refusing ctxd's user: checked before anything applied.
		{rpctypes.ErrPermissionDenied, true, ctxd.ErrUnavailable},
		{rpctypes.ErrAuthFailed, true, ctxd.ErrUnavailable},
		{rpctypes.ErrUserEmpty, true, ctxd.ErrUnavailable},
		{rpctypes.ErrTooManyRequests, true, ctxd.ErrUnavailable},
		// etcd's space quota: refused before anything applied.
		{rpctypes.ErrNoSpace, true, ctxd.ErrInsufficientStorage},
		// A step before the write (a lease grant, a restore's staging)
		// that fails however: the write was not sent, so it did not apply.
		{rpctypes.ErrLeaderChanged, false, ctxd.ErrUnavailable},
		{errors.New("etcdserver: an error no one expected"), false, ctxd.ErrUnavailable},
		{errors.New("etcdserver: an error no one expected"), true, ctxd.ErrOutcomeUnknown},
		{status.Error(codes.Unavailable, "error reading from server: EOF"), true, ctxd.ErrOutcomeUnknown},
	} {
		got := writeError(c.err, c.sent)
		require.True(t, errors.Is(got, c.want), "writeError(%v, sent %v) = %v, want %v", c.err, c.sent, got, c.want)
	}
}

// A read etcd could not answer, or refused ctxd's user, is unavailable
// (503), never an internal error; the refusal says what the user needs.
// "leader changed" is what a linearizable read gets when the leader is
// killed under it (a patch's read answered 500 in TestClusterLinearizable
// before it was here).
func TestReadErrorCallsEtcdsRefusalsUnavailable(t *testing.T) {
	for _, err := range []error{
		rpctypes.ErrNoLeader, rpctypes.ErrTimeout, rpctypes.ErrTooManyRequests, context.DeadlineExceeded,
		status.Error(codes.Unavailable, "transport is closing"), rpctypes.ErrPermissionDenied,
		rpctypes.ErrLeaderChanged, rpctypes.ErrNotCapable, rpctypes.ErrStopped, rpctypes.ErrTimeoutDueToLeaderFail,
		rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrTimeoutWaitAppliedIndex, rpctypes.ErrUnhealthy,
	} {
		got := readError(err)
		require.ErrorIs(t, got, ctxd.ErrUnavailable, "readError(%v) = %v", err, got)
	}
	require.Contains(t, readError(rpctypes.ErrPermissionDenied).Error(), "needs a role with readwrite on etcd.prefix")
	require.Contains(t, writeError(rpctypes.ErrAuthFailed, true).Error(), "check etcd.username and etcd.password")
}
