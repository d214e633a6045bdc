/**
 * Task events to containerd, the shim v2 way: the containerd binary run as
 * `containerd --address ADDR publish --topic T --namespace NS` with the event as a
 * protobuf Any on stdin. Events go one at a time, in the order they were
 * published (containerd's task manager relies on create < start < exit < delete).
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../common/logger.js';
import { encode, packAny } from './proto.js';

export interface PublisherOptions {
  /** The containerd binary (the shim's -publish-binary). */
  binary: string;
  /** containerd's gRPC address (the shim's -address). */
  address: string;
  namespace: string;
  logger: Logger;
}

/** containerd's topic for each task event. */
const TOPICS: Record<string, string> = {
  TaskCreate: '/tasks/create',
  TaskStart: '/tasks/start',
  TaskExit: '/tasks/exit',
  TaskDelete: '/tasks/delete',
  TaskOOM: '/tasks/oom',
  TaskExecAdded: '/tasks/exec-added',
  TaskExecStarted: '/tasks/exec-started',
  TaskPaused: '/tasks/paused',
  TaskResumed: '/tasks/resumed',
};

export class EventPublisher {
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly opts: PublisherOptions) {}

  /** Queues EVENT (a containerd.events message by its short name). */
  publish(event: keyof typeof TOPICS, fields: object): void {
    const any = encode('google.protobuf.Any', packAny(`containerd.events.${event}`, fields));
    this.chain = this.chain.then(() => this.send(TOPICS[event]!, any)).catch((err: Error) => this.opts.logger.warn(`publishing ${event}: ${err.message}`));
  }

  /** Resolves when every queued event has been handed to containerd. */
  drain(): Promise<void> {
    return this.chain;
  }

  private send(topic: string, any: Buffer): Promise<void> {
    const { binary, address, namespace } = this.opts;
    return new Promise((resolve, reject) => {
      const child = spawn(binary, ['--address', address, 'publish', '--topic', topic, '--namespace', namespace], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (b: Buffer) => (err += b.toString()).slice(-2000));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${binary} publish ${topic} exited ${code}: ${err.trim()}`))));
      child.stdin.on('error', () => undefined);
      child.stdin.end(any);
    });
  }
}
