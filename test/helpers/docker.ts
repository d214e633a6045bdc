/** Runs the installed `docker` CLI (client only) against a hyperbox test daemon. */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RunResult, TestDaemon } from './daemon.js';

const dockerConfig = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-docker-config-'));
process.once('exit', () => fs.rmSync(dockerConfig, { recursive: true, force: true }));

export function dockerEnv(d: TestDaemon): NodeJS.ProcessEnv {
  // Own config dir: nothing from the user's ~/.docker (contexts, credential helpers) leaks in.
  return { ...process.env, DOCKER_HOST: d.host, DOCKER_CONFIG: dockerConfig, DOCKER_CLI_HINTS: 'false' };
}

export function docker(d: TestDaemon, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('docker', args, { env: { ...dockerEnv(d), ...opts.env }, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c) => (stdout += c));
    child.stderr!.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`docker ${args.join(' ')} timed out; stdout=${stdout} stderr=${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}
