/** CLI helpers: Docker's size and CPU units, the --format template subset, and tables. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExitError } from '../../src/cli/exit-error.js';
import { renderTemplate, table } from '../../src/cli/format.js';
import { parseStorageOpts } from '../../src/cli/commands/run-options.js';
import { parseBytes, parseCpus } from '../../src/cli/units.js';

const usage = (pattern: RegExp) => (err: unknown) => err instanceof ExitError && err.status === 125 && pattern.test(err.message);

describe('units', () => {
  it('reads sizes in binary units, as Docker\'s RAMInBytes', () => {
    assert.equal(parseBytes('512', '-m'), 512);
    assert.equal(parseBytes('100k', '-m'), 100 * 1024);
    assert.equal(parseBytes('64m', '-m'), 64 * 1024 ** 2);
    assert.equal(parseBytes('64M', '-m'), 64 * 1024 ** 2);
    assert.equal(parseBytes('64mb', '-m'), 64 * 1024 ** 2);
    assert.equal(parseBytes('64MiB', '-m'), 64 * 1024 ** 2);
    assert.equal(parseBytes('1.5g', '-m'), 1.5 * 1024 ** 3);
    assert.equal(parseBytes('2t', '-m'), 2 * 1024 ** 4);
    assert.equal(parseBytes(' 8 m ', '-m'), 8 * 1024 ** 2);
  });

  it('refuses a bad size with the flag named and exit status 125', () => {
    assert.throws(() => parseBytes('lots', '-m, --memory'), usage(/^invalid argument "lots" for "-m, --memory" flag: invalid size: 'lots'$/));
    for (const v of ['', '-1m', '1p', 'm', '1..5m']) assert.throws(() => parseBytes(v, '--shm-size'), usage(/invalid size/), v);
  });

  it('reads --storage-opt key=value flags, refusing one without = as the docker CLI does', () => {
    assert.deepEqual(parseStorageOpts(['size=10G']), { size: '10G' });
    assert.deepEqual(parseStorageOpts(['size=1G', 'size=2G']), { size: '2G' });
    for (const v of ['size', '=10G']) assert.throws(() => parseStorageOpts([v]), usage(/^invalid storage option "/), v);
  });

  it('reads --cpus as nano-CPUs and refuses zero, negatives and junk', () => {
    assert.equal(parseCpus('1'), 1e9);
    assert.equal(parseCpus('0.5'), 5e8);
    assert.equal(parseCpus('1.25'), 1.25e9);
    for (const v of ['0', '0.0', '-1', 'x', '', '1e3', '.5']) assert.throws(() => parseCpus(v), usage(/invalid argument ".*" for "--cpus" flag/), v);
  });
});

describe('--format templates', () => {
  const obj = { Name: 'web', State: { Status: 'running', Pid: 42, Running: true }, Labels: { a: '1' }, Ports: [80, 443], Empty: null };

  it('looks up fields, nested ones, and says <no value> for missing ones', () => {
    assert.equal(renderTemplate('{{.Name}} {{.State.Status}} {{ .State.Pid }}', obj), 'web running 42');
    assert.equal(renderTemplate('{{.State.Running}}', obj), 'true');
    assert.equal(renderTemplate('{{.Nope}}|{{.State.Nope.Deeper}}|{{.Empty}}', obj), '<no value>|<no value>|<no value>');
    assert.equal(renderTemplate('{{.Ports}} {{.Labels}}', obj), '[80 443] map[a:1]', "Go's fmt of slices and maps");
  });

  it('renders json in both spellings, the whole object too', () => {
    assert.equal(renderTemplate('{{json .State}}', obj), '{"Status":"running","Pid":42,"Running":true}');
    assert.equal(renderTemplate('{{.Labels | json}}', obj), '{"a":"1"}');
    assert.equal(renderTemplate('{{json .}}', { a: 1 }), '{"a":1}');
    assert.equal(renderTemplate('{{json .Nope}}', obj), 'null');
  });

  it('handles the table prefix and \\t, \\n escapes, and refuses what it does not support', () => {
    assert.equal(renderTemplate('table {{.Name}}\\t{{.State.Pid}}', obj), 'web\t42');
    assert.equal(renderTemplate('{{.Name}}\\n', obj), 'web\n');
    assert.equal(renderTemplate('no fields', obj), 'no fields');
    assert.throws(() => renderTemplate('{{range .Ports}}{{.}}{{end}}', obj), /template: unsupported expression "\{\{range \.Ports\}\}"/);
    assert.throws(() => renderTemplate('{{printf "%s" .Name}}', obj), /unsupported expression/);
  });

  it('lays out columns like Docker\'s tabwriter: padded to the widest cell plus three spaces, the last column bare', () => {
    assert.equal(table([['NAME', 'STATUS', 'X'], ['a-long-name', 'up', 'y']]), 'NAME          STATUS   X\na-long-name   up       y');
    assert.equal(table([]), '');
    assert.equal(table([['only']]), 'only');
  });
});
