/**
 * The engine's event bus (Docker's /events): every event is emitted here and
 * nowhere else, and the last thousand are kept for `since` queries.
 */
import { EventEmitter } from 'node:events';
import type { Container } from './container.js';

export interface EngineEvent {
  Type: 'container' | 'image' | 'network' | 'volume';
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  time: number;
  timeNano: number;
}

const KEEP = 1000;

export class EventBus extends EventEmitter<{ event: [EngineEvent] }> {
  readonly recent: EngineEvent[] = [];

  constructor() {
    super();
    this.setMaxListeners(0);
  }

  publish(type: EngineEvent['Type'], action: string, id: string, attributes: Record<string, string>): void {
    const now = Date.now();
    const ev: EngineEvent = { Type: type, Action: action, Actor: { ID: id, Attributes: attributes }, time: Math.floor(now / 1000), timeNano: now * 1_000_000 };
    this.recent.push(ev);
    if (this.recent.length > KEEP) this.recent.shift();
    this.emit('event', ev);
  }

  container(c: Container, action: string, extra: Record<string, string> = {}): void {
    this.publish('container', action, c.id, { name: c.shortName, image: c.record.ImageRef, ...extra });
  }
}
