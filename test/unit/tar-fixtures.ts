/** Small tars for unit tests of tar handling. */
import { Readable } from 'node:stream';
import tar from 'tar-stream';

export type Entry = Partial<tar.Header> & { name: string; body?: string };

/** A tar of ENTRIES (files unless a type is given) as one readable stream. */
export async function tarOf(entries: Entry[]): Promise<Readable> {
  const pack = tar.pack();
  for (const { body, ...h } of entries) pack.entry({ type: 'file', ...h }, body ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
  return Readable.from([Buffer.concat(chunks)]);
}

/** The entries of a tar stream: header and body. */
export async function readTar(stream: Readable): Promise<Array<{ header: tar.Header; body: string }>> {
  const out: Array<{ header: tar.Header; body: string }> = [];
  const extract = tar.extract();
  stream.once('error', (err) => extract.destroy(err));
  stream.pipe(extract);
  for await (const e of extract) {
    const chunks: Buffer[] = [];
    for await (const c of e) chunks.push(c as Buffer);
    out.push({ header: e.header, body: Buffer.concat(chunks).toString() });
  }
  return out;
}
