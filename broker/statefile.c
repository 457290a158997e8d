/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the broker's small state files share (the group coordinator's
 * offsets, the transaction coordinator's state, the producer id block):
 * strings written as hex so any byte of an id survives a line-based text
 * file, and replacing a file atomically and durably.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker_int.h"

void hex_put(FILE *f, const char *s)
{
    if (*s == '\0')
        fputc('-', f);
    for (; *s != '\0'; s++)
        fprintf(f, "%02x", (unsigned char)*s);
}

char *hex_get(const char *s)
{
    if (strcmp(s, "-") == 0)
        return strdup("");
    size_t n = strlen(s);
    if (n % 2 != 0)
        return NULL;
    char *d = malloc(n / 2 + 1);
    if (d == NULL)
        return NULL;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1 || memchr(s + 2 * i, '\0', 2) != NULL || v == 0) {
            free(d); /* not hex, or an embedded NUL */
            return NULL;
        }
        d[i] = (char)v;
    }
    d[n / 2] = '\0';
    return d;
}

int file_replace(const char *dir, const char *path, const char *tmp,
                 int (*write_fn)(FILE *f, void *ctx), void *ctx)
{
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -errno;
    int rc = write_fn(f, ctx);
    if (rc == 0 && ferror(f))
        rc = -EIO;
    if (rc == 0 && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        rc = -errno;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    /* The rename itself is durable once the directory is. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    if (fsync(dfd) != 0)
        rc = -errno;
    close(dfd);
    return rc;
}
