/**
 * The Docker SDK for Python (docker 7.1, the third big client after the docker
 * CLI and dockerode) against hyperboxd: the flows of test/py/sdk_flows.py, each
 * reported as its own test. Setup installs the SDK in a virtualenv at build/pysdk.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { repo, startDaemonWithBusybox, type TestDaemon } from './helpers/daemon.js';
import { dockerEnv } from './helpers/docker.js';

const python = path.join(repo, 'build/pysdk/bin/python');
const script = path.join(repo, 'test/py/sdk_flows.py');

/** The flows, in the order the script runs them (each test below checks its own). */
const FLOWS: Record<string, string> = {
  run_and_logs: 'run with output and exit codes',
  create_options: 'create options: group_add, init, stop_timeout, mac_address, hostname, labels',
  volumes_from_and_links: 'volumes_from (rw and ro) and legacy links',
  pid_and_uts_modes: 'pid_mode/uts_mode host or container: refused clearly',
  unknown_log_driver_refused: 'an unknown log driver is refused at create',
  exec_tty_and_stream: 'exec with a tty, streamed, demuxed, exit codes',
  attach_detach_keys: 'attach with detach keys leaves the container running',
  stats_once: 'stats without streaming (and one_shot)',
  prune: 'container, image, network and volume prune',
  update_container: 'update of the restart policy',
  commit_with_changes_and_diff: 'diff, then commit with changes, message and author',
  import_and_load_round_trip: 'export, import, save and load round trips',
  put_get_archive: 'put_archive and get_archive',
  events_and_top: 'top, pause, unpause, rename, kill',
  logs_follow_tail_timestamps: 'logs: follow, tail, one stream, timestamps, since',
  list_with_filters: 'containers.list with label, status, name and ancestor filters; get of a missing one is NotFound',
  networks_and_aliases: 'a user network: names resolve, inspect lists members, list filters by label',
  volumes_lifecycle: 'a named volume: labels, rw then ro use, list filter, removal',
  exec_env_workdir_user: 'exec with environment, workdir and user; a missing binary',
  restart_policy_on_failure: 'restart policy on-failure with a retry count',
  image_history_and_tags: 'image history, tag, list by name, remove',
};

interface FlowResult {
  flow: string;
  ok: boolean;
  error?: string;
  where?: string[];
  secs?: number;
}

function runFlows(d: TestDaemon): Promise<{ results: Map<string, FlowResult>; stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [script, ...Object.keys(FLOWS)], { env: dockerEnv(d), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`the SDK flows timed out: ${out}\n${stderr}`))), 600_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const results = new Map<string, FlowResult>();
      for (const line of out.split('\n').filter(Boolean)) {
        const r = JSON.parse(line) as FlowResult;
        results.set(r.flow, r);
      }
      resolve({ results, stderr, code: code ?? -1 });
    });
  });
}

describe('Docker SDK for Python', () => {
  let d: TestDaemon;
  let run: Awaited<ReturnType<typeof runFlows>>;
  before(async () => {
    d = await startDaemonWithBusybox();
    run = await runFlows(d);
  });
  after(async () => {
    await d?.stop();
  });

  for (const [flow, what] of Object.entries(FLOWS)) {
    it(what, () => {
      const r = run.results.get(flow);
      assert.ok(r, `flow ${flow} did not report (python stderr: ${run.stderr.slice(-2000)})`);
      assert.ok(r.ok, `${r.error}\n${(r.where ?? []).join('\n')}`);
    });
  }

  it('reports every flow and exits 0 only when all passed', () => {
    assert.equal(run.results.size, Object.keys(FLOWS).length, run.stderr.slice(-2000));
    assert.equal(run.code, [...run.results.values()].every((r) => r.ok) ? 0 : 1);
  });
});
