/** Docker image references: defaults, registries with ports, digests, and what is refused. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { familiarName, formatReference, normalizeReference, parseReference } from '../../src/images/reference.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

describe('image references', () => {
  it('fills in Docker Hub, library/ and :latest', () => {
    assert.deepEqual(parseReference('busybox'), { domain: 'docker.io', path: 'library/busybox', tag: 'latest', digest: undefined });
    assert.deepEqual(parseReference('user/app:1.2'), { domain: 'docker.io', path: 'user/app', tag: '1.2', digest: undefined });
    assert.equal(normalizeReference('busybox'), 'docker.io/library/busybox:latest');
    assert.equal(normalizeReference('docker.io/busybox'), 'docker.io/library/busybox:latest');
    assert.equal(normalizeReference('docker.io/library/busybox:latest'), 'docker.io/library/busybox:latest', 'idempotent');
  });

  it('tells a registry (a dot, a port, localhost) from a user name', () => {
    assert.deepEqual(parseReference('localhost:5000/x'), { domain: 'localhost:5000', path: 'x', tag: 'latest', digest: undefined });
    assert.deepEqual(parseReference('localhost/x:2'), { domain: 'localhost', path: 'x', tag: '2', digest: undefined });
    assert.deepEqual(parseReference('ghcr.io/org/team/img'), { domain: 'ghcr.io', path: 'org/team/img', tag: 'latest', digest: undefined });
    assert.deepEqual(parseReference('registry:5000/img'), { domain: 'registry:5000', path: 'img', tag: 'latest', digest: undefined });
    assert.deepEqual(parseReference('someuser/img'), { domain: 'docker.io', path: 'someuser/img', tag: 'latest', digest: undefined });
  });

  it('keeps a digest, with or without a tag', () => {
    assert.deepEqual(parseReference(`busybox@${DIGEST}`), { domain: 'docker.io', path: 'library/busybox', tag: undefined, digest: DIGEST });
    assert.deepEqual(parseReference(`busybox:1@${DIGEST}`), { domain: 'docker.io', path: 'library/busybox', tag: '1', digest: DIGEST });
    assert.equal(normalizeReference(`q.io/a@${DIGEST}`), `q.io/a@${DIGEST}`);
  });

  it('accepts the separators the grammar allows in path components and tags', () => {
    assert.deepEqual(parseReference('my_org/my-app.v2:v1.0_rc-1'), { domain: 'docker.io', path: 'my_org/my-app.v2', tag: 'v1.0_rc-1', digest: undefined });
    assert.equal(parseReference('org/a__b').path, 'org/a__b');
    assert.equal(parseReference('org/a---b').path, 'org/a---b');
    assert.equal(parseReference(`x:${'t'.repeat(128)}`).tag, 't'.repeat(128), 'tags up to 128 characters');
    assert.equal(parseReference('x:_T.1-').tag, '_T.1-');
  });

  it('refuses malformed references', () => {
    for (const bad of ['', 'UPPER', 'UPPER/x', 'Org/repo:1', 'a//b', '/a', 'a/', 'a:', ':tag', 'a:-tag', `a:${'t'.repeat(129)}`, 'a@sha256:abc', `a@md5:${'0'.repeat(32)}`, 'a b', 'a..b', 'a-', '-a']) {
      assert.throws(() => parseReference(bad), /invalid reference format/, JSON.stringify(bad));
    }
  });

  it('prints the short name Docker shows', () => {
    assert.equal(familiarName(parseReference('busybox')), 'busybox:latest');
    assert.equal(familiarName(parseReference('user/app:2')), 'user/app:2');
    assert.equal(familiarName(parseReference('localhost:5000/x:1')), 'localhost:5000/x:1');
    assert.equal(familiarName(parseReference(`busybox@${DIGEST}`)), `busybox@${DIGEST}`);
    assert.equal(formatReference({ domain: 'q.io', path: 'a/b', tag: 't' }), 'q.io/a/b:t');
  });
});
