package httpapi

import (
	"context"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/snapshots"
)

// Snapshots is what the snapshot routes need; *snapshots.Manager has it.
type Snapshots interface {
	Create(ctx context.Context, origin string) (ctxd.SnapshotMeta, error)
	List() ([]ctxd.SnapshotMeta, error)
	Get(id string) (ctxd.SnapshotMeta, error)
	OpenFile(id string) (*os.File, ctxd.SnapshotMeta, error)
	Open(id string) (store.Snapshot, ctxd.SnapshotMeta, error)
	Delete(id string) error
	Upload(ctx context.Context, r io.Reader, wantSHA256 string) (ctxd.SnapshotMeta, error)
	Restore(ctx context.Context, id string, opts ctxd.RestoreOptions) (ctxd.RestoreResult, error)
}

// headerSHA256 carries a snapshot's sha256 (hex) on download and upload.
const headerSHA256 = "X-Ctxd-Sha256"

// DefaultMaxUploadBytes caps a snapshot upload when Config.MaxUploadBytes is 0.
const DefaultMaxUploadBytes int64 = 1 << 30

const uploadPath = "/v1/snapshots/upload"

func (s *Server) snapshotRoutes() {
	if s.cfg.Snapshots != nil {
		e := s.e
		e.POST("/v1/snapshots", s.createSnapshot)
		getAndHead(e, "/v1/snapshots", s.listSnapshots)
		e.POST(uploadPath, s.uploadSnapshot)
		getAndHead(e, "/v1/snapshots/:id", s.downloadSnapshot)
		e.DELETE("/v1/snapshots/:id", s.deleteSnapshot)
		getAndHead(e, "/v1/snapshots/:id/export", s.exportSnapshot)
		e.POST("/v1/snapshots/:id/restore", s.restoreSnapshot)
	}
	s.e.POST("/v1/compact", s.compact)
	s.e.POST("/v1/defrag", s.defrag)
}

func (s *Server) createSnapshot(c echo.Context) error {
	meta, err := s.cfg.Snapshots.Create(c.Request().Context(), "api")
	if err != nil {
		return folderDenied("snapshot", err)
	}
	s.log.Info().Str("id", meta.ID).Uint64("revision", meta.Revision).Int64("bytes", meta.Size).Msg("snapshot created")
	return sendCreated(c, meta)
}

func (s *Server) listSnapshots(c echo.Context) error {
	list, err := s.cfg.Snapshots.List()
	if err != nil {
		return err
	}
	return sendJSON(c, http.StatusOK, map[string]any{"snapshots": list})
}

func (s *Server) downloadSnapshot(c echo.Context) error {
	f, meta, err := s.cfg.Snapshots.OpenFile(snapshotID(c))
	if err != nil {
		return err
	}
	defer f.Close()
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEOctetStream)
	h.Set(headerSHA256, meta.SHA256)
	// A strong validator: the file's own hash, which a client resuming a
	// download (If-Range) or checking it is the one it has (If-Match)
	// compares with. Without it only If-Match: * could ever hold.
	h.Set("ETag", `"`+meta.SHA256+`"`)
	h.Set("X-Ctxd-Revision", strconv.FormatUint(meta.Revision, 10))
	h.Set(echo.HeaderContentDisposition, attachment(meta.ID+".db"))
	return serveFile(c, meta.ID+".db", meta.Created, f)
}

func (s *Server) deleteSnapshot(c echo.Context) error {
	id := snapshotID(c)
	if err := s.cfg.Snapshots.Delete(id); err != nil {
		return err
	}
	s.log.Info().Str("id", id).Str("who", who(c)).Msg("snapshot deleted")
	return sendJSON(c, http.StatusOK, map[string]string{"deleted": id})
}

func (s *Server) uploadSnapshot(c echo.Context) error {
	req := c.Request()
	// The media type counts, whatever its case and parameters (as a
	// PATCH's): "application/octet-stream; charset=binary" is one.
	if ct := req.Header.Get(echo.HeaderContentType); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEOctetStream {
			return badRequest("send the snapshot file as the raw body with Content-Type: application/octet-stream")
		}
	}
	sum := req.Header.Get(headerSHA256)
	if sum != "" && !snapshots.IsSHA256(sum) {
		return badRequest(headerSHA256 + ": want the file's sha256 as 64 hexadecimal digits, got " + strconv.Quote(sum))
	}
	// A database file of up to MaxUploadBytes may take longer to come than
	// the server's read timeout (a GiB over a slow link): each read must
	// progress within StallTimeout instead, as an export's writes do.
	body := stalling{r: bodyReader{req.Body}, rc: http.NewResponseController(c.Response()), stall: s.cfg.StallTimeout}
	meta, err := s.cfg.Snapshots.Upload(req.Context(), body, sum)
	if err != nil {
		return folderDenied("snapshot upload", err)
	}
	s.log.Info().Str("id", meta.ID).Uint64("revision", meta.Revision).Int64("bytes", meta.Size).Msg("snapshot uploaded")
	return sendCreated(c, meta)
}

