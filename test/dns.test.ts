/**
 * The per-network DNS server against what an untrusted guest can send: garbage,
 * and a flood of queries it must relay. No VM: the server on a loopback address.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { createLogger } from '../src/common/logger.js';
import { NetworkDns } from '../src/engine/net/dns.js';
import { waitFor } from './helpers/wait.js';

const ADDR = '127.77.0.1';
const isRoot = process.getuid?.() === 0;

function query(name: string, id: number): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
}

describe('network DNS server', { skip: isRoot ? false : 'binds port 53' }, () => {
  let server: NetworkDns;
  let client: dgram.Socket;
  let blackhole: dgram.Socket; // an upstream that never answers: relays stay open until their timeout
  const answers = new Map<number, dnsPacket.Packet>();
  const answeredAt = new Map<number, number>();
  before(async () => {
    blackhole = dgram.createSocket('udp4');
    await new Promise<void>((r) => blackhole.bind(0, '127.0.0.1', r));
    const port = blackhole.address().port;
    server = new NetworkDns(ADDR, (name) => (name === 'web' ? ['10.89.0.2'] : []), createLogger('error'), () => ({ address: '127.0.0.1', port }));
    await server.start();
    client = dgram.createSocket('udp4');
    client.on('message', (m) => {
      const p = dnsPacket.decode(m);
      answers.set(p.id!, p);
      answeredAt.set(p.id!, Date.now());
    });
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
  });
  after(() => {
    server.close();
    client.close();
    blackhole.close();
  });

  const ask = async (name: string, id: number) => {
    client.send(query(name, id), 53, ADDR);
    return waitFor(() => answers.get(id), { what: `the answer to query ${id} (${name})`, timeoutMs: 2000, intervalMs: 10 });
  };

  it('answers the names of the network', async () => {
    const a = await ask('web', 1);
    assert.deepEqual(a?.answers?.map((x) => (x as { data: unknown }).data), ['10.89.0.2']);
    assert.equal((await ask('WEB.', 2))?.answers?.map((x) => (x as { data: unknown }).data)[0], '10.89.0.2', 'case and a trailing dot do not matter');
  });

  it('survives garbage and a flood of relayed queries without running out of sockets', async () => {
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    const before = fds();
    for (let i = 0; i < 200; i++) client.send(Buffer.from(`garbage ${i}`.repeat(i % 7)), 53, ADDR);
    client.send(Buffer.alloc(0), 53, ADDR);
    // Answered after the garbage (one socket, in order): the server read it all and lives on.
    assert.equal((await ask('web', 4))?.answers?.length, 1, 'answers after garbage');
    // Unknown names are relayed upstream (which never answers here): at most a bounded
    // number at once. Sent in batches so the kernel's socket buffer does not drop them.
    let peak = 0;
    let lastSentAt = 0;
    for (let batch = 0; batch < 10; batch++) {
      lastSentAt = Date.now();
      for (let i = 0; i < 100; i++) client.send(query(`nosuch-${batch}-${i}.invalid`, 1000 + batch * 100 + i), 53, ADDR);
      await new Promise((r) => setTimeout(r, 50));
      peak = Math.max(peak, fds() - before);
    }
    assert.ok(peak >= 32, `the flood reached the server and was relayed: ${peak} sockets`);
    assert.ok(peak <= 70, `relay sockets are bounded: ${peak} opened at once`);
    // Queries beyond the bound are answered (SERVFAIL) at once, not left hanging: sooner than
    // a relayed one could be (its SERVFAIL comes when the relay times out, 3 s after it was
    // sent). Waited for, not read after the 50 ms above: a busy machine may take longer.
    const last = await waitFor(() => answers.get(1999), { what: 'the answer to the last query of the flood', intervalMs: 10 });
    assert.equal((last.flags ?? 0) & 15, 2);
    assert.ok(answeredAt.get(1999)! - lastSentAt < 3000, `answered ${answeredAt.get(1999)! - lastSentAt} ms after it was sent: relayed, not refused`);
    // Still answering its own names.
    assert.equal((await ask('web', 3))?.answers?.map((x) => (x as { data: unknown }).data)[0], '10.89.0.2');
  });
});
