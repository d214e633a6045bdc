/* T_TOOL: the host's own work on a container's files. A root on block devices
 * is the guest's filesystem, which the host never mounts, so `cp` and `export`
 * ask the agent to run a tar. The program is the agent's busybox (/busybox in
 * the initramfs, static), never one of the image's: the image may have no tar,
 * or a tampered one. It is opened before the chroot and run by its fd, so the
 * process still resolves every path inside the root, as the container would:
 * an image symlink cannot lead it to another root or to the agent's files.
 *
 * `diff` and `commit` of such a root read its writable layer, the overlay's
 * upper directory on the container's disk (TOOL_UPPER: busybox's tar there;
 * whiteouts are 0:0 character devices, which tar keeps). Busybox's tar keeps
 * no xattrs, so the opaque directories (trusted.overlay.opaque=y: a directory
 * that hides the image's below it) are listed by the agent itself
 * (TOOL_OPAQUE). */
#define _GNU_SOURCE
#include "agent.h"
#include "request.h"
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
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

/* The upper directory of block root NAME -> OUT. 0, or -1 with errno (ENOTSUP:
 * not a root on block devices). The disk's top level is the agent's alone
 * (blk.c), so nothing of the container's is followed here. */
int tool_upper_dir(const char *name, char *out, size_t cap) {
  if (!blk_is_root(name)) { errno = ENOTSUP; return -1; }
  if (snprintf(out, cap, "/run/blk/%s/disk/upper", name) >= (int)cap) { errno = ENAMETOOLONG; return -1; }
  return 0;
}

static int opaque_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)ftw;
  if (flag == FTW_DNR) { fprintf(stderr, "cannot read directory %s\n", path); return 1; }
  if (flag != FTW_D) return 0;
  char v[2];
  if (lgetxattr(path, "trusted.overlay.opaque", v, sizeof v) == 1 && v[0] == 'y') {
    if (fwrite(path, strlen(path) + 1, 1, stdout) != 1) return 1;
  }
  return 0;
}

/* Writes each opaque directory under "." (not following symlinks nor leaving
 * the filesystem) to stdout, NUL-terminated. 0, or 1 on failure. */
int tool_list_opaque(void) {
  int r = nftw(".", opaque_entry, 32, FTW_PHYS | FTW_MOUNT);
  if (r < 0) fprintf(stderr, "walk the upper directory: %s\n", strerror(errno));
  return fflush(stdout) == 0 && r == 0 ? 0 : 1;
}
