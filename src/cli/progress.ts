/**
 * Renders Docker's JSON progress messages (pull, push) like the docker CLI:
 * on a terminal one line per layer, updated in place; otherwise one line per
 * status change and no progress bars.
 */
export class ProgressRenderer {
  private lines: string[] = [];
  private ids = new Map<string, number>();
  private lastStatus = new Map<string, string>();

  constructor(
    private readonly out: NodeJS.WriteStream = process.stdout,
    private readonly tty = !!process.stdout.isTTY,
  ) {}

  handle(m: { status?: string; id?: string; progress?: string }): void {
    if (!m.status) return;
    const text = m.id ? `${m.id}: ${m.status}${this.tty && m.progress ? ` ${m.progress}` : ''}` : m.status;
    if (!m.id) {
      this.out.write(`${text}\n`);
      if (this.tty) this.lines.push(text), this.ids.clear(), (this.lines = []);
      return;
    }
    if (!this.tty) {
      if (this.lastStatus.get(m.id) === m.status) return;
      this.lastStatus.set(m.id, m.status);
      this.out.write(`${text}\n`);
      return;
    }
    const row = this.ids.get(m.id);
    if (row === undefined) {
      this.ids.set(m.id, this.lines.length);
      this.lines.push(text);
      this.out.write(`${text}\n`);
      return;
    }
    const up = this.lines.length - row;
    this.lines[row] = text;
    this.out.write(`\x1b[${up}A\r\x1b[2K${text}\x1b[${up}B\r`);
  }
}
