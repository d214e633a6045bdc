/**
 * The OCI spec's linux.seccomp profile compiled to a classic BPF program for
 * the guest's kernel (x86_64), which the agent installs just before exec (as
 * runc does with libseccomp). Pure: no I/O.
 *
 * The program checks the ABI first: only x86_64 system calls are matched
 * (an i386 or x32 call gets the default action if that denies, else ENOSYS:
 * never let through unchecked). Then each rule in the profile's order, each of
 * its names: the first rule whose number and argument conditions (ANDed)
 * match decides; none matching gives the default action. Names this kernel
 * does not know are skipped (runc skips those libseccomp does not know).
 */
import { SYSCALLS_X86_64 } from './syscalls-x86_64.js';

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}
export interface SeccompRule {
  names?: string[];
  action: string;
  errnoRet?: number;
  args?: SeccompArg[];
}
export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: SeccompRule[];
}

export class SeccompError extends Error {}

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;
const EPERM = 1;
const ENOSYS = 38;
const BPF_MAXINSNS = 4096;

// Classic BPF opcodes (linux/filter.h) and seccomp_data offsets (linux/seccomp.h).
const LD_ABS = 0x20;
const JEQ = 0x15;
const JGT = 0x25;
const JGE = 0x35;
const AND = 0x54;
const RET = 0x06;
const OFF_NR = 0;
const OFF_ARCH = 4;
const argLo = (i: number) => 16 + 8 * i;
const argHi = (i: number) => 20 + 8 * i;

/** A jump target: a number of instructions to skip, or the end of the rule's block ("no match"). */
type Target = number | 'fail';
interface Insn {
  code: number;
  jt: Target;
  jf: Target;
  k: number;
}
const stmt = (code: number, k: number): Insn => ({ code, jt: 0, jf: 0, k: k >>> 0 });
const jump = (code: number, k: number, jt: Target, jf: Target): Insn => ({ code, jt, jf, k: k >>> 0 });

/** The SECCOMP_RET_* value of an OCI action. */
export function actionValue(action: string, errnoRet: number | undefined): number {
  const data = (errnoRet ?? EPERM) & 0xffff;
  switch (action) {
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD': return 0;
    case 'SCMP_ACT_KILL_PROCESS': return 0x80000000;
    case 'SCMP_ACT_TRAP': return 0x00030000;
    case 'SCMP_ACT_ERRNO': return (0x00050000 | data) >>> 0;
    case 'SCMP_ACT_TRACE': return (0x7ff00000 | ((errnoRet ?? 0) & 0xffff)) >>> 0;
    case 'SCMP_ACT_LOG': return 0x7ffc0000;
    case 'SCMP_ACT_ALLOW': return 0x7fff0000;
    default: throw new SeccompError(`seccomp action ${JSON.stringify(action)} is not supported by the hyperbox shim`);
  }
}

const split64 = (v: number): [number, number] => {
  if (!Number.isFinite(v) || v < 0) throw new SeccompError(`seccomp argument value ${v} is not an unsigned number`);
  const b = BigInt(Math.trunc(v));
  return [Number(b >> 32n) >>> 0, Number(b & 0xffffffffn) >>> 0];
};

