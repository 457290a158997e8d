/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target over the S3 client's XML decoders (ckpt/s3_int.h), which
 * read whatever an S3 endpoint answers: a LIST page (sp_s3_list_decode)
 * and an error's <Code> and <Message> (sp_s3_xml_find). The first input
 * byte picks the client prefix ("" or "p/"); the rest is the answer. Each
 * call returns a count or one of the documented errors, never reads past
 * the input (ASan), and hands out only NUL-terminated keys and tokens that
 * fit their limits. Seeds: corpus/s3_xml (answers s3rver and S3 give).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_key(const char *key, uint64_t size, void *ctx)
{
    (void)size;
    size_t *count = ctx;
    SP_ASSERT(strlen(key) <= SP_S3_KEY_BYTES_MAX);
    (*count)++;
    return *count == 999 ? -ECANCELED : 0; /* FN's stop, once in a while */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *prefix = (data[0] & 1) != 0 ? "p/" : "";
    const char *xml = (const char *)data + 1;
    size_t len = size - 1;

    char token[SP_S3_TOKEN_BYTES_MAX];
    size_t count = 0;
    int rc = sp_s3_list_decode(xml, len, prefix, token, check_key, &count);
    SP_ASSERT(rc >= 0 || rc == -EBADMSG || rc == -EOVERFLOW || rc == -ECANCELED);
    SP_ASSERT(rc < 0 || (size_t)rc == count);
    SP_ASSERT(rc <= 1000);
    if (rc >= 0)
        SP_ASSERT(strlen(token) < SP_S3_TOKEN_BYTES_MAX);

    char code[64], message[256];
    rc = sp_s3_xml_find(xml, len, "Code", code, sizeof(code));
    SP_ASSERT(rc == 0 || rc == -ENOENT || rc == -EBADMSG || rc == -EOVERFLOW);
    SP_ASSERT(rc != 0 || strlen(code) < sizeof(code));
    rc = sp_s3_xml_find(xml, len, "Message", message, sizeof(message));
    SP_ASSERT(rc == 0 || rc == -ENOENT || rc == -EBADMSG || rc == -EOVERFLOW);
    return 0;
}
