/* T_TOOL: the host's own work on a container's files. A root on block devices
 * is the guest's filesystem, which the host never mounts, so `cp` and `export`
 * ask the agent to run a tar. The program is the agent's busybox (/busybox in
 * the initramfs, static), never one of the image's: the image may have no tar,
 * or a tampered one. It is opened before the chroot and run by its fd, so the
 * process still resolves every path inside the root, as the container would:
 * an image symlink cannot lead it to another root or to the agent's files. */
#define _GNU_SOURCE
#include "agent.h"
#include "request.h"
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_execveat
#define SYS_execveat 322
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
#define TOOL_PATH "/busybox"

int tool_open(void) { return open(TOOL_PATH, O_RDONLY | O_CLOEXEC); }

/* TOOL_OWN_FS: a mount namespace of the child's own in which ROOT is bound
 * onto itself without its submounts, so a chroot there sees the root's own
 * filesystem: no /proc, /sys, /dev, /etc files, tmpfs, volumes or binds (what
 * `export` archives, as Docker's export leaves mounts out). */
int tool_own_view(const char *root) {
  if (unshare(CLONE_NEWNS) < 0) return -1;
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return -1;
  return mount(root, root, NULL, MS_BIND, NULL);
}

/* Execs the tool (busybox picks its applet from ARGV[0]). Returns only on failure. */
void tool_exec(int fd, char *const argv[], char *const envp[]) {
  syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
}
