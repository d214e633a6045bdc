/**
 * One build stage, instruction by instruction: FROM (another stage, an image
 * pulled if missing, or scratch; its ONBUILD triggers run first), ARG and the
 * variables substitution sees, RUN, COPY/ADD and the metadata instructions,
 * each looked up in the cache before it is executed. Errors are reported
 * with the instruction's Dockerfile line.
 */
import fs from 'node:fs';
import path from 'node:path';
import { HyperboxError, invalid } from '../common/errors.js';
import type { Engine } from '../engine/engine.js';
import { parseReference } from '../images/reference.js';
import type { Image } from '../images/store.js';
import { stepKey, type BuildCache } from './cache.js';
import type { BuildContext } from './context.js';
import { planCopy } from './copy-step.js';
import { parseDockerfile, type Instruction } from './dockerfile.js';
import { applyMetadata, commandForm, DEFAULT_SHELL, type RunConfig, type StageVars } from './instructions.js';
import { envMap, expandWord, keyValues } from './shell-words.js';
import { runStep, storeStep, type StepResult } from './steps.js';
import { checkPlatform, PLATFORM_ARGS, type BuildOptions, type BuildOutput } from './options.js';

export interface StageDef {
  from: Instruction;
  /** The FROM argument as written (substituted when the stage runs). */
  base: string;
  name?: string;
  body: Instruction[];
}

/** A stage already built: its name and last image (undefined: scratch with no instruction). */
export interface BuiltStage {
  name?: string;
  image?: Image;
}

/** What a stage's instructions share while it runs. */
interface StageState {
  image?: Image;
  /** ARGs declared in this stage, with their values. */
  args: Map<string, string>;
  vars: StageVars;
  /** The base image had ONBUILD triggers: this stage's images drop them. */
  clearOnBuild: boolean;
}

const short = (id: string) => id.slice(7, 19);

export class StageRunner {
  private step = 0;
  /** ARGs declared before the first FROM (with their values). */
  private globals = new Map<string, string | undefined>();
  private used = new Set<string>();

  constructor(
    private readonly engine: Engine,
    private readonly cache: BuildCache,
    private readonly ctx: BuildContext,
    private readonly opts: BuildOptions,
    private readonly out: BuildOutput,
    private readonly file: { escape: string; total: number },
  ) {}

  private argValue(name: string, dflt: string | undefined): string | undefined {
    if (name in this.opts.buildArgs) {
      this.used.add(name);
      return this.opts.buildArgs[name] ?? dflt;
    }
    return dflt ?? PLATFORM_ARGS[name];
  }

  private header(ins: Instruction): void {
    if (this.opts.signal?.aborted) throw invalid('build canceled: the client went away');
    this.out.stream(`Step ${++this.step}/${this.file.total} : ${ins.original}\n`);
  }

  private withLine<T>(ins: Instruction, fn: () => Promise<T>): Promise<T> {
    return fn().catch((err: unknown) => {
      const msg = (err as Error).message;
      const text = `Dockerfile line ${ins.line}: ${ins.cmd}: ${msg}`;
      throw new HyperboxError(err instanceof HyperboxError ? err.kind : 'invalid', text);
    });
  }

  declareGlobals(globals: Instruction[]): void {
    for (const ins of globals) {
      this.header(ins);
      for (const [k, v] of keyValues(ins.args, envMap(), this.file.escape, { allowBare: true })) this.globals.set(k, this.argValue(k, v));
    }
  }

  /** Build arguments given but never declared, as Docker warns about them. */
  warnUnusedArgs(): void {
    const unused = Object.keys(this.opts.buildArgs).filter((k) => !this.used.has(k) && !(k in PLATFORM_ARGS));
    if (unused.length) this.out.stream(`[Warning] One or more build-args [${unused.join(' ')}] were not consumed\n`);
  }

  private async base(ref: string, built: BuiltStage[]): Promise<Image | undefined> {
    if (ref === 'scratch') return undefined;
    const stage = built.find((s) => s.name === ref.toLowerCase());
    if (stage) return stage.image;
    return this.image(ref, this.opts.pull);
  }

  /** An image by name, pulled when missing (or always, with --pull). */
  private async image(name: string, pull: boolean): Promise<Image> {
    if (!pull) {
      try {
        return this.engine.images.resolve(name);
      } catch {
        // not here: pulled below
      }
    }
    const ref = parseReference(name);
    this.out.stream(`Pulling ${name}...\n`);
    const progress = (m: Record<string, unknown>) => this.out.status(m);
    await this.engine.images.pull(ref, { insecure: this.opts.insecure, credentials: this.opts.credentials?.[ref.domain], progress });
    return this.engine.images.resolve(name);
  }

  /** Runs STAGE; returns its last image (undefined: scratch with no instruction). */
  async run(stage: StageDef, built: BuiltStage[]): Promise<Image | undefined> {
    const st: StageState = { args: new Map(), vars: { env: new Map(), escape: this.file.escape, cmdSet: false }, clearOnBuild: false };
    this.header(stage.from);
    await this.withLine(stage.from, async () => {
      checkPlatform(stage.from.flags.platform ? expandWord(stage.from.flags.platform, this.globalEnv(), this.file.escape) : undefined);
      st.image = await this.base(expandWord(stage.base, this.globalEnv(), this.file.escape), built);
      if (st.image) this.out.stream(` ---> ${short(st.image.id)}\n`);
    });
    const triggers = ((st.image?.config.config as RunConfig | undefined)?.OnBuild ?? []).flatMap((t) => parseDockerfile(t).instructions);
    st.clearOnBuild = triggers.length > 0;
    if (triggers.length) this.out.stream(`# Executing ${triggers.length} build trigger${triggers.length > 1 ? 's' : ''}\n`);
    const fromTriggers = triggers.map((t) => ({ ...t, line: stage.from.line }));
    for (const ins of [...fromTriggers, ...stage.body]) {
      if (!fromTriggers.includes(ins)) this.header(ins);
      st.image = await this.withLine(ins, () => this.instruction(ins, st, built));
    }
    return st.image;
  }

