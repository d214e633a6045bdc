/* HB_START: forks a process into a container root with its own stdio (pipes,
 * or a pty), in the root's mount namespace, PID namespace (contain.c) and
 * memory cgroup, as the requested user with the requested capabilities, and
 * execs it with the container's PATH. */
#define _GNU_SOURCE
#include "agent.h"
#include "request.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

/* Runs in the child after chroot: finds the program like Go's exec.LookPath (as
 * runc does) and execs it. Returns only on failure, with errno set and a message
 * worded as Docker words it (the CLI maps the wording to exit codes 126/127). */
static void exec_in_child(struct start_req *r, char *msg, size_t cap) {
  const char *file = r->argv[0];
  if (strchr(file, '/')) {
    execve(file, r->argv, r->envp);
    int e = errno;
    if (e == ENOENT) snprintf(msg, cap, "exec: \"%s\": stat %s: no such file or directory", file, file);
    else snprintf(msg, cap, "exec: \"%s\": %s", file, e == EACCES ? "permission denied" : strerror(e));
    errno = e;
    return;
  }
  char path[4096], cand[4096];
  snprintf(path, sizeof path, "%s", env_path(r));
  char *save = NULL;
  for (char *dir = strtok_r(path, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
    struct stat st;
    snprintf(cand, sizeof cand, "%s/%s", *dir ? dir : ".", file);
    if (stat(cand, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111)) continue;
    execve(cand, r->argv, r->envp);
    int e = errno;
    snprintf(msg, cap, "exec: \"%s\": %s", cand, e == EACCES ? "permission denied" : strerror(e));
    errno = e;
    return;
  }
  snprintf(msg, cap, "exec: \"%s\": executable file not found in $PATH", file);
  errno = ENOENT;
}

struct child_error { int err; char msg[400]; };

static __attribute__((noreturn)) void child_fail(int fd, int err, const char *msg) {
  struct child_error ce = {err, ""};
  snprintf(ce.msg, sizeof ce.msg, "%s", msg);
  /* One write under PIPE_BUF: whole or nothing. If nothing, the parent reads
   * EOF, reports STARTED, and the host sees exit status 127. */
  (void)!write(fd, &ce, sizeof ce);
  _exit(127);
}

/* Opens the root's own pty multiplexer (devpts mounted with newinstance),
 * resolved inside the root: the container could have replaced /dev/pts. */
static int open_pty(const char *root, int *master) {
  int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) return -1;
  int m = open_in_root(rootfd, "/dev/pts/ptmx", O_RDWR | O_NOCTTY);
  int e = errno;
  close(rootfd);
  if (m < 0) { errno = e; return -1; }
  int unlock = 0;
  if (ioctl(m, TIOCSPTLCK, &unlock) < 0) { e = errno; close(m); errno = e; return -1; }
  *master = m;
  return 0;
}

static void start_failed(uint32_t id, int err, const char *msg) {
  struct tlv_out t;
  tlv_reset(&t);
  tlv_put_u32(&t, T_ERRNO, (uint32_t)err);
  tlv_put_str(&t, T_MESSAGE, msg);
  hb_send_tlv(HB_START_FAILED, id, &t);
}

