/* Small helpers shared by the agent's units. */
#define _GNU_SOURCE
#include "agent.h"
#include "proto.h"
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

/* Logs to the kernel ring buffer (the VM's console log on the host). */
void agent_log(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap); /* truncation is fine for a log line */
  va_end(ap);
  int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) { dprintf(fd, "hyperbox-agent: %s\n", buf); close(fd); } /* nowhere to report a failure */
}

void send_result(int err, const char *msg) {
  struct tlv_out t;
  tlv_reset(&t);
  tlv_put_u32(&t, T_ERRNO, (uint32_t)err);
  if (msg) tlv_put_str(&t, T_MESSAGE, msg);
  hb_send_tlv(HB_RESULT, 0, &t); /* see proto.h on send errors */
}

void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  /* cannot fail on an fd we hold; if it did, the fd stays blocking and the
   * poll loop still only reads or writes it when poll says it is ready */
  if (fl >= 0) (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}
