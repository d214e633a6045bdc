/* What keeps a container's processes to themselves inside the guest, above
 * the mount namespace (rootns.c) and the chroot (spawn.c):
 *
 *  - A PID namespace per container. Its main process is PID 1 of a new one
 *    (with Docker's PID 1 semantics: a signal it has no handler for, SIGKILL
 *    aside, does not reach it); an exec joins the namespace of the root's main
 *    process. A fresh procfs is mounted at the container's /proc, so it sees
 *    its own processes only: neither the agent (no /proc/1/root of the VM) nor
 *    another member of its pod (no /proc/PID/root into their roots).
 *  - The agent is not dumpable: nothing in the guest can ptrace it or open
 *    its /proc/PID/{root,mem,fd} without CAP_SYS_PTRACE.
 *  - Docker's capability set (request.c computes it): the bounding set cut to
 *    it, permitted and effective equal to it for root, none inheritable or
 *    ambient; and, as Docker masks them, /proc/sys and its kin read-only and
 *    /proc/kcore and its kin hidden, unless privileged.
 *  - `--init`: a forked copy of the agent as PID 1 that forwards signals to the
 *    process and reaps orphans (what tini does for docker run --init). */
#define _GNU_SOURCE
#include "agent.h"
#include "request.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define PROC_MAGIC 0x9fa0
/* From <linux/capability.h>, which musl does not ship. */
struct hb_cap_header { uint32_t version; int pid; };
struct hb_cap_data { uint32_t effective, permitted, inheritable; };
#define HB_CAP_VERSION_3 0x20080522

static int self_pidns = -1;

void contain_init(void) {
  /* Not dumpable: no ptrace, no /proc/1/{root,mem,environ} for anyone without
   * CAP_SYS_PTRACE. A forked child inherits it until its exec. */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) agent_log("PR_SET_DUMPABLE: %s", strerror(errno));
  self_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
  if (self_pidns < 0) agent_log("own PID namespace: %s", strerror(errno));
}

/* The live main process of root NAME (a START without T_EXEC). */
static struct proc *main_of(const char *name) {
  for (int i = 0; i < MAX_PROCS; i++)
    if (procs[i].id && procs[i].main && !procs[i].exited && strcmp(procs[i].root, name) == 0) return &procs[i];
  return NULL;
}

pid_t fork_contained(const struct start_req *r, const char **what) {
  char path[64];
  if (self_pidns < 0) { *what = "no PID namespace of the agent"; errno = ENOSYS; return -1; }
  if (r->tool) {
    /* The host's tool stays in the agent's namespace: no container process sees it. */
    pid_t pid = fork();
    if (pid < 0) *what = "fork";
    return pid;
  }
  if (r->exec) {
    struct proc *m = main_of(r->name);
    if (!m) { *what = "the container's main process is not running"; errno = ESRCH; return -1; }
    snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)m->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { *what = "the container's PID namespace is gone"; return -1; }
    int rc = setns(fd, CLONE_NEWPID), e = errno;
    close(fd);
    errno = e;
    if (rc < 0) { *what = "join the container's PID namespace"; return -1; }
  } else if (unshare(CLONE_NEWPID) < 0) {
    *what = "new PID namespace";
    return -1;
  }
  /* The next child only is in that namespace: the agent's own stays the same. */
  pid_t pid = fork();
  int e = errno;
  if (pid == 0) return 0;
  /* cannot fail (the agent's own namespace); if it did, say so loudly */
  if (setns(self_pidns, CLONE_NEWPID) < 0) agent_log("back to the agent's PID namespace: %s", strerror(errno));
  if (pid < 0) *what = "fork";
  errno = e;
  return pid;
}

/* Docker's masked and read-only paths of /proc. */
static const char *const masked[] = {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                     "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi"};
static const char *const readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};

static int mask_path(const char *p) {
  struct stat st;
  if (stat(p, &st) < 0) return errno == ENOENT ? 0 : -1;
  if (S_ISDIR(st.st_mode)) return mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0");
  return mount("/dev/null", p, NULL, MS_BIND, NULL);
}

static int readonly_path(const char *p) {
  if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) return errno == ENOENT ? 0 : -1;
  return mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

int mount_own_proc(int privileged, char *msg, size_t cap) {
  struct statfs sf;
  /* The procfs MOUNT_ROOT mounted (the agent's view) or a previous run's:
   * every path below is inside the chroot, so an image link cannot lead out. */
  for (int i = 0; i < 8 && statfs("/proc", &sf) == 0 && sf.f_type == PROC_MAGIC; i++)
    if (umount2("/proc", MNT_DETACH | UMOUNT_NOFOLLOW) < 0) break;
  (void)mkdir("/proc", 0555); /* a failure shows in the mount */
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
    snprintf(msg, cap, "mount /proc: %s", strerror(errno));
    return -1;
  }
  if (privileged) return 0;
  for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++)
    if (mask_path(masked[i]) < 0) { snprintf(msg, cap, "mask %s: %s", masked[i], strerror(errno)); return -1; }
  for (size_t i = 0; i < sizeof readonly / sizeof readonly[0]; i++)
    if (readonly_path(readonly[i]) < 0) { snprintf(msg, cap, "read-only %s: %s", readonly[i], strerror(errno)); return -1; }
  return 0;
}

int drop_bounding(uint64_t caps) {
  for (int c = 0; c < 64; c++)
    if (!(caps >> c & 1) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) return -1;
  return 0;
}

