/* Declarations shared by the units of the hyperbox guest agent:
 *   main.c       init and the poll()/dispatch loop
 *   util.c       logging, RESULT replies, small fd helpers
 *   request.c    pure parsers of request payloads (request.h; fuzzed; request-limits.c: LIMITS, sysctls)
 *   configure.c  CONFIGURE: hostname, clock, RNG seed, memory limit, network; READDRESS
 *   net.c        lo and eth0 with ioctls
 *   mounts.c     the agent's own mounts and MOUNT_ROOT (proc, sys, dev, /etc files, tmpfs)
 *   inroot.c     path resolution confined to a container root (openat2)
 *   rootns.c     a mount namespace per container root (pods)
 *   blk.c        block-device roots (overlay of a read-only image disk and a writable disk), their unmount at poweroff
 *   spawn.c      START: fork, pty/pipes, chroot, exec
 *   contain.c    PID namespaces, the container's /proc, capabilities, --init
 *   stdio.c      the process table, output pumping, stdin flow control, reaping
 *   keep.c       output kept until the host acknowledges it (ack.c: HB_ACK, HB_RESEND)
 *   sigretry.c   signals that a starting main process would lose, delivered again
 *   user.c, stats.c, limits.c: user lookup, STATS, the cgroups (memory, and a root's own limits) */
#ifndef HB_AGENT_H
#define HB_AGENT_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "keep.h"

#define MAX_PROCS 256
#define STDIN_BUF 65536 /* equals the host's stdin window: the host never sends more */
#define ROOTS "/c"

/* util.c */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void send_result(int err, const char *msg); /* HB_RESULT on process 0 */
void set_nonblock(int fd);
void close_fd(int *fd); /* closes *fd if >= 0 and sets it to -1 */

/* stdio.c: one slot per process started for the host */
struct proc {
  uint32_t id;      /* host's id for this process; 0 = free slot */
  pid_t pid;
  int tty;
  int in_fd, out_fd, err_fd; /* with a tty, in_fd == out_fd == pty master */
  uint8_t *inbuf;   /* STDIN_BUF bytes, or NULL without stdin */
  size_t inlen;
  int in_eof;
  int exited, status, signal;
  unsigned long oom_before; /* the cgroup's oom_kill count when it started */
  int main;         /* a container's main process: PID 1 of its own PID namespace */
  long long started_ms;  /* CLOCK_MONOTONIC at its start */
  uint64_t retry_sigs;   /* signals to deliver again once it catches them (sigretry.c) */
  char root[80];    /* the container root it runs in */
  int keeps;        /* T_ACKED: its output (and EXIT) kept until acknowledged */
  struct keep keep;
  int exit_sent;    /* its EXIT is out; a keeping slot stays until that is acknowledged */
  int oom;          /* its EXIT's T_OOM */
};
extern struct proc procs[MAX_PROCS];
struct proc *find_proc(uint32_t id);
struct proc *free_proc_slot(void);
int pump_output(struct proc *pr, int *fd, uint8_t type);
void flush_stdin(struct proc *pr);
void queue_stdin(struct proc *pr, const uint8_t *p, size_t n);
void reap_children(void);
void finish_if_done(struct proc *pr); /* an exited process: its last output, then EXIT */
void send_exit(struct proc *pr);
void free_proc(struct proc *pr);
/* ack.c */
void handle_ack(struct proc *pr, const uint8_t *p, size_t n);
void handle_resend(uint32_t id, struct proc *pr, const uint8_t *p, size_t n);

/* sigretry.c: signals to a main process that is still starting */
long long now_ms(void); /* CLOCK_MONOTONIC */
void deliver_signal(struct proc *pr, int sig);
int signals_pending(void);
void retry_signals(void);

/* configure.c, net.c */
void handle_configure(const uint8_t *p, size_t n);
const char *configured_dns(void); /* "" until CONFIGURE gave DNS */
void loopback_up(void);
int configure_eth0(const char *cidr, const char *gw, const uint8_t *mac, const char **what);
int readdress_eth0(const char *cidr, const char *gw, const uint8_t *mac, const char **what);
void handle_readdress(const uint8_t *p, size_t n);

/* mounts.c, inroot.c, rootns.c */
void early_mounts(void);
int mkdir_p(const char *path, mode_t mode);
void handle_mount_root(const uint8_t *p, size_t n);
int rewrite_etc_files(const char *cname, const char *extra_hosts); /* READDRESS: hosts, resolv.conf in place */
int open_in_root(int rootfd, const char *rel, int flags);
int mkdir_in_root(int rootfd, const char *rel, mode_t mode);
int mount_in_root(int rootfd, const char *rel, const char *src, const char *type, unsigned long flags,
                  const char *opts);
