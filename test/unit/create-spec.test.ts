/** `create`'s pure part: Docker's defaults and validation, with plain-object lookups. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HyperboxError } from '../../src/common/errors.js';
import { buildCreateSpec, diskBytesOf, extraHostLines, mergeEnv, parseExtraHost, parseLayerLimit, parseLink, parseSizeBytes, processEnv, type CreateContext } from '../../src/engine/create-spec.js';
import { DEFAULT_DISK_BYTES } from '../../src/images/blockfs.js';

const ID = 'a'.repeat(64);
const ctx: CreateContext = {
  userNetwork: (mode) => (mode === 'front' ? { Name: 'front' } : undefined),
  podId: (name) => {
    if (name !== 'web') throw new Error(`no such pod: ${name}`);
    return 'pod-web';
  },
  containerPod: (name) => (name === 'member' ? { name: '/member', podId: 'pod-web' } : { name: `/${name}` }),
};
const image = { Cmd: ['sh'], Env: ['PATH=/bin', 'A=image'], WorkingDir: '/srv', Labels: { from: 'image' }, ExposedPorts: { '80/tcp': {} } };
const build = (config: Record<string, unknown>, host: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
  buildCreateSpec({ config: { Image: 'busybox', ...config }, host, ...extra }, ID, image, ctx);
const invalid = (fn: () => unknown, re: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof HyperboxError && e.kind === 'invalid' && re.test(e.message));

describe('create spec', () => {
  it("applies the image's config and Docker's defaults", () => {
    const s = build({ Env: ['A=user', 'B=1'], Labels: { mine: 'x' } });
    assert.deepEqual(s.config.Cmd, ['sh']);
    assert.deepEqual(s.config.Env, ['PATH=/bin', 'A=user', 'B=1']);
    assert.equal(s.config.WorkingDir, '/srv');
    assert.equal(s.config.Hostname, ID.slice(0, 12));
    assert.equal(s.config.StopSignal, 'SIGTERM');
    assert.deepEqual(s.config.Labels, { from: 'image', mine: 'x' });
    assert.deepEqual(Object.keys(s.config.ExposedPorts ?? {}), ['80/tcp']);
    assert.equal(s.host.NetworkMode, 'default');
    assert.equal(s.podId, undefined);
  });

  it('drops the image Cmd when an Entrypoint is given (as Docker)', () => {
    const s = build({ Entrypoint: ['/bin/echo'] });
    assert.deepEqual([s.config.Entrypoint, s.config.Cmd], [['/bin/echo'], []]);
  });

  it('refuses what Docker refuses, with its words', () => {
    invalid(() => build({ WorkingDir: 'rel' }), /needs to be an absolute path/);
    invalid(() => build({}, { AutoRemove: true, RestartPolicy: { Name: 'always', MaximumRetryCount: 0 } }), /both --restart and --rm/);
    invalid(() => build({}, { Memory: 1024 }), /Minimum memory limit/);
    invalid(() => build({}, { NetworkMode: 'none', PublishAllPorts: true }), /port publishing/);
    invalid(() => build({}, { LogConfig: { Type: 'syslog', Config: {} } }), /logging driver "syslog"/);
    invalid(() => build({}, {}, { aliases: ['x'] }), /aliases are supported only/);
    assert.throws(() => build({ StopSignal: 'SIGNOPE' }));
  });

  it('puts containers into pods by label or by container:NAME, and refuses what a pod owns', () => {
    assert.equal(build({ Labels: { 'io.hyperbox.pod': 'web' } }).podId, 'pod-web');
    assert.equal(build({}, { NetworkMode: 'container:member' }).podId, 'pod-web');
    invalid(() => build({}, { NetworkMode: 'container:loner' }), /not in a pod/);
    invalid(() => build({ Labels: { 'io.hyperbox.pod': 'web' } }, { PortBindings: { '80/tcp': [{ HostPort: '8080' }] } }), /published by the pod/);
    invalid(() => build({ Labels: { 'io.hyperbox.pod': 'web' } }, { Memory: 64 << 20 }), /share its VM/);
    invalid(() => build({ Labels: { 'io.hyperbox.pod': 'web' } }, { NetworkMode: 'front' }), /do not go together/);
  });

  it('keeps network aliases only on user-defined networks', () => {
    assert.deepEqual(build({}, { NetworkMode: 'front' }, { aliases: ['db', ''] }).aliases, ['db']);
  });

  it('sizes the writable layer from --storage-opt', () => {
    assert.equal(parseLayerLimit({ size: '64m' }), 64 << 20);
    assert.equal(parseLayerLimit(undefined), undefined);
    invalid(() => parseLayerLimit({ size: '1m' }), /at least 16MB/);
    invalid(() => parseLayerLimit({ dm: 'x' }), /unknown storage option/);
  });

  it("reads --storage-opt size as Docker does (units.RAMInBytes), refusing bad values with Docker's words", () => {
    for (const [v, bytes] of [
      ['10G', 10 * 1024 ** 3],
      ['10g', 10 * 1024 ** 3],
      ['10GB', 10 * 1024 ** 3],
      ['10GiB', 10 * 1024 ** 3],
      ['1.5G', 1.5 * 1024 ** 3],
      ['512 m', 512 * 1024 ** 2],
      ['1t', 1024 ** 4],
      ['20971520', 20 * 1024 ** 2],
    ] as const) {
      assert.equal(parseSizeBytes(v), bytes, v);
      assert.equal(parseLayerLimit({ size: v }), bytes, v);
    }
    for (const v of ['', 'G', '-1G', '10X', '1.2.3G', '10 GB extra', '0x10']) assert.equal(parseSizeBytes(v), undefined, v);
    invalid(() => parseLayerLimit({ size: 'ten' }), /^invalid storage option size="ten": invalid size: 'ten'/);
    invalid(() => parseLayerLimit({ size: '' }), /^invalid storage option size="": invalid size/);
    invalid(() => parseLayerLimit({ size: '17T' }), /^invalid storage option size="17T": .*at most 16TB/);
    invalid(() => parseLayerLimit({ 'overlay2.size': '1G' }), /^invalid storage option "overlay2.size": unknown storage option/);
    // Stored as given, sized in the spec: the default disk is 10 GiB.
    const sized = build({}, { StorageOpt: { size: '20G' } });
    assert.deepEqual([sized.host.StorageOpt, sized.layerBytes, sized.diskBytes], [{ size: '20G' }, 20 * 1024 ** 3, 20 * 1024 ** 3]);
    const plain = build({});
    assert.deepEqual([plain.layerBytes, plain.diskBytes], [undefined, DEFAULT_DISK_BYTES]);
    assert.equal(DEFAULT_DISK_BYTES, 10 * 1024 ** 3);
    assert.equal(diskBytesOf({ StorageOpt: { size: '1G' } }), 1024 ** 3);
    assert.equal(diskBytesOf({}), DEFAULT_DISK_BYTES);
    invalid(() => build({}, { StorageOpt: { size: 'big' } }), /invalid storage option/);
  });

  it("builds a process's environment with Docker's defaults", () => {
    assert.deepEqual(mergeEnv(['A=1', 'B=2'], ['A=3']), ['A=3', 'B=2']);
    const env = processEnv({ Env: ['X=1'], Hostname: 'h', Tty: true });
    assert.ok(env.some((e) => e.startsWith('PATH=/usr/local/sbin')));
    assert.ok(env.includes('HOSTNAME=h') && env.includes('TERM=xterm') && env.includes('HOME=/root') && env.includes('X=1'));
  });

  it('parses --add-host and resolves host-gateway to the gateway', () => {
    assert.deepEqual(parseExtraHost('db:10.1.2.3'), { name: 'db', ip: '10.1.2.3' });
    assert.deepEqual(parseExtraHost('v6=[::1]'), { name: 'v6', ip: '::1' });
    invalid(() => parseExtraHost('no-ip'), /invalid IP address in add-host/);
    invalid(() => parseExtraHost('x:300.1.1.1'), /invalid IP address/);
    invalid(() => parseExtraHost('a b:1.2.3.4'), /invalid IP address/);
    assert.deepEqual(extraHostLines(['gw:host-gateway', 'db:10.1.2.3'], '10.88.0.1'), ['10.88.0.1 gw', '10.1.2.3 db']);
    assert.deepEqual(extraHostLines(['gw:host-gateway'], undefined), []);
    assert.deepEqual(build({}, { ExtraHosts: ['gw=host-gateway'] }).host.ExtraHosts, ['gw:host-gateway']);
  });

  it('keeps --cap-add, --cap-drop, --privileged and --init, refusing unknown capabilities as dockerd does', () => {
    const s = build({}, { CapAdd: ['net_admin', 'CAP_SYS_TIME'], CapDrop: ['ALL'], Privileged: true, Init: true });
    assert.deepEqual([s.host.CapAdd, s.host.CapDrop, s.host.Privileged, s.host.Init], [['net_admin', 'CAP_SYS_TIME'], ['ALL'], true, true]);
    const plain = build({});
    assert.deepEqual([plain.host.CapAdd, plain.host.CapDrop, plain.host.Privileged, plain.host.Init], [undefined, undefined, false, false]);
    invalid(() => build({}, { CapAdd: ['NET_ADMIN', 'FLY'] }), /^invalid CapAdd: unknown capability: "CAP_FLY"$/);
    invalid(() => build({}, { CapDrop: ['CAP_ALL'] }), /^invalid CapDrop: unknown capability: "CAP_ALL"$/);
  });

  it('refuses host and container PID/UTS/IPC namespaces, which a VM cannot join', () => {
    invalid(() => build({}, {}, { namespaces: { pid: 'host' } }), /--pid=host is not supported.*own VM/);
    invalid(() => build({}, {}, { namespaces: { uts: 'host' } }), /--uts=host/);
    invalid(() => build({}, {}, { namespaces: { pid: 'container:x' } }), /another container's PID/);
    invalid(() => build({}, {}, { namespaces: { ipc: 'bogus' } }), /invalid IPC mode/);
    assert.ok(build({}, {}, { namespaces: { pid: '', uts: '', ipc: 'shareable' } }));
  });

  it('checks --mac-address, --group-add and --link', () => {
    assert.equal(build({ MacAddress: '02:42:AC:11:00:99' }).config.MacAddress, '02:42:ac:11:00:99');
    invalid(() => build({ MacAddress: '01:00:5e:00:00:01' }), /multicast/);
    invalid(() => build({ MacAddress: 'nope' }), /invalid MAC/);
    assert.deepEqual(build({}, { GroupAdd: ['audio', '1234'] }).host.GroupAdd, ['audio', '1234']);
    invalid(() => build({}, { GroupAdd: ['a:b'] }), /invalid group/);
    assert.deepEqual(parseLink('db:alias'), { name: 'db', alias: 'alias' });
    assert.deepEqual(parseLink('/db:/web/alias'), { name: 'db', alias: 'alias' });
    assert.deepEqual(parseLink('db'), { name: 'db', alias: 'db' });
    invalid(() => build({}, { Links: ['db:a:b'] }), /invalid link/);
  });
});
