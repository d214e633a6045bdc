/** System commands: info, version. */
import type { Command } from 'commander';
import { type Act, api, humanSize } from '../context.js';
import { renderTemplate } from '../format.js';

export const CLIENT_VERSION = '0.1.0';

/** `Warm Pool: 2 ready of 2 (1 per shape, 2 shapes)`: the pool size is per guest shape, and shapes fill on first need. */
function warmPoolLine(h: { PoolSize: number; PoolReady: number; PoolShapes?: number }): string {
  if (!h.PoolSize) return 'Warm Pool: off';
  const shapes = h.PoolShapes ?? 1;
  return `Warm Pool: ${h.PoolReady} ready of ${h.PoolSize * shapes} (${h.PoolSize} per shape, ${shapes} ${shapes === 1 ? 'shape' : 'shapes'})`;
}

export function registerSystemCommands(program: Command, act: Act): void {
  program
    .command('info')
    .description('display system-wide information')
    .option('-f, --format <template>', 'format output using a Go-style template')
    .action(
      act(async (o: { format?: string }) => {
        const i = await api<Record<string, unknown> & { HyperBox: { Accelerator: string; AcceleratorReason: string; QemuVersion: string; Templates: number; PoolSize: number; PoolReady: number; PoolShapes: number } }>('GET', '/info');
        if (o.format) {
          process.stdout.write(renderTemplate(o.format, i) + '\n');
          return 0;
        }
        const lines = [
          `Server Version: ${i.ServerVersion}`,
          `Containers: ${i.Containers} (running ${i.ContainersRunning}, stopped ${i.ContainersStopped})`,
          `Images: ${i.Images}`,
          `Hypervisor: QEMU ${i.HyperBox.QemuVersion} (microvm)`,
          `Accelerator: ${i.HyperBox.Accelerator}`,
          `Accelerator Reason: ${i.HyperBox.AcceleratorReason}`,
          `Templates: ${i.HyperBox.Templates}`,
          warmPoolLine(i.HyperBox),
          `Storage Driver: ${i.Driver}`,
          `Root Dir: ${i.DockerRootDir}`,
          `CPUs: ${i.NCPU}`,
          `Total Memory: ${humanSize(Number(i.MemTotal))}`,
        ];
        process.stdout.write(lines.join('\n') + '\n');
        return 0;
      }),
    );

  program
    .command('version')
    .description('show the hyperbox version information')
    .action(
      act(async () => {
        process.stdout.write(`Client:\n Version:    ${CLIENT_VERSION}\n API version: 1.51\n Node:       ${process.version}\n\n`);
        const v = await api<{ Version: string; ApiVersion: string; MinAPIVersion: string; Components: Array<{ Name: string; Version: string; Details: Record<string, string> }> }>('GET', '/version');
        const hv = v.Components.find((c) => c.Name === 'hypervisor');
        process.stdout.write(
          `Server: hyperbox\n Engine:\n  Version:     ${v.Version}\n  API version: ${v.ApiVersion} (minimum version ${v.MinAPIVersion})\n Hypervisor:\n  QEMU:        ${hv?.Version}\n  Accelerator: ${hv?.Details.Accelerator}\n`,
        );
        return 0;
      }),
    );
}
