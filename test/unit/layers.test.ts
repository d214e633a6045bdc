/**
 * The layering rules, checked on the sources: the VM layer is reached only
 * through src/vm/index.ts (so QEMU and QMP stay inside src/vm/), nothing
 * outside it knows the built-in network's addresses, and lower layers never
 * import upper ones (vm < sandbox < engine < build < api/daemon/cli: the
 * builder drives the engine, the engine never knows about builds).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { repoRoot } from '../../src/common/paths.js';

const src = path.join(repoRoot, 'src');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** [file, resolved import target (relative to src/)] for every relative import. */
function imports(): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const file of sources(src)) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'(\.[^']+)'/g)) {
      const target = path.relative(src, path.resolve(path.dirname(file), m[1]!)).replace(/\.js$/, '.ts');
      out.push([path.relative(src, file), target]);
    }
  }
  return out;
}

const layerOf = (f: string) => f.split(path.sep)[0]!;

describe('layers', () => {
  it('finds the sources (the check is not vacuous)', () => {
    assert.ok(imports().length > 200);
    assert.ok(imports().some(([f, t]) => f.startsWith('engine/') && t === 'vm/index.ts'));
  });

  it('reaches the VM layer only through src/vm/index.ts', () => {
    const crossing = imports().filter(([f, t]) => layerOf(f) !== 'vm' && t.startsWith('vm/') && t !== 'vm/index.ts');
    assert.deepEqual(crossing, [], 'import the VM layer through vm/index.js');
  });

  it('keeps QEMU, QMP and the user-mode network addresses inside src/vm/', () => {
    const leaks = sources(src)
      .filter((f) => !path.relative(src, f).startsWith('vm/'))
      .filter((f) => /\bQmpClient\b|\bQemuVm\b|\bUSER_NET\b|10\.0\.2\.\d/.test(fs.readFileSync(f, 'utf8')))
      .map((f) => path.relative(src, f));
    assert.deepEqual(leaks, []);
  });

  it('never imports an upper layer from a lower one', () => {
    const rank: Record<string, number> = { common: 0, agent: 1, vm: 2, images: 2, sandbox: 3, engine: 4, shim: 4, build: 4.5, api: 5, daemon: 6, cli: 6 };
    const upward = imports().filter(([f, t]) => {
      const from = rank[layerOf(f)];
      const to = rank[layerOf(t)];
      return from !== undefined && to !== undefined && to > from;
    });
    assert.deepEqual(upward, []);
  });

  it('keeps the containerd shim on the sandbox library: no engine, API or daemon code', () => {
    const reaching = imports().filter(([f, t]) => layerOf(f) === 'shim' && ['engine', 'api', 'daemon', 'cli'].includes(layerOf(t)));
    assert.deepEqual(reaching, []);
    assert.ok(imports().some(([f, t]) => f.startsWith('shim/') && t === 'sandbox/index.ts'));
  });

  it('keeps source files small (about 400 lines at most)', () => {
    const big = sources(src)
      .map((f) => [path.relative(src, f), fs.readFileSync(f, 'utf8').split('\n').length] as const)
      .filter(([, n]) => n > 420);
    assert.deepEqual(big, []);
  });
});
