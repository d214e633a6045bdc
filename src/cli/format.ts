/**
 * A subset of Go templates for `--format`, enough for the common uses:
 * {{.Field.Sub}}, {{json .Field}}, {{json .}}, {{.Field | json}}, and the
 * "table" prefix with \t column separators.
 */
function lookup(obj: unknown, path: string): unknown {
  if (path === '.' || path === '') return obj;
  let cur: unknown = obj;
  for (const key of path.replace(/^\./, '').split('.')) {
    if (cur === null || cur === undefined || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function show(v: unknown): string {
  if (v === undefined || v === null) return '<no value>';
  if (Array.isArray(v)) return `[${v.map(show).join(' ')}]`;
  if (typeof v === 'object') return `map[${Object.entries(v as object).map(([k, x]) => `${k}:${show(x)}`).join(' ')}]`;
  return String(v);
}

export function renderTemplate(tpl: string, obj: unknown): string {
  const body = tpl.replace(/^table\s*/, '').replace(/\\t/g, '\t').replace(/\\n/g, '\n');
  return body.replace(/\{\{\s*(.*?)\s*\}\}/g, (_m, expr: string) => {
    let m = /^json\s+(\S+)$/.exec(expr) ?? /^(\S+)\s*\|\s*json$/.exec(expr);
    if (m) return JSON.stringify(lookup(obj, m[1]!) ?? null);
    m = /^(\.[\w.]*)$/.exec(expr);
    if (m) return show(lookup(obj, m[1]!));
    throw new Error(`template: unsupported expression "{{${expr}}}"`);
  });
}

/** Left-aligned columns separated by three spaces, like Docker's tabwriter. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('')).join('\n');
}
