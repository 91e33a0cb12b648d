package httpapi

import (
	"strconv"
	"sync"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/jsontext"

	"github.com/labstack/echo/v4"
)

// Responses on the hot paths (records, changes, lists, errors) are encoded by
// appending to a pooled byte slice instead of going through encoding/json's
// reflection. The output matches encoding/json's for the same values (see
// encode_test.go), except that "<", ">" and "&" are not HTML-escaped.

// contentTypeJSON is shared by every response; net/http never mutates it.
var contentTypeJSON = []string{echo.MIMEApplicationJSON}

// maxPooledBuf keeps one huge response from pinning memory in the pool.
const maxPooledBuf = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// writeJSON sends body, already encoded, with the given status.
func writeJSON(c echo.Context, status int, body []byte) error {
	res := c.Response()
	h := res.Header()
	h["Content-Type"] = contentTypeJSON
	// A length lets the middleware send the answer before it logs it
	// (sendWhole), without net/http switching to chunked encoding.
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	res.WriteHeader(status)
	_, err := res.Write(body)
	return err
}

// respond encodes with enc into a pooled buffer and sends it.
func respond(c echo.Context, status int, enc func([]byte) []byte) error {
	bp := getBuf()
	*bp = enc(*bp)
	err := writeJSON(c, status, *bp)
	putBuf(bp)
	return err
}

// etags holds the ETag header values of the first versions, shared by every
// response (net/http never mutates header values), so that most responses
// set their ETag without allocating.
var etags = func() [][]string {
	t := make([][]string, 1024)
	for v := range t {
		t[v] = []string{etag(uint64(v))}
	}
	return t
}()

func etag(version uint64) string {
	var b [24]byte
	e := append(b[:0], '"')
	e = strconv.AppendUint(e, version, 10)
	return string(append(e, '"'))
}

// setETag sets ETag to the quoted version.
func setETag(c echo.Context, version uint64) {
	h := c.Response().Header()
	if version < uint64(len(etags)) {
		h["Etag"] = etags[version]
		return
	}
	h["Etag"] = []string{etag(version)}
}

// appendRecord appends r as JSON:
// {"ns","key","value","version","create_revision","revision","who","updated_at"},
// and "expires_at" when the key expires.
func appendRecord(b []byte, r *ctxd.Record) []byte { return appendRecordOf(b, r, true) }

// appendRecordOf appends r, without its "value" member unless withValue
// (a listing with values=false).
func appendRecordOf(b []byte, r *ctxd.Record, withValue bool) []byte {
	b = append(b, `{"ns":`...)
	b = jsontext.AppendString(b, r.Namespace)
	b = append(b, `,"key":`...)
	b = jsontext.AppendString(b, r.Key)
	if withValue {
		b = append(b, `,"value":`...)
		b = appendRaw(b, r.Value)
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, r.Version, 10)
	b = append(b, `,"create_revision":`...)
	b = strconv.AppendUint(b, r.CreateRev, 10)
	b = append(b, `,"revision":`...)
	b = strconv.AppendUint(b, r.ModRev, 10)
	b = append(b, `,"who":`...)
	b = jsontext.AppendString(b, r.Who)
	b = append(b, `,"updated_at":`...)
	b = jsontext.AppendTime(b, r.UpdatedAt)
	if !r.ExpiresAt.IsZero() {
		b = append(b, `,"expires_at":`...)
		b = jsontext.AppendTime(b, r.ExpiresAt)
	}
	return append(b, '}')
}

// appendChange appends ch as JSON:
// {"revision","ns","key","op","value","version","prev_revision","who","time"}.
// prev_revision, expires_at and expired are omitted when zero, as their
// struct tags say.
func appendChange(b []byte, ch *ctxd.Change) []byte {
	b = append(b, `{"revision":`...)
	b = strconv.AppendUint(b, ch.Revision, 10)
	b = append(b, `,"ns":`...)
	b = jsontext.AppendString(b, ch.Namespace)
	b = append(b, `,"key":`...)
	b = jsontext.AppendString(b, ch.Key)
	b = append(b, `,"op":`...)
	b = jsontext.AppendString(b, ch.Op.String())
	b = append(b, `,"value":`...)
	b = appendRaw(b, ch.Value)
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, ch.Version, 10)
	if ch.PrevRev != 0 {
		b = append(b, `,"prev_revision":`...)
		b = strconv.AppendUint(b, ch.PrevRev, 10)
	}
	b = append(b, `,"who":`...)
	b = jsontext.AppendString(b, ch.Who)
	b = append(b, `,"time":`...)
	b = jsontext.AppendTime(b, ch.Time)
	if !ch.ExpiresAt.IsZero() {
		b = append(b, `,"expires_at":`...)
		b = jsontext.AppendTime(b, ch.ExpiresAt)
	}
	if ch.Expired {
		b = append(b, `,"expired":true`...)
	}
	return append(b, '}')
}

// appendRecords appends a JSON array of records ([] when empty).
func appendRecords(b []byte, recs []ctxd.Record) []byte { return appendRecordsOf(b, recs, true) }

func appendRecordsOf(b []byte, recs []ctxd.Record, withValues bool) []byte {
	b = append(b, '[')
	for i := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRecordOf(b, &recs[i], withValues)
	}
	return append(b, ']')
}

// appendListPage appends {"keys":[...],"next":"..."}; next is omitted on the
// last page, and the records' values without withValues.
func appendListPage(b []byte, p *ctxd.ListPage, withValues bool) []byte {
	b = append(b, `{"keys":`...)
	b = appendRecordsOf(b, p.Records, withValues)
	if p.Next != "" {
		b = append(b, `,"next":`...)
		b = jsontext.AppendString(b, p.Next)
	}
	return append(b, '}')
}

// appendHistoryPage appends {"changes":[...],"next":N}; next is omitted on
// the last page.
func appendHistoryPage(b []byte, p *ctxd.HistoryPage) []byte {
	b = append(b, `{"changes":[`...)
	for i := range p.Changes {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendChange(b, &p.Changes[i])
	}
	b = append(b, ']')
	if p.Next != 0 {
		b = append(b, `,"next":`...)
		b = strconv.AppendUint(b, p.Next, 10)
	}
	if p.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	return append(b, '}')
}

// appendTxnResult appends {"revision":N,"results":[...]}.
func appendTxnResult(b []byte, r *ctxd.TxnResult) []byte {
	b = append(b, `{"revision":`...)
	b = strconv.AppendUint(b, r.Revision, 10)
	b = append(b, `,"results":`...)
	b = appendRecords(b, r.Records)
	return append(b, '}')
}

// appendRaw appends a JSON value the store has already validated; an empty
// value is null.
func appendRaw(b []byte, v []byte) []byte {
	if len(v) == 0 {
		return append(b, "null"...)
	}
	return append(b, v...)
}
