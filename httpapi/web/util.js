// Small DOM and formatting helpers. Text always goes in as text nodes:
// keys and values are never parsed as HTML.

// h creates an element: attrs are attributes (true: present, false/null:
// absent), "class", "dataset", or on* listeners; children are nodes or text.
export function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

export const $ = (id) => document.getElementById(id);

// show sets an element's text and unhides it; an empty text hides it.
export function show(el, text) {
  el.textContent = text || '';
  el.hidden = !text;
}

export function fmtBytes(n) {
  n = Number(n);
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) { n /= 1024; u++; }
  return (u === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[u];
}

export function fmtDuration(sec) {
  sec = Math.max(0, Math.floor(Number(sec) || 0));
  const d = Math.floor(sec / 86400);
  const hh = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

// time is a <time> element showing t (an RFC 3339 string) in local time.
export function time(t) {
  const d = new Date(t);
  if (!t || Number.isNaN(d.getTime())) return h('span', null, t || '');
  return h('time', { datetime: t, title: t }, timeFormat.format(d));
}
