package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/framework0/ctxd"
)

// Snapshot types are the server's own. RestoreOptions select what a
// restore replaces.
type (
	SnapshotMeta   = ctxd.SnapshotMeta
	RestoreOptions = ctxd.RestoreOptions
	RestoreResult  = ctxd.RestoreResult
	CompactResult  = ctxd.CompactResult
)

// DefragResult is the answer of POST /v1/defrag.
type DefragResult struct {
	SizeBefore int64   `json:"size_before"`
	SizeAfter  int64   `json:"size_after"`
	Revision   uint64  `json:"revision"`
	PauseMS    float64 `json:"pause_ms"`
}

// CreateSnapshot takes a snapshot on the server.
func (c *Client) CreateSnapshot(ctx context.Context) (SnapshotMeta, error) {
	return call[SnapshotMeta](ctx, c, "create snapshot", request{method: http.MethodPost, path: "/v1/snapshots", write: true})
}

// Snapshots lists the server's snapshots, newest first.
func (c *Client) Snapshots(ctx context.Context) ([]SnapshotMeta, error) {
	out, err := call[struct {
		Snapshots []SnapshotMeta `json:"snapshots"`
	}](ctx, c, "list snapshots", request{method: http.MethodGet, path: "/v1/snapshots"})
	return out.Snapshots, err
}

// DownloadSnapshot writes a snapshot's file to w and checks it against the
// sha256 the server sends.
func (c *Client) DownloadSnapshot(ctx context.Context, id string, w io.Writer) (SnapshotMeta, error) {
	resp, err := c.stream(ctx, http.MethodGet, "/v1/snapshots/"+escapeSegment(id), nil, nil)
	if err != nil {
		return SnapshotMeta{}, wrap("download snapshot "+id, err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), resp.Body)
	if err != nil {
		return SnapshotMeta{}, fmt.Errorf("download snapshot %s: %w", id, err)
	}
	meta := SnapshotMeta{ID: id, Size: n, SHA256: resp.Header.Get("X-Ctxd-Sha256")}
	meta.Revision, _ = strconv.ParseUint(resp.Header.Get("X-Ctxd-Revision"), 10, 64)
	if got := hex.EncodeToString(h.Sum(nil)); got != meta.SHA256 {
		return meta, fmt.Errorf("download snapshot %s: sha256 %s, the server announced %s", id, got, meta.SHA256)
	}
	return meta, nil
}

// DeleteSnapshot removes a snapshot from the server; the server logs the
// client's who (WithWho) with it.
func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/snapshots/" + escapeSegment(id), query: params("who", c.who), write: true})
	return wrap("delete snapshot "+id, err)
}

// UploadSnapshot sends a snapshot file to the server, which verifies it
// (and its sha256) before keeping it.
func (c *Client) UploadSnapshot(ctx context.Context, path string) (SnapshotMeta, error) {
	sum, err := fileSHA256(path)
	if err != nil {
		return SnapshotMeta{}, fmt.Errorf("upload snapshot: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return SnapshotMeta{}, fmt.Errorf("upload snapshot: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return SnapshotMeta{}, fmt.Errorf("upload snapshot: %w", err)
	}
	resp, err := c.exchange(func(base string) (*http.Request, error) {
		// A reader of its own each time: the file, from its start, for
		// the next instance if this one cannot take it.
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/snapshots/upload", io.NewSectionReader(f, 0, fi.Size()))
		if err != nil {
			return nil, fmt.Errorf("upload snapshot: %v", err)
		}
		req.ContentLength = fi.Size()
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Ctxd-Sha256", sum)
		return req, nil
	}, true, true, false) // a write: it adds a snapshot
	if err != nil {
		return SnapshotMeta{}, wrap("upload snapshot", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return SnapshotMeta{}, c.answerError(resp, true)
	}
	var meta SnapshotMeta
	if err := decodeAnswer(resp, &meta, true); err != nil {
		return SnapshotMeta{}, fmt.Errorf("upload snapshot: %w", err)
	}
	return meta, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// RestoreSnapshot restores the server's data from one of its snapshots.
func (c *Client) RestoreSnapshot(ctx context.Context, id string, opts RestoreOptions) (RestoreResult, error) {
	q := params("who", c.whoOr(opts.Who), "dry_run", boolParam(opts.DryRun), "prefix", opts.Prefix)
	for _, ns := range opts.Namespaces {
		q.Add("ns", ns)
	}
	return call[RestoreResult](ctx, c, "restore snapshot "+id, request{method: http.MethodPost, path: "/v1/snapshots/" + escapeSegment(id) + "/restore", query: q, write: true})
}

// ExportSnapshot writes a dump of one namespace read from a stored
// snapshot (Rev is not allowed: a snapshot is one revision).
func (c *Client) ExportSnapshot(ctx context.Context, id, ns string, opts ExportOptions, w io.Writer) (uint64, error) {
	q := opts.query("ns", orDefault(ns), "who", c.whoOr(""))
	return c.export(ctx, "export snapshot "+id, "/v1/snapshots/"+escapeSegment(id)+"/export", q, w)
}

// Compact discards history below rev (0: the current revision), keeping
// keepVersions per key (0: the server's setting).
func (c *Client) Compact(ctx context.Context, rev uint64, keepVersions int) (CompactResult, error) {
	q := params("rev", numParam(rev), "keep_versions", numParam(keepVersions))
	return call[CompactResult](ctx, c, "compact", request{method: http.MethodPost, path: "/v1/compact", query: q, write: true})
}

// Defrag rewrites the server's database file compactly, online.
func (c *Client) Defrag(ctx context.Context) (DefragResult, error) {
	return call[DefragResult](ctx, c, "defrag", request{method: http.MethodPost, path: "/v1/defrag", write: true})
}
