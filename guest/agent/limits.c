/* Resource limits inside the guest: the container's processes live in one
 * cgroup (v2, mounted at /sys/fs/cgroup by init) whose memory.max is the
 * container's --memory. The VM gets a little more RAM than the limit, so the
 * cgroup's OOM killer, not the whole guest's, decides, and memory.events tells
 * the host that it did (Docker's OOMKilled). */
#include "agent.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CG_ROOT "/sys/fs/cgroup"
#define CG CG_ROOT "/ctr"

static int have_cgroup;

static int write_file(const char *path, const char *s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, s, strlen(s));
  int e = errno;
  close(fd);
  errno = e;
  return n == (ssize_t)strlen(s) ? 0 : -1;
}

int limits_set_memory(uint64_t bytes) {
  char buf[32];
  if (write_file(CG_ROOT "/cgroup.subtree_control", "+memory") < 0 && errno != EBUSY) {
    agent_log("memory controller: %s", strerror(errno));
    return -1;
  }
  if (mkdir(CG, 0755) < 0 && errno != EEXIST) return -1;
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)bytes);
  if (write_file(CG "/memory.max", buf) < 0) return -1;
  /* absent when the kernel has no swap accounting: there is no swap to limit */
  (void)write_file(CG "/memory.swap.max", "0");
  have_cgroup = 1;
  return 0;
}

/* Moves the calling process into the container's cgroup. -1 (errno set) if
 * that fails: a process must not run outside its memory limit. */
int limits_join(void) {
  return have_cgroup ? write_file(CG "/cgroup.procs", "0") : 0;
}

unsigned long limits_oom_kills(void) {
  char buf[512];
  if (!have_cgroup) return 0;
  int fd = open(CG "/memory.events", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *p = strstr(buf, "oom_kill ");
  return p ? strtoul(p + 9, NULL, 10) : 0;
}
