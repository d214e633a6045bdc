/**
 * Docker Compose against hyperboxd, both generations users run: v2 (the docker
 * CLI's `compose` plugin, built by setup at a pinned version) and Debian's
 * docker-compose 1.29 (Python, docker-py). One project: a service built from a
 * Dockerfile, a second from an image, a network, a named volume both mount,
 * depends_on, a published port; then ps, logs, exec by service name and down -v.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, type RunResult, type TestDaemon, until } from './helpers/daemon.js';
import { docker, dockerEnv } from './helpers/docker.js';
import { fetchText, freePort } from './helpers/net.js';

const composeFile = (port: number) => `
services:
  web:
    build: ./web
    ports: ["127.0.0.1:${port}:8080"]
    networks: [back]
    volumes: [data:/shared]
    depends_on: [store]
  store:
    image: busybox
    command: ["sh", "-c", "echo kept by store > /data/note; echo store is up; exec httpd -f -p 80 -h /data"]
    networks: [back]
    volumes: [data:/data]
networks:
  back: {}
volumes:
  data: {}
`;

const dockerfile = `FROM busybox
RUN mkdir /www && echo built by compose > /www/index.html
COPY greeting.txt /www/
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
`;

interface Tool {
  name: string;
  argv: string[];
}

const tools: Tool[] = [
  { name: 'docker compose v2', argv: ['docker', 'compose'] },
  { name: 'docker-compose 1.29', argv: ['docker-compose'] },
];

function run(d: TestDaemon, tool: Tool, dir: string, project: string, args: string[], timeoutMs = 240_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...pre] = tool.argv;
    // Compose v2 builds through BuildKit unless told otherwise; hyperbox has the classic builder.
    const env = { ...dockerEnv(d), DOCKER_BUILDKIT: '0', COMPOSE_BAKE: 'false', COMPOSE_PROJECT_NAME: project };
    const child = spawn(cmd!, [...pre, ...args], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${tool.name} ${args.join(' ')} timed out; stdout=${stdout} stderr=${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

describe('docker compose', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemonWithBusybox();
  });
  after(async () => {
    await d?.stop();
  });

  for (const [i, tool] of tools.entries()) {
    it(`${tool.name}: up with build:, networks, a named volume, depends_on and ports; ps, logs, exec, down -v`, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-compose-'));
      const project = `hbproj${i}`;
      const port = await freePort('127.0.0.1');
      try {
        fs.writeFileSync(path.join(dir, 'compose.yaml'), composeFile(port));
        fs.mkdirSync(path.join(dir, 'web'));
        fs.writeFileSync(path.join(dir, 'web', 'Dockerfile'), dockerfile);
        fs.writeFileSync(path.join(dir, 'web', 'greeting.txt'), `hello from ${tool.name}\n`);
        // docker-compose 1.29 knows only the old file name.
        fs.copyFileSync(path.join(dir, 'compose.yaml'), path.join(dir, 'docker-compose.yml'));
        fs.rmSync(path.join(dir, 'compose.yaml'));

        const up = await run(d, tool, dir, project, ['up', '-d', '--build']);
        assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);

        // The built service serves its image's files on the published port.
        assert.equal(await until('the web service to answer', () => fetchText(`http://127.0.0.1:${port}/index.html`).catch(() => undefined), 60_000), 'built by compose\n');
        assert.equal(await fetchText(`http://127.0.0.1:${port}/greeting.txt`), `hello from ${tool.name}\n`);

        const ps = await run(d, tool, dir, project, ['ps']);
        assert.equal(ps.code, 0, ps.stderr);
        assert.match(ps.stdout, /web/);
        assert.match(ps.stdout, /store/);
        assert.match(ps.stdout, /Up/);

        // Service names resolve on the project's network; the volume is shared.
        const exec = await run(d, tool, dir, project, ['exec', '-T', 'web', 'sh', '-c', 'wget -qO- http://store/note; cat /shared/note']);
        assert.equal(exec.code, 0, exec.stderr);
        assert.equal(exec.stdout, 'kept by store\nkept by store\n');

        const logs = await run(d, tool, dir, project, ['logs', 'store']);
        assert.equal(logs.code, 0, logs.stderr);
        assert.match(logs.stdout, /store is up/);

        const volumes = await docker(d, ['volume', 'ls', '--format', '{{.Name}}']);
        assert.match(volumes.stdout, new RegExp(`^${project}_data$`, 'm'));
        const down = await run(d, tool, dir, project, ['down', '-v']);
        assert.equal(down.code, 0, down.stderr);
        const left = await docker(d, ['ps', '-a', '--filter', `label=com.docker.compose.project=${project}`, '--format', '{{.Names}}']);
        assert.equal(left.stdout, '', 'down removes the containers');
        assert.doesNotMatch((await docker(d, ['volume', 'ls', '--format', '{{.Name}}'])).stdout, new RegExp(`^${project}_data$`, 'm'), 'down -v removes the volume');
        assert.doesNotMatch((await docker(d, ['network', 'ls', '--format', '{{.Name}}'])).stdout, new RegExp(`^${project}_back$`, 'm'), 'down removes the network');
      } finally {
        await run(d, tool, dir, project, ['down', '-v', '--rmi', 'local'], 120_000).catch(() => undefined);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
