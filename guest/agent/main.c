/* hyperbox-agent: PID 1 of a hyperbox guest.
 *
 * It mounts the essentials, opens the virtio-serial control port, says HELLO and
 * then serves the host: it mounts container roots shared by the host (9p), starts
 * processes in them with their own stdio (pipes or a pty), relays their output,
 * delivers signals and window sizes, reaps every child and reports exit statuses.
 * Everything runs in one poll() loop; no allocation is sized by the wire. This
 * file is init and the loop; agent.h lists the other units. */
#define _GNU_SOURCE
#include "agent.h"
#include "proto.h"
#include "request.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#ifndef AGENT_BUILD_ID
#define AGENT_BUILD_ID "dev"
#endif
#define CONTROL_PORT "/dev/vport0p1"

static int channel = -1;

static void handle_frame(uint8_t type, uint32_t id, const uint8_t *p, size_t n, void *ctx) {
  struct proc *pr = id ? find_proc(id) : NULL;
  (void)ctx;
  switch (type) {
  case HB_CONFIGURE: handle_configure(p, n); break;
  case HB_MOUNT_ROOT: handle_mount_root(p, n); break;
  case HB_PING: hb_send(HB_PONG, id, NULL, 0); break;
  case HB_STATS: handle_stats(); break;
  case HB_LIMITS: handle_limits(p, n); break;
  case HB_READDRESS: handle_readdress(p, n); break;
  case HB_POWEROFF:
    shutdown_roots(); /* syncs; block roots unmounted so their disks are clean */
    if (reboot(RB_POWER_OFF) < 0) agent_log("power off: %s", strerror(errno));
    break;
  case HB_START: handle_start(id, p, n); break;
  case HB_ACK: handle_ack(pr, p, n); break;
  case HB_RESEND: handle_resend(id, pr, p, n); break;
  case HB_STDIN: queue_stdin(pr, p, n); break;
  case HB_STDIN_EOF:
    if (pr) { pr->in_eof = 1; flush_stdin(pr); }
    break;
  case HB_SIGNAL: {
    struct tlv_in it = {p, n};
    int sig;
    while (pr && (sig = next_signal(&it)) != 0) deliver_signal(pr, sig);
    break;
  }
  case HB_RESIZE: {
    struct winsize ws = {0, 0, 0, 0};
    parse_resize(p, n, &ws.ws_row, &ws.ws_col);
    /* cannot fail on a live pty master */
    if (pr && pr->tty && ws.ws_row && ws.ws_col) (void)ioctl(pr->out_fd, TIOCSWINSZ, &ws);
    break;
  }
  default: agent_log("unknown frame type %u", type);
  }
}

static uint8_t rx[HB_HEADER_SIZE + HB_MAX_PAYLOAD];
static size_t rx_len;

static void read_channel(void) {
  ssize_t n = read(channel, rx + rx_len, sizeof rx - rx_len);
  if (n <= 0) {
    if (n < 0 && errno != EAGAIN && errno != EINTR) agent_log("control read: %s", strerror(errno));
    if (n == 0) usleep(10000); /* host not connected: virtio-serial reports EOF */
    return;
  }
  rx_len += (size_t)n;
  size_t used;
  if (hb_split_frames(rx, rx_len, &used, handle_frame, NULL) < 0) {
    agent_log("bad frame (len %u, version %u): resetting channel", be32(rx + used), rx[used + 5]);
    rx_len = 0;
    return;
  }
  memmove(rx, rx + used, rx_len - used);
  rx_len -= used;
}

static void send_hello(void) {
  struct tlv_out t;
  tlv_reset(&t);
  tlv_put_u32(&t, T_VERSION, HB_PROTO_VERSION);
  tlv_put_str(&t, T_MESSAGE, AGENT_BUILD_ID);
  hb_send_tlv(HB_HELLO, 0, &t);
}

int main(void) {
  if (getpid() != 1) { fprintf(stderr, "hyperbox-agent must run as PID 1 in a guest\n"); return 1; }
  early_mounts();
  contain_init();
  /* signal, sigprocmask: cannot fail with these arguments */
  signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  /* Without it, children are reaped on a 100 ms tick instead. */
  if (sfd < 0) agent_log("signalfd: %s", strerror(errno));

  for (int tries = 0; (channel = open(CONTROL_PORT, O_RDWR | O_CLOEXEC)) < 0; tries++) {
    if (tries == 500) { agent_log("no control port %s: %s", CONTROL_PORT, strerror(errno)); reboot(RB_POWER_OFF); }
    usleep(10000);
  }
  hb_set_channel(channel);
  loopback_up();
  blk_scan_disks(); /* before the hello: a template's snapshot keeps the list */
  send_hello();

  struct pollfd fds[2 + 3 * MAX_PROCS];
  struct { struct proc *pr; int which; } map[2 + 3 * MAX_PROCS];
  for (;;) {
    int nf = 0;
    fds[nf++] = (struct pollfd){channel, POLLIN, 0};
    fds[nf++] = (struct pollfd){sfd, POLLIN, 0}; /* poll skips a negative fd */
    for (int i = 0; i < MAX_PROCS; i++) {
      struct proc *pr = &procs[i];
      if (!pr->id) continue;
      /* A process whose kept output reached the bound waits (on its pipe) for the host's acks. */
      int full = pr->keeps && keep_room(&pr->keep) < 4096;
      if (pr->out_fd >= 0 && !full) { map[nf].pr = pr; map[nf].which = 1; fds[nf++] = (struct pollfd){pr->out_fd, POLLIN, 0}; }
      if (pr->err_fd >= 0 && !full) { map[nf].pr = pr; map[nf].which = 2; fds[nf++] = (struct pollfd){pr->err_fd, POLLIN, 0}; }
      if (pr->in_fd >= 0 && pr->inlen > 0) { map[nf].pr = pr; map[nf].which = 0; fds[nf++] = (struct pollfd){pr->in_fd, POLLOUT, 0}; }
    }
    int retrying = signals_pending();
    if (poll(fds, (nfds_t)nf, retrying ? 50 : sfd < 0 ? 100 : -1) < 0) continue; /* EINTR */
    if (retrying) retry_signals();
    if (fds[0].revents) read_channel();
    if (sfd < 0) reap_children();
    else if (fds[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {}
      reap_children();
    }
    for (int i = 2; i < nf; i++) {
      struct proc *pr = map[i].pr;
      if (!fds[i].revents || !pr->id) continue;
      if (map[i].which == 1 && pr->out_fd == fds[i].fd) pump_output(pr, &pr->out_fd, HB_STDOUT);
      else if (map[i].which == 2 && pr->err_fd == fds[i].fd) pump_output(pr, &pr->err_fd, HB_STDERR);
      else if (map[i].which == 0 && pr->in_fd == fds[i].fd) flush_stdin(pr);
      if (pr->exited && !pr->exit_sent) finish_if_done(pr); /* one whose last output waited for room */
    }
  }
}
