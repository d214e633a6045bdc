/**
 * One daemon per data root. A second hyperboxd on the same data root (another
 * socket, or started while the first still runs) would take the first's VMs for
 * ones "left by a previous daemon" and stop them, and re-attach its containers'
 * agents: it is refused before it touches anything, as dockerd refuses a second
 * start on its pid file. The pid file says who holds the root; one whose process
 * is gone (a killed daemon) or is no hyperboxd (a reused pid) is stale.
 */
import fs from 'node:fs';
import path from 'node:path';

export const PID_FILE = 'hyperboxd.pid';

/** Whether PID is a running hyperboxd (its command line names the daemon). */
function isHyperboxd(pid: number): boolean {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => /(^|\/)hyperboxd$|daemon\/main\.js$/.test(a));
  } catch {
    return false;
  }
}

/** The pid of the live daemon holding DATAROOT, if another one does. */
export function dataRootHolder(dataRoot: string): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(dataRoot, PID_FILE), 'utf8').trim());
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 0 && pid !== process.pid && isHyperboxd(pid) ? pid : undefined;
}

/**
 * Takes DATAROOT for this process; throws if a live daemon holds it. Returns the
 * release. The file is rewritten in place (its old block is reused): a daemon must
 * start on a full filesystem, to recover the VMs a full disk paused; if even that
 * write fails, it starts unrecorded and WARN says so.
 */
export function claimDataRoot(dataRoot: string, warn: (msg: string) => void): () => void {
  const holder = dataRootHolder(dataRoot);
  if (holder !== undefined) {
    throw new Error(`another hyperboxd (pid ${holder}) is running on data root ${dataRoot}: stop it first, or give this one its own --data-root`);
  }
  const file = path.join(dataRoot, PID_FILE);
  try {
    fs.writeFileSync(file, String(process.pid));
  } catch (err) {
    warn(`${file}: ${(err as Error).message}: a second daemon on this data root would not be refused`);
  }
  return () => {
    const mine = fs.existsSync(file) && fs.readFileSync(file, 'utf8').trim() === String(process.pid);
    if (mine) fs.rmSync(file, { force: true });
  };
}
