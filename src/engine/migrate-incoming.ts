/**
 * The destination's side of a live migration (see migrate.ts): an offer is
 * checked (guest shape, image, name, ports), a QEMU is started waiting for the
 * migration with an empty writable disk of the source's size, each stream the
 * source relays is relayed on to that QEMU's unix socket, and at the commit
 * (the source's guest stopped, everything sent) the guest is resumed here, its
 * agent re-attached and its main process adopted. Until then nothing is
 * registered here; an abort, a failure or a silent source drops it all.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { conflict, internal, invalid, notFound } from '../common/errors.js';
import { connectWhenReady } from '../common/unix-socket.js';
import { containerDiskPath } from '../images/blockfs.js';
import { attachMigratedVm } from '../sandbox/adopt.js';
import { ROOT_NAME } from '../sandbox/sandbox.js';
import type { IncomingVm, PortForward } from '../vm/index.js';
import type { EngineContext } from './context.js';
import type { Lifecycle } from './lifecycle.js';
import { loggedPosition } from './log-acks.js';
import { checkProfile, erofsDigest, offerSchema, profileOf, type Offer } from './migrate-offer.js';
import { extraHostLines } from './create-spec.js';
import { guestNetworkOf, type Endpoint, type NetworkRecord } from './net/networks.js';
import { allocatePorts, networkModeOf } from './ports.js';
import { containerOf } from './removal.js';
import type { ContainerRecord } from './types.js';

interface Pending {
  offer: Offer;
  dir: string;
  incoming: IncomingVm;
  ports: ContainerRecord['Ports'];
  /** Its endpoint on this host's bridge (a TAP, an address), if it came from one; proxies open at the commit. */
  endpoint?: Endpoint;
  forwards: PortForward[];
  tunnels: Set<net.Socket>;
  timer: NodeJS.Timeout;
}

/** A migration whose source went silent is dropped after this long. */
const PENDING_TIMEOUT_MS = 15 * 60_000;

