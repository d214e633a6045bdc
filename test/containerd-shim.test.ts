/**
 * containerd-shim-hyperbox-v2 under a real containerd (Debian's 1.6, its own
 * root, state and socket) and its own client, ctr: a busybox image imported as
 * an OCI archive runs with `--runtime io.containerd.hyperbox.v2` in a VM the
 * shim owns through the sandbox library; output, exit codes, exec, kill, and
 * a killed shim leaving no QEMU behind; crictl against containerd's CRI plugin;
 * and the binary protocol's start grouping and delete on their own.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '../src/common/paths.js';
import { decode } from '../src/shim/proto.js';
import { busyboxArchive, IMAGE, RUNTIME, shimPids, TestContainerd } from './helpers/containerd.js';
import { countState, CritestBed, specName } from './helpers/critest.js';
import { qemuProcesses, waitFor } from './helpers/daemon.js';


const run = promisify(execFile);
const shim = path.join(repoRoot, 'bin/containerd-shim-hyperbox-v2');

describe('containerd shim v2 (ctr, crictl)', () => {
  const ctd = new TestContainerd();
  let events = '';
  let watcher: ChildProcess | undefined;
  /** The task topics containerd saw for container ID, in order. */
  const topicsOf = (id: string) => events.split('\n').filter((l) => l.includes(`"${id}"`)).map((l) => /\/tasks\/[a-z-]+/.exec(l)?.[0]).filter(Boolean);
  const cri = (args: string[]) => {
    const r = ctd.crictl(args);
    assert.equal(r.code, 0, `crictl ${args.join(' ')}: ${r.stderr}\n${ctd.log().slice(-3000)}`);
    return r.stdout.trim();
  };
  const ok = (args: string[], input?: string) => {
    const r = ctd.ctr(args, { input });
    assert.equal(r.code, 0, `ctr ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  /** Sends SIGNAL to container ID's task, waits for it to stop, and deletes task and container. */
  const stopAndDelete = async (id: string, signal = 'SIGKILL', what = 'the task to stop', timeoutMs = 30_000) => {
    ok(['task', 'kill', '-s', signal, id]);
    await waitFor(() => new RegExp(`${id}\\s+\\d+\\s+STOPPED`).test(ok(['task', 'ls'])), { what, timeoutMs, intervalMs: 200 });
    ok(['task', 'delete', id]);
    ok(['container', 'delete', id]);
  };

  before(async () => {
    await ctd.start();
    const archive = busyboxArchive(ctd.dir);
    ok(['image', 'import', '--base-name', 'docker.io/library/busybox', archive]);
    assert.equal(ctd.ctr(['image', 'import', '--base-name', 'docker.io/library/busybox', archive], { namespace: 'k8s.io' }).code, 0);
    watcher = spawn('ctr', ['--address', ctd.address, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
    watcher.stdout!.on('data', (b: Buffer) => (events += b.toString()));
  });
  after(async () => {
    watcher?.kill();
    if (process.exitCode) process.stderr.write(ctd.log().slice(-4000));
    await ctd.stop();
  });

  it('runs a container: its output and its exit code come through, and --rm leaves nothing', async () => {
    const r = ctd.ctr(['run', '--runtime', RUNTIME, '--rm', IMAGE, 'hello', 'sh', '-c', 'echo hello; echo to-stderr >&2; exit 3']);
    assert.equal(r.stdout, 'hello\n', r.stderr);
    assert.match(r.stderr, /to-stderr/);
    assert.equal(r.code, 3);
    assert.equal(ok(['container', 'ls', '-q']).trim(), '');
    assert.deepEqual(qemuProcesses(ctd.shimState), [], 'the VM is gone with the container');
    // (ctr runs synchronously: the event watcher's output is read once the test yields.)
    await waitFor(() => topicsOf('hello').includes('/tasks/delete'), { what: 'the events', timeoutMs: 5000, intervalMs: 50 });
    assert.deepEqual(topicsOf('hello'), ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'], events);
  });

  it('gives a terminal with -t (ctr run under script(1) for a pty of its own)', () => {
    const cmd = `ctr --address ${ctd.address} -n hbtest run -t --rm --runtime ${RUNTIME} ${IMAGE} tty1 sh -c '[ -t 0 ] && [ -t 1 ] && echo on-a-tty $(tty); exit 5'`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', input: '', timeout: 60_000 });
    assert.match(r.stdout, /on-a-tty \/dev\/pts\/\d+\r/, r.stderr);
    assert.equal(r.status, 5);
  });

  it('passes stdin through and applies the spec (cwd, env, read-only root, hostname)', () => {
    const ro = ctd.ctr(['run', '--rm', '--read-only', '--runtime', RUNTIME, IMAGE, 'rootro', 'sh', '-c', 'touch /x 2>/dev/null || echo read-only; hostname']);
    assert.equal(ro.stdout, 'read-only\nrootro\n', ro.stderr);
    const r = ctd.ctr(['run', '--runtime', RUNTIME, '--rm', '--cwd', '/tmp', '--env', 'GREETING=hi there', IMAGE, 'spec', 'sh', '-c', 'cat; echo "$(pwd) $GREETING $(id -u)"'], { input: 'from stdin\n' });
    assert.equal(r.stdout, 'from stdin\n/tmp hi there 0\n', r.stderr);
    assert.equal(r.code, 0);
  });

  it("applies linux.resources as the container's own cgroup in the guest, reports its OOM kill, and installs its seccomp profile", async () => {
    // cpu.shares 512 is cpu.weight 20 (runc's conversion); ctr sets no pids limit.
    // The container's own cgroup is its /sys/fs/cgroup (a cgroup namespace), as with runc.
    const cg = 'cat /proc/self/cgroup /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight';
    const res = ctd.ctr(['run', '--rm', '--runtime', RUNTIME, '--memory-limit', '33554432', '--cpu-quota', '50000', '--cpu-period', '100000', '--cpu-shares', '512', IMAGE, 'res', 'sh', '-c', cg]);
    assert.equal(res.stdout, '0::/\n33554432\n50000 100000\n20\n', res.stderr);
    // 20 MB of buffer under a 16 MB limit: the guest's memory cgroup kills it; containerd hears TaskOOM, then the exit.
    const oom = ctd.ctr(['run', '--rm', '--runtime', RUNTIME, '--memory-limit', '16777216', IMAGE, 'oomer', 'sh', '-c', 'dd if=/dev/zero of=/dev/null bs=20M']);
    assert.equal(oom.code, 137, oom.stderr);
    await waitFor(() => topicsOf('oomer').includes('/tasks/delete'), { what: 'the events', timeoutMs: 5000, intervalMs: 50 });
    assert.deepEqual(topicsOf('oomer'), ['/tasks/create', '/tasks/start', '/tasks/oom', '/tasks/exit', '/tasks/delete'], events);
    // A profile that blocks chmod (critest's): the filter is on (Seccomp: 2) and chmod fails, for an exec too.
    const profile = path.join(ctd.dir, 'block-chmod.json');
    fs.writeFileSync(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chmod', 'fchmod', 'fchmodat'], action: 'SCMP_ACT_ERRNO' }] }));
    ok(['run', '-d', '--runtime', RUNTIME, '--seccomp', '--seccomp-profile', profile, IMAGE, 'sec', 'sh', '-c', 'grep Seccomp: /proc/self/status > /tmp/status; chmod 400 /tmp/status 2> /tmp/err; exec sleep 600']);
    let out = '';
    let n = 0;
    // (retried until the main process has written both files)
    const expected = /^Seccomp:\s+2\nchmod: \/tmp\/status: Operation not permitted\nchmod: \/tmp: Operation not permitted\n$/;
    const check = () => expected.test((out = ctd.ctr(['task', 'exec', '--exec-id', `s${n++}`, 'sec', 'sh', '-c', 'cat /tmp/status /tmp/err && chmod 400 /tmp 2>&1']).stdout));
    await waitFor(check, { what: 'the seccomp checks', timeoutMs: 20_000, intervalMs: 300 }).catch((err: Error) => assert.fail(`${err.message}; last output ${JSON.stringify(out)}`));
    await stopAndDelete('sec');
  });

  it('delivers a SIGTERM sent while the main process is still starting once it catches it (stop right after start)', async () => {
    // PID 1 of its namespace: the shell drops SIGTERM (no handler); top, exec'd a moment later, catches it.
    ok(['run', '-d', '--runtime', RUNTIME, IMAGE, 'early', 'sh', '-c', 'sleep 2; exec top']);
    await stopAndDelete('early', 'SIGTERM', 'the SIGTERM to reach top', 15_000);
    await waitFor(() => qemuProcesses(ctd.shimState).length === 0 && shimPids(ctd.shimState).length === 0, { what: 'the VM and its shim to go', timeoutMs: 30_000, intervalMs: 200 });
  });

  it('execs in a running container, kills it, and a killed shim leaves no QEMU', async () => {
    ok(['run', '-d', '--runtime', RUNTIME, IMAGE, 'long', 'sh', '-c', 'echo started > /tmp/mark; sleep 600']);
    const e = ctd.ctr(['task', 'exec', '--exec-id', 'e1', 'long', 'sh', '-c', 'until [ -f /tmp/mark ]; do sleep 1; done; cat /tmp/mark; exit 4']);
    assert.equal(e.stdout, 'started\n', e.stderr);
    assert.equal(e.code, 4);
    const u = ctd.ctr(['task', 'exec', '--exec-id', 'e2', '--user', '1000', '--cwd', '/etc', 'long', 'sh', '-c', 'echo $(pwd) $(id -u)']);
    assert.equal(u.stdout, '/etc 1000\n', u.stderr);
    assert.match(ok(['task', 'ls']), /long\s+\d+\s+RUNNING/);
    ok(['task', 'pause', 'long']);
    assert.match(ok(['task', 'ls']), /long\s+\d+\s+PAUSED/);
    ok(['task', 'resume', 'long']);
    // Metrics from the guest's process table: the container's processes (here its one sleep).
    const metrics = ok(['task', 'metrics', 'long']);
    assert.match(metrics, /pids\.current\s+1\s/);
    assert.ok(Number(/memory\.usage\s+(\d+)/.exec(metrics)?.[1]) > 0, metrics);

    ok(['task', 'kill', '-s', 'SIGKILL', 'long']);
    await waitFor(() => /long\s+\d+\s+STOPPED/.test(ok(['task', 'ls'])), { what: 'the task to stop', timeoutMs: 30_000, intervalMs: 200 });
    ok(['task', 'delete', 'long']);
    await waitFor(() => topicsOf('long').includes('/tasks/delete'), { what: 'the events', timeoutMs: 5000, intervalMs: 50 });
    assert.deepEqual(topicsOf('long'), ['/tasks/create', '/tasks/start', '/tasks/exec-added', '/tasks/exec-started', '/tasks/exit', '/tasks/exec-added', '/tasks/exec-started', '/tasks/exit', '/tasks/paused', '/tasks/resumed', '/tasks/exit', '/tasks/delete'], events);
    ok(['container', 'delete', 'long']);
    await waitFor(() => qemuProcesses(ctd.shimState).length === 0, { what: 'the VM to go with its shim', timeoutMs: 30_000, intervalMs: 200 });

    // A VM that dies ends its container's task: killed, reported, and deletable.
    ok(['run', '-d', '--runtime', RUNTIME, IMAGE, 'vmdies', 'sleep', '600']);
    const [vm] = qemuProcesses(ctd.shimState);
    process.kill(vm!, 'SIGKILL');
    await waitFor(() => /vmdies\s+\d+\s+STOPPED/.test(ok(['task', 'ls'])), { what: 'the task of the dead VM to stop', timeoutMs: 30_000, intervalMs: 200 });
    ok(['task', 'delete', 'vmdies']);
    ok(['container', 'delete', 'vmdies']);
    await waitFor(() => shimPids(ctd.shimState).length === 0, { what: 'its shim to exit', timeoutMs: 30_000, intervalMs: 200 });

    ok(['run', '-d', '--runtime', RUNTIME, IMAGE, 'orphan', 'sleep', '600']);
    const [shim] = shimPids(ctd.shimState);
    assert.ok(shim, 'the shim serves the container');
    assert.equal(qemuProcesses(ctd.shimState).length, 1);
    process.kill(shim, 'SIGKILL');
    await waitFor(() => qemuProcesses(ctd.shimState).length === 0, { what: "containerd's delete to stop the dead shim's VM", timeoutMs: 30_000, intervalMs: 200 });
    await waitFor(() => fs.readdirSync(path.join(ctd.shimState, 'pods')).length === 0, { what: 'the pod directory to be removed', timeoutMs: 10_000, intervalMs: 100 });
  });

  it('keeps running tasks across a containerd restart: it reconnects to their shim', async () => {
    ok(['run', '-d', '--runtime', RUNTIME, IMAGE, 'survivor', 'sleep', '600']);
    const [vm] = qemuProcesses(ctd.shimState);
    await ctd.restart();
    assert.match(ok(['task', 'ls']), /survivor\s+\d+\s+RUNNING/);
    assert.deepEqual(qemuProcesses(ctd.shimState), [vm]);
    assert.equal(ctd.ctr(['task', 'exec', '--exec-id', 'after', 'survivor', 'echo', 'still here']).stdout, 'still here\n');
    await stopAndDelete('survivor');
    // The shim exits after its VM: the next test counts shims.
    await waitFor(() => qemuProcesses(ctd.shimState).length === 0 && shimPids(ctd.shimState).length === 0, { what: 'the VM and its shim to go', timeoutMs: 30_000, intervalMs: 200 });
  });

  it('runs a pod through the CRI plugin with runtime handler hyperbox (crictl runp, create, start, exec, logs, stats, stop, rm)', async () => {
    const logs = path.join(ctd.dir, 'pod-logs');
    const podJson = path.join(ctd.dir, 'pod.json');
    const ctrJson = path.join(ctd.dir, 'ctr.json');
    // The node's network (NODE); the next test has pods on CNI's.
    fs.writeFileSync(podJson, JSON.stringify({ metadata: { name: 'hbpod', namespace: 'default', uid: 'hbpod-uid', attempt: 0 }, log_directory: logs, linux: { security_context: { namespace_options: { network: 2 } } } }));
    fs.writeFileSync(ctrJson, JSON.stringify({ metadata: { name: 'app' }, image: { image: IMAGE }, command: ['sh', '-c', 'echo hello from the pod; exec sleep 600'], log_path: 'app.log', linux: { security_context: { supplemental_groups: [1234] } } }));
    const pod = cri(['runp', '--runtime', 'hyperbox', podJson]);
    const ctr = cri(['create', pod, ctrJson, podJson]);
    cri(['start', ctr]);
    assert.equal(shimPids(ctd.shimState).length, 1, 'one shim serves the pod sandbox and its container');
    assert.equal(qemuProcesses(ctd.shimState).length, 1, 'one VM for the pod');
    await waitFor(() => /hello from the pod/.test(ctd.crictl(['logs', ctr]).stdout), { what: 'the container log', timeoutMs: 20_000, intervalMs: 200 });
    // The exec joins the app container (its PID 1 is the app's sleep, not the sandbox's), and
    // CRI's file binds (/etc/hostname: the node's name, with the node's network) are in place,
    // and the supplemental groups (OCI additionalGids) are the process's.
    assert.equal(cri(['exec', ctr, 'sh', '-c', 'echo $(tr "\\0" " " </proc/1/cmdline) / $(cat /etc/hostname) / $(id -G)']), `sleep 600 / ${os.hostname()} / 0 1234`);
    const stats = JSON.parse(cri(['stats', '-o', 'json', '--id', ctr])) as { stats: Array<{ memory: { workingSetBytes: { value: string } } }> };
    assert.ok(Number(stats.stats[0]!.memory.workingSetBytes.value) > 0, JSON.stringify(stats));
    // Update: new resources in the guest, on the running container's cgroup.
    cri(['update', '--memory', '100003840', '--cpu-quota', '20000', '--cpu-period', '100000', ctr]);
    assert.equal(cri(['exec', ctr, 'cat', '/proc/self/cgroup', '/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/cpu.max']), '0::/\n100003840\n20000 100000');
    cri(['stop', '--timeout', '0', ctr]);
    cri(['rm', ctr]);
    cri(['stopp', pod]);
    cri(['rmp', pod]);
    await waitFor(() => qemuProcesses(ctd.shimState).length === 0 && shimPids(ctd.shimState).length === 0, { what: 'the pod VM and shim to go', timeoutMs: 30_000, intervalMs: 200 });
  });

  it('puts each pod in the network namespace CNI prepared: its address, and one pod reaches another', async () => {
    /** A pod on the test containerd's CNI bridge running COMMAND in container "app": [pod id, container id, pod IP]. */
    const runPod = (name: string, command: string[]): [string, string, string] => {
      const podJson = path.join(ctd.dir, `${name}.json`);
      const ctrJson = path.join(ctd.dir, `${name}-app.json`);
      fs.writeFileSync(podJson, JSON.stringify({ metadata: { name, namespace: 'default', uid: `${name}-uid`, attempt: 0 }, hostname: name, log_directory: path.join(ctd.dir, `${name}-logs`) }));
      fs.writeFileSync(ctrJson, JSON.stringify({ metadata: { name: 'app' }, image: { image: IMAGE }, command, log_path: 'app.log' }));
      const pod = cri(['runp', '--runtime', 'hyperbox', podJson]);
      const ctr = cri(['create', pod, ctrJson, podJson]);
      cri(['start', ctr]);
      const ip = (JSON.parse(cri(['inspectp', '-o', 'json', pod])) as { status: { network: { ip: string } } }).status.network.ip;
      return [pod, ctr, ip];
    };
    const [serverPod, , serverIp] = runPod('server', ['sh', '-c', 'mkdir -p /www && echo pong from $(hostname) > /www/ping && exec httpd -f -p 8080 -h /www']);
    const [clientPod, client, clientIp] = runPod('client', ['sleep', '600']);
    const subnet = ctd.cniSubnet.replace(/0\/24$/, '');
    assert.ok(serverIp.startsWith(subnet) && clientIp.startsWith(subnet) && serverIp !== clientIp, `${serverIp} ${clientIp} in ${ctd.cniSubnet}`);
    assert.equal(qemuProcesses(ctd.shimState).length, 2, 'one VM per pod');
    // The guest's eth0 has the address CNI gave the pod, with CNI's gateway as its default route.
    assert.match(cri(['exec', client, 'ip', '-4', '-o', 'addr', 'show', 'eth0']), new RegExp(`inet ${clientIp.replace(/\./g, '\\.')}/24 `));
    assert.match(cri(['exec', client, 'ip', 'route']), new RegExp(`default via ${subnet}1 `));
    // Pod to pod over the bridge: HTTP to the server pod's address (retried while httpd starts;
    // this busybox's wget crashes with -T).
    let got = '';
    await waitFor(() => (got = ctd.crictl(['exec', client, 'wget', '-qO-', `http://${serverIp}:8080/ping`]).stdout) !== '', { what: 'the server pod to answer', timeoutMs: 30_000, intervalMs: 500 });
    assert.equal(got, 'pong from server\n');
    for (const pod of [clientPod, serverPod]) {
      cri(['stopp', pod]);
      cri(['rmp', pod]);
    }
    await waitFor(() => qemuProcesses(ctd.shimState).length === 0 && shimPids(ctd.shimState).length === 0, { what: 'the pod VMs and shims to go', timeoutMs: 30_000, intervalMs: 200 });
  });
});

