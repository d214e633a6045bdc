/** Daemon log lines on stderr, filtered by --log-level (dockerd's levels). */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'fatal';
const order: LogLevel[] = ['debug', 'info', 'warn', 'error', 'fatal'];

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function createLogger(level: LogLevel): Logger {
  const min = order.indexOf(level);
  const at = (l: LogLevel) => (msg: string) => {
    if (order.indexOf(l) >= min) process.stderr.write(`time="${new Date().toISOString()}" level=${l} msg=${JSON.stringify(msg)}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export function parseLogLevel(v: string): LogLevel {
  if ((order as string[]).includes(v)) return v as LogLevel;
  throw new Error(`invalid log level "${v}": expected one of ${order.join(', ')}`);
}
