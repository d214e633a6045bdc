/**
 * Live migration on the native API: a client asks the source to move a
 * container (`POST /hyperbox/containers/{id}/migrate`); the source daemon is
 * then the destination's client on the same API, with the TLS credentials the
 * client handed it: an offer, one upgraded connection per stream (RAM and
 * device state, the writable disk), each relayed to the destination's QEMU,
 * and a commit carrying the log history (src/engine/migrate*.ts).
 */
import { z } from 'zod';
import { splice } from '../../common/relay.js';
import type { Engine } from '../../engine/engine.js';
import type { RouteTable } from '../docker/server.js';

const pem = z.string().max(64 * 1024);
const migrateSchema = z
  .object({
    Destination: z.string().min(1).max(4096),
    TLS: z.object({ CA: pem, Cert: pem.optional(), Key: pem.optional() }).strict().optional(),
  })
  .strict();

export function migrateRoutes(r: RouteTable, engine: Engine): void {
  r.add('POST', '/hyperbox/containers/:id/migrate', async (ctx) => {
    const b = await ctx.json(migrateSchema);
    const tls = b.TLS && { ca: Buffer.from(b.TLS.CA), cert: b.TLS.Cert ? Buffer.from(b.TLS.Cert) : undefined, key: b.TLS.Key ? Buffer.from(b.TLS.Key) : undefined };
    ctx.send(200, await engine.migrate(ctx.params.id!, { host: b.Destination, tls }));
  });

  // The destination's side.
  r.add('POST', '/hyperbox/migrations', async (ctx) => ctx.send(201, await engine.migrations.offer(await ctx.json(z.unknown()))));

  r.add('POST', '/hyperbox/migrations/:id/streams/:stream', async (ctx) => {
    const local = await engine.migrations.tunnel(ctx.params.id!, ctx.params.stream!);
    void splice(ctx.hijackRaw(), local);
  });

  r.add('POST', '/hyperbox/migrations/:id/commit', async (ctx) => {
    ctx.send(200, await engine.migrations.commit(ctx.params.id!, ctx.req));
  });

  r.add('DELETE', '/hyperbox/migrations/:id', (ctx) => {
    engine.migrations.abort(ctx.params.id!, 'the source gave up');
    ctx.send(204);
  });
}
