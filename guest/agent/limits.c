/* Resource limits inside the guest: the container's processes live in one
 * cgroup (v2, mounted at /sys/fs/cgroup by init) whose memory.max is the
 * container's --memory. The VM gets a little more RAM than the limit, so the
 * cgroup's OOM killer, not the whole guest's, decides, and memory.events tells
 * the host that it did (Docker's OOMKilled).
 * A pod's roots can each have a cgroup of their own (HB_LIMITS: the OCI spec's
 * linux.resources, from the containerd shim), /sys/fs/cgroup/root-NAME: the
 * processes of root NAME join it instead, and its memory.events is theirs. */
#include "agent.h"
#include "request.h"
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

/* The cgroup of root NAME if it has one (HB_LIMITS), else the VM's ("" if none). */
static const char *cgroup_of(const char *name, char *buf, size_t cap) {
  snprintf(buf, cap, CG_ROOT "/root-%s", name);
  if (access(buf, F_OK) == 0) return buf;
  return have_cgroup ? CG : "";
}

static int handle_limits_req(const struct limits_req *l, const char **what) {
  char dir[128], path[160], buf[48];
  /* every controller a root's limits use; "cpu" is absent without CONFIG_CGROUP_SCHED */
  *what = "enable the cgroup controllers";
  if (write_file(CG_ROOT "/cgroup.subtree_control", "+memory +pids") < 0 && errno != EBUSY) return -1;
  if (l->have_cpu_max || l->cpu_weight) {
    *what = "enable the cpu controller";
    if (write_file(CG_ROOT "/cgroup.subtree_control", "+cpu") < 0 && errno != EBUSY) return -1;
  }
  snprintf(dir, sizeof dir, CG_ROOT "/root-%s", l->name);
  *what = "create the root's cgroup";
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) return -1;
  if (l->have_memory) {
    if (l->memory) snprintf(buf, sizeof buf, "%llu", (unsigned long long)l->memory);
    else snprintf(buf, sizeof buf, "max");
    snprintf(path, sizeof path, "%s/memory.max", dir);
    *what = "memory.max";
    if (write_file(path, buf) < 0) return -1;
    snprintf(path, sizeof path, "%s/memory.swap.max", dir);
    (void)write_file(path, "0"); /* absent without swap accounting: there is no swap */
  }
  if (l->have_cpu_max) {
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    *what = "cpu.max";
    if (write_file(path, l->cpu_max) < 0) return -1;
  }
  if (l->cpu_weight) {
    snprintf(buf, sizeof buf, "%u", l->cpu_weight);
    snprintf(path, sizeof path, "%s/cpu.weight", dir);
    *what = "cpu.weight";
    if (write_file(path, buf) < 0) return -1;
  }
  if (l->have_pids) {
    if (l->pids) snprintf(buf, sizeof buf, "%u", l->pids);
    else snprintf(buf, sizeof buf, "max");
    snprintf(path, sizeof path, "%s/pids.max", dir);
    *what = "pids.max";
    if (write_file(path, buf) < 0) return -1;
  }
  return 0;
}

void handle_limits(const uint8_t *p, size_t n) {
  struct limits_req l;
  char msg[128];
  const char *what = "";
  if (parse_limits(p, n, &l) < 0) { send_result(EINVAL, "malformed limits"); return; }
  if (handle_limits_req(&l, &what) < 0) {
    int e = errno;
    snprintf(msg, sizeof msg, "cgroup of %s: %s: %s", l.name, what, strerror(e));
    send_result(e ? e : EIO, msg);
    return;
  }
  send_result(0, NULL);
}

int limits_own_cgroup(const char *name) {
  char buf[128];
  snprintf(buf, sizeof buf, CG_ROOT "/root-%s", name);
  return access(buf, F_OK) == 0;
}

/* Moves the calling process into the cgroup of root NAME (or the VM's). -1
 * (errno set) if that fails: a process must not run outside its limits. */
int limits_join(const char *name) {
  char buf[128], path[160];
  const char *cg = cgroup_of(name, buf, sizeof buf);
  if (!*cg) return 0;
  snprintf(path, sizeof path, "%s/cgroup.procs", cg);
  return write_file(path, "0");
}

unsigned long limits_oom_kills(const char *name) {
  char buf[512], dir[128], path[160];
  const char *cg = cgroup_of(name, dir, sizeof dir);
  if (!*cg) return 0;
  snprintf(path, sizeof path, "%s/memory.events", cg);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *p = strstr(buf, "oom_kill ");
  return p ? strtoul(p + 9, NULL, 10) : 0;
}
