/**
 * bench/critest: cri-tools' CRI validation suite (critest, built by
 * scripts/setup-cri.sh) against a containerd of its own, with runtime handler
 * runc and then hyperbox in one run (issue 16, item 4), and their pass, fail and
 * skip counts side by side, with the names of the specs that failed.
 *
 * No outside registry is reached: critest's images are rewritten under a local
 * registry (`-registry-prefix`) where stand-ins built from the test busybox
 * (build/busybox-rootfs.tar) are pushed with skopeo: see STAND_INS. The pods
 * are on a CNI bridge of the containerd's own (test/helpers/containerd.ts).
 * Usage: node dist/bench/critest.js [ginkgo focus regex] (default: the whole suite)
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { busyboxLayout, criToolsDir, TestContainerd, umoci } from '../test/helpers/containerd.js';
import { TestRegistry } from '../test/helpers/registry.js';

const HANDLERS = ['runc', 'hyperbox'] as const;
const focus = process.argv[2] ?? '';

/** A web server for critest's nginx images: answers 200 on PORT. */
const web = (port: number) => ['sh', '-c', `mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p ${port} -h /www`];

/**
 * What critest pulls (its paths under the registry prefix) and how each stand-in
 * differs from the busybox image: its command, user or environment. The
 * digest-pinned image cannot be stood in for (its digest is of cri-tools' own build).
 */
const STAND_INS: Array<{ repos: string[]; cmd?: string[]; user?: string; env?: string }> = [
  { repos: ['e2e-test-images/busybox:1.29-2'] },
  { repos: ['e2e-test-images/nginx:1.14-2'], cmd: web(80) },
  { repos: ['k8s-staging-cri-tools/hostnet-nginx-amd64:latest'], cmd: web(12003) },
  { repos: ['test-image-latest:latest', 'test-image-tag:test', 'test-image-tag:all', 'test-image-tags:1', 'test-image-tags:2', 'test-image-tags:3'].map((r) => `k8s-staging-cri-tools/${r}`) },
  ...[1, 2, 3].map((n) => ({ repos: [`k8s-staging-cri-tools/test-image-${n}:latest`], env: `TEST_IMAGE=${n}` })),
  ...Object.entries({ uid: '1002', username: 'www-data', 'uid-group': '1003:1004', 'username-group': 'www-data:1004' })
    .map(([suffix, user]) => ({ repos: [`k8s-staging-cri-tools/test-image-user-${suffix}:latest`], user })),
  { repos: ['k8s-staging-cri-tools/test-image-predefined-group:latest'], user: '1000' },
];

interface SpecReport {
  State: string;
  LeafNodeText: string;
  ContainerHierarchyTexts?: string[];
  Failure?: { Message?: string };
}

