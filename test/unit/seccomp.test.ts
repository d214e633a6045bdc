/**
 * The shim's seccomp compiler (src/shim/seccomp.ts): each program it emits is
 * run here by a small classic-BPF interpreter over seccomp_data as the kernel
 * lays it out, and its verdicts are checked against the profile's meaning.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { compileSeccomp, SeccompError, type SeccompProfile } from '../../src/shim/seccomp.js';
import { SYSCALLS_X86_64 } from '../../src/shim/syscalls-x86_64.js';

const X86_64 = 0xc000003e;
const I386 = 0x40000003;
const ALLOW = 0x7fff0000;
const errno = (e: number) => 0x00050000 | e;
const nr = (name: string) => SYSCALLS_X86_64.get(name)!;

/** Runs PROG (struct sock_filter[], little endian) on one system call: its SECCOMP_RET_* value. */
function run(prog: Buffer, call: { nr: number; arch?: number; args?: bigint[] }): number {
  const data = Buffer.alloc(64);
  data.writeUInt32LE(call.nr, 0);
  data.writeUInt32LE(call.arch ?? X86_64, 4);
  (call.args ?? []).forEach((a, i) => data.writeBigUInt64LE(a, 16 + 8 * i));
  let a = 0;
  for (let pc = 0, steps = 0; pc < prog.length / 8; pc++, steps++) {
    assert.ok(steps < 10_000);
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog.readUInt8(pc * 8 + 2);
    const jf = prog.readUInt8(pc * 8 + 3);
    const k = prog.readUInt32LE(pc * 8 + 4);
    switch (code) {
      case 0x20: assert.ok(k % 4 === 0 && k < 64); a = data.readUInt32LE(k); break;
      case 0x54: a = (a & k) >>> 0; break;
      case 0x06: return k;
      case 0x15: pc += a === k ? jt : jf; break;
      case 0x25: pc += a > k ? jt : jf; break;
      case 0x35: pc += a >= k ? jt : jf; break;
      default: assert.fail(`unexpected opcode ${code.toString(16)} at ${pc}`);
    }
  }
  return assert.fail('the program ran off its end');
}

describe('seccomp profiles compiled to BPF', () => {
  it("blocks what the profile lists, allows the rest (critest's block-chmod profile), and only x86_64 calls", () => {
    const prog = compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chmod', 'fchmod', 'fchmodat', 'no_such_call'], action: 'SCMP_ACT_ERRNO' }] });
    for (const name of ['chmod', 'fchmodat']) assert.equal(run(prog, { nr: nr(name) }), errno(1), name);
    assert.equal(run(prog, { nr: nr('read') }), ALLOW);
    assert.equal(run(prog, { nr: nr('chmod'), arch: I386 }), errno(38), 'another ABI is refused, not let through');
    assert.equal(run(prog, { nr: 0x40000000 + nr('chmod') }), errno(38), 'x32 calls too');
  });

  it('allows only what an allow list names, with errno and kill actions', () => {
    const profile: SeccompProfile = {
      defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 38,
      syscalls: [{ names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' }, { names: ['sethostname'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }, { names: ['reboot'], action: 'SCMP_ACT_KILL_PROCESS' }],
    };
    const prog = compileSeccomp(profile);
    assert.equal(run(prog, { nr: nr('write') }), ALLOW);
    assert.equal(run(prog, { nr: nr('sethostname') }), errno(13));
    assert.equal(run(prog, { nr: nr('reboot') }), 0x80000000);
    assert.equal(run(prog, { nr: nr('mount') }), errno(38));
    assert.equal(run(prog, { nr: nr('mount'), arch: I386 }), errno(38), 'a denying default applies to other ABIs');
  });

  it('matches argument conditions on 64-bit values (ANDed; the first matching rule decides)', () => {
    const big = 2 ** 40 + 5;
    const prog = compileSeccomp({
      defaultAction: 'SCMP_ACT_ERRNO',
      syscalls: [
        { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
        { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: big, op: 'SCMP_CMP_EQ' }] },
        { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
        { names: ['kill'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 9, op: 'SCMP_CMP_NE' }, { index: 0, value: 1, op: 'SCMP_CMP_GT' }] },
        { names: ['dup2'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: big, op: 'SCMP_CMP_LT' }] },
        { names: ['dup3'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: big, op: 'SCMP_CMP_GE' }] },
        { names: ['tkill'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: big, op: 'SCMP_CMP_LE' }] },
      ],
    });
    const call = (name: string, ...args: Array<number | bigint>) => run(prog, { nr: nr(name), args: args.map(BigInt) });
    assert.equal(call('personality', 8), ALLOW);
    assert.equal(call('personality', BigInt(big)), ALLOW);
    assert.equal(call('personality', 5n), errno(1));
    assert.equal(call('personality', (1n << 32n) + 8n), errno(1), 'the high word counts');
    assert.equal(call('clone', 0x11), ALLOW);
    assert.equal(call('clone', 0x10000000 | 0x11), errno(1), 'CLONE_NEWUSER-like flags masked');
    assert.equal(call('kill', 5, 15), ALLOW);
    assert.equal(call('kill', 5, 9), errno(1), 'signal 9: NE fails');
    assert.equal(call('kill', 1, 15), errno(1), 'pid 1: GT fails');
    assert.equal(call('dup2', 0, big - 1), ALLOW);
    assert.equal(call('dup2', 0, big), errno(1));
    assert.equal(call('dup2', 0, 2 ** 41), errno(1));
    assert.equal(call('dup3', 0, big), ALLOW);
    assert.equal(call('dup3', 0, 7), errno(1));
    assert.equal(call('tkill', big), ALLOW);
    assert.equal(call('tkill', big + 1), errno(1));
  });

  it("fits a default-sized allow list (every call of the Docker profile's names) and refuses what it cannot express", () => {
    const docker = '/usr/share/containers/seccomp.json';
    const names = fs.existsSync(docker)
      ? (JSON.parse(fs.readFileSync(docker, 'utf8')) as { syscalls: Array<{ names: string[] }> }).syscalls.flatMap((s) => s.names)
      : [...SYSCALLS_X86_64.keys()];
    const prog = compileSeccomp({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names, action: 'SCMP_ACT_ALLOW' }] });
    assert.ok(prog.length / 8 < 4096 && prog.length / 8 > 300, `${prog.length / 8} instructions`);
    assert.equal(run(prog, { nr: nr('openat') }), ALLOW);
    assert.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_NOTIFY' }), SeccompError);
    assert.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, value: 0, op: 'SCMP_CMP_EQ' }] }] }), /index 6/);
    assert.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 0, op: 'SCMP_CMP_SOMETIMES' }] }] }), /operator/);
  });
});
