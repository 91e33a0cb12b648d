package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestModules runs the dashboard's pure modules in the browser: the
// lossless JSON parser and writer, the reading of a value's text, and the
// line diff.
func TestModules(t *testing.T) {
	s := newServer(t, serverOptions{})
	p := openPage(t, s, "/")
	type result struct {
		RoundTrips []string `json:"roundTrips"`
		Pretty     string   `json:"pretty"`
		Errors     []string `json:"errors"`
		Proto      bool     `json:"proto"`
		Diff       []string `json:"diff"`
		Hunks      []string `json:"hunks"`
		Inexact    bool     `json:"inexact"`
		Text       struct {
			Kept    bool     `json:"kept"`
			Pretty  string   `json:"pretty"`
			Compact string   `json:"compact"`
			At      []string `json:"at"`
			Names   []string `json:"names"`
			NotObj  bool     `json:"notObject"`
		} `json:"text"`
		Deep struct {
			Kept      bool     `json:"kept"`
			Depth     int      `json:"depth"`
			PrettyLen int      `json:"prettyLen"`
			Same      bool     `json:"same"`
			Lines     []string `json:"lines"`
		} `json:"deep"`
	}
	r, err := chromedp.Run(p.ctx, chromedp.Evaluate[result](`(async () => {
		const base = document.querySelector('script[type=module]').src.replace(/app\.js$/, '');
		const { parse, stringify, pretty, JSONText, textAt, memberNames } = await import(base + 'json.js');
		const { diffLines, hunks } = await import(base + 'diff.js');
		const texts = ['12345678901234567890', '-0', '1.0', '1e3', '0.1', '[1,2.50,{"a":null}]', '"\\u00e9\\n"', '{"__proto__":1}', 'true', '{}', '[]'];
		const roundTrips = texts.map((t) => stringify(parse(t)));
		const errors = ['', '{', '[1,]', '{"a" 1}', '01', '1 2', '"\u0001"', 'nul'].map((t) => {
			try { parse(t); return 'parsed'; } catch (e) { return e.name; }
		});
		const proto = Object.getPrototypeOf(parse('{"__proto__":{"x":1}}')) === Object.prototype;
		const d = diffLines('a\nb\nc\nd', 'a\nc\nd\ne');
		const long = Array.from({ length: 30 }, (_, i) => 'line ' + i);
		const changed = long.slice(); changed[15] = 'changed';
		const h = hunks(diffLines(long.join('\n'), changed.join('\n')).lines, 2);
		const inexact = !diffLines('x\ny\nz', 'p\nq\nr', 4).exact;
		const rec = parse('{"value": {"2":1, "b":[ ],"b":"x,\\"]}","1":{"a":{}}},"version":3}', { keepText: ['value'] });
		const vt = rec.value.text;
		const text = {
			kept: rec.value instanceof JSONText && rec.version === 3,
			pretty: pretty(rec.value),
			compact: stringify(rec.value),
			at: ['/b', '/1/a', '/2', '/x', '/b/0'].map((p) => String(textAt(vt, p))),
			names: memberNames(vt),
			notObject: memberNames('[1]') === null,
		};
		// As deep as ctxd stores (10,000): read without exhausting the
		// stack, indented 32 levels down, the rest on one line.
		const dt = '['.repeat(10000) + '1' + ']'.repeat(10000);
		const drec = parse('{"value":' + dt + '}', { keepText: ['value'] });
		let depth = 0;
		for (let a = parse(dt); Array.isArray(a); a = a[0]) depth++;
		const dp = pretty(drec.value);
		const deep = { kept: drec.value.text === dt, depth, prettyLen: dp.length, same: dp.replace(/\s/g, '') === dt, lines: dp.split('\n').slice(31, 34).map((l) => l.slice(0, 70)) };
		return {
			roundTrips, errors, proto, inexact, text, deep,
			pretty: pretty(parse('{"a":[1,{"b":12345678901234567890}],"c":{}}')),
			diff: d.lines.map((l) => l.op + l.line),
			hunks: h.map((l) => l.op === '…' ? '…' + l.skipped : l.op + l.line),
		};
	})()`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	assert.Equal(t, []string{"12345678901234567890", "-0", "1.0", "1e3", "0.1", `[1,2.50,{"a":null}]`, `"é\n"`, `{"__proto__":1}`, "true", "{}", "[]"},
		r.RoundTrips, "numbers keep their digits; __proto__ is a member")
	assert.Equal(t, "{\n  \"a\": [\n    1,\n    {\n      \"b\": 12345678901234567890\n    }\n  ],\n  \"c\": {}\n}", r.Pretty)
	for i, e := range r.Errors {
		assert.Equal(t, "SyntaxError", e, "bad JSON %d", i)
	}
	assert.True(t, r.Proto, "a __proto__ member does not change the prototype")
	assert.Equal(t, []string{" a", "-b", " c", " d", "+e"}, r.Diff)
	assert.Equal(t, []string{"…13", " line 13", " line 14", "-line 15", "+changed", " line 16", " line 17", "…12"}, r.Hunks)
	assert.True(t, r.Inexact, "too large for the table: shown whole")
	// A value kept as its text: written in its order, duplicates and all.
	assert.True(t, r.Text.Kept, "the value member is a JSONText, the others parsed")
	assert.Equal(t, "{\n  \"2\": 1,\n  \"b\": [],\n  \"b\": \"x,\\\"]}\",\n  \"1\": {\n    \"a\": {}\n  }\n}", r.Text.Pretty)
	assert.Equal(t, `{"2":1,"b":[],"b":"x,\"]}","1":{"a":{}}}`, r.Text.Compact)
	assert.Equal(t, []string{`"x,\"]}"`, "{}", "1", "undefined", "undefined"}, r.Text.At, "the last of a name given twice")
	assert.Equal(t, []string{"2", "b", "1"}, r.Text.Names)
	assert.True(t, r.Text.NotObj)
	// A value nested 10,000 deep (ctxd's limit): parsed, not a stack
	// overflow, and indented 32 levels down only (every level would be
	// 200 MB of spaces).
	assert.True(t, r.Deep.Kept)
	assert.Equal(t, 10000, r.Deep.Depth)
	assert.True(t, r.Deep.Same, "only whitespace added")
	assert.Less(t, r.Deep.PrettyLen, 30000)
	assert.Equal(t, []string{strings.Repeat(" ", 62) + "[", strings.Repeat(" ", 64) + strings.Repeat("[", 70-64), strings.Repeat(" ", 62) + "]"}, r.Deep.Lines)
}