function pushStandIns(dir: string, registry: string): void {
  const layout = busyboxLayout(dir);
  STAND_INS.forEach((s, i) => {
    const tag = `standin${i}`;
    const cfg = ['config', '--image', `${layout}:latest`, '--tag', tag];
    if (s.cmd) cfg.push('--clear=config.cmd', ...s.cmd.flatMap((a) => ['--config.cmd', a]));
    if (s.user) cfg.push('--config.user', s.user);
    if (s.env) cfg.push('--config.env', s.env);
    umoci(cfg);
    // critest's -registry-prefix keeps an image's path, not its tag: each is pushed as :latest too.
    for (const repo of new Set(s.repos.flatMap((r) => [r, r.replace(/:[^:/]+$/, ':latest')]))) {
      const r = spawnSync('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${registry}/${repo}`], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`skopeo copy to ${repo}: ${r.stderr}`);
    }
  });
}

/** Runs critest for HANDLER; its spec reports (ginkgo's JSON report). */
function critest(ctd: TestContainerd, registry: string, handler: string): { specs: SpecReport[]; seconds: number } {
  const report = path.join(ctd.dir, `critest-${handler}.json`);
  const endpoint = `unix://${ctd.address}`;
  // Pulled with the prefix but run by their own names: the two main images are named as pulled.
  const images = path.join(ctd.dir, 'test-images.yaml');
  fs.writeFileSync(images, `defaultTestContainerImage: ${registry}/e2e-test-images/busybox:latest\nwebServerTestImage: ${registry}/e2e-test-images/nginx:latest\n`);
  const args = ['-runtime-endpoint', endpoint, '-image-endpoint', endpoint, '-runtime-handler', handler, '-registry-prefix', registry, '-test-images-file', images, '-ginkgo.no-color', `-ginkgo.json-report=${report}`];
  if (focus) args.push(`-ginkgo.focus=${focus}`);
  const t0 = performance.now();
  const r = spawnSync(path.join(criToolsDir(), 'critest'), args, { cwd: ctd.dir, encoding: 'utf8', maxBuffer: 256 << 20, timeout: 3_600_000 });
  const seconds = (performance.now() - t0) / 1000;
  fs.writeFileSync(logOf(handler), r.stdout + r.stderr);
  if (!fs.existsSync(report)) throw new Error(`critest (${handler}) wrote no report: ${(r.stdout + r.stderr).slice(-3000)}`);
  const suites = JSON.parse(fs.readFileSync(report, 'utf8')) as Array<{ SpecReports?: SpecReport[] }>;
  return { specs: suites.flatMap((s) => s.SpecReports ?? []).filter((s) => s.LeafNodeText), seconds };
}

/** critest's output for HANDLER, kept after the run. */
const logOf = (handler: string) => path.join(os.tmpdir(), `hyperbox-critest-${handler}.log`);
const name = (s: SpecReport) => [...(s.ContainerHierarchyTexts ?? []), s.LeafNodeText].join(' ');
const count = (specs: SpecReport[], state: string) => specs.filter((s) => s.State === state).length;

const registry = new TestRegistry();
await registry.start();
const ctd = new TestContainerd({ httpRegistry: registry.host });
try {
  pushStandIns(ctd.dir, registry.host);
  await ctd.start();
  // The pod sandbox's image (PAUSE_IMAGE), local: containerd does not pull it then.
  const archive = path.join(ctd.dir, 'busybox-oci.tar');
  spawnSync('tar', ['-C', path.join(ctd.dir, 'oci'), '-cf', archive, '.']);
  const imported = ctd.ctr(['image', 'import', '--base-name', 'docker.io/library/busybox', archive], { namespace: 'k8s.io' });
  if (imported.code !== 0) throw new Error(`ctr image import: ${imported.stderr}`);
  const results = HANDLERS.map((h) => ({ handler: h, ...critest(ctd, registry.host, h) }));
  const failed = new Map(results.map((r) => [r.handler, new Set(r.specs.filter((s) => s.State === 'failed').map(name))]));
  console.log(`critest (cri-tools v1.34.0${focus ? `, focus ${JSON.stringify(focus)}` : ''}), containerd ${spawnSync('containerd', ['--version'], { encoding: 'utf8' }).stdout.split(' ')[2] ?? '?'}:`);
  for (const r of results) {
    console.log(`  ${r.handler.padEnd(9)} ${count(r.specs, 'passed')} passed, ${count(r.specs, 'failed')} failed, ${count(r.specs, 'skipped') + count(r.specs, 'pending')} skipped (${r.seconds.toFixed(0)} s)`);
  }
  for (const r of results) {
    for (const s of r.specs.filter((x) => x.State === 'failed')) {
      const alsoRunc = r.handler === 'hyperbox' && failed.get('runc')!.has(name(s)) ? ' (fails with runc too)' : '';
      console.log(`  FAIL ${r.handler}: ${name(s)}${alsoRunc}\n       ${(s.Failure?.Message ?? '').split('\n').find((l) => l.trim())?.trim().slice(0, 200) ?? ''}`);
    }
  }
  console.log(`  critest's output: ${HANDLERS.map(logOf).join(', ')}`);
} finally {
  await ctd.stop();
  await registry.stop();
}
