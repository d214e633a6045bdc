/** Image archives: save and load (also as `image save` / `image load`). */
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { type Act, stream } from '../context.js';
import { ExitError } from '../exit-error.js';

/** Reads Docker's JSON message stream; returns the in-band error, if any. */
export async function readJsonMessages(res: AsyncIterable<Buffer>, onMessage: (m: Record<string, unknown>) => void): Promise<string | undefined> {
  let buf = '';
  let error: string | undefined;
  const handle = (line: string) => {
    if (!line.trim()) return;
    const m = JSON.parse(line) as Record<string, unknown>;
    if (typeof m.error === 'string') error = m.error;
    else onMessage(m);
  };
  for await (const chunk of res) {
    buf += chunk.toString('utf8');
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      handle(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
  handle(buf);
  return error;
}

async function save(images: string[], o: { output?: string }): Promise<number> {
  if (!o.output && process.stdout.isTTY) throw new ExitError(1, 'cowardly refusing to save to a terminal. Use the -o flag or redirect');
  const res = await stream('GET', '/images/get', { query: { names: images } });
  if (!o.output) {
    await pipeline(res, process.stdout);
    return 0;
  }
  const tmp = `${o.output}.tmp-${process.pid}`;
  try {
    await pipeline(res, fs.createWriteStream(tmp));
    fs.renameSync(tmp, o.output);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return 0;
}

async function load(o: { input?: string; quiet?: boolean }): Promise<number> {
  if (!o.input && process.stdin.isTTY) throw new ExitError(1, 'requested load from stdin, but stdin is empty');
  const res = await stream('POST', '/images/load', {
    query: { quiet: o.quiet ? '1' : '0' },
    stream: o.input ? fs.createReadStream(o.input) : process.stdin,
    headers: { 'Content-Type': 'application/x-tar' },
  });
  const error = await readJsonMessages(res, (m) => {
    if (typeof m.stream === 'string') process.stdout.write(m.stream);
  });
  if (error) throw new ExitError(1, error);
  return 0;
}

export function registerArchiveCommands(program: Command, act: Act): void {
  const image = program.commands.find((c) => c.name() === 'image');
  for (const parent of image ? [program, image] : [program]) {
    parent
      .command('save')
      .description('save one or more images to a tar archive (streamed to STDOUT by default)')
      .option('-o, --output <file>', 'write to a file, instead of STDOUT')
      .argument('<image...>')
      .action(act(save));
    parent
      .command('load')
      .description('load an image from a tar archive or STDIN')
      .option('-i, --input <file>', 'read from tar archive file, instead of STDIN')
      .option('-q, --quiet', 'suppress the load output')
      .action(act(load));
  }
}