  private globalEnv(): Map<string, string> {
    const m = new Map<string, string>();
    for (const [k, v] of this.globals) if (v !== undefined) m.set(k, v);
    return m;
  }

  private async instruction(
    ins: Instruction,
    st: StageState,
    built: BuiltStage[],
  ): Promise<Image | undefined> {
    const cfg: RunConfig = { ...((st.image?.config.config ?? {}) as RunConfig) };
    if (st.clearOnBuild) cfg.OnBuild = null;
    st.vars.env = envMap([...st.args].map(([k, v]) => `${k}=${v}`), cfg.Env);
    switch (ins.cmd) {
      case 'ARG': {
        for (const [k, v] of keyValues(ins.args, st.vars.env, this.file.escape, { allowBare: true })) {
          const value = this.argValue(k, v ?? this.globals.get(k));
          if (value !== undefined) st.args.set(k, value);
          else st.args.delete(k);
        }
        return this.commit(st.image, { config: cfg, createdBy: `/bin/sh -c #(nop)  ARG ${ins.args}` });
      }
      case 'RUN': {
        if (Object.keys(ins.flags).length) throw invalid(`RUN --${Object.keys(ins.flags)[0]} needs BuildKit; the classic builder does not support it`);
        if (!st.image) throw invalid('RUN needs a base image with a shell (this stage is FROM scratch with no files)');
        const { argv } = commandForm(ins.args, cfg.Shell?.length ? cfg.Shell : DEFAULT_SHELL);
        const argEnv = [...st.args].map(([k, v]) => `${k}=${v}`);
        const createdBy = `${argEnv.length ? `|${argEnv.length} ${argEnv.join(' ')} ` : ''}${argv.join(' ')}`;
        const key = stepKey({ parent: st.image.id, instruction: createdBy, args: argEnv });
        const hit = this.cached(key);
        if (hit) return hit;
        const image = await runStep(this.engine, st.image, { argv, argEnv, createdBy, config: cfg }, this.out, this.opts.signal);
        return this.remember(key, image);
      }
      case 'COPY':
      case 'ADD': {
        const from = ins.flags.from ? expandWord(ins.flags.from, st.vars.env, this.file.escape) : undefined;
        const source = from ? await this.fromSource(from, built) : this.ctx.dir;
        const tmpDir = path.dirname(this.ctx.dir);
        const parent = st.image;
        const plan = await planCopy({
          ins: { ...ins, flags: { ...ins.flags, ...(from ? { from } : {}) } },
          env: st.vars.env,
          escape: this.file.escape,
          workdir: cfg.WorkingDir || '/',
          sourceRoot: source,
          parentRoot: async () => (parent ? this.engine.rootfs.imageRootfs(parent) : undefined),
          tmpDir,
        });
        try {
          const key = stepKey({ parent: parent?.id ?? 'scratch', instruction: plan.createdBy, content: plan.signature });
          const hit = this.cached(key);
          if (hit) return hit;
          return this.remember(key, await storeStep(this.engine.store, parent, { config: cfg, createdBy: plan.createdBy, layerFile: plan.layerFile }));
        } finally {
          fs.rmSync(plan.layerFile, { force: true });
        }
      }
      default: {
        const r = applyMetadata(cfg, ins, st.vars);
        return this.commit(st.image, r);
      }
    }
  }

  /** The root a `--from` reads: a previous stage's image, or an image by name. */
  private async fromSource(from: string, built: BuiltStage[]): Promise<string> {
    const byIndex = /^\d+$/.test(from) ? built[Number(from)] : undefined;
    const stage = byIndex ?? built.find((s) => s.name === from.toLowerCase());
    if (stage && !stage.image) throw invalid(`--from=${from}: that stage has no files (FROM scratch)`);
    const image = stage?.image ?? (await this.image(from, false));
    return this.engine.rootfs.imageRootfs(image);
  }

  /** A config-only step (cached like the others: its parent and instruction). */
  private async commit(parent: Image | undefined, step: StepResult): Promise<Image> {
    const key = stepKey({ parent: parent?.id ?? 'scratch', instruction: step.createdBy, content: JSON.stringify(step.config) });
    const hit = this.cached(key);
    if (hit) return hit;
    return this.remember(key, await storeStep(this.engine.store, parent, step));
  }

  private cached(key: string): Image | undefined {
    if (this.opts.noCache) return undefined;
    const id = this.cache.get(key);
    if (!id) return undefined;
    try {
      const image = this.engine.store.resolve(id);
      this.out.stream(` ---> Using cache\n ---> ${short(image.id)}\n`);
      return image;
    } catch {
      return undefined; // the image went (rmi, prune): build it again
    }
  }

  private remember(key: string, image: Image): Image {
    this.cache.set(key, image.id);
    this.out.stream(` ---> ${short(image.id)}\n`);
    return image;
  }

  /** The `labels` a client gave (`docker build --label`), as a last step. */
  async addLabels(image: Image | undefined, labels: Record<string, string>): Promise<Image> {
    const cfg: RunConfig = { ...((image?.config.config ?? {}) as RunConfig), Labels: { ...(image?.config.config.Labels ?? {}), ...labels } };
    const text = Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
    return this.commit(image, { config: cfg, createdBy: `/bin/sh -c #(nop)  LABEL ${text}` });
  }
}
