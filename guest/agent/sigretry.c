/* Signals to a container's main process while it is still starting. It is
 * PID 1 of its PID namespace, so the kernel drops a signal it has no handler
 * for (SIGKILL aside): a SIGTERM that lands while `sh -c top` is still the
 * shell, before top installs its handler, is lost and `stop` then waits its
 * whole grace period. Under TCG that window is long enough for Kubernetes' stop
 * right after start to hit it. So a signal the main process neither catches
 * nor ignores, sent in its first seconds, is delivered again once it catches
 * it (checked every 50 ms): at most once more, never to a process that had a
 * handler when it was first sent. */
#include "agent.h"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STARTUP_MS 5000

long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The SigCgt (caught) and SigIgn (ignored) masks of PID; -1 if it is gone. */
static int sig_masks(pid_t pid, uint64_t *caught, uint64_t *ignored) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *c = strstr(buf, "SigCgt:\t"), *i = strstr(buf, "SigIgn:\t");
  if (!c || !i) return -1;
  *caught = strtoull(c + 8, NULL, 16);
  *ignored = strtoull(i + 8, NULL, 16);
  return 0;
}

void deliver_signal(struct proc *pr, int sig) {
  if (pr->exited) return; /* reaped: its pid may be another process's now */
  uint64_t caught, ignored, bit = 1ull << (sig - 1);
  int retry = pr->main && sig != SIGKILL && sig != SIGSTOP && now_ms() - pr->started_ms < STARTUP_MS &&
              sig_masks(pr->pid, &caught, &ignored) == 0 && !((caught | ignored) & bit);
  (void)kill(pr->pid, sig); /* ESRCH: it exited and its EXIT is on the way */
  if (retry) pr->retry_sigs |= bit;
}

int signals_pending(void) {
  for (int i = 0; i < MAX_PROCS; i++)
    if (procs[i].id && procs[i].retry_sigs) return 1;
  return 0;
}

void retry_signals(void) {
  long long now = now_ms();
  for (int i = 0; i < MAX_PROCS; i++) {
    struct proc *pr = &procs[i];
    if (!pr->id || !pr->retry_sigs) continue;
    uint64_t caught, ignored;
    if (pr->exited || now - pr->started_ms >= STARTUP_MS || sig_masks(pr->pid, &caught, &ignored) < 0) {
      pr->retry_sigs = 0;
      continue;
    }
    for (int s = 1; s <= 64; s++) {
      uint64_t bit = 1ull << (s - 1);
      if (!(pr->retry_sigs & bit)) continue;
      if (caught & bit) (void)kill(pr->pid, s);
      if ((caught | ignored) & bit) pr->retry_sigs &= ~bit;
    }
  }
}
