/** Pods and `kube play` (issue 6): several containers in one real VM. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { qemuProcesses, startDaemonWithBusybox, type TestDaemon, until } from './helpers/daemon.js';
import { podManifest } from './helpers/kube.js';
import { fetchText, freePort } from './helpers/net.js';


/** QEMU processes whose command line mentions this daemon's data root. */
function vmsOf(d: TestDaemon): number {
  return qemuProcesses(`${d.dataRoot}/`).length;
}

const SERVER = 'mkdir -p /www && echo served-by-$(hostname) > /www/index.html && exec httpd -f -p 8000 -h /www';

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
    const port = await freePort();
    assert.equal((await d.run(['pod', 'create', '--name', 'p1', '-p', `${port}:8000`])).code, 0);
    // --init: httpd as PID 1 of its namespace would ignore `pod stop`'s SIGTERM (as on Docker)
    const web = await d.run(['run', '-d', '--init', '--pod', 'p1', '--name', 'web', 'busybox', 'sh', '-c', SERVER]);
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
    assert.equal(await until('the page', () => fetchText(`http://127.0.0.1:${port}/`).catch(() => undefined), 20_000), 'served-by-p1\n');
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
    const webNs = await nsOf(['exec', 'web', 'sh', '-c', 'readlink /proc/$(pidof httpd)/ns/mnt']);
    assert.match(webNs, /^mnt:\[\d+\]$/);
    assert.equal(await nsOf(['exec', 'web', 'readlink', '/proc/self/ns/mnt']), (await nsOf(['exec', 'web', 'sh', '-c', 'readlink /proc/$(pidof httpd)/ns/mnt'])));
    const otherNs = await nsOf(['run', '--rm', '--pod', 'p1', 'busybox', 'readlink', '/proc/self/ns/mnt']);
    assert.match(otherNs, /^mnt:\[\d+\]$/);
    assert.notEqual(otherNs, await nsOf(['exec', 'web', 'readlink', '/proc/self/ns/mnt']));
    // PID 1 is the container's own (its init, PID 2 its process); the agent is out of sight.
    assert.match((await d.run(['exec', 'web', 'cat', '/proc/2/cmdline'])).stdout, /^httpd\0-f\0/);
    const inspect = JSON.parse((await d.run(['pod', 'inspect', 'p1'])).stdout)[0];
    assert.equal(inspect.State.Status, 'running');
    assert.deepEqual(inspect.Containers.map((c: { Name: string }) => c.Name).sort(), ['/fails', '/web']);
    assert.match((await d.run(['pod', 'ps'])).stdout, new RegExp(`p1\\s+running.*0\\.0\\.0\\.0:${port}->8000/tcp`));

    // Stop and start the pod: the VM goes and comes back with its containers.
    assert.equal((await d.run(['pod', 'stop', 'p1'])).code, 0);
    assert.equal(vmsOf(d), 0);
    assert.equal((await d.run(['inspect', '-f', '{{.State.Running}}', 'web'])).stdout.trim(), 'false');
    assert.equal((await d.run(['pod', 'start', 'p1'])).code, 0);
    assert.equal(await until('the page again', () => fetchText(`http://127.0.0.1:${port}/`).catch(() => undefined), 20_000), 'served-by-p1\n');

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
    const r = await d.run(['run', '-d', '--pod', 'p2', '-p', `${await freePort()}:80`, 'busybox', 'true']);
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
    const port = await freePort();
    fs.writeFileSync(file, podManifest(hostDir, port));
    const play = await d.run(['kube', 'play', file]);
    assert.equal(play.code, 0, play.stderr);
    assert.match(play.stdout, /^Pod:\n[0-9a-f]{64}\nContainers:\n[0-9a-f]{64}\n[0-9a-f]{64}\n$/);
    // The client fetched the page the init container wrote into the shared emptyDir.
    assert.equal((await d.run(['wait', 'kp-client'])).stdout.trim(), '0');
    assert.equal(fs.readFileSync(path.join(hostDir, 'page'), 'utf8'), 'made-by-init\n');
    assert.equal((await d.run(['logs', 'kp-client'])).stdout, 'GREETING=hello\n');
    assert.equal((await d.run(['inspect', '-f', '{{.State.ExitCode}}', 'kp-init'])).stdout.trim(), '0');
    assert.equal(await until('the page', () => fetchText(`http://127.0.0.1:${port}/`).catch(() => undefined), 20_000), 'made-by-init\n');
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
    const port = await freePort();
    assert.equal((await d.run(['pod', 'create', '--name', 'p3', '-p', `${port}:8000`])).code, 0);
    assert.equal((await d.run(['run', '-d', '--pod', 'p3', '--name', 'ticker', 'busybox', 'sh', '-c', 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done'])).code, 0);
    assert.equal((await d.run(['run', '-d', '--pod', 'p3', '--name', 'srv3', 'busybox', 'sh', '-c', SERVER])).code, 0);
    assert.equal((await d.run(['run', '-d', '--pod', 'p3', '--name', 'short', 'busybox', 'sh', '-c', 'sleep 2; exit 5'])).code, 0);
    assert.equal(await until('the page', () => fetchText(`http://127.0.0.1:${port}/`).catch(() => undefined), 20_000), 'served-by-p3\n');
    assert.equal(vmsOf(d), 1);
    await d.restart('SIGKILL');
    // 'short' exits while nobody watches, or just after: either way its exit is recorded.
    await until('short to be seen exited', async () => (await d.run(['inspect', '-f', '{{.State.Status}}', 'short'])).stdout.trim() === 'exited', 30_000);
    // The same VM, its containers still running, their output kept, the port proxied again.
    assert.equal(vmsOf(d), 1);
    assert.equal(JSON.parse((await d.run(['pod', 'inspect', 'p3'])).stdout)[0].State.Status, 'running');
    assert.equal((await d.run(['inspect', '-f', '{{.State.Running}}', 'ticker'])).stdout.trim(), 'true');
    assert.equal((await d.run(['exec', 'srv3', 'cat', '/www/index.html'])).stdout, 'served-by-p3\n');
    assert.equal(await until('the page again', () => fetchText(`http://127.0.0.1:${port}/`).catch(() => undefined), 20_000), 'served-by-p3\n');
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
