/**
 * The VM layer's public face: the only module outside src/vm/ may import.
 * Drivers are chosen here; everything else is the VmDriver contract.
 */
import type { Logger } from '../common/logger.js';
import type { VmDriver } from './driver.js';
import { QemuDriver, qemuVersion } from './qemu/driver.js';

export type * from './driver.js';
export { chooseAccelerator, parseAccel, type AccelDecision } from './accel.js';
export { locateGuestAssets, type GuestAssets } from './assets.js';

export interface DriverOptions {
  /** Where templates are kept (shared by every process using the same directory). */
  templateDir: string;
  /** Where warm-pool VMs get their run directories. */
  runRoot: string;
  /** Warm-pool VMs per guest shape (0: none). */
  poolSize?: number;
  logger: Logger;
}

/** The VM driver: QEMU (the only one so far). Throws a clear error when QEMU is missing. */
export function createDriver(opts: DriverOptions): VmDriver {
  return new QemuDriver(qemuVersion(), opts);
}
