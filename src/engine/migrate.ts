/**
 * `hyperbox migrate CONTAINER DEST`, the source's side: a running container
 * whose root is on disks moves, live, to another daemon (LXD's `lxc move`).
 * The destination is offered the container (it checks the guest's shape,
 * builds the image's filesystem, starts a QEMU waiting for the migration);
 * then QEMU mirrors the writable disk and pre-copies RAM while the guest runs,
 * each stream relayed by this daemon from a unix socket in the VM's run
 * directory to a hijacked connection of the native API on the destination
 * (the link clients use, with their TLS). With the guest stopped, the last
 * dirty pages and blocks go, then the logs; the destination resumes the guest
 * and re-attaches its agent; only then is the container removed here. Any
 * failure before that leaves it running here (cancelMigration resumes it) and
 * the destination drops what it had started.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PassThrough, type Readable } from 'node:stream';
import { ApiClient, type ClientTls } from '../common/api-client.js';
import { conflict, HyperboxError, invalid } from '../common/errors.js';
import { parseHost } from '../common/paths.js';
import { listenOnce, splice, type OneShotSocket } from '../common/relay.js';
import { containerDiskPath } from '../images/blockfs.js';
import type { MigrationStats } from '../vm/index.js';
import type { Container } from './container.js';
import type { EngineContext } from './context.js';
import { logFileName, parseLogOptions } from './logs.js';
import { erofsDigest, profileOf, vmSizeOf, whyNotMigratable, type Offer } from './migrate-offer.js';

export interface MigrateTarget {
  /** unix:///path or tcp://host:port, as -H. */
  host: string;
  tls?: ClientTls;
}

export interface MigrateResult extends MigrationStats {
  Id: string;
  Name: string;
  /**
   * How long the guest was stopped in all: QEMU's downtime (stop to the end of
   * the stream) plus the hand-over until the destination resumed it (logs,
   * commit); a slight overestimate (the last QMP round trips count).
   */
  pausedMs: number;
}

/** Bound on a whole migration: RAM pre-copy under TCG of a guest that dirties memory can take a while. */
const MIGRATION_TIMEOUT_MS = 10 * 60_000;

/** What removes a container here once the destination runs it. */
export type RemoveMigrated = (c: Container) => Promise<void>;

