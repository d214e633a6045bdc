/**
 * The classic builder (`POST /build`): the context is unpacked and filtered,
 * the Dockerfile parsed and split into stages, and each instruction becomes
 * one image, as Docker's classic builder does: metadata and COPY/ADD without
 * a VM, RUN in a container (steps.ts). A step whose cache key (cache.ts) names
 * an image still in the store is not run again. Progress goes to OUT as the
 * docker CLI prints it ("Step 2/5 : ...", " ---> id").
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { invalid } from '../common/errors.js';
import type { Engine } from '../engine/engine.js';
import { familiarName, parseReference } from '../images/reference.js';
import { BuildCache } from './cache.js';
import { BuildContext } from './context.js';
import { lineError, parseDockerfile, type Instruction } from './dockerfile.js';
import { checkPlatform, type BuildOptions, type BuildOutput } from './options.js';
import { StageRunner, type BuiltStage, type StageDef } from './stage.js';

export type { BuildOptions, BuildOutput } from './options.js';

/** Splits the instructions into the ARGs before the first FROM and the stages. */
export function splitStages(instructions: Instruction[]): { globals: Instruction[]; stages: StageDef[] } {
  const globals: Instruction[] = [];
  const stages: StageDef[] = [];
  for (const ins of instructions) {
    if (ins.cmd === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?\s*$/i.exec(ins.args);
      if (!m) throw lineError(ins.line, 'FROM requires either one or three arguments');
      const name = m[2]?.toLowerCase();
      if (name && !/^[a-z][a-z0-9-_.]*$/.test(name)) throw lineError(ins.line, `invalid name for build stage: "${m[2]}", name can't start with a number or contain symbols`);
      if (name && stages.some((s) => s.name === name)) throw lineError(ins.line, `duplicate name ${name}`);
      stages.push({ from: ins, base: m[1]!, name, body: [] });
    } else if (!stages.length) {
      if (ins.cmd !== 'ARG') throw lineError(ins.line, `no build stage in current context`);
      globals.push(ins);
    } else stages[stages.length - 1]!.body.push(ins);
  }
  if (!stages.length) throw invalid('no build stage in current context: the Dockerfile needs a FROM');
  return { globals, stages };
}

export class Builder {
  readonly cache: BuildCache;
  /** Where contexts are unpacked (under the data root: a context can be large, /tmp may be RAM). */
  private readonly tmpRoot: string;

  constructor(
    private readonly engine: Engine,
    dir: string,
  ) {
    this.cache = new BuildCache(path.join(dir, 'cache.json'));
    this.tmpRoot = path.join(dir, 'tmp');
    fs.mkdirSync(this.tmpRoot, { recursive: true, mode: 0o700 });
  }

  /** Removes the contexts of builds a previous daemon did not finish (call at daemon start only). */
  sweep(): void {
    for (const f of fs.readdirSync(this.tmpRoot)) fs.rmSync(path.join(this.tmpRoot, f), { recursive: true, force: true });
  }

  /** Builds, tags and returns the image ID. Errors name the Dockerfile line. */
  async build(source: Readable, opts: BuildOptions, out: BuildOutput): Promise<string> {
    checkPlatform(opts.platform);
    const refs = opts.tags.map((t) => familiarName(parseReference(t))); // bad tags fail before any work
    const ctx = await BuildContext.unpack(source, this.tmpRoot);
    out.ready?.();
    try {
      const df = parseDockerfile(ctx.readDockerfile(opts.dockerfile || 'Dockerfile'));
      ctx.applyDockerignore();
      const { globals, stages: all } = splitStages(df.instructions);
      let stages = all;
      if (opts.target) {
        const i = all.findIndex((s) => s.name === opts.target!.toLowerCase());
        if (i < 0) throw invalid(`failed to reach build target ${opts.target} in Dockerfile`);
        stages = all.slice(0, i + 1);
      }
      const total = globals.length + stages.reduce((n, s) => n + 1 + s.body.length, 0);
      const runner = new StageRunner(this.engine, this.cache, ctx, opts, out, { escape: df.escape, total });
      runner.declareGlobals(globals);
      const built: BuiltStage[] = [];
      for (const stage of stages) built.push({ name: stage.name, image: await runner.run(stage, built) });
      let image = built[built.length - 1]!.image;
      if (Object.keys(opts.labels).length) image = await runner.addLabels(image, opts.labels);
      if (!image) throw invalid('the build produced no image (a FROM scratch stage with no instructions)');
      runner.warnUnusedArgs();
      this.engine.store.addUntagged(image.manifestDigest);
      out.aux({ ID: image.id });
      out.stream(`Successfully built ${image.id.slice(7, 19)}\n`);
      for (const ref of refs) {
        this.engine.store.tag(ref, image.manifestDigest);
        this.engine.events.publish('image', 'tag', image.id, { name: ref });
        out.stream(`Successfully tagged ${ref}\n`);
      }
      return image.id;
    } finally {
      ctx.dispose();
    }
  }

  /** `build prune`: forgets the cache and removes the step images nothing else uses. */
  prune(): { CachesDeleted: string[]; SpaceReclaimed: number } {
    this.cache.clear();
    const deleted: string[] = [];
    for (const img of this.engine.store.list()) {
      if (!img.intermediate || this.engine.registry.imageUser(img.id)) continue;
      this.engine.store.deleteImage(img.manifestDigest);
      this.engine.rootfs.removeImageRootfs(img.id);
      deleted.push(img.id);
    }
    const { freed } = this.engine.store.gc();
    return { CachesDeleted: deleted, SpaceReclaimed: freed };
  }
}
