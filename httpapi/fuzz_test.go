package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// fuzzPost fuzzes the body of POST path, from seeds, on the real router
// over a real store, called in-process so a fuzzer can send thousands of
// requests a second. Every answer must pass checkAnswer.
func fuzzPost(f *testing.F, path string, seeds ...string) {
	for _, seed := range seeds {
		f.Add(seed)
	}
	st := testkit.OpenBolt(f, bolt.Options{}).Store
	h := httpapi.New(st, httpapi.Config{}, zerolog.Nop()).Handler()
	f.Fuzz(func(t *testing.T, body string) {
		before := st.Revision()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
		checkAnswer(t, st, before, w, body)
	})
}

// checkAnswer fails unless the answer is a success or a 4xx JSON error,
// and unless a failed request left the revision where it was.
func checkAnswer(t *testing.T, st *bolt.Store, before uint64, w *httptest.ResponseRecorder, body string) {
	t.Helper()
	if w.Code >= 500 {
		t.Fatalf("status %d for body %q: %s", w.Code, body, w.Body)
	}
	if w.Code >= 400 {
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("status %d without a JSON error for body %q: %s", w.Code, body, w.Body)
		}
		if after := st.Revision(); after != before {
			t.Fatalf("a refused request changed the revision from %d to %d: %q", before, after, body)
		}
	}
}

// FuzzTxnBody sends arbitrary bodies to POST /v1/txn.
func FuzzTxnBody(f *testing.F) {
	fuzzPost(f, "/v1/txn",
		`{"ops":[{"op":"put","key":"a","value":1}]}`,
		`{"who":"x","ops":[{"op":"put","ns":"team","key":"a","value":{"b":[1,2]},"if_version":0},{"op":"delete","key":"b"}]}`,
		`{"ops":[{"op":"put","key":"a","value":1},{"op":"put","key":"a","value":2}]}`,
		`{"ops":[]}`, `{"ops":[{"op":"frob","key":"a"}]}`, `{"ops":[{"op":"put","key":"","value":1}]}`,
		`{"ops":[{"op":"put","key":"a\u0001","value":1}]}`, `{"ops":[{"op":"put","key":"a"}]}`, `[`, ``, `null`,
		`{"ops":[{"op":"put","key":"a","value":1,"if_version":-1}]}`, `{"ops":[{"op":"put","ns":"bad ns","key":"a","value":1}]}`,
	)
}

// FuzzImport sends arbitrary dumps to POST /v1/ns/{ns}/import: a malformed
// one changes nothing.
func FuzzImport(f *testing.F) {
	fuzzPost(f, "/v1/ns/imported/import",
		`{"context":{"a":1,"b":"x"}}`,
		`{"timestamp":"2026-01-01T00:00:00Z","who":"w","revision":3,"namespace":"default","context":{"app.config":{"debug":true}},"key_count":1}`,
		`{"context":{"a":1,"a":2}}`, `{"context":{"":1}}`, `{"context":[]}`, `{"context":{"a":}}`, `{}`, `[]`, ``, `{"context":{"a":1}} trailing`,
		`{"history":[{"key":"a"}],"context":{"k":null}}`,
	)
}
