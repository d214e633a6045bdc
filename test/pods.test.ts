/** Pods and `kube play` (issue 6): several containers in one real VM. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ManifestError, parseManifests, planPod } from '../src/cli/kube/manifest.js';
import { fetchText } from './helpers/net.js';
import { startDaemonWithBusybox, type TestDaemon, until } from './helpers/daemon.js';


/** QEMU processes whose command line mentions this daemon's data root. */
function vmsOf(d: TestDaemon): number {
  const r = spawnSync('pgrep', ['-f', `qemu-system.*${d.dataRoot}/`], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean).length;
}

const SERVER = 'mkdir -p /www && echo served-by-$(hostname) > /www/index.html && exec httpd -f -p 8000 -h /www';

const MANIFEST = (hostDir: string) => `
apiVersion: v1
kind: Pod
metadata:
  name: kp
spec:
  restartPolicy: Never
  volumes:
    - name: shared
      emptyDir: {}
    - name: host
      hostPath: {path: ${hostDir}}
  initContainers:
    - name: init
      image: busybox
      command: [sh, -c, "echo made-by-init > /data/index.html"]
      volumeMounts: [{name: shared, mountPath: /data}]
  containers:
    - name: web
      image: busybox
      command: [httpd, -f, -p, "8080", -h, /data]
      ports: [{containerPort: 8080, hostPort: 18093}]
      volumeMounts: [{name: shared, mountPath: /data, readOnly: true}]
    - name: client
      image: busybox
      command: [sh, -c]
      args: ["until wget -qO /out/page http://localhost:8080/; do sleep 0.2; done; echo GREETING=$GREETING; touch /data/x 2>&1 || true"]
      env: [{name: GREETING, value: hello}]
      volumeMounts: [{name: host, mountPath: /out}, {name: shared, mountPath: /data}]
`;

describe('kube manifests (pure)', () => {
  it('maps command/args, env, ports, emptyDir and hostPath', () => {
    const [m] = parseManifests(MANIFEST('/srv/x'), 'kp.yaml');
    const plan = planPod(m!, 'io.hyperbox.pod');
    assert.deepEqual(plan.pod.PortBindings, { '8080/tcp': [{ HostIp: '', HostPort: '18093' }] });
    assert.deepEqual(plan.emptyDirs, ['kp-shared']);
    assert.deepEqual(plan.init.map((c) => c.name), ['kp-init']);
    const client = plan.containers.find((c) => c.name === 'kp-client')!;
    assert.deepEqual(client.body.Entrypoint, ['sh', '-c']);
    assert.equal((client.body.Cmd as string[]).length, 1);
    assert.deepEqual(client.body.Env, ['GREETING=hello']);
    assert.deepEqual((client.body.HostConfig as { Binds: string[] }).Binds, ['/srv/x:/out', 'kp-shared:/data']);
    const web = plan.containers.find((c) => c.name === 'kp-web')!;
    assert.deepEqual((web.body.HostConfig as { Binds: string[]; RestartPolicy: unknown }).Binds, ['kp-shared:/data:ro']);
    assert.deepEqual((web.body.HostConfig as { RestartPolicy: unknown }).RestartPolicy, { Name: 'no', MaximumRetryCount: 0 });
  });

  it('rejects what it cannot run, saying where', () => {
    assert.throws(() => parseManifests('kind: Deployment\napiVersion: apps/v1\n', 'd.yaml'), /kind "Deployment" is not supported/);
    assert.throws(() => parseManifests('apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: a, image: busybox}]}\n', 'p.yaml'), /metadata\.name/);
    assert.throws(() => parseManifests('apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n', 'p.yaml'), /spec\.containers/);
    assert.throws(() => parseManifests('a: [unclosed\n', 'p.yaml'), ManifestError);
    const [m] = parseManifests('apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: busybox, volumeMounts: [{name: nope, mountPath: /x}]}]}\n', 'p.yaml');
    assert.throws(() => planPod(m!, 'l'), /volume "nope"/);
  });
});

