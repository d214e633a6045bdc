#ifndef HB_AGENT_H
#define HB_AGENT_H
#include <stddef.h>
int resolve_user(const char *root, const char *spec, unsigned *uid, unsigned *gid,
                 char *err, size_t errlen);
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void handle_stats(void);
#include <stdint.h>
int limits_set_memory(uint64_t bytes);
void limits_join(void);
unsigned long limits_oom_kills(void);
#endif
