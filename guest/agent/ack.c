/* HB_ACK and HB_RESEND: the host's side of output kept until acknowledged
 * (keep.c; PROTOCOL.md, "Output kept until acknowledged"). Positions count a
 * process's output bytes of both streams; its EXIT is one more position. */
#include "agent.h"
#include "proto.h"
#include "request.h"
#include <errno.h>

/* Acknowledged up to POS: kept output before it goes; past the end, the EXIT
 * was acknowledged too and the slot is free. An exited process whose last
 * output waited for room drains again. */
static void ack_to(struct proc *pr, uint64_t pos) {
  keep_ack(&pr->keep, pos);
  if (pr->exit_sent && pos > pr->keep.end) free_proc(pr);
  else finish_if_done(pr);
}

void handle_ack(struct proc *pr, const uint8_t *p, size_t n) {
  uint64_t pos;
  if (!pr || !pr->keeps || parse_offset(p, n, &pos) < 0) return;
  ack_to(pr, pos);
}

static void resend_record(uint8_t type, const uint8_t *p, size_t n, void *ctx) {
  hb_send(type, *(uint32_t *)ctx, p, n);
}

/* A host that re-attached has the output up to POS (its log). It gets HB_RESENT
 * with the position the resend starts at (what it has, unless it asks for less
 * than it acknowledged before: then that), everything kept past it, and the EXIT
 * if the process is gone. */
void handle_resend(uint32_t id, struct proc *pr, const uint8_t *p, size_t n) {
  struct tlv_out t;
  uint64_t pos;
  tlv_reset(&t);
  if (!pr || !pr->keeps || parse_offset(p, n, &pos) < 0) {
    tlv_put_u32(&t, T_ERRNO, !pr ? ESRCH : !pr->keeps ? ENOTSUP : EINVAL);
    hb_send_tlv(HB_RESENT, id, &t);
    return;
  }
  if (pos > pr->keep.end) pos = pr->keep.end; /* the EXIT is acknowledged only by HB_ACK */
  ack_to(pr, pos);
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(pr->keep.base >> (56 - 8 * i));
  tlv_put(&t, T_OFFSET, b, 8);
  hb_send_tlv(HB_RESENT, id, &t);
  keep_each(&pr->keep, resend_record, &id);
  if (pr->exit_sent) send_exit(pr);
}