export async function migrateContainer(ctx: EngineContext, c: Container, target: MigrateTarget, instanceId: string, removeHere: RemoveMigrated): Promise<MigrateResult> {
  let address;
  try {
    address = parseHost(target.host);
  } catch (err) {
    throw invalid(`bad destination ${target.host}: ${(err as Error).message}`);
  }
  if (address.kind === 'tcp' && !target.tls) throw invalid('a tcp:// destination needs TLS (its CA, and a client certificate if it verifies clients)');
  const peer = new ApiClient(address, target.tls);
  const result = await c.lock.run('migrate', async () => {
    const why = whyNotMigratable(c);
    if (why) throw conflict(`cannot migrate: ${why}`);
    const vm = c.sandbox!.vm;
    const image = ctx.store.resolve(c.record.ImageId);
    const upper = containerDiskPath(c.dir);
    const size = vmSizeOf(ctx, c.record);
    const bridge = ctx.networks.bridgeFor(c.record.HostConfig.NetworkMode);
    const ep = c.record.Endpoint;
    const offer: Offer = {
      Record: { ...c.record, VmPid: undefined, VmRunDir: undefined, Endpoint: undefined } as Offer['Record'],
      Guest: profileOf(ctx),
      MemoryMiB: size.memoryMiB,
      Cpus: size.cpus,
      RamBackend: c.record.StartInfo?.mode !== 'cold',
      UpperBytes: fs.statSync(upper).size,
      LowerDigest: await erofsDigest(await ctx.blocks.ensureImageFs(image)),
      Source: instanceId,
      Network: bridge && ep ? { Name: bridge.Name, Default: !!bridge.Default, IPAddress: ep.IPAddress } : undefined,
    };
    const { Id: migration } = await peer.request<{ Id: string }>('POST', '/hyperbox/migrations', { body: offer }).catch((err: Error) => {
      throw new HyperboxError('conflict', `the destination did not take the migration: ${err.message}`);
    });
    const sockets = { ram: path.join(vm.runDir, 'out-ram.sock'), disk: path.join(vm.runDir, 'out-disk.sock') };
    const listening: OneShotSocket[] = [];
    const relays: Array<Promise<void>> = [];
    try {
      for (const stream of ['ram', 'disk'] as const) {
        const one = await listenOnce(sockets[stream]);
        listening.push(one);
        relays.push(
          one.accepted.then(async (local) => {
            const remote = await peer.hijack(`/hyperbox/migrations/${migration}/streams/${stream}`).catch((err: Error) => (local.destroy(), Promise.reject(err)));
            await splice(local, remote);
          }),
        );
      }
      relays.forEach((r) => r.catch((err: Error) => ctx.logger.warn(`migration ${c.id.slice(0, 12)}: relay: ${err.message}`)));
      const stats = await vm.migrateOut!(sockets, MIGRATION_TIMEOUT_MS);
      const completed = Date.now();
      let resumedAfterMs: number;
      try {
        // The guest is stopped here: what it printed reaches the log once the agent
        // channel's last bytes are read (a turn of the event loop) and the writer is idle.
        await sleep(20);
        await c.log?.flushed();
        const sent = Date.now();
        const r = await peer.request<{ ResumedAfterMs: number }>('POST', `/hyperbox/migrations/${migration}/commit`, { stream: logHistory(c), headers: { 'Content-Type': 'application/octet-stream' } });
        resumedAfterMs = sent - completed + Math.min(r.ResumedAfterMs, Date.now() - sent);
      } catch (err) {
        await vm.cancelMigration!();
        throw err;
      }
      return { ...stats, pausedMs: stats.downtimeMs + resumedAfterMs, Id: c.id, Name: c.shortName };
    } catch (err) {
      void peer.request('DELETE', `/hyperbox/migrations/${migration}`).catch(() => undefined);
      if (vm.exited) {
        const said = vm.diagnostics(300).replace(/\s+/g, ' ');
        ctx.logger.warn(`migration of ${c.id.slice(0, 12)} failed and its VM exited: ${(err as Error).message}; QEMU: ${said}`);
        throw new HyperboxError('conflict', `migration failed and the container's VM exited here: ${(err as Error).message}`);
      }
      ctx.logger.warn(`migration of ${c.id.slice(0, 12)} failed, it runs on here: ${(err as Error).message}`);
      throw new HyperboxError('conflict', `migration failed, the container keeps running here: ${(err as Error).message}`);
    } finally {
      for (const one of listening) one.close();
    }
  });
  ctx.logger.info(`container ${c.id.slice(0, 12)} migrated to ${target.host} (guest paused ${result.pausedMs} ms, of which QEMU's downtime ${result.downtimeMs} ms; total ${result.totalMs} ms)`);
  await removeHere(c).catch((err: Error) => ctx.logger.warn(`container ${c.id.slice(0, 12)} runs on the destination, but removing it here failed: ${err.message}`));
  return result;
}

/** The container's log files, oldest first, as one stream. */
function logHistory(c: Container): Readable {
  const rotation = parseLogOptions(c.record.HostConfig.LogConfig?.Config);
  const files: string[] = [];
  for (let i = rotation.maxFiles - 1; i >= 0; i--) {
    const f = logFileName(c.logFile, i);
    if (fs.existsSync(f)) files.push(f);
  }
  const out = new PassThrough();
  void (async () => {
    for (const f of files) {
      for await (const chunk of fs.createReadStream(f)) if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
    }
    out.end();
  })().catch((err: Error) => out.destroy(err));
  return out;
}
