/**
 * critest (cri-tools' CRI validation suite, built by scripts/setup-cri.sh)
 * against a containerd of its own, without any outside registry: critest's
 * images are rewritten under a local registry (`-registry-prefix`) where
 * stand-ins built from the test busybox (build/busybox-rootfs.tar) are pushed
 * with skopeo (see STAND_INS). Pods are on the containerd's CNI bridge.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { busyboxLayout, criToolsDir, TestContainerd, umoci } from './containerd.js';
import { TestRegistry } from './registry.js';

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

/** Images some specs run by their original names (not under the prefix): tagged locally from the stand-ins. */
const ORIGINAL_NAMES: Array<[string, string]> = [
  ['e2e-test-images/nginx:1.14-2', 'registry.k8s.io/e2e-test-images/nginx:1.14-2'],
  ['e2e-test-images/nginx:1.14-2', 'registry.k8s.io/e2e-test-images/httpd:2.4.39-4'],
  ['k8s-staging-cri-tools/hostnet-nginx-amd64:latest', 'gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest'],
];

export interface SpecReport {
  State: string;
  LeafNodeText: string;
  ContainerHierarchyTexts?: string[];
  Failure?: { Message?: string };
}

export interface CritestRun {
  specs: SpecReport[];
  seconds: number;
  output: string;
}

/** A spec's full name, as critest prints it. */
export const specName = (s: SpecReport) => [...(s.ContainerHierarchyTexts ?? []), s.LeafNodeText].join(' ');
export const countState = (specs: SpecReport[], ...states: string[]) => specs.filter((s) => states.includes(s.State)).length;

export class CritestBed {
  readonly registry = new TestRegistry();
  ctd: TestContainerd | undefined;

  async start(): Promise<TestContainerd> {
    await this.registry.start();
    const ctd = (this.ctd = new TestContainerd({ httpRegistry: this.registry.host }));
    const layout = busyboxLayout(ctd.dir);
    this.pushStandIns(layout);
    await ctd.start();
    // The pod sandbox's image (PAUSE_IMAGE), local: containerd does not pull it then.
    const archive = path.join(ctd.dir, 'busybox-oci.tar');
    spawnSync('tar', ['-C', layout, '-cf', archive, '.']);
    const imported = ctd.ctr(['image', 'import', '--base-name', 'docker.io/library/busybox', archive], { namespace: 'k8s.io' });
    if (imported.code !== 0) throw new Error(`ctr image import: ${imported.stderr}`);
    for (const [repo, name] of ORIGINAL_NAMES) {
      const ref = `${this.registry.host}/${repo}`;
      for (const args of [['image', 'pull', '--plain-http', ref], ['image', 'tag', ref, name]]) {
        const r = ctd.ctr(args, { namespace: 'k8s.io' });
        if (r.code !== 0) throw new Error(`ctr ${args.join(' ')}: ${r.stderr}`);
      }
    }
    return ctd;
  }

  private pushStandIns(layout: string): void {
    STAND_INS.forEach((s, i) => {
      const tag = `standin${i}`;
      const cfg = ['config', '--image', `${layout}:latest`, '--tag', tag];
      if (s.cmd) cfg.push('--clear=config.cmd', ...s.cmd.flatMap((a) => ['--config.cmd', a]));
      if (s.user) cfg.push('--config.user', s.user);
      if (s.env) cfg.push('--config.env', s.env);
      umoci(cfg);
      // critest's -registry-prefix keeps an image's path, not its tag: each is pushed as :latest too.
      for (const repo of new Set(s.repos.flatMap((r) => [r, r.replace(/:[^:/]+$/, ':latest')]))) {
        const r = spawnSync('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${this.registry.host}/${repo}`], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`skopeo copy to ${repo}: ${r.stderr}`);
      }
    });
  }

  /** Runs critest with runtime handler HANDLER (specs matching FOCUS, or all): ginkgo's spec reports. */
  run(handler: string, focus = ''): CritestRun {
    const ctd = this.ctd!;
    const registry = this.registry.host;
    const report = path.join(ctd.dir, `critest-${handler}.json`);
    const endpoint = `unix://${ctd.address}`;
    // Pulled with the prefix but run by their own names: the two main images are named as pulled.
    const images = path.join(ctd.dir, 'test-images.yaml');
    fs.writeFileSync(images, `defaultTestContainerImage: ${registry}/e2e-test-images/busybox:latest\nwebServerTestImage: ${registry}/e2e-test-images/nginx:latest\n`);
    const args = ['-runtime-endpoint', endpoint, '-image-endpoint', endpoint, '-runtime-handler', handler, '-registry-prefix', registry, '-test-images-file', images, '-ginkgo.no-color', `-ginkgo.json-report=${report}`];
    if (focus) args.push(`-ginkgo.focus=${focus}`);
    fs.rmSync(report, { force: true });
    const t0 = performance.now();
    const r = spawnSync(path.join(criToolsDir(), 'critest'), args, { cwd: ctd.dir, encoding: 'utf8', maxBuffer: 256 << 20, timeout: 3_600_000 });
    const seconds = (performance.now() - t0) / 1000;
    const output = (r.stdout ?? '') + (r.stderr ?? '');
    if (!fs.existsSync(report)) throw new Error(`critest (${handler}) wrote no report: ${output.slice(-3000)}`);
    const suites = JSON.parse(fs.readFileSync(report, 'utf8')) as Array<{ SpecReports?: SpecReport[] }>;
    return { specs: suites.flatMap((s) => s.SpecReports ?? []).filter((s) => s.LeafNodeText), seconds, output };
  }

  async stop(): Promise<void> {
    await this.ctd?.stop();
    await this.registry.stop();
  }
}
