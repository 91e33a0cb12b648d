package httpapi_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/internal/testkit"
)

// listAll reads every key of ns through the v1 list route.
func (e *env) listAll(ns string) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	after := ""
	for {
		r := e.do(http.MethodGet, "/v1/ns/"+ns+"/keys?limit=1000&after="+url.QueryEscape(after), "")
		require.Equal(e.t, http.StatusOK, r.status, string(r.body))
		p := decode[ctxd.ListPage](e.t, r)
		for _, rec := range p.Records {
			out[rec.Key] = string(rec.Value)
		}
		if !hasField(e.t, r, "next") {
			return out
		}
		after = p.Next
	}
}

func compact(t *testing.T, v string) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, json.Compact(&b, []byte(v)))
	return b.String()
}

func TestExportRoute(t *testing.T) {
	e := newDumpEnv(t, httpapi.Config{})
	values := map[string]string{
		"app.config": `{"debug": true, "tags": ["a", "b"]}`, "app.name": `"ctxd"`, "n": `42`, "f": `false`,
		"list": `[1, 2]`, "multi\nline": `"x"`, "comma,key": `"a,b"`, "deploy/prod": `"1.4.2"`, "nil": `null`,
	}
	for k, v := range values {
		r := e.do(http.MethodPut, keyPath("prod", strings.ReplaceAll(k, "\n", "")), v)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
	}
	delete(values, "multi\nline")
	values["multiline"] = `"x"`
	rev := e.revision()

	for _, f := range export.Formats {
		t.Run(string(f), func(t *testing.T) {
			r := e.do(http.MethodGet, "/v1/ns/prod/export?format="+string(f)+"&history=true", "")
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			assert.Equal(t, f.ContentType(), r.header.Get("Content-Type"))
			assert.Equal(t, strconv.FormatUint(rev, 10), r.header.Get("X-Ctxd-Revision"))
			assert.Equal(t, `attachment; filename="prod-r`+strconv.FormatUint(rev, 10)+f.Ext()+`"`, r.header.Get("Content-Disposition"))
			assert.Equal(t, strconv.Itoa(len(r.body)), r.header.Get("Content-Length"))
			switch f {
			case export.JSON:
				got := parseJSONDump(t, r.body)
				require.Len(t, got, len(values))
				for k, v := range values {
					assert.Equal(t, compact(t, v), string(got[k]), k)
				}
			case export.CSV:
				rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
				require.NoError(t, err)
				assert.Equal(t, "Action", rows[0][8])
				got := map[string]string{}
				for _, row := range rows[1:] {
					if row[8] == "current" {
						got[row[0]] = row[1]
					}
				}
				require.Len(t, got, len(values))
				assert.Equal(t, "a,b", got["comma,key"])
				assert.Equal(t, `{"debug":true,"tags":["a","b"]}`, got["app.config"])
			default:
				assert.Contains(t, string(r.body), "app.name")
			}
		})
	}
	calls := e.hookCalls()
	require.Len(t, calls, len(export.Formats), "the hook is called per export")
	assert.Equal(t, "", calls[0].Filename, "an export has no file")
	assert.Equal(t, "prod", calls[0].Namespace)
	assert.Equal(t, rev, calls[0].Revision)
	assert.Equal(t, len(values), calls[0].KeyCount)
	assert.True(t, calls[0].IncludeHistory)
	assert.Equal(t, len(values), calls[0].HistoryCount)
	assert.Empty(t, testkit.DirNames(t, e.dir), "an export writes no dump file")

	t.Run("default format is json", func(t *testing.T) {
		r := e.do(http.MethodGet, "/v1/ns/prod/export", "")
		require.Equal(t, http.StatusOK, r.status)
		assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	})

	t.Run("at a revision", func(t *testing.T) {
		r := e.do(http.MethodPut, keyPath("prod", "n"), `43`)
		require.Equal(t, http.StatusOK, r.status)
		r = e.do(http.MethodDelete, keyPath("prod", "app.name"), "")
		require.Equal(t, http.StatusOK, r.status)
		r = e.do(http.MethodGet, "/v1/ns/prod/export?rev="+strconv.FormatUint(rev, 10), "")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		assert.Equal(t, strconv.FormatUint(rev, 10), r.header.Get("X-Ctxd-Revision"))
		got := parseJSONDump(t, r.body)
		assert.Equal(t, `42`, string(got["n"]))
		assert.Equal(t, `"ctxd"`, string(got["app.name"]))
		r = e.do(http.MethodGet, "/v1/ns/prod/export", "")
		got = parseJSONDump(t, r.body)
		assert.Equal(t, `43`, string(got["n"]))
		assert.NotContains(t, got, "app.name")
	})

	t.Run("errors", func(t *testing.T) {
		cur := e.revision()
		require.NoError(t, e.st.Compact(bg, 3))
		const path = "/v1/ns/prod/export"
		requireRefusals(t, e.env, []refusal{
			{"unknown format", path + "?format=xml", 400, "bad_request"},
			{"bad history", path + "?history=maybe", 400, "bad_request"},
			{"bad rev", path + "?rev=abc", 400, "bad_request"},
			{"zero rev", path + "?rev=0", 400, "bad_request"},
			{"future rev", path + "?rev=" + strconv.FormatUint(cur+10, 10), 400, "future_revision"},
			{"compacted rev", path + "?rev=2", 410, "compacted"},
		}, requireError)
		requireError(t, e.do(http.MethodGet, "/v1/ns/bad%20ns/export", ""), 400, "bad_request")
		assert.Len(t, e.hookCalls(), len(export.Formats)+3, "failed exports call no hook")
	})
}