int bind_in_root(int rootfd, const char *rel, int srcfd, int ro);
int root_ns_fd(const char *name);
int make_root_ns(const char *name);
void close_root_namespaces(void); /* at poweroff: every root's namespace let go */

/* blk.c: an overlay of the disks with serials LOWER (read-only image) and UPPER
 * (writable ext4) at ROOT. 0, or an errno with MSG set (nothing left mounted). */
int blk_mount_root(const char *name, const char *root, const char *lower, const char *upper, int discard_on_exit, int premounted, char *msg, size_t cap);
/* MOUNT_ROOT with T_PREMOUNT: mounts the ext4 of disk UPPER ahead, with upper/ and work/, synced. 0 or an errno. */
int blk_premount(const char *upper, char *msg, size_t cap);
void blk_unmount_root(const char *name); /* everything under /c/NAME, the overlay and both disks */
int blk_is_root(const char *name);
void blk_sync_root(const char *name); /* syncfs of its upper disk (a no-op for other roots) */
/* At poweroff: kill every process, unmount the block roots (the upper disks
 * clean), sync. */
void shutdown_roots(void);
void blk_scan_disks(void); /* at boot: the virtio-blk disks and their serials */

/* contain.c (see there) */
struct start_req;
void contain_init(void); /* at boot: the agent not dumpable */
/* fork() into the request's PID namespace: a new one for a main process, its
 * main's for an exec. In the parent, -1 with errno and *WHAT on failure. */
pid_t fork_contained(const struct start_req *r, const char **what);
/* tool.c: T_TOOL processes (the agent's busybox) */
int tool_open(void);
int tool_own_view(const char *root);
void tool_exec(int fd, char *const argv[], char *const envp[]);
int tool_upper_dir(const char *name, char *out, size_t cap); /* TOOL_UPPER, TOOL_OPAQUE: the root's upper dir */
int tool_list_opaque(void);                                  /* TOOL_OPAQUE, in the chroot of the upper dir */
/* In the child, chrooted: a procfs of its own PID namespace at /proc, with
 * Docker's masks unless PRIVILEGED. 0, or -1 with MSG set. */
int mount_own_proc(int privileged, char *msg, size_t cap);
int drop_bounding(uint64_t caps); /* before setuid */
int set_caps(uint64_t caps);      /* after setuid: permitted = effective = CAPS, no inheritable, no ambient */
/* Forks: returns 0 in the child (to exec), never in the parent, which
 * stays PID 1, forwarding signals and reaping, and exits as its child did.
 * -1 if fork fails. */
int become_init(int tty);

/* spawn.c, user.c, stats.c, limits.c */
void handle_start(uint32_t id, const uint8_t *p, size_t n);
int resolve_user(const char *root, const char *spec, unsigned *uid, unsigned *gid,
                 char *err, size_t errlen);
/* The process's groups, as runc sets them: GID, the groups of /etc/group that
 * list the user SPEC names, and ADD (group names of /etc/group, or numbers).
 * The count, or -1 with ERR set (an unknown group, more than MAX). */
int resolve_groups(const char *root, const char *spec, unsigned gid, char *const *add, int nadd,
                   gid_t *out, int max, char *err, size_t errlen);
void handle_stats(void);
int limits_set_memory(uint64_t bytes);
int limits_join(const char *name);                  /* the cgroup of root NAME, or the VM's */
unsigned long limits_oom_kills(const char *name);   /* its memory.events oom_kill count */
void handle_limits(const uint8_t *p, size_t n);      /* HB_LIMITS */
int limits_own_cgroup(const char *name);            /* root NAME has a cgroup of its own (HB_LIMITS) */
/* contain.c: in the child, chrooted, in a cgroup namespace of its own: that
 * cgroup at /sys/fs/cgroup (read-only unless PRIVILEGED), as runc shows it. */
int mount_own_cgroup(int privileged, char *msg, size_t cap);
int join_main_cgroup_ns(const char *name); /* an exec: the cgroup namespace of root NAME's main process */
/* contain.c: a main process's sysctls (before it leaves the agent's /proc),
 * its masked and read-only paths (chrooted, its own /proc mounted), and its
 * seccomp filter (the last thing before exec). 0, or -1 with MSG set. */
int apply_sysctls(const struct start_req *r, char *msg, size_t cap);
int apply_path_masks(const struct start_req *r, char *msg, size_t cap);
int apply_seccomp(const struct start_req *r, char *msg, size_t cap);
#endif