// exportSnapshot serves GET /v1/snapshots/{id}/export: the same dump as the
// live export, read from the stored snapshot.
func (s *Server) exportSnapshot(c echo.Context) error {
	nsName := ctxd.DefaultNamespace
	if ns, ok := queryParam(c, "ns"); ok {
		nsName = ns
	}
	r, err := parseExportQuery(c, nsName)
	if err != nil {
		return err
	}
	if r.rev != 0 {
		return badRequest("rev is not supported on a snapshot export: a snapshot is one revision")
	}
	snap, meta, err := s.cfg.Snapshots.Open(snapshotID(c))
	if err != nil {
		return err
	}
	defer snap.Close()
	var res export.Result
	return s.sendSpooled(c, func(w io.Writer) (http.Header, error) {
		err := snap.View(func(v store.View) error {
			var err error
			res, err = export.Write(w, r.format, v, r.options())
			return err
		})
		if err != nil {
			return nil, err
		}
		h := http.Header{}
		h.Set(echo.HeaderContentType, r.format.ContentType())
		h.Set("X-Ctxd-Revision", strconv.FormatUint(res.Revision, 10))
		h.Set(echo.HeaderContentDisposition, attachment(meta.ID+"-"+r.ns+r.format.Ext()))
		return h, nil
	})
}

func (s *Server) restoreSnapshot(c echo.Context) error {
	var opts ctxd.RestoreOptions
	var err error
	if opts.DryRun, err = boolParam(c, "dry_run"); err != nil {
		return err
	}
	for _, ns := range c.QueryParams()["ns"] {
		if _, err := parseNamespace(ns); err != nil {
			return err
		}
		opts.Namespaces = append(opts.Namespaces, ns)
	}
	opts.Prefix, _ = queryParam(c, "prefix")
	if err := ctxd.ValidatePrefix(opts.Prefix); err != nil {
		return err
	}
	opts.Who = who(c)
	id := snapshotID(c)
	start := time.Now()
	res, err := s.cfg.Snapshots.Restore(c.Request().Context(), id, opts)
	if err != nil {
		return err
	}
	if !opts.DryRun {
		s.log.Warn().Str("id", id).Bool("partial", res.Partial).Uint64("revision", res.Revision).
			Dur("took", time.Since(start)).Str("who", opts.Who).Msg("restored from snapshot")
	}
	return sendJSON(c, http.StatusOK, res)
}

// compact serves POST /v1/compact?rev=R[&keep_versions=N]: history below R
// is discarded (R defaults to the current revision).
func (s *Server) compact(c echo.Context) error {
	rev, err := positiveParam(c, "rev")
	if err != nil {
		return err
	}
	if rev == 0 {
		rev = s.st.Revision()
		if rev == 0 {
			return badRequest("nothing to compact: the store has no revision yet")
		}
	}
	keep := s.cfg.KeepVersions
	if n, err := positiveParam(c, "keep_versions"); err != nil {
		// Every compaction keeps the change in effect at the mark: 0
		// ("keep every version", as history.keep_versions) would be none.
		return badRequest(err.Error() + " (the versions of each key kept below the mark; on store.backend etcd only 1: etcd keeps the change in effect at the mark)")
	} else if n > 0 {
		keep = int(min(n, 1<<20))
	}
	res, err := s.st.CompactKeep(c.Request().Context(), rev, keep)
	if err != nil {
		return err
	}
	s.log.Info().Uint64("revision", res.Revision).Int("removed", res.Removed).Msg("history compacted")
	return sendJSON(c, http.StatusOK, res)
}

// defrag serves POST /v1/defrag: the file is rewritten compactly online.
func (s *Server) defrag(c echo.Context) error {
	res, err := s.st.Defrag(c.Request().Context())
	if err != nil {
		return folderDenied("defrag", err)
	}
	s.log.Info().Int64("before", res.SizeBefore).Int64("after", res.SizeAfter).Str("pause", res.Pause.String()).Msg("defragmented")
	return sendJSON(c, http.StatusOK, map[string]any{
		"size_before": res.SizeBefore, "size_after": res.SizeAfter, "revision": res.Revision,
		"pause_ms": float64(res.Pause.Microseconds()) / 1000,
	})
}

// sendCreated answers 201 with a new snapshot's metadata and, in
// Location, where it is downloaded.
func sendCreated(c echo.Context, meta ctxd.SnapshotMeta) error {
	c.Response().Header().Set(echo.HeaderLocation, "/v1/snapshots/"+meta.ID)
	return sendJSON(c, http.StatusCreated, meta)
}

// snapshotID is the route's snapshot id, unescaped as a namespace is (a
// client that escapes every path segment sent "%2D" for its "-", and got
// 404). One that does not unescape is left as it came: no snapshot has
// that id, and the answer is 404 naming it.
func snapshotID(c echo.Context) string {
	id := c.Param("id")
	if u, err := url.PathUnescape(id); err == nil {
		return u
	}
	return id
}