// An export larger than what is kept in memory goes through a spool file.
func TestExportLarge(t *testing.T) {
	e := newDumpEnv(t, httpapi.Config{})
	testkit.PutKeys(t, e.store, "default", 3000, []byte(`"`+strings.Repeat("v", 1000)+`"`), "t")
	r := e.do(http.MethodGet, "/v1/ns/default/export?format=csv", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Greater(t, len(r.body), 3<<20)
	rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	require.NoError(t, err)
	assert.Len(t, rows, 3001)
	assert.Empty(t, testkit.DirNames(t, e.dir), "the spool file is gone")
}

func TestImportRoute(t *testing.T) {
	e := newDumpEnv(t, httpapi.Config{})
	src := map[string]string{
		"app.config": `{"debug":true,"tags":["a"]}`, "app.name": `"ctxd"`, "n": `42`, "nil": `null`,
		"deploy/prod/version": `"1.4.2"`, "ünï": `"🎉"`, "empty": `""`, "list": `[1,{"x":null}]`,
	}
	for k, v := range src {
		r := e.do(http.MethodPut, keyPath("source", k), v)
		require.Equal(t, http.StatusOK, r.status)
	}

	t.Run("an export imports back as an equal namespace", func(t *testing.T) {
		r := e.do(http.MethodGet, "/v1/ns/source/export?history=true", "")
		require.Equal(t, http.StatusOK, r.status)
		r = e.do(http.MethodPost, "/v1/ns/copy/import?who=restorer", string(r.body))
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		res := decode[httpapi.ImportResult](t, r)
		assert.Equal(t, httpapi.ImportResult{Namespace: "copy", Imported: len(src), Revision: e.revision()}, res)
		assert.Equal(t, e.listAll("source"), e.listAll("copy"))
		assert.Equal(t, "restorer", decode[ctxd.Record](t, e.do(http.MethodGet, keyPath("copy", "n"), "")).Who)
	})

	t.Run("a server-side dump imports back too", func(t *testing.T) {
		r := e.do(http.MethodPost, "/v1/ns/source/dumps?filename=src", "")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		r = e.do(http.MethodGet, "/v1/dumps/src.json", "")
		require.Equal(t, http.StatusOK, r.status)
		r = e.do(http.MethodPost, "/v1/ns/copy2/import", string(r.body))
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		assert.Equal(t, e.listAll("source"), e.listAll("copy2"))
	})

	t.Run("a Framework0 dump", func(t *testing.T) {
		f0 := `{
  "timestamp": "2025-01-05T12:00:00.123456",
  "format": "json",
  "filename": "context_dump_20250105_120000.json",
  "who": "api_client",
  "key_count": 2,
  "include_history": true,
  "context": {
    "app.status": "running",
    "limits": {"cpu": 2}
  },
  "history": [{"timestamp": "2025-01-05T11:59:00", "key": "app.status", "before": null, "after": "running", "who": "shell"}]
}`
		r := e.do(http.MethodPost, "/v1/ns/legacy/import", f0)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		assert.Equal(t, 2, decode[httpapi.ImportResult](t, r).Imported)
		assert.Equal(t, map[string]string{"app.status": `"running"`, "limits": `{"cpu":2}`}, e.listAll("legacy"), "values imported compact")
	})

	t.Run("keys not in the dump are left alone", func(t *testing.T) {
		r := e.do(http.MethodPut, keyPath("merge", "keep"), `1`)
		require.Equal(t, http.StatusOK, r.status)
		r = e.do(http.MethodPost, "/v1/ns/merge/import", `{"context":{"new":2}}`)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		assert.Equal(t, map[string]string{"keep": "1", "new": "2"}, e.listAll("merge"))
	})

	t.Run("empty context", func(t *testing.T) {
		r := e.do(http.MethodPost, "/v1/ns/nothing/import", `{"context":{}}`)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		assert.Equal(t, httpapi.ImportResult{Namespace: "nothing", Imported: 0, Revision: e.revision()}, decode[httpapi.ImportResult](t, r))
	})

	t.Run("bad dumps change nothing", func(t *testing.T) {
		rev := e.revision()
		tests := []struct {
			name, ns, body string
			status         int
			code           string
		}{
			{"not JSON", "bad", `hello`, 400, "bad_request"},
			{"truncated", "bad", `{"context":{"a":1,"b":`, 400, "bad_request"},
			{"no context", "bad", `{"a":1}`, 400, "bad_request"},
			{"context not an object", "bad", `{"context":[1]}`, 400, "bad_request"},
			{"trailing data", "bad", `{"context":{"a":1}} x`, 400, "bad_request"},
			{"duplicate key", "bad", `{"context":{"a":1,"a":2}}`, 400, "bad_request"},
			{"empty key", "bad", `{"context":{"a":1,"":2}}`, 400, "bad_request"},
			{"control character in key", "bad", `{"context":{"a":1,"b\u0001":2}}`, 400, "bad_request"},
			{"lone surrogate in a key", "bad", `{"context":{"a":1,"b\ud800":2}}`, 400, "bad_request"},
			{"bad namespace", "bad%20ns", `{"context":{"a":1}}`, 400, "bad_request"},
			{"empty body", "bad", ``, 400, "bad_request"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				requireError(t, e.do(http.MethodPost, "/v1/ns/"+tt.ns+"/import", tt.body), tt.status, tt.code)
			})
		}
		assert.Equal(t, rev, e.revision(), "nothing was written")
		assert.Empty(t, e.listAll("bad"))
	})
}