/* The child: never returns. It reports a failure before exec on STATUS. */
static __attribute__((noreturn)) void child(struct start_req *r, const char *root, int status, int master,
                                            const int in[2], const int out[2], const int errp[2],
                                            unsigned uid, unsigned gid, uint64_t caps) {
  static char err[300];
  sigset_t all; /* signal, sigprocmask: cannot fail with these arguments */
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  signal(SIGPIPE, SIG_DFL);
  if (limits_join(r->name) < 0) child_fail(status, errno, "join the container's cgroup");
  setsid(); /* cannot fail: a fresh child is no process group leader */
  int main_proc = !r->exec && !r->tool;
  /* a root with a cgroup of its own (the containerd shim's) sees that one as /sys/fs/cgroup */
  int own_cgroup = main_proc && limits_own_cgroup(r->name);
  if (own_cgroup && unshare(CLONE_NEWCGROUP) < 0) child_fail(status, errno, "new cgroup namespace");
  if (r->exec && limits_own_cgroup(r->name) && join_main_cgroup_ns(r->name) < 0) child_fail(status, errno, "join the container's cgroup namespace");
  /* the agent's /proc/sys, in the namespaces the container's processes share */
  if (main_proc && apply_sysctls(r, err, sizeof err) < 0) child_fail(status, errno, err);
  /* Every fd the agent holds is O_CLOEXEC: exec leaves the process 0, 1, 2 only. */
  if (r->tty) {
    /* the slave of this very master, with no path lookup */
    int s = ioctl(master, TIOCGPTPEER, O_RDWR);
    if (s < 0) child_fail(status, errno, "open pty slave");
    (void)ioctl(s, TIOCSCTTY, 0); /* opening it already made it the controlling tty */
    if (dup2(s, 0) < 0 || dup2(s, 1) < 0 || dup2(s, 2) < 0) child_fail(status, errno, "dup2");
    if (s > 2) close(s);
  } else {
    int devnull = -1;
    if (!r->want_stdin && (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
      child_fail(status, errno, "open /dev/null");
    if (dup2(r->want_stdin ? in[0] : devnull, 0) < 0 || dup2(out[1], 1) < 0 || dup2(errp[1], 2) < 0)
      child_fail(status, errno, "dup2");
  }
  int toolfd = -1;
  if (r->tool && r->tool != TOOL_OPAQUE && (toolfd = tool_open()) < 0) child_fail(status, errno, "open the agent's busybox");
  static char upper[192];
  if (r->tool == TOOL_UPPER || r->tool == TOOL_OPAQUE) {
    /* the writable layer: only the agent's own namespace has the disk's mount */
    if (tool_upper_dir(r->name, upper, sizeof upper) < 0) child_fail(status, errno, "not a root on block devices");
    root = upper;
  }
  int nsfd = root == upper ? -1 : root_ns_fd(r->name);
  if (nsfd >= 0 && setns(nsfd, CLONE_NEWNS) < 0) child_fail(status, errno, "join the container's mount namespace");
  if (r->tool == TOOL_OWN_FS && tool_own_view(root) < 0) child_fail(status, errno, "bind the root's own filesystem");
  if (chroot(root) < 0 || chdir("/") < 0) child_fail(status, errno, "chroot");
  /* A main process is PID 1 of a new PID namespace: its /proc shows that one */
  if (main_proc && mount_own_proc(r->privileged, err, sizeof err) < 0) child_fail(status, errno, err);
  if (own_cgroup && mount_own_cgroup(r->privileged, err, sizeof err) < 0) child_fail(status, errno, err);
  if (main_proc && apply_path_masks(r, err, sizeof err) < 0) child_fail(status, errno, err);
  /* a tool creates nothing in the root on its own: its CWD must exist */
  if ((!r->tool && mkdir_p(r->cwd, 0755) < 0) || chdir(r->cwd) < 0) {
    int e = errno;
    snprintf(err, sizeof err, "chdir to cwd (\"%s\") set in config.json failed: %s", r->cwd, strerror(e));
    child_fail(status, e, err);
  }
  if (drop_bounding(caps) < 0) child_fail(status, errno, "drop capabilities from the bounding set");
  /* as runc without no_new_privs: while still root (the filter must allow what follows) */
  if (apply_seccomp(r, err, sizeof err) < 0) child_fail(status, errno, err);
  if (setgroups((size_t)r->ngroups, r->groups) < 0 || setgid(gid) < 0 || setuid(uid) < 0) child_fail(status, errno, "setuid");
  /* root keeps CAPS; any other user has none until a file capability gives some */
  if (set_caps(uid == 0 ? caps : 0) < 0) child_fail(status, errno, "set capabilities");
  if (r->init && become_init(r->tty) < 0) child_fail(status, errno, "fork the init's child");
  if (r->tool == TOOL_OPAQUE) {
    close(status); /* no exec: the start succeeded here (EOF on STATUS) */
    _exit(tool_list_opaque());
  }
  if (r->tool) {
    tool_exec(toolfd, r->argv, r->envp);
    child_fail(status, errno, "exec the agent's busybox");
  }
  exec_in_child(r, err, sizeof err);
  child_fail(status, errno, err);
}

void handle_start(uint32_t id, const uint8_t *p, size_t n) {
  static struct start_req r;
  char root[128], err[300];
  unsigned uid, gid;
  struct proc *slot;
  if (id == 0 || find_proc(id)) { start_failed(id, EEXIST, "process id in use"); return; }
  if (parse_start(p, n, &r) < 0) { start_failed(id, EINVAL, "malformed start request"); return; }
  if (!(slot = free_proc_slot())) { start_failed(id, EAGAIN, "too many processes"); return; }
  snprintf(root, sizeof root, ROOTS "/%s", r.name);
  if (access(root, F_OK) < 0) { start_failed(id, ENOENT, "container root not mounted"); return; }
  if (resolve_user(root, r.user, &uid, &gid, err, sizeof err) < 0) { start_failed(id, EINVAL, err); return; }
  r.ngroups = resolve_groups(root, r.user, gid, r.group_add, r.ngroup_add, r.groups,
                             (int)(sizeof r.groups / sizeof r.groups[0]), err, sizeof err);
  if (r.ngroups < 0) { start_failed(id, EINVAL, err); return; }
  uint64_t caps;
  if (start_caps(&r, &caps, err, sizeof err)) { start_failed(id, EINVAL, err); return; }
  /* the host's own tar: every capability (it reads and writes any file, keeps owners and device nodes) */
  if (r.tool) caps = (1ull << (CAP_LAST + 1)) - 1;

  /* From here on every resource is released on every way out (at "out"). */
  int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, status[2] = {-1, -1}, master = -1;
  uint8_t *inbuf = NULL;
  int e = 0;
  const char *what = NULL;
  if (pipe2(status, O_CLOEXEC) < 0) { e = errno; what = "pipe"; goto out; }
  if (r.tty) {
    if (open_pty(root, &master) < 0) { e = errno; what = "cannot allocate a pty"; goto out; }
    struct winsize ws = {(unsigned short)(r.rows ? r.rows : 24), (unsigned short)(r.cols ? r.cols : 80), 0, 0};
    (void)ioctl(master, TIOCSWINSZ, &ws); /* cannot fail on a pty master */
  } else if ((r.want_stdin && pipe2(in, O_CLOEXEC) < 0) || pipe2(out, O_CLOEXEC) < 0 ||
             pipe2(errp, O_CLOEXEC) < 0) {
    e = errno; what = "pipe"; goto out;
  }
  if (r.want_stdin && !(inbuf = malloc(STDIN_BUF))) { e = ENOMEM; what = "stdin buffer"; goto out; }

  const char *fork_what = NULL;
  pid_t pid = fork_contained(&r, &fork_what);
  if (pid == 0) child(&r, root, status[1], master, in, out, errp, uid, gid, caps);
  e = errno;
  close_fd(&status[1]); /* the child's ends */
  close_fd(&in[0]);
  close_fd(&out[1]);
  close_fd(&errp[1]);
  if (pid < 0) { what = fork_what; goto out; }
  struct child_error ce;
  ssize_t got;
  do got = read(status[0], &ce, sizeof ce); while (got < 0 && errno == EINTR);
  if (got == (ssize_t)sizeof ce) {
    /* exec failed: the child is gone; its zombie is reaped by the main loop
     * (it matches no slot). */
    ce.msg[sizeof ce.msg - 1] = 0;
    e = ce.err;
    what = ce.msg;
    goto out;
  }
  /* EOF: exec succeeded (the pipe closed on exec). */
  memset(slot, 0, sizeof *slot);
  slot->id = id;
  slot->pid = pid;
  slot->oom_before = limits_oom_kills(r.name);
  slot->tty = r.tty;
  slot->main = !r.exec && !r.tool;
  slot->started_ms = now_ms();
  snprintf(slot->root, sizeof slot->root, "%s", r.name);
  if (r.tty) {
    slot->in_fd = slot->out_fd = master;
    slot->err_fd = -1;
    slot->in_eof = !r.want_stdin;
  } else {
    slot->in_fd = in[1];
    slot->out_fd = out[0];
    slot->err_fd = errp[0];
    slot->in_eof = in[1] < 0;
  }
  master = in[1] = out[0] = errp[0] = -1; /* the slot owns them now */
  if (slot->in_fd >= 0) set_nonblock(slot->in_fd);
  if (slot->out_fd >= 0) set_nonblock(slot->out_fd);
  if (slot->err_fd >= 0) set_nonblock(slot->err_fd);
  slot->inbuf = inbuf;
  inbuf = NULL;
  /* Without memory for it the output is not kept, and STARTED says so. */
  slot->keeps = r.acked && keep_init(&slot->keep) == 0;
  struct tlv_out t;
  tlv_reset(&t);
  tlv_put_u32(&t, T_PID, (uint32_t)pid);
  if (slot->keeps) tlv_put_u32(&t, T_ACKED, 1);
  hb_send_tlv(HB_STARTED, id, &t);
out:
  if (what) start_failed(id, e, what);
  close_fd(&status[0]);
  close_fd(&status[1]);
  close_fd(&master);
  close_fd(&in[0]); close_fd(&in[1]);
  close_fd(&out[0]); close_fd(&out[1]);
  close_fd(&errp[0]); close_fd(&errp[1]);
  free(inbuf);
}
