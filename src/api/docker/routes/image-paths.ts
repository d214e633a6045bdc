/**
 * Image names contain slashes ("localhost:5000/team/app:1"), so routes such as
 * /images/{name}/json cannot be matched by the router's parameters. Each method
 * gets one wildcard route here, and handlers register by suffix ("/json",
 * "/push", "/history"); a bare /images/{name} is the empty suffix.
 */
import { notFound } from '../../../common/errors.js';
import type { Ctx } from '../http.js';
import type { Method, RouteTable } from '../server.js';

export type ImageHandler = (ctx: Ctx, name: string) => Promise<void> | void;

export class ImagePaths {
  private readonly handlers = new Map<Method, Array<{ suffix: string; handler: ImageHandler }>>();

  constructor(private readonly table: RouteTable) {}

  add(method: Method, suffix: string, handler: ImageHandler): void {
    let list = this.handlers.get(method);
    if (!list) {
      list = [];
      this.handlers.set(method, list);
      this.table.add(method, '/images/*', (ctx) => this.dispatch(method, ctx));
    }
    list.push({ suffix, handler });
    // Longest suffix first, so "" (the bare name) is tried last.
    list.sort((a, b) => b.suffix.length - a.suffix.length);
  }

  private dispatch(method: Method, ctx: Ctx): Promise<void> | void {
    const wild = ctx.params['*'] ?? '';
    for (const { suffix, handler } of this.handlers.get(method) ?? []) {
      if (suffix === '' || (wild.endsWith(suffix) && wild.length > suffix.length)) {
        return handler(ctx, suffix ? wild.slice(0, -suffix.length) : wild);
      }
    }
    throw notFound('page not found');
  }
}