func manyKeys(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"k` + strconv.Itoa(i) + `":` + strconv.Itoa(i)
	}
	return strings.Join(parts, ",")
}

func TestImportBodyLimit(t *testing.T) {
	e := newEnv(t, envOptions{cfg: httpapi.Config{MaxBodyBytes: 1024}})
	body := `{"context":{"a":"` + strings.Repeat("x", 2000) + `"}}`
	requireError(t, e.do(http.MethodPost, "/v1/ns/default/import", body), 413, "too_large")
	// Without a Content-Length the limit is hit while reading.
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+"/v1/ns/default/import", struct{ *strings.Reader }{strings.NewReader(body)})
	require.NoError(t, err)
	req.ContentLength = -1
	requireError(t, e.send(req), 413, "too_large")
	assert.Equal(t, uint64(0), e.revision())
}

func TestDumpsV1(t *testing.T) {
	e := newDumpEnv(t, httpapi.Config{})
	e.put("a", `1`)
	e.put("a", `2`)
	r := e.do(http.MethodPost, "/v1/ns/default/dumps?format=pretty&history=true&rev=1&filename=old&who=ops", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	info := decode[ctxd.DumpInfo](t, r)
	assert.Equal(t, "old.pretty", info.Filename)
	assert.Equal(t, "pretty", info.Format)
	assert.Equal(t, "default", info.Namespace)
	assert.Equal(t, uint64(1), info.Revision)
	assert.Equal(t, 1, info.KeyCount)
	assert.Equal(t, 1, info.HistoryCount)
	assert.Equal(t, "ops", info.Who)
	b, err := os.ReadFile(info.Path)
	require.NoError(t, err)
	assert.Contains(t, string(b), "a: 1\n")
	assert.Equal(t, int64(len(b)), info.FileSize)

	r = e.do(http.MethodPost, "/v1/ns/default/dumps", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	gen := decode[ctxd.DumpInfo](t, r)
	assert.True(t, strings.HasPrefix(gen.Filename, "context_dump_"), gen.Filename)

	r = e.do(http.MethodGet, "/v1/dumps", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	list := decode[ctxd.DumpList](t, r)
	assert.Equal(t, e.dir, list.Directory)
	assert.Len(t, list.Dumps, 2)

	requireError(t, e.do(http.MethodPost, "/v1/ns/default/dumps?filename=..%2Fx", ""), 400, "bad_request")
	requireError(t, e.do(http.MethodPost, "/v1/ns/default/dumps?format=xml", ""), 400, "bad_request")
	requireError(t, e.do(http.MethodGet, "/v1/dumps/nope.json", ""), 404, "not_found")
	assert.Len(t, e.hookCalls(), 2)
}

// spreadsheet_safe=true: the export and a server-side dump
// quote the CSV cells a spreadsheet would take for a formula, and
// say so; with another format it is refused (400), nothing written.
func TestSpreadsheetSafeDumps(t *testing.T) {
	e := newDumpEnv(t, httpapi.Config{})
	e.put("=k", `"=HYPERLINK(1)"`)
	valueCell := func(body []byte) []string {
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		require.NoError(t, err)
		require.Len(t, rows, 2)
		return rows[1][:2]
	}
	r := e.do(http.MethodGet, "/v1/ns/default/export?format=csv&spreadsheet_safe=true", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, []string{"'=k", "'=HYPERLINK(1)"}, valueCell(r.body))
	r = e.do(http.MethodGet, "/v1/ns/default/export?format=csv", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, []string{"=k", "=HYPERLINK(1)"}, valueCell(r.body), "off by default: as stored")

	r = e.do(http.MethodPost, "/v1/ns/default/dumps?format=csv&spreadsheet_safe=1&filename=sheet", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Contains(t, string(r.body), `"spreadsheet_safe":true`)
	info := decode[ctxd.DumpInfo](t, r)
	b, err := os.ReadFile(info.Path)
	require.NoError(t, err)
	assert.Equal(t, []string{"'=k", "'=HYPERLINK(1)"}, valueCell(b))
	r = e.do(http.MethodPost, "/v1/ns/default/dumps?format=csv&filename=plain", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.NotContains(t, string(r.body), "spreadsheet_safe")

	for _, path := range []string{
		"/v1/ns/default/export?format=json&spreadsheet_safe=true",
		"/v1/ns/default/export?spreadsheet_safe=true",
		"/v1/ns/default/dumps?format=txt&spreadsheet_safe=true&filename=no",
	} {
		method := http.MethodGet
		if strings.Contains(path, "/dumps") {
			method = http.MethodPost
		}
		r := e.do(method, path, "")
		requireError(t, r, 400, "bad_request")
		assert.Contains(t, string(r.body), "spreadsheet_safe is for csv dumps only", path)
	}
	_, err = os.Stat(filepath.Join(e.dir, "no.txt"))
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing written")
}

// dumps.keep and dumps.max_bytes prune the oldest dump files after each
// server-side dump (v1's and /ctx's alike), never the one just written,
// and log what went; DELETE /v1/dumps/{filename} removes one.
func TestDumpRetentionAndDelete(t *testing.T) {
	e := newDumpEnv(t, httpapi.Config{DumpRetention: export.Retention{Keep: 2, MaxBytes: 4096}})
	e.put("a", `1`)
	dumpNames := func() []string {
		r := e.do(http.MethodGet, "/v1/dumps", "")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		var out []string
		for _, d := range decode[ctxd.DumpList](t, r).Dumps {
			out = append(out, d.Filename)
		}
		return out
	}
	// Each dump is dated a minute after the one before (file times may
	// not tell dumps a few milliseconds apart).
	dated := time.Now().Add(-time.Hour)
	dump := func(method, path, body string) {
		t.Helper()
		r := e.do(method, path, body)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		dated = dated.Add(time.Minute)
		var written struct{ Path string } // v1's DumpInfo or /ctx's answer
		require.NoError(t, json.Unmarshal(r.body, &written))
		require.NoError(t, os.Chtimes(written.Path, dated, dated))
	}
	dump(http.MethodPost, "/v1/ns/default/dumps?filename=one", "")
	dump(http.MethodPost, "/v1/ns/default/dumps?filename=two", "")
	dump(http.MethodPost, "/v1/ns/default/dumps?filename=three", "")
	assert.Equal(t, []string{"three.json", "two.json"}, dumpNames(), "the newest 2 are kept")
	dump(http.MethodPost, "/ctx/dump", `{"filename":"four"}`)
	assert.Equal(t, []string{"four.json", "three.json"}, dumpNames(), "/ctx/dump prunes too")
	var pruned [][]any
	for _, l := range e.logs.Lines(t) {
		if l["message"] == "dumps pruned" {
			pruned = append(pruned, l["removed"].([]any))
		}
	}
	assert.Equal(t, [][]any{{"one.json"}, {"two.json"}}, pruned)

	// A dump over max_bytes is kept, alone.
	e.put("big", `"`+strings.Repeat("x", 5000)+`"`)
	dump(http.MethodPost, "/v1/ns/default/dumps?filename=big", "")
	assert.Equal(t, []string{"big.json"}, dumpNames())

	r := e.do(http.MethodDelete, "/v1/dumps/big.json?who=cleanup.sh", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.JSONEq(t, `{"deleted":"big.json"}`, string(r.body))
	assert.Empty(t, dumpNames())
	assert.True(t, slices.ContainsFunc(e.logs.Lines(t), func(l map[string]any) bool {
		return l["message"] == "dump deleted" && l["file"] == "big.json" && l["who"] == "cleanup.sh"
	}), "the deletion is logged, with who")
	requireError(t, e.do(http.MethodDelete, "/v1/dumps/big.json", ""), 404, "not_found")
	requireError(t, e.do(http.MethodDelete, "/v1/dumps/..%2Fctxd.db", ""), 400, "bad_request")
	requireError(t, e.do(http.MethodDelete, "/v1/dumps/.writers.lock", ""), 400, "bad_request")
	requireError(t, e.do(http.MethodDelete, "/v1/dumps/ctxd.db", ""), 400, "bad_request") // not a dump's name
	// A file copied into the folder that is not a dump is neither listed
	// nor served (it was both, and DELETE refused it).
	require.NoError(t, os.WriteFile(filepath.Join(e.dir, "notes.md"), []byte("not a dump"), 0o600))
	assert.Empty(t, dumpNames())
	requireError(t, e.do(http.MethodGet, "/v1/dumps/notes.md", ""), 404, "not_found")
	assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "/ctx/dump/notes.md", "").status)
}

// Server-side dumps taken while 8 writers keep writing hold exactly what
// the store held at the revision each records.
func TestDumpWhileWritingHTTP(t *testing.T) {
	e := newDumpEnv(t, httpapi.Config{})
	const writers, keys = 8, 25
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := "w" + strconv.Itoa(w) + "." + strconv.Itoa(i%keys)
				var err error
				if i%4 == 3 {
					_, err = e.st.Delete(bg, "default", key, nil, "w")
					if errors.Is(err, ctxd.ErrNotFound) {
						err = nil
					}
				} else {
					body := `{"key":"` + key + `","value":{"w":` + strconv.Itoa(w) + `,"i":` + strconv.Itoa(i) + `}}`
					req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/ctx", strings.NewReader(body))
					var res *http.Response
					if res, err = e.ts.Client().Do(req); err == nil {
						res.Body.Close()
						if res.StatusCode != http.StatusOK {
							err = errors.New(res.Status)
						}
					}
				}
				if !assert.NoError(t, err) {
					return
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for rev, changed := e.st.Committed(); rev < 50; rev, changed = e.st.Committed() {
		<-changed
	}
	var revs []uint64
	for i := range 6 {
		format := []string{"json", "csv"}[i%2]
		d := decode[httpapi.CompatDump](t, e.do(http.MethodPost, "/ctx/dump", `{"format":"`+format+`","filename":"c`+strconv.Itoa(i)+`"}`))
		hook := e.hookCalls()[i]
		rev := hook.Revision
		b, err := os.ReadFile(d.Path)
		require.NoError(t, err)
		got := map[string]string{}
		if format == "json" {
			for k, v := range parseJSONDump(t, b) {
				got[k] = string(v)
			}
		} else {
			rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
			require.NoError(t, err)
			for _, row := range rows[1:] {
				got[row[0]] = row[1]
			}
		}
		assert.Equal(t, d.KeyCount, len(got))
		for w := range writers {
			for k := range keys {
				key := "w" + strconv.Itoa(w) + "." + strconv.Itoa(k)
				want, err := e.st.GetAt("default", key, rev)
				if errors.Is(err, ctxd.ErrNotFound) {
					assert.NotContains(t, got, key, "%s at revision %d", key, rev)
					continue
				}
				require.NoError(t, err)
				assert.Equal(t, string(want.Value), got[key], "%s at revision %d", key, rev)
			}
		}
		revs = append(revs, rev)
	}
	assert.Greater(t, revs[len(revs)-1], revs[0], "writers kept writing: %v", revs)
}

// An import is one transaction however many keys it holds: the op limit of
// POST /v1/txn does not apply.
func TestImportBeyondTheTxnOpLimit(t *testing.T) {
	e := newEnv(t, envOptions{})
	rev := e.revision()
	r := e.do(http.MethodPost, "/v1/ns/bulk/import", `{"context":{`+manyKeys(200)+`}}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, rev+200, e.revision())
	assert.Len(t, e.listAll("bulk"), 200)
}