export class IncomingMigrations {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly lifecycle: Lifecycle,
    /** This daemon, as a source names itself (a migration to itself is refused). */
    readonly instanceId: string,
  ) {}

  /** Checks an offer and starts the QEMU that waits for it; returns the migration's ID. */
  async offer(raw: unknown): Promise<{ Id: string }> {
    const parsed = offerSchema.safeParse(raw);
    if (!parsed.success) throw invalid(`bad migration offer: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const offer = parsed.data;
    const { ctx } = this;
    if (offer.Source === this.instanceId) throw invalid('the destination is the daemon the container runs on');
    checkProfile(offer.Guest, profileOf(ctx));
    const bridge = offer.Network && this.bridgeHere(offer.Network);
    const rec = offer.Record as unknown as ContainerRecord;
    this.checkFree(rec, undefined);
    let image;
    try {
      image = ctx.store.resolve(rec.ImageId);
    } catch {
      throw notFound(`image ${rec.ImageRef} (${rec.ImageId.slice(7, 19)}) is not on the destination: pull or load it there first`);
    }
    const lower = await ctx.blocks.ensureImageFs(image);
    if ((await erofsDigest(lower)) !== offer.LowerDigest) {
      throw conflict(`the filesystem of image ${rec.ImageRef} built here differs from the source's (other erofs-utils, or another unpacking of the image)`);
    }
    const hc = rec.HostConfig;
    const restrict = !bridge && networkModeOf(hc.NetworkMode) === 'none';
    // Published ports are bound here now: a port taken here refuses the migration up front.
    const { ports, forwards } = restrict ? { ports: {}, forwards: [] } : await allocatePorts(hc.PortBindings ?? {}, rec.Config.ExposedPorts ?? {}, !!hc.PublishAllPorts);
    // On a bridge: a TAP and an address of this host's bridge (its old address if free here); QEMU's NIC backend is that TAP.
    const endpoint = bridge ? ctx.networks.attach(bridge, rec.Id, undefined, rec.Config.MacAddress, offer.Network!.IPAddress) : undefined;
    const dir = path.join(ctx.containersDir, rec.Id);
    let incoming: IncomingVm;
    try {
      fs.mkdirSync(dir, { recursive: true });
      const upper = containerDiskPath(dir);
      const fd = fs.openSync(upper, 'wx', 0o600);
      fs.ftruncateSync(fd, offer.UpperBytes);
      fs.closeSync(fd);
      const shape = { ...ctx.guestShape(offer.MemoryMiB, offer.Cpus), root: 'disks' as const };
      if (!ctx.driver.launchIncoming) throw internal('this VM driver cannot take a migration');
      incoming = await ctx.driver.launchIncoming({
        runDir: path.join(ctx.runRoot, rec.Id.slice(0, 12)),
        shape,
        rootDir: '',
        net: endpoint ? { forwards: [], tap: endpoint.Tap } : { forwards, restrict },
        disks: { lower, upper },
        ramBackend: offer.RamBackend,
      });
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      if (endpoint) ctx.networks.detach(endpoint);
      throw err;
    }
    const id = randomBytes(16).toString('hex');
    const timer = setTimeout(() => this.abort(id, 'the source went silent'), PENDING_TIMEOUT_MS).unref();
    this.pending.set(id, { offer, dir, incoming, ports, endpoint, forwards, tunnels: new Set(), timer });
    // An incoming QEMU that fails to load the stream exits: nothing to keep then.
    incoming.vm.once('exit', () => this.abort(id, 'its VM exited'));
    this.ctx.logger.info(`migration ${id.slice(0, 8)}: waiting for container ${rec.Id.slice(0, 12)} (${rec.Name})`);
    return { Id: id };
  }

  /** The connection to this migration's QEMU for one of its streams (the caller splices it with the source's). */
  async tunnel(id: string, stream: string): Promise<net.Socket> {
    const p = this.get(id);
    if (stream !== 'ram' && stream !== 'disk') throw notFound(`no migration stream ${stream}`);
    const sock = await connectWhenReady(p.incoming.sockets[stream], Date.now() + 10_000, { what: `migration ${stream} socket` });
    p.tunnels.add(sock);
    return sock;
  }

  /**
   * The source's guest is stopped and everything was sent: LOGS (its log
   * history) are written, the guest resumes here, its agent and main process
   * are taken over, and the container is registered.
   */
  async commit(id: string, logs: Readable): Promise<{ ResumedAfterMs: number }> {
    const t0 = Date.now();
    const p = this.get(id);
    const { ctx } = this;
    const rec = structuredClone(p.offer.Record) as unknown as ContainerRecord;
    const vm = p.incoming.vm;
    try {
      await p.incoming.finish(60_000).catch((err: Error) => {
        throw vm.exited ? new Error(`the incoming VM exited: ${vm.diagnostics(300).replace(/\s+/g, ' ') || 'it left no message'}`) : err;
      });
      const ep = p.endpoint;
      // A user network is named here by its name (the source's ID for it means nothing here).
      if (ep && !p.offer.Network!.Default) rec.HostConfig.NetworkMode = ep.NetworkName;
      const c = containerOf(ctx, { ...rec, Ports: p.ports, VmPid: vm.pid, VmRunDir: vm.runDir, Endpoint: ep });
      await pipeline(logs, fs.createWriteStream(c.logFile, { mode: 0o600 }));
      this.checkFree(rec, id);
      c.record.State.Pid = vm.pid;
      const resumedAfterMs = Date.now() - t0; // attachMigratedVm resumes the guest first
      // Output its agent kept and the source's log did not get yet is resent (log-acks.ts).
      const resume = rec.MainLogRun ? new Map([[rec.MainProcId!, loggedPosition(c.logFile, rec.MainLogRun)]]) : undefined;
      const info = rec.StartInfo ?? { mode: 'cold' as const, accel: ctx.opts.accel.accel, phases: {} };
      const sandbox = await attachMigratedVm(vm, ctx.driver.layout.shares[0]!.tag, { procIds: [rec.MainProcId!], resume, info });
      if (ep) {
        // The guest still has the source's address, gateway and DNS: it takes this bridge's (and its --add-host host-gateway follows).
        await sandbox.agent.readdress(ROOT_NAME, guestNetworkOf(ep), extraHostLines(rec.HostConfig.ExtraHosts, ep.Gateway));
        await ctx.networks.bindToVm(sandbox, ep, p.forwards);
      }
      this.forget(id);
      ctx.registry.add(c);
      c.save();
      this.lifecycle.adoptMain(c, sandbox, rec.MainProcId!);
      ctx.events.container(c, 'start');
      ctx.logger.info(`migration ${id.slice(0, 8)}: container ${rec.Id.slice(0, 12)} runs here now`);
      return { ResumedAfterMs: resumedAfterMs };
    } catch (err) {
      this.abort(id, (err as Error).message);
      throw err;
    }
  }

  /** Drops a migration: its VM stops, its files go. */
  abort(id: string, why: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.forget(id);
    // What QEMU said goes with its run directory: an incoming VM that ended by itself (a stream it could not load) tells why here.
    const said = p.incoming.vm.exited ? p.incoming.vm.diagnostics(600) : '';
    this.ctx.logger.warn(`migration ${id.slice(0, 8)} dropped: ${why}${said ? `; QEMU: ${said.replace(/\s+/g, ' ')}` : ''}`);
    p.incoming.vm.stop();
    for (const t of p.tunnels) t.destroy();
    void p.incoming.vm.waitExit().then(() => {
      if (p.endpoint) this.ctx.networks.detach(p.endpoint);
      fs.rmSync(p.dir, { recursive: true, force: true });
      fs.rmSync(p.incoming.vm.runDir, { recursive: true, force: true });
    });
  }

  /** Ends every pending migration (the daemon stops). */
  abortAll(): void {
    for (const id of [...this.pending.keys()]) this.abort(id, 'the daemon is stopping');
  }

  private forget(id: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(id);
  }

  private get(id: string): Pending {
    const p = this.pending.get(id);
    if (!p) throw notFound(`no pending migration ${id}`);
    return p;
  }

  /** The network the container comes from, here: the default bridge, or a user-defined network of that name. */
  private bridgeHere(n: NonNullable<Offer['Network']>): NetworkRecord {
    if (n.Default) {
      const def = this.ctx.networks.defaultBridge;
      if (!def) throw conflict('the container is on the default bridge, and the destination has none (it runs without root or with --bridge none)');
      return def;
    }
    const net = this.ctx.networks.find(n.Name);
    if (net?.Name !== n.Name) throw notFound(`network ${n.Name} does not exist on the destination: create it there first (network create ${n.Name})`);
    return net;
  }

  /** The container's ID and name must be free here (and not coming in by another migration). */
  private checkFree(rec: Pick<ContainerRecord, 'Id' | 'Name'>, self: string | undefined): void {
    const others = [...this.pending].filter(([id]) => id !== self).map(([, p]) => p.offer.Record);
    if (this.ctx.registry.has(rec.Id) || others.some((r) => r.Id === rec.Id)) throw conflict(`container ${rec.Id.slice(0, 12)} already exists on the destination`);
    if (others.some((r) => r.Name === rec.Name)) throw conflict(`the name ${rec.Name} is being taken by another migration here`);
    this.ctx.registry.chooseName(rec.Name); // Docker's conflict message if the name is in use
  }
}
