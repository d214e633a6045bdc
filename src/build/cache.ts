/**
 * The build cache: which image a step made, keyed on what decides its result
 * (the parent image ID, the instruction after substitution, the build
 * arguments a RUN sees, and for COPY/ADD the signature of the sources'
 * content, modes and owners). A hit is only used if the image is still in the
 * store; `build prune` forgets everything.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface StepKeyParts {
  /** The parent image's ID, or "scratch". */
  parent: string;
  /** The instruction as executed (substituted), e.g. its history line. */
  instruction: string;
  /** Build arguments in effect for a RUN ("K=V"), sorted. */
  args?: string[];
  /** COPY/ADD: the signature of the layer's content. */
  content?: string;
}

export function stepKey(parts: StepKeyParts): string {
  const h = createHash('sha256');
  h.update(JSON.stringify([parts.parent, parts.instruction, [...(parts.args ?? [])].sort(), parts.content ?? '']));
  return `sha256:${h.digest('hex')}`;
}

export class BuildCache {
  constructor(private readonly file: string) {}

  private read(): Record<string, string> {
    try {
      const v: unknown = JSON.parse(fs.readFileSync(this.file, 'utf8'));
      return v && typeof v === 'object' ? (v as Record<string, string>) : {};
    } catch {
      return {};
    }
  }

  get(key: string): string | undefined {
    return this.read()[key];
  }

  set(key: string, imageId: string): void {
    const all = this.read();
    all[key] = imageId;
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(all));
    fs.renameSync(tmp, this.file);
  }

  /** Forgets every entry; returns the image IDs it named. */
  clear(): string[] {
    const ids = [...new Set(Object.values(this.read()))];
    fs.rmSync(this.file, { force: true });
    return ids;
  }
}
