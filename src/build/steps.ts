/**
 * How a build step becomes an image: a metadata instruction or a COPY/ADD
 * layer is written straight into the content store (config, manifest, and
 * the layer if any); a RUN step runs in a container started like `docker run`
 * (a VM by instant clone), whose writable layer the engine's commit turns
 * into the step's image. Every step's image is recorded as a build step
 * (hidden from `images` without `-a`), so the cache can name it.
 */
import fs from 'node:fs';
import { invalid } from '../common/errors.js';
import type { Engine } from '../engine/engine.js';
import { MediaType, type ContentStore, type Image, type ImageConfig } from '../images/store.js';
import type { RunConfig } from './instructions.js';

/** The config of `FROM scratch`: no layers, nothing set. */
export function scratchConfig(): ImageConfig {
  return { architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] }, history: [] };
}

export interface StepResult {
  config: RunConfig;
  createdBy: string;
  author?: string;
  /** An uncompressed layer file this step adds (COPY/ADD). */
  layerFile?: string;
}

/** Stores a step's image on top of PARENT (undefined: scratch) and returns it. */
export async function storeStep(store: ContentStore, parent: Image | undefined, step: StepResult): Promise<Image> {
  return store.withLease(async () => {
    const base = parent?.config ?? scratchConfig();
    const layer = step.layerFile ? await store.putBlob(fs.createReadStream(step.layerFile)) : undefined;
    const now = new Date().toISOString();
    const config: ImageConfig = {
      ...base,
      created: now,
      ...(step.author ? { author: step.author } : {}),
      config: step.config,
      rootfs: { type: 'layers', diff_ids: [...base.rootfs.diff_ids, ...(layer ? [layer.digest] : [])] },
      history: [...(base.history ?? []), { created: now, created_by: step.createdBy, ...(layer ? {} : { empty_layer: true }) }],
    };
    const configBlob = await store.putBlob(Buffer.from(JSON.stringify(config)));
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: configBlob.digest, size: configBlob.size },
      layers: [...(parent?.manifest.layers ?? []), ...(layer ? [{ mediaType: MediaType.ociLayer, digest: layer.digest, size: layer.size }] : [])],
    };
    const man = await store.putBlob(Buffer.from(JSON.stringify(manifest)));
    store.addUntagged(man.digest, MediaType.ociManifest, { intermediate: true });
    return store.resolve(configBlob.digest);
  });
}

/**
 * RUN: ARGV in a container of IMAGE with the build arguments ARGENV added to
 * its environment (not kept in the image), output passed to OUT as it comes;
 * the container's changes become the step's image. Returns that image.
 */
export async function runStep(
  engine: Engine,
  image: Image,
  run: { argv: string[]; argEnv: string[]; createdBy: string; config: RunConfig },
  out: { stream(text: string): void },
  signal?: AbortSignal,
): Promise<Image> {
  const imageEnv = new Set((image.config.config.Env ?? []).map((e) => e.split('=')[0]));
  const c = await engine.containers.create({
    config: { Image: image.id, Cmd: run.argv, Entrypoint: [], Env: run.argEnv.filter((e) => !imageEnv.has(e.split('=')[0])), Labels: {} },
    host: {},
  });
  out.stream(` ---> Running in ${c.id.slice(0, 12)}\n`);
  let endsLine = true;
  try {
    const forward = (d: Buffer) => {
      const text = d.toString('utf8');
      if (text) endsLine = text.endsWith('\n');
      out.stream(text);
    };
    engine.lifecycle.attach(c.id, { stdout: forward, stderr: forward, end: () => undefined });
    // A client that goes away stops the step: its process is killed, its container removed below.
    const stop = () => void engine.lifecycle.kill(c.id).catch(() => undefined);
    signal?.addEventListener('abort', stop, { once: true });
    await engine.lifecycle.start(c.id);
    if (signal?.aborted) stop();
    const code = await engine.lifecycle.wait(c.id).finally(() => signal?.removeEventListener('abort', stop));
    if (code !== 0) {
      const shown = run.argv.length > 2 && run.argv[1] === '-c' ? run.argv.join(' ') : JSON.stringify(run.argv);
      throw invalid(`The command '${shown}' returned a non-zero code: ${code}`);
    }
    const id = await engine.files.commit(c.id, { config: run.config, createdBy: run.createdBy, intermediate: true, pause: false });
    return engine.store.resolve(id);
  } finally {
    await engine.containers.remove(c.id, { force: true, volumes: true }).catch(() => undefined);
    // The step's own output may not end its last line; the builder's lines start on their own.
    out.stream(`${endsLine ? '' : '\n'}Removing intermediate container ${c.id.slice(0, 12)}\n`);
  }
}
