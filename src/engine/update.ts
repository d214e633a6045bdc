/**
 * `docker update`: the restart policy changes at once (the restart manager
 * reads it from the record at each exit, so the next exit follows the new
 * policy) and is saved. Memory and CPUs are the VM's shape, chosen when it
 * starts: a stopped container takes new values for its next start; a running
 * one cannot change them, and the answer says so. Other resource knobs have no
 * meaning for a VM-per-container engine and are refused, never silently dropped.
 */
import { invalid } from '../common/errors.js';
import type { Container } from './container.js';
import { validateRestartPolicy } from './restart.js';
import type { RestartPolicy } from './types.js';

export interface UpdateRequest {
  RestartPolicy?: RestartPolicy;
  Memory?: number;
  NanoCpus?: number;
  /** Names of the other resource fields given with a non-zero value. */
  unsupported?: string[];
}

export function applyUpdate(c: Container, req: UpdateRequest): string[] {
  const hc = c.record.HostConfig;
  if (req.unsupported?.length) {
    throw invalid(`updating ${req.unsupported.join(', ')} is not supported by hyperbox: each container is a VM whose size is set by its memory and CPUs only`);
  }
  const resizing = (req.Memory !== undefined && req.Memory !== hc.Memory) || (req.NanoCpus !== undefined && req.NanoCpus !== hc.NanoCpus);
  if (resizing) {
    if (c.record.PodId) throw invalid(`a pod's containers share its VM: per-container memory and CPUs cannot be updated`);
    if (c.running || c.starting || c.record.State.Status === 'paused') {
      throw invalid(`cannot update memory or CPUs of a running container: its VM's size is fixed when it starts; stop the container, update it, then start it`);
    }
    if (req.Memory !== undefined && (req.Memory < 0 || (req.Memory > 0 && req.Memory < 6 * 1024 * 1024))) throw invalid('Minimum memory limit allowed is 6MB');
    if (req.NanoCpus !== undefined && req.NanoCpus < 0) throw invalid('Range of CPUs is from 0.01 to the number of CPUs available');
  }
  if (req.RestartPolicy) {
    const why = validateRestartPolicy(req.RestartPolicy, hc.AutoRemove);
    if (why) throw invalid(why === 'conflicting options: cannot specify both --restart and --rm' ? 'Restart policy cannot be updated because AutoRemove is enabled for the container' : why);
  }
  if (resizing) {
    if (req.Memory !== undefined) hc.Memory = req.Memory;
    if (req.NanoCpus !== undefined) hc.NanoCpus = req.NanoCpus;
  }
  if (req.RestartPolicy) hc.RestartPolicy = req.RestartPolicy;
  c.save();
  return [];
}
