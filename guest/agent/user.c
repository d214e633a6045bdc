/* Resolves a Docker-style user spec ("name", "uid", "name:group", "uid:gid")
 * against the container's own /etc/passwd and /etc/group, as runc does. The
 * files are opened inside the root (inroot.c): an image's /etc/passwd that is a
 * symlink to /../../somewhere reads the root's own somewhere. */
#define _GNU_SOURCE
#include "agent.h"
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_uint(const char *s, unsigned *out) {
  char *end;
  if (!*s) return -1;
  unsigned long v = strtoul(s, &end, 10);
  if (*end || v > 0xfffffffeUL) return -1;
  *out = (unsigned)v;
  return 0;
}

/* Looks NAME (or numeric ID) up in a colon-separated database file such as
 * /etc/passwd. Fills id (field 3) and, if want_gid, gid (field 4). */
static int lookup(const char *root, const char *file, const char *name, unsigned *id,
                  unsigned *gid, unsigned *home_found) {
  char line[1024];
  int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) return -1;
  int fd = open_in_root(rootfd, file, O_RDONLY);
  close(rootfd);
  if (fd < 0) return -1;
  FILE *f = fdopen(fd, "r");
  if (!f) { close(fd); return -1; }
  int found = -1;
  while (fgets(line, sizeof line, f)) {
    char *fields[7] = {0};
    int n = 0;
    char *save = NULL, *p = line;
    line[strcspn(line, "\n")] = 0;
    /* strsep keeps empty fields (e.g. an empty password) */
    while (n < 7 && (fields[n] = strsep(&p, ":")) != NULL) n++;
    (void)save;
    if (n < 3) continue;
    unsigned fid;
    if (parse_uint(fields[2], &fid) < 0) continue;
    unsigned want;
    int match = strcmp(fields[0], name) == 0 ||
                (parse_uint(name, &want) == 0 && want == fid);
    if (!match) continue;
    *id = fid;
    if (gid && n >= 4 && parse_uint(fields[3], gid) == 0 && home_found) *home_found = 1;
    found = 0;
    break;
  }
  fclose(f);
  return found;
}

int resolve_user(const char *root, const char *spec, unsigned *uid, unsigned *gid,
                 char *err, size_t errlen) {
  char user[256], group[256] = "";
  *uid = 0; *gid = 0;
  if (!spec || !*spec) return 0;
  snprintf(user, sizeof user, "%s", spec);
  char *colon = strchr(user, ':');
  if (colon) { *colon = 0; snprintf(group, sizeof group, "%s", colon + 1); }
  unsigned got_gid = 0;
  if (lookup(root, "/etc/passwd", user, uid, gid, &got_gid) < 0) {
    if (parse_uint(user, uid) < 0) {
      snprintf(err, errlen, "unable to find user %s: no matching entries in passwd file", user);
      return -1;
    }
    *gid = 0; /* numeric uid unknown to passwd: runc uses gid 0 */
  }
  if (*group) {
    if (lookup(root, "/etc/group", group, gid, NULL, NULL) < 0 && parse_uint(group, gid) < 0) {
      snprintf(err, errlen, "unable to find group %s: no matching entries in group file", group);
      return -1;
    }
  }
  return 0;
}