describe('critest with runtime handler hyperbox (a focused subset; bench/critest runs it all)', () => {
  const bed = new CritestBed();
  before(() => bed.start());
  after(() => bed.stop());

  // Pod sandboxes, their networking (DNS config, hostname, CNI address, CRI port mapping through
  // CNI's portmap to the VM) and containers' basic lifecycle and exec; and what the guest applies
  // of the OCI spec's linux section: the OOM kill of a memory limit (reason OOMKilled), pod
  // sysctls, read-only paths, seccomp profiles (7 specs), a read-only volume whose submount stays
  // writable, and a privileged container making a bridge.
  const FOCUS = [
    'basic operations on PodSandbox', 'Networking runtime', 'runtime should support basic operations on container runtime should support (creating|starting) container', 'exec with tty=false',
    'reason OOMKilled', 'runtime should support sysctls', 'runtime should support (ReadonlyPaths|Privileged is true)', 'SeccompProfilePath', 'should support non-recursive readonly mounts',
  ].join('|');
  it('passes every spec of the subset', () => {
    const run = bed.run('hyperbox', FOCUS);
    const failed = run.specs.filter((s) => s.State === 'failed').map((s) => `${specName(s)}: ${s.Failure?.Message}`);
    assert.deepEqual(failed, [], run.output.slice(-4000));
    assert.equal(countState(run.specs, 'passed'), 10 + 1 + 2 + 2 + 7 + 1, 'the subset ran');
  });
});

