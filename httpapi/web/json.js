// Lossless JSON for the dashboard. JSON.parse turns every number into a
// double, so 12345678901234567890 would be shown (and, once edited, stored)
// as 12345678901234567000. parse keeps any number whose text a double does
// not reproduce exactly as a JSONNumber holding that text, and stringify
// writes it back digit for digit.
//
// A key's value is more than its numbers: a JavaScript object puts
// integer-like member names ("10", "2") first and keeps one member of a
// name given twice, and a string's escapes ("\u00e9") are gone once
// parsed. So the values of ctxd's answers are not parsed into objects at
// all: parse keeps them as a JSONText holding their text, stringify
// indents that text token by token (strings and numbers copied as they
// are), and textAt and memberNames read into it. What the page shows, and
// what an unedited value saves, is what ctxd stores.

export class JSONNumber {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
  valueOf() { return Number(this.text); }
}

// JSONText is a JSON value kept as its text (valid JSON, as parse checked).
export class JSONText {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
}

const numberRE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

// parse parses JSON text like JSON.parse, keeping numbers exact. It throws
// a SyntaxError naming the offset of the first error. The values of the
// members named in keepText, at any depth, are checked but kept as a
// JSONText of their text (ctxd's answers: keepText ['value']).
export function parse(text, { keepText = [] } = {}) {
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
  const scalar = () => {
    const c = text[i];
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
  // member reads the name and the ":" of the next member of the object
  // being read (frame f); its value starts where this leaves i.
  const member = (f) => {
    ws();
    if (text[i] !== '"') fail('expected a member name');
    f.key = string();
    ws();
    if (text[i] !== ':') fail('expected ":"');
    i++;
    ws();
    f.start = i;
  };
  // Without recursion: the arrays and objects being read are a stack, so
  // that a value nested as deep as ctxd allows (10,000) does not exhaust
  // the call stack.
  const stack = []; // {v: the array or object, key and start: of the member being read}
  for (;;) {
    ws();
    const c = text[i];
    let v;
    if (c === '{' || c === '[') {
      i++;
      ws();
      if (text[i] === (c === '{' ? '}' : ']')) {
        i++;
        v = c === '{' ? {} : [];
      } else {
        const f = { v: c === '{' ? {} : [], key: '', start: i };
        stack.push(f);
        if (c === '{') member(f);
        continue;
      }
    } else {
      v = scalar();
    }
    // v is whole: it goes into the array or object it is in, which may
    // end there, and so on outwards.
    for (;;) {
      const f = stack[stack.length - 1];
      if (!f) {
        ws();
        if (i < text.length) fail('unexpected text after the value');
        return v;
      }
      const array = Array.isArray(f.v);
      if (array) {
        f.v.push(v);
      } else {
        if (keepText.includes(f.key)) v = new JSONText(text.slice(f.start, i));
        // A member named __proto__ is an ordinary member, as with JSON.parse.
        Object.defineProperty(f.v, f.key, { value: v, enumerable: true, writable: true, configurable: true });
      }
      ws();
      if (text[i] === ',') {
        i++;
        if (!array) member(f);
        break;
      }
      if (text[i] === (array ? ']' : '}')) {
        i++;
        stack.pop();
        v = f.v;
        continue;
      }
      fail(array ? 'expected "," or "]"' : 'expected "," or "}"');
    }
  }
}

// stringify writes v as JSON: compact without indent, else one member or
// element per line. JSONNumbers are written as their text.
export function stringify(v, indent = '', cur = '') {
  if (v === null || v === undefined) return 'null';
  if (v instanceof JSONNumber) return v.text;
  if (v instanceof JSONText) return format(v.text, indent, cur);
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

// preview is the compact JSON of v cut to max characters. It is a copy:
// a slice would keep alive the whole text it was cut from (a value of a
// megabyte, or the feed's frame that brought it).
export function preview(v, max = 80) {
  const s = v instanceof JSONText ? format(v.text, '', '', max) : stringify(v);
  return [...(s.length > max ? s.slice(0, max - 1) + '…' : s)].join('');
}

// The functions below read JSON text that is valid (a JSONText's), token
// by token, without building objects: members keep their order and their
// duplicates, strings and numbers their text.

const isSpace = (c) => c === ' ' || c === '\n' || c === '\r' || c === '\t';

function skipSpace(text, i) {
  while (i < text.length && isSpace(text[i])) i++;
  return i;
}

// stringEnd is the offset after the string that starts (with its quote)
// at offset i.
function stringEnd(text, i) {
  for (i++; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i + 1;
  }
  return i;
}

// valueEnd is the offset after the value that starts at offset i.
function valueEnd(text, i) {
  const c = text[i];
  if (c === '"') return stringEnd(text, i);
  if (c !== '{' && c !== '[') {
    while (i < text.length && !',:]} \n\r\t'.includes(text[i])) i++;
    return i;
  }
  let depth = 0;
  while (i < text.length) {
    const d = text[i];
    if (d === '"') {
      i = stringEnd(text, i);
      continue;
    }
    if (d === '{' || d === '[') depth++;
    else if ((d === '}' || d === ']') && --depth === 0) return i + 1;
    i++;
  }
  return i;
}

// MAX_INDENTED is how many levels format indents: an array or object
// deeper is written on one line. Indenting each of 10,000 levels (as deep
// as ctxd allows) would write 200 MB of spaces.
const MAX_INDENTED = 32;

// format writes JSON text compact without indent, else one member or
// element per line (as stringify does), starting at the indent cur, down
// to MAX_INDENTED levels. Only the whitespace between tokens changes.
// With a limit, it may stop once it has written that many characters.
function format(text, indent = '', cur = '', limit = 0) {
  const out = [];
  let pad = cur;
  let i = skipSpace(text, 0);
  while (i < text.length && !(limit && out.length > limit)) {
    const c = text[i];
    if (c === '{' || c === '[') {
      const j = skipSpace(text, i + 1);
      if (text[j] === (c === '{' ? '}' : ']')) { // empty: {} or []
        out.push(c, text[j]);
        i = j + 1;
      } else if (indent && pad.length >= cur.length + MAX_INDENTED * indent.length) {
        const end = valueEnd(text, i);
        out.push(format(text.slice(i, end)));
        i = skipSpace(text, end);
      } else {
        pad += indent;
        out.push(c, indent ? '\n' + pad : '');
        i = j;
      }
      continue;
    }
    if (c === '}' || c === ']') {
      pad = pad.slice(0, pad.length - indent.length);
      out.push(indent ? '\n' + pad : '', c);
      i++;
    } else if (c === ',') {
      out.push(',', indent ? '\n' + pad : '');
      i++;
    } else if (c === ':') {
      out.push(indent ? ': ' : ':');
      i++;
    } else {
      const j = valueEnd(text, i); // a string, a number or a literal
      out.push(text.slice(i, j));
      i = j;
    }
    i = skipSpace(text, i);
  }
  return out.join('');
}

// entries lists the members of an object ([name, text] in their order,
// a name given twice twice) or the elements of an array ([index, text]);
// [] for anything else.
function entries(text) {
  const out = [];
  let i = skipSpace(text, 0);
  const open = text[i];
  if (open !== '{' && open !== '[') return out;
  i = skipSpace(text, i + 1);
  while (i < text.length && text[i] !== '}' && text[i] !== ']') {
    let name = out.length;
    if (open === '{') {
      const e = stringEnd(text, i);
      name = JSON.parse(text.slice(i, e));
      i = skipSpace(text, skipSpace(text, e) + 1); // past the ":"
    }
    const e = valueEnd(text, i);
    out.push([name, text.slice(i, e)]);
    i = skipSpace(text, e);
    if (text[i] === ',') i = skipSpace(text, i + 1);
  }
  return out;
}

// memberNames lists the names of an object's members, in their order and
// each once; null when the text is not an object.
export function memberNames(text) {
  if (text.trimStart()[0] !== '{') return null;
  return [...new Set(entries(text).map(([name]) => name))];
}

// textAt returns the text of the value at a JSON pointer ("/limits/cpu"),
// or undefined when there is none. Of a member named twice, the last is
// the one (as JSON.parse and encoding/json read it).
export function textAt(text, pointer) {
  for (const raw of pointer.split('/').slice(1)) {
    const step = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    let found;
    for (const [name, v] of entries(text)) if (String(name) === step) found = v;
    if (found === undefined) return undefined;
    text = found;
  }
  return text;
}
