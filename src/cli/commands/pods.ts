/**
 * `pod create/start/stop/rm/ps/inspect` and `kube play/down`: Hyper's pods, one
 * VM with several containers sharing its network and IPC, each with its own root.
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import { POD_LABEL } from '../../common/labels.js';
import { ApiError } from '../client.js';
import { type Act, ago, api, collect, forEach, inspectEach, parseLabels } from '../context.js';
import { ExitError } from '../exit-error.js';
import { renderTemplate, table } from '../format.js';
import type { PodPlan } from '../kube/manifest.js';
import { parsePublish } from './containers.js';
import { pullImage } from './registry.js';


interface PodView {
  Id: string;
  Name: string;
  Created: string;
  State: { Status: string };
  Ports: Record<string, Array<{ HostIp: string; HostPort: string }> | null>;
  VmPid: number;
  Containers: Array<{ Id: string; Name: string; State: string; ExitCode: number }>;
}

function portsText(ports: PodView['Ports']): string {
  return Object.entries(ports)
    .flatMap(([k, l]) => (l ?? []).map((b) => `${b.HostIp || '0.0.0.0'}:${b.HostPort}->${k}`))
    .join(', ');
}

async function ensureImage(image: string): Promise<void> {
  try {
    await api('GET', `/images/${encodeURIComponent(image)}/json`);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err;
    process.stderr.write(`pulling ${image}\n`);
    await pullImage(image, { quiet: true });
  }
}

async function createIn(plan: PodPlan['containers'][number]): Promise<string> {
  await ensureImage(plan.body.Image as string);
  const r = await api<{ Id: string }>('POST', '/containers/create', { query: { name: plan.name }, body: plan.body });
  return r.Id;
}

async function play(plan: PodPlan): Promise<void> {
  const pod = await api<{ Id: string }>('POST', '/hyperbox/pods', { body: plan.pod });
  for (const v of plan.emptyDirs) await api('POST', '/volumes/create', { body: { Name: v, Labels: { [POD_LABEL]: plan.pod.Name } } });
  // Init containers run one at a time, in order, and each must succeed.
  for (const c of plan.init) {
    const id = await createIn(c);
    await api('POST', `/containers/${id}/start`);
    const r = await api<{ StatusCode: number }>('POST', `/containers/${id}/wait`);
    if (r.StatusCode !== 0) {
      throw new ExitError(125, `init container ${c.name} exited with ${r.StatusCode}: see 'hyperbox logs ${c.name}'; 'hyperbox kube down' removes the pod`);
    }
  }
  const ids: string[] = [];
  for (const c of plan.containers) ids.push(await createIn(c));
  for (const id of ids) await api('POST', `/containers/${id}/start`);
  process.stdout.write(`Pod:\n${pod.Id}\nContainers:\n${ids.join('\n')}\n`);
}

/** Loaded on use: YAML and schema validation cost the other commands' start-up time. */
async function readPlans(file: string): Promise<PodPlan[]> {
  const { ManifestError, parseManifests, planPod } = await import('../kube/manifest.js');
  let text: string;
  try {
    text = fs.readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new ExitError(125, `cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return parseManifests(text, file).map((m) => planPod(m, POD_LABEL));
  } catch (err) {
    if (err instanceof ManifestError) throw new ExitError(125, err.message);
    throw err;
  }
}

export function registerPodCommands(program: Command, act: Act): void {
  const pod = program.command('pod').description('manage pods (several containers in one VM)');
  pod
    .command('create')
    .description('create a pod; add containers with run --pod NAME')
    .option('--name <name>', 'pod name')
    .option('--hostname <name>', 'host name of the pod VM')
    .option('-p, --publish <[ip:]hostPort:containerPort[/proto]>', "publish a port of the pod's VM to the host", collect)
    .option('-l, --label <key=value>', 'set metadata on the pod', collect)
    .option('--network <name>', 'a user-defined network for the pod VM (default: user-mode networking)')
    .action(
      act(async (o: { name?: string; hostname?: string; publish?: string[]; label?: string[]; network?: string }) => {
        const labels = parseLabels(o.label);
        const r = await api<{ Id: string }>('POST', '/hyperbox/pods', {
          body: { Name: o.name, Hostname: o.hostname, PortBindings: parsePublish(o.publish ?? []).bindings, Labels: labels, NetworkMode: o.network },
        });
        process.stdout.write(`${r.Id}\n`);
        return 0;
      }),
    );
  pod
    .command('start')
    .description("start pods (their VM and containers)")
    .argument('<pod...>')
    .action(act(async (pods: string[]) => forEach(pods, async (p) => void (await api('POST', `/hyperbox/pods/${encodeURIComponent(p)}/start`)))));
  pod
    .command('stop')
    .description('stop the containers of pods and their VM')
    .option('-t, --time <seconds>', 'seconds to wait before killing the containers')
    .argument('<pod...>')
    .action(
      act(async (pods: string[], o: { time?: string }) =>
        forEach(pods, async (p) => void (await api('POST', `/hyperbox/pods/${encodeURIComponent(p)}/stop`, { query: { t: o.time } }))),
      ),
    );
  pod
    .command('rm')
    .description('remove pods and their containers')
    .option('-f, --force', 'remove running pods too')
    .argument('<pod...>')
    .action(
      act(async (pods: string[], o: { force?: boolean }) =>
        forEach(pods, async (p) => void (await api('DELETE', `/hyperbox/pods/${encodeURIComponent(p)}`, { query: { force: o.force } }))),
      ),
    );
  pod
    .command('ps')
    .alias('ls')
    .description('list pods')
    .option('-q, --quiet', 'only show pod IDs')
    .option('--format <template>', 'format output with a Go-like template')
    .option('--no-trunc', "don't truncate output")
    .action(
      act(async (o: { quiet?: boolean; format?: string; trunc: boolean }) => {
        const pods = await api<PodView[]>('GET', '/hyperbox/pods');
        const id = (s: string) => (o.trunc ? s.slice(0, 12) : s);
        if (o.quiet) process.stdout.write(pods.map((p) => `${id(p.Id)}\n`).join(''));
        else if (o.format) process.stdout.write(pods.map((p) => renderTemplate(o.format!, p) + '\n').join(''));
        else {
          const rows = pods.map((p) => [id(p.Id), p.Name, p.State.Status, ago(Date.parse(p.Created) / 1000), String(p.Containers.length), portsText(p.Ports)]);
          process.stdout.write(table([['POD ID', 'NAME', 'STATUS', 'CREATED', '# OF CONTAINERS', 'PORTS'], ...rows]) + '\n');
        }
        return 0;
      }),
    );
  pod
    .command('inspect')
    .description('show low-level information on pods')
    .option('-f, --format <template>', 'format output with a Go-like template')
    .argument('<pod...>')
    .action(act(async (pods: string[], o: { format?: string }) => inspectEach(pods, (p) => `/hyperbox/pods/${p}`, o.format)));

  const kube = program.command('kube').description('run Kubernetes Pod manifests');
  kube
    .command('play')
    .description('create and start the pods a YAML file describes')
    .argument('<file>', "manifest file ('-' for stdin)")
    .action(
      act(async (file: string) => {
        for (const plan of await readPlans(file)) await play(plan);
        return 0;
      }),
    );
  kube
    .command('down')
    .description('remove the pods a YAML file describes, with their emptyDir volumes')
    .argument('<file>', "manifest file ('-' for stdin)")
    .action(
      act(async (file: string) => {
        for (const plan of await readPlans(file)) {
          await api('DELETE', `/hyperbox/pods/${encodeURIComponent(plan.pod.Name)}`, { query: { force: true } });
          for (const v of plan.emptyDirs) await api('DELETE', `/volumes/${encodeURIComponent(v)}`).catch(() => undefined);
          process.stdout.write(`${plan.pod.Name}\n`);
        }
        return 0;
      }),
    );
}