describe('containerd shim binary protocol (no containerd, no VM)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbshimbin-'));
  const env = { ...process.env, HYPERBOX_SHIM_STATE: path.join(dir, 'state') };
  const served = () => fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((e) => {
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8');
      return cmd.includes(shim) && cmd.includes(`${dir}/`) && cmd.endsWith('serve\0');
    } catch {
      return false;
    }
  }).map(Number);
  after(async () => {
    for (const pid of served()) process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && served().length; i++) await new Promise((r) => setTimeout(r, 50));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const bundle = (id: string, sandbox: string) => {
    const b = path.join(dir, 'bundles', id);
    fs.mkdirSync(b, { recursive: true });
    fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify({ process: { args: ['true'] }, annotations: { 'io.kubernetes.cri.sandbox-id': sandbox } }));
    return b;
  };
  const shimRun = (b: string, id: string, action: string) =>
    run(shim, ['-namespace', 'ns', '-address', path.join(dir, 'no-containerd.sock'), '-publish-binary', '/bin/false', '-id', id, ...(action === 'delete' ? ['-bundle', b] : []), action], { cwd: b, env, encoding: 'buffer' });

  it('starts one shim per pod, whoever asks first, and prints only its address', async () => {
    const [a, b] = await Promise.all([shimRun(bundle('a', 'pod1'), 'a', 'start'), shimRun(bundle('b', 'pod1'), 'b', 'start')]);
    assert.match(a.stdout.toString(), /^unix:\/\/\/.*\/shim\.sock$/);
    assert.equal(b.stdout.toString(), a.stdout.toString());
    assert.equal(a.stderr.length + b.stderr.length, 0);
    assert.equal(served().length, 1);
    const other = await shimRun(bundle('c', 'pod2'), 'c', 'start');
    assert.notEqual(other.stdout.toString(), a.stdout.toString());
    assert.equal(served().length, 2);
  });

  it('delete answers a DeleteResponse, again and again, and leaves a live pod shim alone', async () => {
    for (let i = 0; i < 2; i++) {
      const { stdout } = await shimRun(path.join(dir, 'bundles', 'a'), 'a', 'delete');
      const res = decode<{ exit_status: number; exited_at: { seconds: number } }>('containerd.task.v2.DeleteResponse', stdout);
      assert.equal(res.exit_status, 137);
      assert.ok(res.exited_at.seconds > 0);
    }
    assert.equal(served().length, 2);
    await assert.rejects(shimRun(path.join(dir, 'bundles', 'a'), 'a', 'frobnicate'), /unknown action "frobnicate"/);
  });
});
