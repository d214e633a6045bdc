/**
 * The protobuf messages of containerd's shim API and of ttrpc, from the .proto
 * files vendored in ./proto (loaded once with protobufjs; nothing generated).
 */
import path from 'node:path';
import protobuf from 'protobufjs';
import { repoRoot } from '../common/paths.js';

const PROTO_DIR = path.join(repoRoot, 'src/shim/proto');
let root: protobuf.Root | undefined;

function load(): protobuf.Root {
  if (root) return root;
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => (target.startsWith('google/') ? target : path.join(PROTO_DIR, path.basename(target)));
  r.loadSync(['shim.proto', 'events.proto', 'ttrpc.proto', 'metrics.proto'].map((f) => path.join(PROTO_DIR, f)), { keepCase: true });
  root = r;
  return r;
}

export function messageType(name: string): protobuf.Type {
  return load().lookupType(name);
}

/** Encodes OBJ (snake_case fields, as in the .proto) as message NAME. */
export function encode(name: string, obj: object): Buffer {
  const t = messageType(name);
  return Buffer.from(t.encode(t.fromObject(obj)).finish());
}

/** Decodes BYTES as message NAME into a plain object with defaults filled in. */
export function decode<T = Record<string, unknown>>(name: string, bytes: Uint8Array): T {
  const t = messageType(name);
  return t.toObject(t.decode(bytes), { defaults: true, longs: Number, enums: Number, bytes: Buffer }) as T;
}

/** A google.protobuf.Any holding message NAME (containerd's typeurl names events by their full name). */
export function packAny(name: string, obj: object): { type_url: string; value: Buffer } {
  return { type_url: name, value: encode(name, obj) };
}

/** A google.protobuf.Timestamp for a JS date. */
export function timestamp(d: Date): { seconds: number; nanos: number } {
  const ms = d.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}
