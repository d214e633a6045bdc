/**
 * One error type for the whole engine. Its kind decides the HTTP status the API
 * answers with (as Docker's errdefs do) and, in the CLI, the exit code.
 */
export type ErrorKind =
  | 'invalid' // 400
  | 'not_found' // 404
  | 'forbidden' // 403
  | 'unauthorized' // 401
  | 'conflict' // 409
  | 'not_modified' // 304
  | 'not_implemented' // 501
  | 'unavailable' // 503
  | 'internal'; // 500

const statusByKind: Record<ErrorKind, number> = {
  invalid: 400,
  not_found: 404,
  forbidden: 403,
  unauthorized: 401,
  conflict: 409,
  not_modified: 304,
  not_implemented: 501,
  unavailable: 503,
  internal: 500,
};

export class HyperboxError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'HyperboxError';
  }
  get httpStatus(): number {
    return statusByKind[this.kind];
  }
}

export const invalid = (m: string) => new HyperboxError('invalid', m);
export const notFound = (m: string) => new HyperboxError('not_found', m);
export const forbidden = (m: string) => new HyperboxError('forbidden', m);
export const unauthorized = (m: string) => new HyperboxError('unauthorized', m);
export const conflict = (m: string) => new HyperboxError('conflict', m);
export const notModified = (m: string) => new HyperboxError('not_modified', m);
export const notImplemented = (m: string) => new HyperboxError('not_implemented', m);
export const internal = (m: string) => new HyperboxError('internal', m);

export function errorStatus(err: unknown): number {
  return err instanceof HyperboxError ? err.httpStatus : 500;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
