// Line diff of two texts, for comparing versions of a value (pretty JSON).

// diffLines returns {lines: [{op, line}], exact}: op is " " (in both), "-"
// (only in a) or "+" (only in b). The common head and tail are matched
// first; the rest by longest common subsequence when it fits in maxCells
// table cells, else shown as all removed then all added (exact false).
export function diffLines(a, b, maxCells = 4_000_000) {
  const x = a.split('\n');
  const y = b.split('\n');
  let head = 0;
  while (head < x.length && head < y.length && x[head] === y[head]) head++;
  let tail = 0;
  while (tail < x.length - head && tail < y.length - head && x[x.length - 1 - tail] === y[y.length - 1 - tail]) tail++;
  const xs = x.slice(head, x.length - tail);
  const ys = y.slice(head, y.length - tail);
  const lines = x.slice(0, head).map((line) => ({ op: ' ', line }));
  const n = xs.length;
  const m = ys.length;
  let exact = true;
  if ((n + 1) * (m + 1) <= maxCells) {
    // t[i][j]: length of the LCS of xs[i:] and ys[j:].
    const w = m + 1;
    const t = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        t[i * w + j] = xs[i] === ys[j] ? t[(i + 1) * w + j + 1] + 1 : Math.max(t[(i + 1) * w + j], t[i * w + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (xs[i] === ys[j]) {
        lines.push({ op: ' ', line: xs[i] });
        i++;
        j++;
      } else if (t[(i + 1) * w + j] >= t[i * w + j + 1]) {
        lines.push({ op: '-', line: xs[i++] });
      } else {
        lines.push({ op: '+', line: ys[j++] });
      }
    }
    while (i < n) lines.push({ op: '-', line: xs[i++] });
    while (j < m) lines.push({ op: '+', line: ys[j++] });
  } else {
    exact = false;
    for (const line of xs) lines.push({ op: '-', line });
    for (const line of ys) lines.push({ op: '+', line });
  }
  for (const line of x.slice(x.length - tail)) lines.push({ op: ' ', line });
  return { lines, exact };
}

// hunks keeps the changed lines with context lines around them; the
// unchanged runs in between become {op: "…", skipped: N}.
export function hunks(lines, context = 3) {
  const keep = new Uint8Array(lines.length);
  lines.forEach((l, i) => {
    if (l.op === ' ') return;
    for (let k = Math.max(0, i - context); k <= Math.min(lines.length - 1, i + context); k++) keep[k] = 1;
  });
  const out = [];
  let skipped = 0;
  lines.forEach((l, i) => {
    if (keep[i]) {
      if (skipped) out.push({ op: '…', skipped });
      skipped = 0;
      out.push(l);
    } else {
      skipped++;
    }
  });
  if (skipped) out.push({ op: '…', skipped });
  return out;
}
