/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rows and their schemas. A stream's records are rows: plain C structs of a
 * fixed size that the job's author declares, described by a schema (field
 * names, types and offsets) so that spate can hash keys, aggregate fields,
 * copy strings across shards and convert rows to and from JSON and CSV.
 *
 * Strings in rows are `struct sp_str` (pointer and length). They point into
 * the batch that carries the row, so they stay valid while the row is being
 * processed; spate copies them whenever a row moves to another batch. A
 * function that writes a row may point a string at any memory that outlives
 * the call (its input row's strings, constants): spate copies it in.
 */
#ifndef SP_SCHEMA_H
#define SP_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sp_type {
    SP_T_I64,  /* int64_t */
    SP_T_F64,  /* double */
    SP_T_STR,  /* struct sp_str */
    SP_T_BOOL, /* bool */
};

struct sp_str {
    const char *ptr;
    uint32_t len;
    uint32_t reserved_;
};

static inline struct sp_str sp_str_of(const char *ptr, uint32_t len)
{
    struct sp_str s = {ptr, len, 0};
    return s;
}

struct sp_field {
    const char *name;
    enum sp_type type;
    uint32_t offset;
};

#define SP_FIELD(row_type, member, type)                                                           \
    {                                                                                              \
#member, type, (uint32_t)offsetof(row_type, member)                                        \
    }

#define SP_SCHEMA_FIELDS_MAX 64

struct sp_schema {
    const char *name;
    uint32_t row_bytes; /* sizeof the row struct */
    uint32_t field_count;
    const struct sp_field *fields;
};

#define SP_SCHEMA(row_type, field_array)                                                           \
    {                                                                                              \
#row_type, (uint32_t)sizeof(row_type),                                                     \
            (uint32_t)(sizeof(field_array) / sizeof((field_array)[0])), field_array                \
    }

/* The index of field `name`, or -1. */
int sp_schema_find(const struct sp_schema *schema, const char *name);

/*
 * The row every aggregation emits: the window (both 0 for running
 * aggregates; INT64_MIN and INT64_MAX for a global window), the result
 * (int64 for count, sum, min and max of integers; double for avg and for
 * doubles; a user aggregate says which) and the key, typed as the field it
 * came from (raw bytes as a string for a key function).
 */
struct sp_agg_row {
    int64_t window_start;
    int64_t window_end;
    union {
        int64_t i64;
        double f64;
    } value;
    union {
        int64_t i64;
        double f64;
        bool b;
        struct sp_str str;
    } key;
};

#endif /* SP_SCHEMA_H */
