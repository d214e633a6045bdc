/* HB_STATS: a snapshot of the guest for `top` and `stats`. The host parses it as
 * untrusted text; everything here is bounded by the frame size (tlv_put refuses
 * to grow past it, so a guest with very many processes sends a prefix). */
#include "agent.h"
#include "proto.h"
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static ssize_t read_file(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = 0;
  return n;
}

/* One process as "pid ppid uid state utime stime rss_pages starttime\tcommand line". */
static int describe(const char *pid, char *out, size_t cap) {
  char path[64], line[1024], cmd[512];
  snprintf(path, sizeof path, "/proc/%s/cmdline", pid);
  ssize_t n = read_file(path, cmd, sizeof cmd);
  if (n <= 0) return -1; /* kernel threads have no command line */
  for (ssize_t i = 0; i < n - 1; i++)
    if (cmd[i] == 0) cmd[i] = ' ';
  snprintf(path, sizeof path, "/proc/%s/stat", pid);
  if (read_file(path, line, sizeof line) <= 0) return -1;
  char *rp = strrchr(line, ')'); /* comm may contain spaces and parentheses */
  if (!rp) return -1;
  char state;
  int ppid;
  unsigned long utime, stime;
  unsigned long long start;
  long rss;
  if (sscanf(rp + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %llu %*u %ld",
             &state, &ppid, &utime, &stime, &start, &rss) != 6)
    return -1;
  struct stat st;
  snprintf(path, sizeof path, "/proc/%s", pid);
  if (stat(path, &st) < 0) return -1;
  return snprintf(out, cap, "%s %d %u %c %lu %lu %ld %llu\t%s", pid, ppid, (unsigned)st.st_uid, state, utime, stime,
                  rss, start, cmd);
}

void handle_stats(void) {
  static struct tlv_out t;
  static char buf[4096];
  tlv_reset(&t);
  tlv_put_u32(&t, T_ERRNO, 0);
  ssize_t n = read_file("/proc/meminfo", buf, sizeof buf);
  if (n > 0) tlv_put(&t, T_MEMINFO, buf, (uint32_t)n);
  n = read_file("/proc/stat", buf, sizeof buf);
  if (n > 0) {
    char *nl = strchr(buf, '\n'); /* the aggregate "cpu" line only */
    tlv_put(&t, T_CPUSTAT, buf, (uint32_t)(nl ? nl - buf : n));
  }
  n = read_file("/proc/uptime", buf, sizeof buf);
  if (n > 0) tlv_put(&t, T_UPTIME, buf, (uint32_t)n);
  DIR *d = opendir("/proc");
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (!isdigit((unsigned char)e->d_name[0]) || strcmp(e->d_name, "1") == 0) continue; /* pid 1 is this agent */
    int len = describe(e->d_name, buf, sizeof buf);
    if (len > 0) tlv_put(&t, T_PROCESS, buf, (uint32_t)(len < (int)sizeof buf ? len : (int)sizeof buf - 1));
  }
  if (d) closedir(d);
  hb_send_tlv(HB_RESULT, 0, &t);
}
