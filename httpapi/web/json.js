// Lossless JSON for the dashboard. JSON.parse turns every number into a
// double, so 12345678901234567890 would be shown (and, once edited, stored)
// as 12345678901234567000. parse keeps any number whose text a double does
// not reproduce exactly as a JSONNumber holding that text, and stringify
// writes it back digit for digit: what the page shows is what ctxd stores.

export class JSONNumber {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
  valueOf() { return Number(this.text); }
}

const numberRE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

// parse parses JSON text like JSON.parse, keeping numbers exact. It throws
// a SyntaxError naming the offset of the first error.
export function parse(text) {
  let i = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at offset ${i}` + (i < text.length ? ` (near ${JSON.stringify(text.slice(i, i + 12))})` : ''));
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 32 || c === 10 || c === 13 || c === 9) i++;
      else return;
    }
  };
  const string = () => {
    const start = i++;
    for (;;) {
      const c = text.charCodeAt(i);
      if (Number.isNaN(c)) fail('unterminated string');
      if (c === 34) break;
      if (c === 92) i++;
      else if (c < 32) fail('control character in a string');
      i++;
    }
    i++;
    return JSON.parse(text.slice(start, i)); // unescapes, and checks the escapes
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj = {};
      ws();
      if (text[i] === '}') { i++; return obj; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a member name');
        const k = string();
        ws();
        if (text[i] !== ':') fail('expected ":"');
        i++;
        // A member named __proto__ is an ordinary member, as with JSON.parse.
        Object.defineProperty(obj, k, { value: value(), enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return obj; }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const arr = [];
      ws();
      if (text[i] === ']') { i++; return arr; }
      for (;;) {
        arr.push(value());
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return arr; }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return string();
    if (text.startsWith('true', i)) { i += 4; return true; }
    if (text.startsWith('false', i)) { i += 5; return false; }
    if (text.startsWith('null', i)) { i += 4; return null; }
    numberRE.lastIndex = i;
    const m = numberRE.exec(text);
    if (!m) fail(i < text.length ? 'unexpected character' : 'unexpected end of input');
    i += m[0].length;
    const n = Number(m[0]);
    return String(n) === m[0] ? n : new JSONNumber(m[0]);
  };
  const v = value();
  ws();
  if (i < text.length) fail('unexpected text after the value');
  return v;
}

// stringify writes v as JSON: compact without indent, else one member or
// element per line. JSONNumbers are written as their text.
export function stringify(v, indent = '', cur = '') {
  if (v === null || v === undefined) return 'null';
  if (v instanceof JSONNumber) return v.text;
  switch (typeof v) {
    case 'number': return Number.isFinite(v) ? String(v) : 'null';
    case 'boolean': return String(v);
    case 'string': return JSON.stringify(v);
  }
  const inner = cur + indent;
  const nl = indent ? '\n' : '';
  const sep = indent ? ': ' : ':';
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    return '[' + nl + v.map((x) => inner + stringify(x, indent, inner)).join(',' + nl) + nl + cur + ']';
  }
  const keys = Object.keys(v);
  if (keys.length === 0) return '{}';
  return '{' + nl + keys.map((k) => inner + JSON.stringify(k) + sep + stringify(v[k], indent, inner)).join(',' + nl) + nl + cur + '}';
}

// pretty is stringify with two spaces of indent.
export const pretty = (v) => stringify(v, '  ');

// preview is the compact JSON of v cut to max characters.
export function preview(v, max = 80) {
  const s = stringify(v);
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}
