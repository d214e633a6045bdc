/* The process table and the stdio relay: output is forwarded as it comes
 * (and, for a T_ACKED process, kept until the host acknowledges it: keep.c;
 * at KEEP_MAX the process's pipes are not read, so it waits), stdin is
 * buffered up to the window the host respects (STDIN_BUF) and acknowledged as
 * the process consumes it, and a process is reported as exited after its last
 * output. */
#define _GNU_SOURCE
#include "agent.h"
#include "proto.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

struct proc procs[MAX_PROCS];

struct proc *find_proc(uint32_t id) {
  for (int i = 0; i < MAX_PROCS; i++)
    if (procs[i].id == id && id) return &procs[i];
  return NULL;
}

struct proc *free_proc_slot(void) {
  for (int i = 0; i < MAX_PROCS; i++)
    if (!procs[i].id) return &procs[i];
  return NULL;
}

/* Reads what is available on one output fd and forwards it. Returns 0 on EOF or
 * a terminal error (the fd is then closed), 1 if more may come. */
int pump_output(struct proc *pr, int *fd, uint8_t type) {
  static uint8_t buf[KEEP_RECORD];
  size_t want = pr->keeps && keep_room(&pr->keep) < sizeof buf ? keep_room(&pr->keep) : sizeof buf;
  if (want == 0) return 1; /* kept to the bound: read again once the host acknowledges */
  ssize_t n = read(*fd, buf, want);
  if (n > 0) {
    if (pr->keeps) keep_append(&pr->keep, type, buf, (size_t)n);
    hb_send(type, pr->id, buf, (size_t)n); /* a write the host misses is resent (HB_RESEND) */
    return 1;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
  /* EOF, or EIO from a pty master whose slave side is all closed */
  if (*fd != pr->in_fd) close(*fd);
  *fd = -1;
  return 0;
}

static void close_stdin(struct proc *pr) {
  if (pr->in_fd >= 0 && pr->in_fd != pr->out_fd) close(pr->in_fd);
  if (pr->in_fd != pr->out_fd) pr->in_fd = -1;
  free(pr->inbuf);
  pr->inbuf = NULL;
  pr->inlen = 0;
}

void flush_stdin(struct proc *pr) {
  if (pr->inlen > 0 && pr->in_fd >= 0) {
    ssize_t w = write(pr->in_fd, pr->inbuf, pr->inlen);
    if (w > 0) {
      memmove(pr->inbuf, pr->inbuf + w, pr->inlen - (size_t)w);
      pr->inlen -= (size_t)w;
      struct tlv_out t;
      tlv_reset(&t);
      tlv_put_u32(&t, T_COUNT, (uint32_t)w);
      hb_send_tlv(HB_STDIN_WINDOW, pr->id, &t);
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
      pr->inlen = 0; /* reader gone (EPIPE): drop what is left */
      if (!pr->tty) close_stdin(pr);
    }
  }
  if (pr->in_eof && pr->inlen == 0 && !pr->tty && pr->in_fd >= 0) close_stdin(pr);
}

/* HB_STDIN: appends to the process's buffer and writes what it can. */
void queue_stdin(struct proc *pr, const uint8_t *p, size_t n) {
  if (!pr || !pr->inbuf || pr->in_eof) return;
  size_t take = n > STDIN_BUF - pr->inlen ? STDIN_BUF - pr->inlen : n;
  if (take < n) agent_log("stdin overflow on %u: host ignored the window", pr->id);
  memcpy(pr->inbuf + pr->inlen, p, take);
  pr->inlen += take;
  flush_stdin(pr);
}

/* Reads what is left on one of an exited process's fds; 1 if more is waiting. */
static int drain(struct proc *pr, int *fd, uint8_t type) {
  int was = *fd, avail = 0;
  return pump_output(pr, fd, type) && *fd == was && ioctl(was, FIONREAD, &avail) == 0 && avail > 0;
}

void finish_if_done(struct proc *pr) {
  if (!pr->exited || pr->exit_sent) return;
  /* The process is gone: forward what is still buffered, then report. Output
   * of background children that outlive it is not waited for (as with Docker). */
  for (int rounds = 0; rounds < 64 && (pr->out_fd >= 0 || pr->err_fd >= 0); rounds++) {
    int more = 0;
    if (pr->out_fd >= 0) more |= drain(pr, &pr->out_fd, HB_STDOUT);
    if (pr->err_fd >= 0) more |= drain(pr, &pr->err_fd, HB_STDERR);
    if (!more) break;
    if (pr->keeps && keep_room(&pr->keep) == 0) return; /* again after the host's next HB_ACK */
  }
  int shared = pr->in_fd == pr->out_fd; /* a pty master */
  if (pr->out_fd >= 0) close(pr->out_fd);
  if (pr->err_fd >= 0) close(pr->err_fd);
  if (pr->in_fd >= 0 && !shared) close(pr->in_fd);
  pr->in_fd = pr->out_fd = pr->err_fd = -1;
  free(pr->inbuf);
  pr->inbuf = NULL;
  /* A block root's disk holds what its main process wrote once its EXIT is
   * out: a host that stops the VM then loses nothing written so far. */
  if (pr->main) blk_sync_root(pr->root);
  pr->oom = limits_oom_kills(pr->root) > pr->oom_before;
  pr->exit_sent = 1;
  send_exit(pr);
  if (!pr->keeps) free_proc(pr); /* else kept until the host acknowledges the EXIT */
}

void send_exit(struct proc *pr) {
  struct tlv_out t;
  tlv_reset(&t);
  tlv_put_u32(&t, T_STATUS, (uint32_t)pr->status);
  tlv_put_u32(&t, T_SIGNAL, (uint32_t)pr->signal);
  if (pr->oom) tlv_put_u32(&t, T_OOM, 1);
  hb_send_tlv(HB_EXIT, pr->id, &t);
}

void free_proc(struct proc *pr) {
  if (pr->keeps) keep_free(&pr->keep);
  memset(pr, 0, sizeof *pr);
}

/* Reaps every exited child; those that match no slot (a failed exec, a
 * process's orphans re-parented to PID 1) are only reaped. */
void reap_children(void) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    for (int i = 0; i < MAX_PROCS; i++) {
      struct proc *pr = &procs[i];
      if (!pr->id || pr->exited || pr->pid != pid) continue;
      pr->exited = 1;
      if (WIFSIGNALED(st)) { pr->signal = WTERMSIG(st); pr->status = 128 + pr->signal; }
      else pr->status = WEXITSTATUS(st);
      finish_if_done(pr);
    }
  }
}
