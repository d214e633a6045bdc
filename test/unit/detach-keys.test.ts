import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { parseDetachKeys, watchDetachKeys } from '../../src/api/docker/detach-keys.js';

async function feed(chunks: string[], keys: string): Promise<{ out: string; detached: boolean; ended: boolean }> {
  const input = new PassThrough();
  let detached = false;
  let ended = false;
  let out = '';
  const filtered = watchDetachKeys(input, parseDetachKeys(keys), () => (detached = true));
  filtered.on('data', (c: Buffer) => (out += c.toString('latin1')));
  filtered.on('end', () => (ended = true));
  for (const c of chunks) input.write(Buffer.from(c, 'latin1'));
  input.end();
  await new Promise((r) => setTimeout(r, 20));
  return { out, detached, ended };
}

describe('detach keys', () => {
  it('parses Docker key specs', () => {
    assert.deepEqual([...parseDetachKeys('ctrl-p,ctrl-q')], [16, 17]);
    assert.deepEqual([...parseDetachKeys('ctrl-@,a,ctrl-[')], [0, 97, 27]);
    assert.throws(() => parseDetachKeys('ctrl-1'), /Invalid detach keys/);
    assert.throws(() => parseDetachKeys('alt-x'), /Invalid detach keys/);
  });

  it('detaches on the sequence, split across chunks, and passes nothing of it on', async () => {
    const r = await feed(['hello\x10', '\x11after'], 'ctrl-p,ctrl-q');
    assert.deepEqual(r, { out: 'hello', detached: true, ended: false });
  });

  it('passes on a broken partial match, and finds a sequence starting inside one', async () => {
    const r = await feed(['a\x10b', '\x10\x10\x11'], 'ctrl-p,ctrl-q');
    assert.deepEqual(r, { out: 'a\x10b\x10', detached: true, ended: false });
  });

  it('ends normally, with a held partial match, when no sequence came', async () => {
    const r = await feed(['abc\x10'], 'ctrl-p,ctrl-q');
    assert.deepEqual(r, { out: 'abc\x10', detached: false, ended: true });
  });
});