describe('pods', () => {
  let d: TestDaemon;
  let hostDir: string;
  before(async () => {
    d = await startDaemonWithBusybox();
    hostDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-kube-'));
  });
  after(async () => {
    await d?.stop();
    fs.rmSync(hostDir, { recursive: true, force: true });
  });

  it('runs a server and a client in one VM: localhost is shared, files are not', async () => {
    assert.equal((await d.run(['pod', 'create', '--name', 'p1', '-p', '18092:8000'])).code, 0);
    const web = await d.run(['run', '-d', '--pod', 'p1', '--name', 'web', 'busybox', 'sh', '-c', SERVER]);
    assert.equal(web.code, 0, web.stderr);
    const client = await d.run(['run', '--rm', '--pod', 'p1', 'busybox', 'sh', '-c', 'until wget -qO- http://localhost:8000/; do sleep 0.2; done; ls /www 2>/dev/null || echo no-www']);
    assert.equal(client.code, 0, client.stderr);
    // Same VM (one hostname, the pod's), and the server's /www is not in the client's root.
    assert.equal(client.stdout, 'served-by-p1\nno-www\n');
    // Docker's spelling of the same thing: join another container's network (its pod's VM).
    const joined = await d.run(['run', '--rm', '--network', 'container:web', 'busybox', 'wget', '-qO-', 'http://localhost:8000/']);
    assert.equal(joined.stdout, 'served-by-p1\n', joined.stderr);
    assert.equal(vmsOf(d), 1, 'a pod is one VM');
    // The pod's published port reaches the server from the host.
    assert.equal(await until('the page', () => fetchText('http://127.0.0.1:18092/').catch(() => undefined), 20_000), 'served-by-p1\n');
    // Per-container exit codes and logs.
    const failing = await d.run(['run', '--pod', 'p1', '--name', 'fails', 'busybox', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.equal(failing.code, 3);
    assert.equal((await d.run(['inspect', '-f', '{{.State.ExitCode}}', 'fails'])).stdout.trim(), '3');
    const logs = await d.run(['logs', 'fails']);
    assert.equal(logs.stdout, 'out\n');
    assert.equal(logs.stderr, 'err\n');
    // exec runs inside the container's own root and mount namespace; each container has its own.
    const ex = await d.run(['exec', 'web', 'cat', '/www/index.html']);
    assert.equal(ex.stdout, 'served-by-p1\n');
    const nsOf = async (args: string[]) => (await d.run(args)).stdout.trim();
    const webNs = await nsOf(['exec', 'web', 'readlink', '/proc/1/ns/mnt']);
    assert.match(webNs, /^mnt:\[\d+\]$/);
    assert.equal(await nsOf(['exec', 'web', 'readlink', '/proc/self/ns/mnt']), (await nsOf(['exec', 'web', 'sh', '-c', 'readlink /proc/$(pidof httpd)/ns/mnt'])));
    const otherNs = await nsOf(['run', '--rm', '--pod', 'p1', 'busybox', 'readlink', '/proc/self/ns/mnt']);
    assert.match(otherNs, /^mnt:\[\d+\]$/);
    assert.notEqual(otherNs, await nsOf(['exec', 'web', 'readlink', '/proc/self/ns/mnt']));
    assert.notEqual(webNs, await nsOf(['exec', 'web', 'readlink', '/proc/self/ns/mnt']), "the agent (PID 1) stays in the VM's namespace");
    const inspect = JSON.parse((await d.run(['pod', 'inspect', 'p1'])).stdout)[0];
    assert.equal(inspect.State.Status, 'running');
    assert.deepEqual(inspect.Containers.map((c: { Name: string }) => c.Name).sort(), ['/fails', '/web']);
    assert.match((await d.run(['pod', 'ps'])).stdout, /p1\s+running.*0\.0\.0\.0:18092->8000\/tcp/);

    // Stop and start the pod: the VM goes and comes back with its containers.
    assert.equal((await d.run(['pod', 'stop', 'p1'])).code, 0);
    assert.equal(vmsOf(d), 0);
    assert.equal((await d.run(['inspect', '-f', '{{.State.Running}}', 'web'])).stdout.trim(), 'false');
    assert.equal((await d.run(['pod', 'start', 'p1'])).code, 0);
    assert.equal(await until('the page again', () => fetchText('http://127.0.0.1:18092/').catch(() => undefined), 20_000), 'served-by-p1\n');

    // A running pod is not removed without -f; with -f, nothing is left.
    const refused = await d.run(['pod', 'rm', 'p1']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /running containers/);
    assert.equal((await d.run(['pod', 'rm', '-f', 'p1'])).code, 0);
    assert.equal(vmsOf(d), 0);
    assert.equal((await d.run(['ps', '-aq'])).stdout, '');
    assert.equal((await d.run(['pod', 'ps', '-q'])).stdout, '');
  });

  it('refuses published ports and limits on a pod container, and unknown pods', async () => {
    assert.equal((await d.run(['pod', 'create', '--name', 'p2'])).code, 0);
    const r = await d.run(['run', '-d', '--pod', 'p2', '-p', '18094:80', 'busybox', 'true']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /published by the pod/);
    const limited = await d.run(['run', '-d', '--pod', 'p2', '-m', '64m', 'busybox', 'true']);
    assert.equal(limited.code, 125);
    assert.match(limited.stderr, /share its VM/);
    const missing = await d.run(['run', '--pod', 'nope', 'busybox', 'true']);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /no such pod: nope/);
    assert.equal((await d.run(['pod', 'rm', 'p2'])).code, 0);
    assert.equal((await d.run(['create', '--name', 'solo', 'busybox', 'true'])).code, 0);
    const solo = await d.run(['run', '--network', 'container:solo', 'busybox', 'true']);
    assert.equal(solo.code, 125);
    assert.match(solo.stderr, /not in a pod/);
    assert.equal((await d.run(['rm', 'solo'])).code, 0);
  });

  it('kube play runs a Pod manifest with an init container, emptyDir and hostPath; kube down removes it', async () => {
    const file = path.join(hostDir, 'pod.yaml');
    fs.writeFileSync(file, MANIFEST(hostDir));
    const play = await d.run(['kube', 'play', file]);
    assert.equal(play.code, 0, play.stderr);
    assert.match(play.stdout, /^Pod:\n[0-9a-f]{64}\nContainers:\n[0-9a-f]{64}\n[0-9a-f]{64}\n$/);
    // The client fetched the page the init container wrote into the shared emptyDir.
    assert.equal((await d.run(['wait', 'kp-client'])).stdout.trim(), '0');
    assert.equal(fs.readFileSync(path.join(hostDir, 'page'), 'utf8'), 'made-by-init\n');
    assert.equal((await d.run(['logs', 'kp-client'])).stdout, 'GREETING=hello\n');
    assert.equal((await d.run(['inspect', '-f', '{{.State.ExitCode}}', 'kp-init'])).stdout.trim(), '0');
    assert.equal(await until('the page', () => fetchText('http://127.0.0.1:18093/').catch(() => undefined), 20_000), 'made-by-init\n');
    assert.equal(vmsOf(d), 1);
    const down = await d.run(['kube', 'down', file]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(vmsOf(d), 0);
    assert.equal((await d.run(['ps', '-aq'])).stdout, '');
    assert.doesNotMatch((await d.run(['volume', 'ls', '-q'])).stdout, /kp-shared/);
  });

  it('kube play: a bad manifest or a failing init container is a clear error', async () => {
    const bad = path.join(hostDir, 'bad.yaml');
    fs.writeFileSync(bad, 'apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: a}]}\n');
    const r = await d.run(['kube', 'play', bad]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /spec\.containers\.0\.image/);
    assert.equal((await d.run(['pod', 'ps', '-q'])).stdout, '', 'nothing was created');

    const failing = path.join(hostDir, 'failing.yaml');
    fs.writeFileSync(failing, 'apiVersion: v1\nkind: Pod\nmetadata: {name: f}\nspec:\n  initContainers: [{name: i, image: busybox, command: [sh, -c, "exit 4"]}]\n  containers: [{name: a, image: busybox}]\n');
    const f = await d.run(['kube', 'play', failing]);
    assert.equal(f.code, 125);
    assert.match(f.stderr, /init container f-i exited with 4/);
    assert.equal((await d.run(['ps', '-aq', '--filter', 'name=f-a'])).stdout, '', 'app containers do not start after a failed init');
    assert.equal((await d.run(['kube', 'down', failing])).code, 0);
    assert.equal(vmsOf(d), 0);
  });

  it('a pod outlives a killed daemon (live restore); a stopping daemon stops it', async () => {
    assert.equal((await d.run(['pod', 'create', '--name', 'p3', '-p', '18098:8000'])).code, 0);
    assert.equal((await d.run(['run', '-d', '--pod', 'p3', '--name', 'ticker', 'busybox', 'sh', '-c', 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done'])).code, 0);
    assert.equal((await d.run(['run', '-d', '--pod', 'p3', '--name', 'srv3', 'busybox', 'sh', '-c', SERVER])).code, 0);
    assert.equal((await d.run(['run', '-d', '--pod', 'p3', '--name', 'short', 'busybox', 'sh', '-c', 'sleep 2; exit 5'])).code, 0);
    assert.equal(await until('the page', () => fetchText('http://127.0.0.1:18098/').catch(() => undefined), 20_000), 'served-by-p3\n');
    assert.equal(vmsOf(d), 1);
    await d.restart('SIGKILL');
    await new Promise((r) => setTimeout(r, 2500)); // 'short' exits while nobody watches... or just after
    // The same VM, its containers still running, their output kept, the port proxied again.
    assert.equal(vmsOf(d), 1);
    assert.equal(JSON.parse((await d.run(['pod', 'inspect', 'p3'])).stdout)[0].State.Status, 'running');
    assert.equal((await d.run(['inspect', '-f', '{{.State.Running}}', 'ticker'])).stdout.trim(), 'true');
    assert.equal((await d.run(['exec', 'srv3', 'cat', '/www/index.html'])).stdout, 'served-by-p3\n');
    assert.equal(await until('the page again', () => fetchText('http://127.0.0.1:18098/').catch(() => undefined), 20_000), 'served-by-p3\n');
    assert.equal((await d.run(['wait', 'short'])).stdout.trim(), '5', 'an exit while the daemon was down is not lost');
    const ticks = (await d.run(['logs', 'ticker'])).stdout.trim().split('\n');
    assert.ok(ticks.length >= 6, `ticks kept across the restart: ${ticks.length}`);
    // A daemon that stops (no --live-restore) takes the pod VM down; pod start brings it back.
    await d.restart('SIGTERM');
    assert.equal(vmsOf(d), 0);
    assert.equal(JSON.parse((await d.run(['pod', 'inspect', 'p3'])).stdout)[0].State.Status, 'exited');
    assert.equal((await d.run(['pod', 'start', 'p3'])).code, 0);
    assert.equal((await d.run(['exec', 'ticker', 'true'])).code, 0);
    assert.equal((await d.run(['pod', 'rm', '-f', 'p3'])).code, 0);
    assert.equal(vmsOf(d), 0);
  });
});
