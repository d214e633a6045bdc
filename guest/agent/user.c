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

static int add_group(gid_t *out, int *n, int max, unsigned g) {
  for (int i = 0; i < *n; i++) if (out[i] == g) return 0;
  if (*n >= max) return -1;
  out[(*n)++] = g;
  return 0;
}

/* Is NAME in the comma-separated MEMBERS list? */
static int listed(const char *members, const char *name) {
  size_t len = strlen(name);
  for (const char *p = members; *p;) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == len && strncmp(p, name, len) == 0) return 1;
    if (!end) break;
    p = end + 1;
  }
  return 0;
}

int resolve_groups(const char *root, const char *spec, unsigned gid, char *const *add, int nadd,
                   gid_t *out, int max, char *err, size_t errlen) {
  int n = 0;
  add_group(out, &n, max, gid);
  char user[256];
  snprintf(user, sizeof user, "%s", spec && *spec ? spec : "root");
  user[strcspn(user, ":")] = 0;
  int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  int fd = rootfd < 0 ? -1 : open_in_root(rootfd, "/etc/group", O_RDONLY);
  if (rootfd >= 0) close(rootfd);
  FILE *f = fd < 0 ? NULL : fdopen(fd, "r");
  if (!f && fd >= 0) close(fd);
  if (f) {
    char line[4096];
    while (fgets(line, sizeof line, f)) {
      char *fields[4] = {0}, *p = line;
      int k = 0;
      line[strcspn(line, "\n")] = 0;
      while (k < 4 && (fields[k] = strsep(&p, ":")) != NULL) k++;
      unsigned g;
      if (k < 4 || parse_uint(fields[2], &g) < 0 || !listed(fields[3], user)) continue;
      if (add_group(out, &n, max, g) < 0) break;
    }
    fclose(f);
  }
  for (int i = 0; i < nadd; i++) {
    unsigned g;
    if (lookup(root, "/etc/group", add[i], &g, NULL, NULL) < 0 && parse_uint(add[i], &g) < 0) {
      snprintf(err, errlen, "unable to find group %s: no matching entries in group file", add[i]);
      return -1;
    }
    if (add_group(out, &n, max, g) < 0) {
      snprintf(err, errlen, "too many groups");
      return -1;
    }
  }
  return n;
}
