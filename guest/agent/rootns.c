/* A mount namespace per container root.
 *
 * Each mounted root of a pod gets its own mount namespace, a copy of the
 * agent's from which every other container's root (and the 9p share holding a
 * pod's roots) is detached: a container's processes join it, so its mounts stay
 * its own and even a chroot escape finds no other container's files (nor the
 * agent's /proc, /sys, /dev or /run). The agent
 * itself stays in the initial namespace (it is single-threaded, as setns
 * requires). */
#define _GNU_SOURCE
#include "agent.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#define MAX_ROOTS 64
#define MAX_VICTIMS 128
static struct { char name[80]; int fd; } root_ns[MAX_ROOTS]; /* fd 0 = free (0..2 are the console) */
static int init_ns_fd = -1;

int root_ns_fd(const char *name) {
  for (int i = 0; i < MAX_ROOTS; i++)
    if (root_ns[i].fd > 0 && strcmp(root_ns[i].name, name) == 0) return root_ns[i].fd;
  return -1;
}

/* Mount points to detach in the new namespace: the other roots and the shares. */
static int list_victims(const char *name, char victims[][512], int max) {
  static char line[4096];
  char self[128];
  int nv = 0;
  snprintf(self, sizeof self, ROOTS "/%s", name);
  size_t sl = strlen(self);
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) { agent_log("mountinfo: %s", strerror(errno)); return 0; }
  while (fgets(line, sizeof line, f) && nv < max) {
    char mp[512];
    /* a longer line is read in pieces: a piece rarely parses, and if it does it
     * can only name a mount under ROOTS or /run/share-, all of which are
     * candidates anyway; escaped paths (with spaces) are skipped */
    if (sscanf(line, "%*s %*s %*s %*s %511s", mp) != 1 || strchr(mp, '\\')) continue;
    int mine = strncmp(mp, self, sl) == 0 && (mp[sl] == 0 || mp[sl] == '/');
    if ((strncmp(mp, ROOTS "/", sizeof ROOTS) == 0 && !mine) || strncmp(mp, "/run/share-", 11) == 0)
      snprintf(victims[nv++], 512, "%s", mp);
  }
  fclose(f);
  return nv;
}

/* Returns 0 or an errno. */
int make_root_ns(const char *name) {
  static char victims[MAX_VICTIMS][512];
  int slot = -1, fd;
  if (init_ns_fd < 0 && (init_ns_fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC)) < 0) return errno;
  for (int i = 0; i < MAX_ROOTS && slot < 0; i++)
    if (root_ns[i].fd > 0 && strcmp(root_ns[i].name, name) == 0) slot = i;
  for (int i = 0; i < MAX_ROOTS && slot < 0; i++)
    if (root_ns[i].fd <= 0) slot = i;
  if (slot < 0) return ENOSPC;
  if (unshare(CLONE_NEWNS) < 0) return errno;
  int nv = list_victims(name, victims, MAX_VICTIMS);
  for (int i = 0; i < nv; i++)
    (void)umount2(victims[i], MNT_DETACH); /* a parent's detach may have taken it already */
  fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
  int e = fd < 0 ? errno : 0;
  /* Then (the namespace's fd in hand) the agent's own kernel filesystems: a
   * process that escapes its chroot (CAP_SYS_CHROOT is in Docker's default set)
   * finds no procfs of the VM's PID namespace there, nor its devices. Its
   * processes need none of them: they chroot right after joining, and the root
   * has its own. */
  static const char *const agent_mounts[] = {"/proc", "/sys", "/dev", "/run"};
  for (size_t i = 0; i < sizeof agent_mounts / sizeof agent_mounts[0]; i++)
    if (umount2(agent_mounts[i], MNT_DETACH) < 0) agent_log("detach %s for %s: %s", agent_mounts[i], name, strerror(errno));
  if (setns(init_ns_fd, CLONE_NEWNS) < 0) {
    /* cannot happen to a single-threaded PID 1; if it does, say so loudly */
    e = errno;
    agent_log("setns back to the initial mount namespace: %s", strerror(e));
    if (fd >= 0) close(fd);
    return e;
  }
  if (e) return e;
  if (root_ns[slot].fd > 0) close(root_ns[slot].fd);
  snprintf(root_ns[slot].name, sizeof root_ns[slot].name, "%s", name);
  root_ns[slot].fd = fd;
  return 0;
}

void close_root_namespaces(void) {
  for (int i = 0; i < MAX_ROOTS; i++)
    if (root_ns[i].fd > 0) { close(root_ns[i].fd); root_ns[i].fd = 0; }
}
