/**
 * The containers this engine knows: lookups by ID, name or unique ID prefix
 * (Docker's rules), name reservation, and the questions other services ask
 * ("who uses this image / volume / pod?").
 */
import { conflict, invalid, notFound } from '../common/errors.js';
import type { Container } from './container.js';
import { generateName } from './names.js';

export const NAME_RE = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export class ContainerRegistry {
  private readonly byId = new Map<string, Container>();

  add(c: Container): void {
    this.byId.set(c.id, c);
  }

  delete(id: string): void {
    this.byId.delete(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Newest first. */
  list(): Container[] {
    return [...this.byId.values()].sort((a, b) => b.record.Created.localeCompare(a.record.Created));
  }

  all(): IterableIterator<Container> {
    return this.byId.values();
  }

  /** Finds a container by full ID, name, or unique ID prefix. */
  get(idOrName: string): Container {
    const exact = this.byId.get(idOrName);
    if (exact) return exact;
    const byName = this.byName(idOrName);
    if (byName) return byName;
    if (/^[a-f0-9]+$/.test(idOrName)) {
      const matches = [...this.byId.values()].filter((c) => c.id.startsWith(idOrName));
      if (matches.length === 1) return matches[0]!;
      if (matches.length > 1) throw invalid(`multiple IDs found with provided prefix: ${idOrName}`);
    }
    throw notFound(`No such container: ${idOrName}`);
  }

  private byName(name: string): Container | undefined {
    const want = `/${name.replace(/^\//, '')}`;
    return [...this.byId.values()].find((c) => c.name === want);
  }

  /** NAME, checked and free, or a generated free name. Docker's wording on conflicts. */
  chooseName(requested: string | undefined): string {
    const name = requested ? requested.replace(/^\//, '') : '';
    if (!name) {
      let generated: string;
      do generated = generateName();
      while (this.byName(generated));
      return generated;
    }
    if (!NAME_RE.test(name)) throw invalid(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    const other = this.byName(name);
    if (other) {
      throw conflict(`Conflict. The container name "/${name}" is already in use by container "${other.id}". You have to remove (or rename) that container to be able to reuse that name.`);
    }
    return name;
  }

  /** Renames C (Docker's rules and wording). Returns the old name. */
  rename(c: Container, newName: string): string {
    const name = newName.replace(/^\//, '');
    if (!NAME_RE.test(name)) throw invalid(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    if (`/${name}` === c.name) throw invalid(`Renaming a container with the same name as its current name`);
    if (this.byName(name)) throw conflict(`Error when allocating new name: Conflict. The container name "/${name}" is already in use.`);
    const old = c.name;
    c.record.Name = `/${name}`;
    c.save();
    return old;
  }

  imageUser(imageId: string): Container | undefined {
    return [...this.byId.values()].find((c) => c.record.ImageId === imageId);
  }

  /** Names of the containers that reference a volume. */
  volumeUsers(name: string): string[] {
    return this.list()
      .filter((c) => c.record.MountPoints?.some((m) => m.Type === 'volume' && m.Name === name))
      .map((c) => c.shortName);
  }

  podMembers(podId: string): Container[] {
    return this.list().filter((c) => c.record.PodId === podId);
  }
}