/** Instructions that fall through when argument A's condition holds and jump to 'fail' when not. */
function argCheck(a: SeccompArg): Insn[] {
  if (!Number.isInteger(a.index) || a.index < 0 || a.index > 5) throw new SeccompError(`seccomp argument index ${a.index} is not 0..5`);
  const [hi, lo] = split64(a.value);
  const ldHi = stmt(LD_ABS, argHi(a.index));
  const ldLo = stmt(LD_ABS, argLo(a.index));
  switch (a.op) {
    case 'SCMP_CMP_EQ': return [ldHi, jump(JEQ, hi, 0, 'fail'), ldLo, jump(JEQ, lo, 0, 'fail')];
    case 'SCMP_CMP_NE': return [ldHi, jump(JEQ, hi, 0, 2), ldLo, jump(JEQ, lo, 'fail', 0)];
    case 'SCMP_CMP_MASKED_EQ': {
      const [dHi, dLo] = split64(a.valueTwo ?? 0);
      return [ldHi, stmt(AND, hi), jump(JEQ, dHi, 0, 'fail'), ldLo, stmt(AND, lo), jump(JEQ, dLo, 0, 'fail')];
    }
    // Unsigned 64-bit orders: the high words decide unless equal, then the low words.
    case 'SCMP_CMP_GT': return [ldHi, jump(JGT, hi, 3, 0), jump(JEQ, hi, 0, 'fail'), ldLo, jump(JGT, lo, 0, 'fail')];
    case 'SCMP_CMP_GE': return [ldHi, jump(JGT, hi, 3, 0), jump(JEQ, hi, 0, 'fail'), ldLo, jump(JGE, lo, 0, 'fail')];
    case 'SCMP_CMP_LT': return [ldHi, jump(JGE, hi, 0, 3), jump(JEQ, hi, 0, 'fail'), ldLo, jump(JGE, lo, 'fail', 0)];
    case 'SCMP_CMP_LE': return [ldHi, jump(JGE, hi, 0, 3), jump(JEQ, hi, 0, 'fail'), ldLo, jump(JGT, lo, 'fail', 0)];
    default: throw new SeccompError(`seccomp operator ${JSON.stringify(a.op)} is not supported`);
  }
}

/** One name of a rule: [load nr already done] match the number and the args, then return ACTION. */
function ruleBlock(nr: number, args: SeccompArg[], action: number): Insn[] {
  const checks = args.flatMap(argCheck);
  const block = [jump(JEQ, nr, 0, 'fail'), ...checks];
  // Argument checks load argument words into A: reload the number for the next block.
  if (checks.length) block.push(stmt(RET, action), stmt(LD_ABS, OFF_NR));
  else block.push(stmt(RET, action));
  // 'fail' lands after the RET: on the reload if there is one (the next block needs nr in A).
  const failAt = block.length - (checks.length ? 1 : 0);
  return block.map((insn, i) => {
    const rel = (t: Target) => (t === 'fail' ? failAt - i - 1 : t);
    const jt = rel(insn.jt);
    const jf = rel(insn.jf);
    if (jt > 255 || jf > 255) throw new SeccompError('seccomp rule too long');
    return { ...insn, jt, jf };
  });
}

/** The BPF program for PROFILE: struct sock_filter[] as the guest reads it (little endian). */
export function compileSeccomp(profile: SeccompProfile): Buffer {
  if (!profile || typeof profile.defaultAction !== 'string') throw new SeccompError('a seccomp profile needs a defaultAction');
  const def = actionValue(profile.defaultAction, profile.defaultErrnoRet);
  const denies = def !== 0x7fff0000 && def !== 0x7ffc0000;
  const foreign = denies ? def : (0x00050000 | ENOSYS) >>> 0;
  const prog: Insn[] = [
    stmt(LD_ABS, OFF_ARCH),
    jump(JEQ, AUDIT_ARCH_X86_64, 1, 0),
    stmt(RET, foreign),
    stmt(LD_ABS, OFF_NR),
    jump(JGE, X32_SYSCALL_BIT, 0, 1),
    stmt(RET, foreign),
  ];
  for (const rule of profile.syscalls ?? []) {
    const action = actionValue(rule.action, rule.errnoRet);
    for (const name of rule.names ?? []) {
      const nr = SYSCALLS_X86_64.get(name);
      if (nr !== undefined) prog.push(...ruleBlock(nr, rule.args ?? [], action));
    }
  }
  prog.push(stmt(RET, def));
  if (prog.length > BPF_MAXINSNS) throw new SeccompError(`the seccomp profile needs ${prog.length} BPF instructions, more than the kernel's ${BPF_MAXINSNS}`);
  const out = Buffer.alloc(prog.length * 8);
  prog.forEach((insn, i) => {
    out.writeUInt16LE(insn.code, i * 8);
    out.writeUInt8(insn.jt as number, i * 8 + 2);
    out.writeUInt8(insn.jf as number, i * 8 + 3);
    out.writeUInt32LE(insn.k, i * 8 + 4);
  });
  return out;
}