int set_caps(uint64_t caps) {
  struct hb_cap_header h = {HB_CAP_VERSION_3, 0};
  struct hb_cap_data d[2] = {{(uint32_t)caps, (uint32_t)caps, 0}, {(uint32_t)(caps >> 32), (uint32_t)(caps >> 32), 0}};
  if (syscall(SYS_capset, &h, d) < 0) return -1;
  return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL ? -1 : 0;
}

int become_init(int tty) {
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &all, NULL); /* blocked signals reach a namespace's PID 1, and wait here */
  pid_t child = fork();
  if (child < 0) return -1;
  if (child == 0) {
    setpgid(0, 0);
    if (tty) (void)tcsetpgrp(0, getpid()); /* the foreground group: ^C goes to the process */
    sigprocmask(SIG_SETMASK, &none, NULL);
    return 0;
  }
  /* The init holds nothing of the agent's, only 0, 1 and 2 (its child reports
   * a failed exec on the status pipe itself). */
  if (syscall(SYS_close_range, 3, ~0u, 0) < 0)
    for (int fd = 3; fd < 1024; fd++) close(fd);
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0) continue;
    if (sig != SIGCHLD) { (void)kill(child, sig); continue; }
    int st;
    pid_t w;
    while ((w = waitpid(-1, &st, WNOHANG)) > 0)
      if (w == child) _exit(WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st));
  }
}

int join_main_cgroup_ns(const char *name) {
  char path[64];
  struct proc *m = main_of(name);
  if (!m) { errno = ESRCH; return -1; }
  snprintf(path, sizeof path, "/proc/%d/ns/cgroup", (int)m->pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = setns(fd, CLONE_NEWCGROUP), e = errno;
  close(fd);
  errno = e;
  return rc;
}

int mount_own_cgroup(int privileged, char *msg, size_t cap) {
  unsigned long ro = privileged ? 0 : MS_RDONLY;
  (void)mkdir("/sys/fs/cgroup", 0755); /* sysfs has it; a failure shows in the mount */
  if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", ro | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
    snprintf(msg, cap, "mount /sys/fs/cgroup: %s", strerror(errno));
    return -1;
  }
  return 0;
}

/* ---- the OCI spec's sysctls, masked and read-only paths, seccomp (containerd shim) ---- */

int apply_sysctls(const struct start_req *r, char *msg, size_t cap) {
  char path[256] = "/proc/sys/", *key = path + 10;
  const char *value;
  for (int i = 0; i < r->nsysctl; i++) {
    if (parse_sysctl(r->sysctl[i], key, sizeof path - 10, &value) < 0) {
      snprintf(msg, cap, "invalid sysctl \"%s\"", r->sysctl[i]);
      errno = EINVAL;
      return -1;
    }
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    ssize_t n = fd < 0 ? -1 : write(fd, value, strlen(value));
    int e = errno;
    if (fd >= 0) close(fd);
    if (n != (ssize_t)strlen(value)) {
      snprintf(msg, cap, "sysctl %s: %s", key, strerror(n < 0 ? e : EIO));
      errno = n < 0 ? e : EIO;
      return -1;
    }
  }
  return 0;
}

/* As runc: a path that does not exist is skipped. */
int apply_path_masks(const struct start_req *r, char *msg, size_t cap) {
  for (int i = 0; i < r->nmask; i++)
    if (mask_path(r->mask[i]) < 0) { snprintf(msg, cap, "mask %s: %s", r->mask[i], strerror(errno)); return -1; }
  for (int i = 0; i < r->nropath; i++) {
    const char *p = r->ropath[i];
    int rc = mount(p, p, NULL, MS_BIND | MS_REC, NULL);
    if (rc < 0 && errno == ENOENT) continue;
    if (rc < 0 || mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0) {
      snprintf(msg, cap, "read-only %s: %s", p, strerror(errno));
      return -1;
    }
  }
  return 0;
}

/* <linux/filter.h> and <linux/seccomp.h>, which musl does not ship. */
struct hb_sock_filter { uint16_t code; uint8_t jt, jf; uint32_t k; };
struct hb_sock_fprog { unsigned short len; struct hb_sock_filter *filter; };
#define HB_SECCOMP_MODE_FILTER 2

int apply_seccomp(const struct start_req *r, char *msg, size_t cap) {
  static struct hb_sock_filter prog[SECCOMP_MAX_INSNS];
  if (r->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    snprintf(msg, cap, "no_new_privs: %s", strerror(errno));
    return -1;
  }
  if (!r->seccomp) return 0;
  size_t n = r->seccomp_len / 8; /* parse_start: a whole number of instructions, at most SECCOMP_MAX_INSNS */
  for (size_t i = 0; i < n; i++) {
    const uint8_t *b = r->seccomp + 8 * i;
    prog[i].code = (uint16_t)(b[0] | b[1] << 8);
    prog[i].jt = b[2];
    prog[i].jf = b[3];
    prog[i].k = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
  }
  struct hb_sock_fprog fp = {(unsigned short)n, prog};
  /* Still root with every capability here (before setuid): no_new_privs is not needed. */
  if (prctl(PR_SET_SECCOMP, HB_SECCOMP_MODE_FILTER, &fp, 0, 0) < 0) {
    snprintf(msg, cap, "seccomp filter: %s", strerror(errno));
    return -1;
  }
  return 0;
}
