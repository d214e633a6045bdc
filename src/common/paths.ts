/**
 * Default locations, following dockerd and the XDG base directories:
 * as root, state in /var/lib/hyperbox and the socket in /run/hyperbox;
 * otherwise under $XDG_DATA_HOME and $XDG_RUNTIME_DIR.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout hyperbox runs from (build/ holds the guest kernel and agent). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const isRoot = process.getuid?.() === 0;

export function defaultDataRoot(): string {
  if (isRoot) return '/var/lib/hyperbox';
  return path.join(process.env.XDG_DATA_HOME ?? path.join(os.homedir(), '.local/share'), 'hyperbox');
}

export function defaultSocketPath(): string {
  if (isRoot) return '/run/hyperbox/hyperbox.sock';
  return path.join(process.env.XDG_RUNTIME_DIR ?? path.join(os.homedir(), '.local/run'), 'hyperbox.sock');
}

export function defaultHost(): string {
  return `unix://${defaultSocketPath()}`;
}

export function defaultConfigFile(): string {
  if (isRoot) return '/etc/hyperbox/daemon.json';
  return path.join(process.env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config'), 'hyperbox/daemon.json');
}

/** "unix:///run/x.sock" -> "/run/x.sock". Only unix sockets for now. */
/** A daemon address: a unix socket path, or a TCP host and port. */
export type DaemonAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export function parseHost(host: string): DaemonAddress {
  if (host.startsWith('tcp://')) {
    const m = /^tcp:\/\/(\[[0-9a-fA-F:]+\]|[^:/]+)?(?::(\d+))?\/?$/.exec(host);
    if (!m) throw new Error(`invalid host "${host}": expected tcp://host:port`);
    const port = m[2] ? Number(m[2]) : 2376;
    if (port < 1 || port > 65535) throw new Error(`invalid port in "${host}"`);
    return { kind: 'tcp', host: (m[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port };
  }
  return { kind: 'unix', path: socketPathFromHost(host) };
}

export function socketPathFromHost(host: string): string {
  if (host.startsWith('unix://')) return host.slice('unix://'.length);
  if (host.startsWith('/')) return host;
  throw new Error(`unsupported host "${host}": only unix:///path sockets are supported`);
}
