package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Prefixes of deployments sharing a cluster must not contain one another:
// a deployment owns everything under its prefix. Its watch and read cache
// take whatever lies there for its own changes, and after a full restore
// it deletes everything under <prefix>k/ and <prefix>t/ of the replaced
// generation, a nested deployment's data with it.
//
// Open refuses such a prefix (ErrPrefixOverlap), from what deployments
// write: every one has its birth key, <prefix>meta/born, and nothing but
// ctxd's layout (k/, t/, d/, g/, meta/) directly under its prefix.
//   - Inside another deployment: a birth key at one of the prefix's
//     ancestors (split at '/'), one Get each. An ancestor the instance's
//     etcd user may not read is not checked; the outer deployment, whose
//     user reads its whole prefix, refuses instead, as below.
//   - Holding another deployment, at the prefix's first Open: its birth
//     key is written only when nothing at all lies under the prefix, in
//     the same transaction, so that of two deployments opened for the
//     first time together the second one refuses.
//   - Holding another deployment, later: a key beside ctxd's layout (one
//     keys-only read of each gap between its directories, limit 1). A
//     deployment nested inside one of those directories (/a/k/x/ in /a/)
//     is found only by its own Open, as the first case.
var ErrPrefixOverlap = errors.New("the prefixes of deployments sharing an etcd cluster must not contain one another")

// layoutDirs are the directories of ctxd's layout under a prefix, sorted.
var layoutDirs = []string{deadDir, "g/", liveDir, "meta/", tombDir}

// outerPrefixes are the prefixes that contain prefix, split at '/',
// shortest first: "/", "/a/" and "/a/b/" for "/a/b/c/".
func outerPrefixes(prefix string) []string {
	var out []string
	for i := 0; i < len(prefix)-1; i++ {
		if prefix[i] == '/' {
			out = append(out, prefix[:i+1])
		}
	}
	return out
}

// layoutGaps are the key ranges under prefix outside ctxd's layout, as
// [from, end) pairs: the gaps between layoutDirs. ('0' follows '/', so
// dir without its '/' and '0' ends dir's range.)
func layoutGaps(prefix string) [][2]string {
	var gaps [][2]string
	from := prefix
	for _, dir := range layoutDirs {
		gaps = append(gaps, [2]string{from, prefix + dir})
		from = prefix + strings.TrimSuffix(dir, "/") + "0"
	}
	return append(gaps, [2]string{from, clientv3.GetPrefixRangeEnd(prefix)})
}

// refuseOuterDeployment returns ErrPrefixOverlap when a deployment's
// prefix contains the instance's.
func (s *Store) refuseOuterDeployment(ctx context.Context) error {
	for _, outer := range outerPrefixes(s.opts.Prefix) {
		resp, err := s.cli.Get(ctx, outer+bornKey, clientv3.WithCountOnly())
		if errors.Is(err, rpctypes.ErrPermissionDenied) {
			continue
		}
		if err != nil {
			return err
		}
		if resp.Count > 0 {
			return fmt.Errorf("prefix %s lies inside the prefix of another deployment, %s (its %s exists): %w; choose a prefix outside it",
				s.opts.Prefix, outer, outer+bornKey, ErrPrefixOverlap)
		}
	}
	return nil
}

// refuseForeignKeys returns ErrPrefixOverlap when a key lies under the
// prefix beside ctxd's layout: one read per gap, not one transaction of
// them all, which an etcd with a small --max-txn-ops refuses.
func (s *Store) refuseForeignKeys(ctx context.Context) error {
	for _, gap := range layoutGaps(s.opts.Prefix) {
		resp, err := s.cli.Get(ctx, gap[0], clientv3.WithRange(gap[1]), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		if err != nil {
			return err
		}
		if kv := firstKV(resp.Kvs); kv != nil {
			return s.holdsForeignKey(kv.Key)
		}
	}
	return nil
}

// holdsForeignKey is the error of a key found under the prefix that is
// not ctxd's: another deployment nested in it, most likely.
func (s *Store) holdsForeignKey(key []byte) error {
	return fmt.Errorf("prefix %s holds %s, which is not a key of a ctxd deployment on %s: another deployment's prefix lies inside it, or something else wrote there: %w; choose another prefix, or remove those keys",
		s.opts.Prefix, key, s.opts.Prefix, ErrPrefixOverlap)
}
