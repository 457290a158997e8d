#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generates spate's Kafka protocol code from Kafka's own message definitions.

Reads ../shared/kafka-protocol/messages/*.json (Apache Kafka's definitions,
the same files the Java client generates its code from) and writes C code
that is committed to the project:

  net/kafka/gen/<message>.h, .c   one struct per request/response/header and
                                  its nested structs; init, decode, encode
                                  and size functions covering every valid
                                  version (flexible versions, compact strings
                                  and arrays, tagged fields, nullable fields,
                                  defaults, uuid, records as zero-copy spans)
  net/kafka/gen/sp_kafka_apis.h, .c   the table of APIs with generic entry points
  net/kafka/gen/meson.build        the list of generated sources
  tests/net/gen/kafka_fill.c, .h   random, version-correct message filling for
                                  the round-trip tests

Usage: scripts/kafka_gen.py [--messages DIR] [--check]
  --check  write nothing; exit 1 if the committed files differ from what
           would be generated (scripts/test runs this).

Python 3 standard library only. The output is deterministic.
"""

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys

VERSION_MAX = 0x7FFF
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The APIs spate generates: the client's and a broker's needs. Every file
# of an API listed here (request and response) is generated, plus the headers.
APIS = [
    "Produce", "Fetch", "ListOffsets", "Metadata", "OffsetCommit", "OffsetFetch",
    "FindCoordinator", "JoinGroup", "Heartbeat", "LeaveGroup", "SyncGroup",
    "DescribeGroups", "ListGroups", "SaslHandshake", "ApiVersions", "CreateTopics",
    "DeleteTopics", "DeleteRecords", "InitProducerId", "OffsetForLeaderEpoch",
    "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "WriteTxnMarkers",
    "TxnOffsetCommit", "DescribeConfigs", "SaslAuthenticate", "CreatePartitions",
    "DescribeCluster", "AlterConfigs", "IncrementalAlterConfigs",
]

# Data schemas carried inside messages: the consumer group protocol's
# subscription (JoinGroup metadata) and assignment (SyncGroup assignment).
DATA = ["ConsumerProtocolSubscription", "ConsumerProtocolAssignment"]

C_KEYWORDS = {"auto", "break", "case", "char", "const", "continue", "default", "do",
              "double", "else", "enum", "extern", "float", "for", "goto", "if", "inline",
              "int", "long", "register", "restrict", "return", "short", "signed",
              "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned",
              "void", "volatile", "while", "bool"}

SCALARS = {
    # type: (C type, wire bytes, reader/writer suffix)
    "bool": ("bool", 1, "bool"),
    "int8": ("int8_t", 1, "int8"),
    "int16": ("int16_t", 2, "int16"),
    "uint16": ("uint16_t", 2, "uint16"),
    "int32": ("int32_t", 4, "int32"),
    "uint32": ("uint32_t", 4, "uint32"),
    "int64": ("int64_t", 8, "int64"),
    "float64": ("double", 8, "float64"),
    "uuid": ("struct sp_kuuid", 16, "uuid"),
}


class GenError(Exception):
    pass


# ---- Reading the definitions ----

def load_json(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"^\s*//.*$", "", text, flags=re.M)
    return json.loads(text)


def parse_versions(text):
    """'0-11' -> (0, 11); '3+' -> (3, MAX); '2' -> (2, 2); 'none' or None -> None."""
    if text is None or text == "none" or text == "":
        return None
    text = text.strip()
    if text.endswith("+"):
        return (int(text[:-1]), VERSION_MAX)
    if "-" in text:
        lo, hi = text.split("-")
        return (int(lo), int(hi))
    return (int(text), int(text))


def intersect(a, b):
    if a is None or b is None:
        return None
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo <= hi else None


def snake(name):
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    s = s.lower()
    return s + "_" if s in C_KEYWORDS else s


class Field:
    def __init__(self, spec, msg, path):
        self.name = spec["name"]
        self.cname = snake(self.name)
        self.type = spec["type"]
        self.path = path + "." + self.name
        self.about = spec.get("about", "")
        self.versions = parse_versions(spec.get("versions"))
        if self.versions is None:
            raise GenError(f"{self.path}: no versions")
        self.nullable = parse_versions(spec.get("nullableVersions"))
        self.tagged = parse_versions(spec.get("taggedVersions"))
        self.tag = spec.get("tag")
        if (self.tagged is None) != (self.tag is None):
            raise GenError(f"{self.path}: tag and taggedVersions go together")
        self.flexible_override = None
        if "flexibleVersions" in spec:
            self.flexible_override = parse_versions(spec["flexibleVersions"]) or "none"
        self.default = spec.get("default")
        self.ignorable = bool(spec.get("ignorable", False))
        self.is_array = self.type.startswith("[]")
        self.elem = self.type[2:] if self.is_array else self.type
        self.struct = None  # a Struct when the field (or its elements) is a struct
        if spec.get("fields") is not None:
            self.struct = msg.add_struct(self.elem, spec["fields"], self.path, spec.get("versions"))
        elif self.elem not in SCALARS and self.elem not in ("string", "bytes", "records"):
            self.struct = msg.common_struct(self.elem, self.path)
        if self.is_array and self.elem in ("bytes", "records"):
            raise GenError(f"{self.path}: arrays of {self.elem} are not supported")
        if not self.is_array and self.struct is None and self.nullable is not None \
                and self.elem not in ("string", "bytes", "records"):
            raise GenError(f"{self.path}: nullable {self.elem} is not supported")

    def present(self):
        return self.versions

    def nullable_in(self):
        return self.nullable


class Struct:
    def __init__(self, msg, name, fields_spec, path):
        self.msg = msg
        self.name = name
        self.cname = f"sp_kafka_{msg.snake}" if name == msg.name else f"sp_kafka_{msg.snake}_{snake(name)}"
        self.fn = self.cname  # function prefix
        self.path = path
        self.fields = []
        self.fields_spec = fields_spec

    def build(self):
        for spec in self.fields_spec:
            self.fields.append(Field(spec, self.msg, self.path))
        seen = set()
        for f in self.fields:
            names = [f.cname]
            if f.is_array:
                names.append(f.cname + "_count")
            if f.struct is not None and not f.is_array and f.nullable is not None:
                names.append(f.cname + "_present")
            for n in names:
                if n in seen:
                    raise GenError(f"{self.path}: C name clash on {n}")
                seen.add(n)
        tags = [f.tag for f in self.fields if f.tag is not None]
        if len(tags) != len(set(tags)):
            raise GenError(f"{self.path}: duplicate tags")


class Message:
    def __init__(self, spec):
        self.spec = spec
        self.name = spec["name"]
        self.kind = spec["type"]
        self.api_key = spec.get("apiKey")
        self.snake = snake(self.name)
        self.valid = parse_versions(spec["validVersions"])
        self.flexible = parse_versions(spec.get("flexibleVersions", "none"))
        self.structs = []  # in definition order, nested before use
        self.by_name = {}
        self.common_specs = {c["name"]: c for c in spec.get("commonStructs", [])}
        self.root = Struct(self, self.name, spec["fields"], self.name)
        self.by_name[self.name] = self.root
        self.root.build()
        self.structs.append(self.root)

    def add_struct(self, name, fields_spec, path, versions):
        if name in self.by_name:
            raise GenError(f"{path}: struct {name} defined twice")
        s = Struct(self, name, fields_spec, self.name + "." + name)
        self.by_name[name] = s
        s.build()
        self.structs.append(s)
        return s

    def common_struct(self, name, path):
        if name in self.by_name:
            return self.by_name[name]
        if name not in self.common_specs:
            raise GenError(f"{path}: unknown type {name}")
        return self.add_struct(name, self.common_specs[name]["fields"], path,
                               self.common_specs[name].get("versions"))


# ---- C expressions ----

def vcond(r, var="version"):
    """C condition for `var` in version range r (within the message's valid range)."""
    if r is None:
        return "false"
    lo, hi = r
    parts = []
    if lo > 0:
        parts.append(f"{var} >= {lo}")
    if hi < VERSION_MAX:
        parts.append(f"{var} <= {hi}")
    if not parts:
        return "true"
    return " && ".join(parts) if len(parts) == 1 else "(" + " && ".join(parts) + ")"


def cstr(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def int_literal(ctype, value):
    if ctype == "int64_t":
        if value == -(1 << 63):
            return "INT64_MIN"
        return f"INT64_C({value})"
    if ctype == "int32_t" and value == -(1 << 31):
        return "INT32_MIN"
    return str(value)


def scalar_default(f):
    ctype = SCALARS[f.elem][0]
    d = f.default
    if f.elem == "bool":
        return "true" if str(d).lower() == "true" else "false"
    if f.elem == "uuid":
        return None
    if d is None or d == "":
        return "0"
    if f.elem == "float64":
        return repr(float(d))
    return int_literal(ctype, int(str(d), 0))


class Gen:
    """Emits the code of one message file."""

    def __init__(self, msg):
        self.msg = msg
        self.out = []

    def w(self, line=""):
        self.out.append(line)

    # -- per-field helpers --

    def compact(self, f):
        if f.flexible_override == "none":
            return "false"
        if f.flexible_override is not None:
            return vcond(f.flexible_override)
        return "flex"

    def nullable(self, f):
        return vcond(f.nullable) if f.nullable is not None else "false"

    def is_default(self, f, s="s"):
        x = f"{s}->{f.cname}"
        if f.is_array:
            return f"{x}_count < 0" if f.default == "null" else f"{x}_count == 0"
        if f.struct is not None:
            if f.nullable is not None:
                return f"!{x}_present"
            return f"{f.struct.fn}_is_default(&{x})"
        if f.elem == "string":
            if f.default == "null":
                return f"{x}.len < 0"
            if f.default in (None, ""):
                return f"{x}.len == 0"
            return f"sp_kstr_eq({x}, {cstr(f.default)})"
        if f.elem == "bytes":
            return f"{x}.len < 0" if f.default == "null" else f"{x}.len == 0"
        if f.elem == "records":
            return f"{x}.len < 0"
        if f.elem == "uuid":
            return f"sp_kuuid_is_zero(&{x})"
        return f"{x} == {scalar_default(f)}"

    # -- header --

    def struct_decl(self, st):
        self.w(f"struct {st.cname} {{")
        for f in st.fields:
            about = f.about.replace("*/", "* /")
            if about:
                self.w(f"    /* {about} */")
            if f.is_array:
                if f.struct is not None:
                    self.w(f"    struct {f.struct.cname} *{f.cname};")
                else:
                    self.w(f"    {self.elem_ctype(f)} *{f.cname};")
                self.w(f"    int32_t {f.cname}_count; /* -1: null */")
            elif f.struct is not None:
                self.w(f"    struct {f.struct.cname} {f.cname};")
                if f.nullable is not None:
                    self.w(f"    bool {f.cname}_present;")
            else:
                self.w(f"    {self.elem_ctype(f)} {f.cname};")
        if not st.fields:
            self.w("    char unused_; /* no fields in any version */")
        self.w("};")
        self.w()

    def elem_ctype(self, f):
        if f.elem in SCALARS:
            return SCALARS[f.elem][0]
        if f.elem == "string":
            return "struct sp_kstr"
        return "struct sp_kbytes"

    def header(self):
        m = self.msg
        guard = f"SP_KAFKA_GEN_{m.snake.upper()}_H"
        self.w("/* SPDX-License-Identifier: Apache-2.0 */")
        self.w(f"/* Generated by scripts/kafka_gen.py from Kafka's {m.name}.json: do not edit. */")
        self.w(f"#ifndef {guard}")
        self.w(f"#define {guard}")
        self.w()
        self.w('#include "sp_kafka_wire.h"')
        self.w()
        lo, hi = m.valid
        self.w(f"#define {m.root.cname.upper()}_VERSION_MIN {lo}")
        self.w(f"#define {m.root.cname.upper()}_VERSION_MAX {hi}")
        flex = m.flexible[0] if m.flexible else -1
        self.w(f"#define {m.root.cname.upper()}_FLEXIBLE_MIN {flex} /* -1: never flexible */")
        self.w()
        for st in m.structs:  # nested structs come before their users
            self.struct_decl(st)
        for st in m.structs:
            self.w(f"/* Sets every field of `s` to its default. */")
            self.w(f"void {st.fn}_init(struct {st.cname} *s);")
        self.w()
        r = m.root
        self.w(f"/* Decodes version `version` from `r`; strings, bytes and records point into")
        self.w(f" * the frame, arrays come from r->arena. 0, -EBADMSG or -ENOBUFS. */")
        self.w(f"SP_MUST_CHECK int {r.fn}_decode(struct sp_kreader *r, int16_t version,")
        self.w(f"    struct {r.cname} *s);")
        self.w(f"/* Encodes `s` at `version`. 0, -ENOSPC, -ENOTSUP or -EINVAL. */")
        self.w(f"SP_MUST_CHECK int {r.fn}_encode(struct sp_kwriter *w, int16_t version,")
        self.w(f"    const struct {r.cname} *s);")
        self.w(f"/* Bytes that {r.fn}_encode writes at `version`. */")
        self.w(f"size_t {r.fn}_size(const struct {r.cname} *s, int16_t version);")
        self.w()
        self.w(f"#endif /* {guard} */")

    # -- source --

    def source(self):
        m = self.msg
        self.w("/* SPDX-License-Identifier: Apache-2.0 */")
        self.w(f"/* Generated by scripts/kafka_gen.py from Kafka's {m.name}.json: do not edit. */")
        self.w(f'#include "{m.snake}.h"')
        self.w()
        flex = f"version >= {m.flexible[0]}" if m.flexible else "false"
        self.w(f"#define IS_FLEXIBLE(version) ({flex})")
        self.w()
        for st in m.structs:
            if st is not m.root:
                self.w(f"static int {st.fn}_decode(struct sp_kreader *r, int16_t version, struct {st.cname} *s);")
                self.w(f"static int {st.fn}_encode(struct sp_kwriter *w, int16_t version, const struct {st.cname} *s);")
                self.w(f"static size_t {st.fn}_size(const struct {st.cname} *s, int16_t version);")
            self.w(f"SP_UNUSED static size_t {st.fn}_bytes_min(int16_t version);")
            self.w(f"SP_UNUSED static bool {st.fn}_is_default(const struct {st.cname} *s);")
        self.w()
        for st in m.structs:
            self.init_fn(st)
            self.is_default_fn(st)
            self.bytes_min_fn(st)
            self.tagged_fns(st)
            self.decode_fn(st)
            self.encode_fn(st)
            self.size_fn(st)

    def init_fn(self, st):
        self.w(f"void {st.fn}_init(struct {st.cname} *s)")
        self.w("{")
        self.w("    memset(s, 0, sizeof(*s));")
        for f in st.fields:
            x = f"s->{f.cname}"
            if f.is_array:
                if f.default == "null":
                    self.w(f"    {x}_count = -1;")
            elif f.struct is not None:
                self.w(f"    {f.struct.fn}_init(&{x});")
                if f.nullable is not None and f.default != "null":
                    # Java's default: a struct instance unless the default is null.
                    self.w(f"    {x}_present = true;")
            elif f.elem == "string":
                if f.default == "null":
                    self.w(f"    {x} = SP_KSTR_NULL;")
                elif f.default not in (None, ""):
                    self.w(f"    {x} = SP_KSTR({cstr(f.default)});")
            elif f.elem in ("bytes", "records"):
                if f.default == "null" or f.elem == "records":
                    self.w(f"    {x} = (struct sp_kbytes){{NULL, -1}};")
            elif f.elem != "uuid":
                d = scalar_default(f)
                if d not in ("0", "false", "0.0"):
                    self.w(f"    {x} = {d};")
        self.w("}")
        self.w()

    def is_default_fn(self, st):
        self.w(f"SP_UNUSED static bool {st.fn}_is_default(const struct {st.cname} *s)")
        self.w("{")
        if not st.fields:
            self.w("    (void)s;")
            self.w("    return true;")
        else:
            conds = [f"({self.is_default(f)})" for f in st.fields]
            self.w("    return " + " &&\n           ".join(conds) + ";")
        self.w("}")
        self.w()

    def field_bytes_min(self, f):
        """C expression: least wire bytes of field f when present and not tagged."""
        c = self.compact(f)
        if f.is_array or f.elem == "bytes" or f.elem == "records":
            return f"({c} ? 1u : 4u)"
        if f.elem == "string":
            return f"({c} ? 1u : 2u)"
        if f.struct is not None:
            if f.nullable is not None:
                return "1u"
            return f"{f.struct.fn}_bytes_min(version)"
        return f"{SCALARS[f.elem][1]}u"

    def elem_bytes_min(self, f):
        """C expression: least wire bytes of one element of array field f."""
        if f.struct is not None:
            return f"{f.struct.fn}_bytes_min(version)"
        if f.elem == "string":
            return f"({self.compact(f)} ? 1u : 2u)"
        return f"{SCALARS[f.elem][1]}u"

    def bytes_min_fn(self, st):
        self.w(f"SP_UNUSED static size_t {st.fn}_bytes_min(int16_t version)")
        self.w("{")
        self.w("    const bool flex = IS_FLEXIBLE(version);")
        self.w("    size_t n = flex ? 1 : 0; /* the tagged-field count */")
        for f in st.fields:
            self.w(f"    if ({vcond(f.versions)} && !({vcond(f.tagged)}))")
            self.w(f"        n += {self.field_bytes_min(f)};")
        self.w("    (void)version;")
        self.w("    return n;")
        self.w("}")
        self.w()

    # decode/encode/size statement emitters; `r`/`w` name the reader/writer.

    def decode_field(self, f, ind, r="r"):
        x = f"s->{f.cname}"
        F = cstr(f.path)
        c, nl = self.compact(f), self.nullable(f)
        w = self.w
        if f.is_array:
            w(f"{ind}{{")
            w(f"{ind}    void *items;")
            elem_size = f"sizeof(*{x})"
            w(f"{ind}    SP_KTRY(sp_kr_array({r}, {c}, {nl}, {elem_size}, {self.elem_bytes_min(f)}, &{x}_count, &items, {F}));")
            w(f"{ind}    {x} = items;")
            w(f"{ind}    for (int32_t i = 0; i < {x}_count; i++)")
            if f.struct is not None:
                w(f"{ind}        SP_KTRY({f.struct.fn}_decode({r}, version, &{x}[i]));")
            elif f.elem == "string":
                w(f"{ind}        SP_KTRY(sp_kr_string({r}, {c}, false, &{x}[i], {F}));")
            else:
                w(f"{ind}        SP_KTRY(sp_kr_{SCALARS[f.elem][2]}({r}, &{x}[i], {F}));")
            w(f"{ind}}}")
        elif f.struct is not None:
            if f.nullable is not None:
                w(f"{ind}if ({nl}) {{")
                w(f"{ind}    int8_t marker;")
                w(f"{ind}    SP_KTRY(sp_kr_int8({r}, &marker, {F}));")
                w(f"{ind}    {x}_present = marker >= 0;")
                w(f"{ind}}} else {{")
                w(f"{ind}    {x}_present = true;")
                w(f"{ind}}}")
                w(f"{ind}if ({x}_present)")
                w(f"{ind}    SP_KTRY({f.struct.fn}_decode({r}, version, &{x}));")
            else:
                w(f"{ind}SP_KTRY({f.struct.fn}_decode({r}, version, &{x}));")
        elif f.elem == "string":
            w(f"{ind}SP_KTRY(sp_kr_string({r}, {c}, {nl}, &{x}, {F}));")
        elif f.elem in ("bytes", "records"):
            w(f"{ind}SP_KTRY(sp_kr_bytes({r}, {c}, {nl}, &{x}, {F}));")
        else:
            w(f"{ind}SP_KTRY(sp_kr_{SCALARS[f.elem][2]}({r}, &{x}, {F}));")

    def encode_field(self, f, ind, wr="w"):
        x = f"s->{f.cname}"
        F = cstr(f.path)
        c, nl = self.compact(f), self.nullable(f)
        w = self.w
        if f.is_array:
            w(f"{ind}SP_KTRY(sp_kw_length({wr}, {c}, true, {nl}, {x}_count, {F}));")
            w(f"{ind}for (int32_t i = 0; i < {x}_count; i++)")
            if f.struct is not None:
                w(f"{ind}    SP_KTRY({f.struct.fn}_encode({wr}, version, &{x}[i]));")
            elif f.elem == "string":
                w(f"{ind}    SP_KTRY(sp_kw_string({wr}, {c}, false, {x}[i], {F}));")
            elif f.elem == "uuid":
                w(f"{ind}    SP_KTRY(sp_kw_uuid({wr}, &{x}[i], {F}));")
            else:
                w(f"{ind}    SP_KTRY(sp_kw_{SCALARS[f.elem][2]}({wr}, {x}[i], {F}));")
        elif f.struct is not None:
            if f.nullable is not None:
                w(f"{ind}if ({nl}) {{")
                w(f"{ind}    SP_KTRY(sp_kw_int8({wr}, {x}_present ? 1 : -1, {F}));")
                w(f"{ind}}} else if (!{x}_present) {{")
                w(f"{ind}    return sp_kw_fail({wr}, -EINVAL, {F});")
                w(f"{ind}}}")
                w(f"{ind}if ({x}_present)")
                w(f"{ind}    SP_KTRY({f.struct.fn}_encode({wr}, version, &{x}));")
            else:
                w(f"{ind}SP_KTRY({f.struct.fn}_encode({wr}, version, &{x}));")
        elif f.elem == "string":
            w(f"{ind}SP_KTRY(sp_kw_string({wr}, {c}, {nl}, {x}, {F}));")
        elif f.elem in ("bytes", "records"):
            w(f"{ind}SP_KTRY(sp_kw_bytes({wr}, {c}, {nl}, {x}, {F}));")
        elif f.elem == "uuid":
            w(f"{ind}SP_KTRY(sp_kw_uuid({wr}, &{x}, {F}));")
        else:
            w(f"{ind}SP_KTRY(sp_kw_{SCALARS[f.elem][2]}({wr}, {x}, {F}));")

    def size_field(self, f, ind):
        x = f"s->{f.cname}"
        c = self.compact(f)
        w = self.w
        if f.is_array:
            w(f"{ind}n += sp_ks_length({c}, true, {x}_count);")
            if f.struct is not None:
                w(f"{ind}for (int32_t i = 0; i < {x}_count; i++)")
                w(f"{ind}    n += {f.struct.fn}_size(&{x}[i], version);")
            elif f.elem == "string":
                w(f"{ind}for (int32_t i = 0; i < {x}_count; i++)")
                w(f"{ind}    n += sp_ks_string({c}, {x}[i]);")
            else:
                w(f"{ind}if ({x}_count > 0)")
                w(f"{ind}    n += (size_t){x}_count * {SCALARS[f.elem][1]}u;")
        elif f.struct is not None:
            if f.nullable is not None:
                w(f"{ind}if ({self.nullable(f)})")
                w(f"{ind}    n += 1;")
                w(f"{ind}if ({x}_present)")
                w(f"{ind}    n += {f.struct.fn}_size(&{x}, version);")
            else:
                w(f"{ind}n += {f.struct.fn}_size(&{x}, version);")
        elif f.elem == "string":
            w(f"{ind}n += sp_ks_string({c}, {x});")
        elif f.elem in ("bytes", "records"):
            w(f"{ind}n += sp_ks_bytes({c}, {x});")
        else:
            w(f"{ind}n += {SCALARS[f.elem][1]};")

    def tagged_fields(self, st):
        return sorted([f for f in st.fields if f.tagged is not None], key=lambda f: f.tag)

    def tagged_fns(self, st):
        """Per tagged field: decode, encode and size of its value alone."""
        prologue = ["    const bool flex = true; /* tagged fields exist only there */",
                    "    (void)flex;", "    (void)version;", "    (void)s;"]
        for f in self.tagged_fields(st):
            base = f"{st.fn}_tag_{f.cname}"
            self.w(f"static int {base}_decode(struct sp_kreader *r, int16_t version, struct {st.cname} *s)")
            self.w("{")
            self.out.extend(prologue)
            self.decode_field(f, "    ")
            self.w("    return 0;")
            self.w("}")
            self.w()
            self.w(f"static int {base}_encode(struct sp_kwriter *w, int16_t version, const struct {st.cname} *s)")
            self.w("{")
            self.out.extend(prologue)
            self.encode_field(f, "    ")
            self.w("    return 0;")
            self.w("}")
            self.w()
            self.w(f"static size_t {base}_size(const struct {st.cname} *s, int16_t version)")
            self.w("{")
            self.out.extend(prologue)
            self.w("    size_t n = 0;")
            self.size_field(f, "    ")
            self.w("    return n;")
            self.w("}")
            self.w()

    def decode_fn(self, st):
        m = self.msg
        static = "" if st is m.root else "static "
        self.w(f"{static}int {st.fn}_decode(struct sp_kreader *r, int16_t version, struct {st.cname} *s)")
        self.w("{")
        self.w("    const bool flex = IS_FLEXIBLE(version);")
        self.w("    (void)flex;")
        self.w("    (void)version;")
        if st is m.root:
            self.w(f"    if (version < {m.valid[0]} || version > {m.valid[1]})")
            self.w(f"        return sp_kr_fail(r, -EBADMSG, {cstr(m.name + '.version')});")
        self.w(f"    {st.fn}_init(s);")
        for f in st.fields:
            regular = f.versions if f.tagged is None else None
            if f.tagged is not None:
                # Present in versions that are not tagged ones: regular there.
                if f.versions != f.tagged:
                    raise GenError(f"{f.path}: tagged in only some versions")
                continue
            cond = vcond(regular)
            if cond == "true":
                self.decode_field(f, "    ")
            else:
                self.w(f"    if ({cond}) {{")
                self.decode_field(f, "        ")
                self.w("    }")
        tagged = self.tagged_fields(st)
        F = cstr(st.path + "._tagged_fields")
        self.w("    if (flex) {")
        self.w("        uint32_t tagged_count;")
        self.w(f"        SP_KTRY(sp_kr_uvarint(r, &tagged_count, {F}));")
        self.w("        for (uint32_t t = 0; t < tagged_count; t++) {")
        self.w("            uint32_t tag, size;")
        self.w(f"            SP_KTRY(sp_kr_uvarint(r, &tag, {F}));")
        self.w(f"            SP_KTRY(sp_kr_uvarint(r, &size, {F}));")
        if not tagged:
            self.w(f"            SP_KTRY(sp_kr_skip(r, size, {F}));")
        else:
            self.w("            struct sp_kreader sub;")
            self.w(f"            SP_KTRY(sp_kr_sub(r, size, &sub, {F}));")
            self.w("            switch (tag) {")
            for f in tagged:
                self.w(f"            case {f.tag}:")
                self.w(f"                if ({vcond(f.tagged)})")
                self.w(f"                    SP_KTRY(sp_kr_sub_done(r, &sub, {st.fn}_tag_{f.cname}_decode(&sub, version, s), {cstr(f.path)}));")
                self.w("                break;")
            self.w("            default:")
            self.w("                break; /* unknown tags are skipped */")
            self.w("            }")
        self.w("        }")
        self.w("    }")
        self.w("    return 0;")
        self.w("}")
        self.w()

    def encode_fn(self, st):
        m = self.msg
        static = "" if st is m.root else "static "
        self.w(f"{static}int {st.fn}_encode(struct sp_kwriter *w, int16_t version, const struct {st.cname} *s)")
        self.w("{")
        self.w("    const bool flex = IS_FLEXIBLE(version);")
        self.w("    (void)flex;")
        self.w("    (void)version;")
        self.w("    (void)s;")
        if st is m.root:
            self.w(f"    if (version < {m.valid[0]} || version > {m.valid[1]})")
            self.w(f"        return sp_kw_fail(w, -ENOTSUP, {cstr(m.name + '.version')});")
        for f in st.fields:
            present = f.versions if f.tagged is None else None
            cond = vcond(present)
            absent_check = not f.ignorable
            if f.tagged is not None:
                # Tagged: written in the tagged section; outside its versions
                # a non-default value cannot be carried.
                if absent_check:
                    self.w(f"    if (!({vcond(f.tagged)}) && !({self.is_default(f)}))")
                    self.w(f"        return sp_kw_fail(w, -ENOTSUP, {cstr(f.path)});")
                continue
            if cond == "true":
                self.encode_field(f, "    ")
                continue
            self.w(f"    if ({cond}) {{")
            self.encode_field(f, "        ")
            if absent_check:
                self.w(f"    }} else if (!({self.is_default(f)})) {{")
                self.w(f"        return sp_kw_fail(w, -ENOTSUP, {cstr(f.path)});")
            self.w("    }")
        tagged = self.tagged_fields(st)
        F = cstr(st.path + "._tagged_fields")
        self.w("    if (flex) {")
        self.w("        uint32_t tagged_count = 0;")
        for f in tagged:
            self.w(f"        if ({vcond(f.tagged)} && !({self.is_default(f)}))")
            self.w("            tagged_count++;")
        self.w(f"        SP_KTRY(sp_kw_uvarint(w, tagged_count, {F}));")
        for f in tagged:
            base = f"{st.fn}_tag_{f.cname}"
            self.w(f"        if ({vcond(f.tagged)} && !({self.is_default(f)})) {{")
            self.w(f"            SP_KTRY(sp_kw_uvarint(w, {f.tag}, {F}));")
            self.w(f"            SP_KTRY(sp_kw_uvarint(w, (uint32_t){base}_size(s, version), {F}));")
            self.w(f"            SP_KTRY({base}_encode(w, version, s));")
            self.w("        }")
        self.w("    }")
        self.w("    return 0;")
        self.w("}")
        self.w()

    def size_fn(self, st):
        m = self.msg
        static = "" if st is m.root else "static "
        self.w(f"{static}size_t {st.fn}_size(const struct {st.cname} *s, int16_t version)")
        self.w("{")
        self.w("    const bool flex = IS_FLEXIBLE(version);")
        self.w("    size_t n = 0;")
        self.w("    (void)flex;")
        self.w("    (void)version;")
        self.w("    (void)s;")
        for f in st.fields:
            if f.tagged is not None:
                continue
            cond = vcond(f.versions)
            if cond == "true":
                self.size_field(f, "    ")
            else:
                self.w(f"    if ({cond}) {{")
                self.size_field(f, "        ")
                self.w("    }")
        tagged = self.tagged_fields(st)
        self.w("    if (flex) {")
        self.w("        uint32_t tagged_count = 0;")
        for f in tagged:
            base = f"{st.fn}_tag_{f.cname}"
            self.w(f"        if ({vcond(f.tagged)} && !({self.is_default(f)})) {{")
            self.w(f"            size_t field = {base}_size(s, version);")
            self.w("            tagged_count++;")
            self.w(f"            n += sp_ks_uvarint({f.tag}) + sp_ks_uvarint((uint32_t)field) + field;")
            self.w("        }")
        self.w("        n += sp_ks_uvarint(tagged_count);")
        self.w("    }")
        self.w("    return n;")
        self.w("}")
        self.w()


# ---- The API table ----

def api_table(pairs, headers, data):
    h, c = [], []
    h += [
        "/* SPDX-License-Identifier: Apache-2.0 */",
        "/* Generated by scripts/kafka_gen.py: do not edit. */",
        "/*",
        " * Every generated Kafka API, with type-erased entry points for code that",
        " * handles messages by API key (framing, fuzzers, the round-trip tests).",
        " */",
        "#ifndef SP_KAFKA_GEN_APIS_H",
        "#define SP_KAFKA_GEN_APIS_H",
        "",
        '#include "sp_kafka_wire.h"',
        "",
    ]
    for m in headers + data + [x for p in pairs for x in p]:
        h.append(f'#include "{m.snake}.h"')
    h += [
        "",
        "/* One message type: its size in memory and its functions, type-erased. */",
        "struct sp_kafka_msg_ops {",
        "    const char *name;",
        "    size_t struct_size;",
        "    int16_t flexible_min; /* -1: never flexible */",
        "    void (*init)(void *msg);",
        "    int (*decode)(struct sp_kreader *r, int16_t version, void *msg);",
        "    int (*encode)(struct sp_kwriter *w, int16_t version, const void *msg);",
        "    size_t (*size)(const void *msg, int16_t version);",
        "};",
        "",
        "struct sp_kafka_api {",
        "    int16_t key;",
        "    const char *name;",
        "    int16_t version_min;",
        "    int16_t version_max;",
        "    struct sp_kafka_msg_ops request;",
        "    struct sp_kafka_msg_ops response;",
        "};",
        "",
        "#define SP_KAFKA_API_KEY_MAX " + str(max(p[0].api_key for p in pairs)),
        "",
        "/* The generated APIs, in key order. */",
        "extern const struct sp_kafka_api sp_kafka_apis[];",
        "extern const unsigned sp_kafka_api_count;",
        "",
        "/* The request and response headers. */",
        "extern const struct sp_kafka_msg_ops sp_kafka_request_header_ops;",
        "extern const struct sp_kafka_msg_ops sp_kafka_response_header_ops;",
        "",
        "/* Data schemas carried in messages' bytes fields, and their version ranges. */",
        "struct sp_kafka_data {",
        "    struct sp_kafka_msg_ops ops;",
        "    int16_t version_min;",
        "    int16_t version_max;",
        "};",
        "extern const struct sp_kafka_data sp_kafka_data_schemas[];",
        "extern const unsigned sp_kafka_data_schema_count;",
        "",
        "/* The API of `key`, or NULL when spate does not generate it. */",
        "const struct sp_kafka_api *sp_kafka_api_find(int16_t key);",
        "",
        "#endif /* SP_KAFKA_GEN_APIS_H */",
    ]
    c += [
        "/* SPDX-License-Identifier: Apache-2.0 */",
        "/* Generated by scripts/kafka_gen.py: do not edit. */",
        '#include "sp_kafka_apis.h"',
        "",
    ]

    def thunks(m):
        r = m.root
        c.extend([
            f"static void {m.snake}_init_any(void *msg)",
            "{",
            f"    {r.fn}_init(msg);",
            "}",
            "",
            f"static int {m.snake}_decode_any(struct sp_kreader *r, int16_t version, void *msg)",
            "{",
            f"    return {r.fn}_decode(r, version, msg);",
            "}",
            "",
            f"static int {m.snake}_encode_any(struct sp_kwriter *w, int16_t version, const void *msg)",
            "{",
            f"    return {r.fn}_encode(w, version, msg);",
            "}",
            "",
            f"static size_t {m.snake}_size_any(const void *msg, int16_t version)",
            "{",
            f"    return {r.fn}_size(msg, version);",
            "}",
            "",
        ])

    def ops(m):
        flex = m.flexible[0] if m.flexible else -1
        return (f"{{{cstr(m.name)}, sizeof(struct {m.root.cname}), {flex}, {m.snake}_init_any, "
                f"{m.snake}_decode_any, {m.snake}_encode_any, {m.snake}_size_any}}")

    for m in headers + data + [x for p in pairs for x in p]:
        thunks(m)
    c.append("const struct sp_kafka_api sp_kafka_apis[] = {")
    for req, resp in pairs:
        if req.valid != resp.valid:
            raise GenError(f"{req.name}: request and response versions differ")
        c.append(f"    {{{req.api_key}, {cstr(req.name[:-len('Request')])}, {req.valid[0]}, {req.valid[1]},")
        c.append(f"     {ops(req)},")
        c.append(f"     {ops(resp)}}},")
    c.append("};")
    c.append("")
    c.append(f"const unsigned sp_kafka_api_count = {len(pairs)};")
    c.append("")
    req_h = [m for m in headers if m.name == "RequestHeader"][0]
    resp_h = [m for m in headers if m.name == "ResponseHeader"][0]
    c.append(f"const struct sp_kafka_msg_ops sp_kafka_request_header_ops = {ops(req_h)};")
    c.append(f"const struct sp_kafka_msg_ops sp_kafka_response_header_ops = {ops(resp_h)};")
    c.append("")
    c.append("const struct sp_kafka_data sp_kafka_data_schemas[] = {")
    for m in data:
        c.append(f"    {{{ops(m)}, {m.valid[0]}, {m.valid[1]}}},")
    c.append("};")
    c.append(f"const unsigned sp_kafka_data_schema_count = {len(data)};")
    c.append("")
    c += [
        "const struct sp_kafka_api *sp_kafka_api_find(int16_t key)",
        "{",
        "    unsigned lo = 0, hi = sp_kafka_api_count;",
        "    while (lo < hi) {",
        "        unsigned mid = (lo + hi) / 2;",
        "        if (sp_kafka_apis[mid].key == key)",
        "            return &sp_kafka_apis[mid];",
        "        if (sp_kafka_apis[mid].key < key)",
        "            lo = mid + 1;",
        "        else",
        "            hi = mid;",
        "    }",
        "    return NULL;",
        "}",
    ]
    return "\n".join(h) + "\n", "\n".join(c) + "\n"


# ---- Random filling for the round-trip tests ----

def fill_code(messages):
    out = [
        "/* SPDX-License-Identifier: Apache-2.0 */",
        "/* Generated by scripts/kafka_gen.py: do not edit. */",
        "/*",
        " * Fills generated Kafka messages with random values that the given version",
        " * can carry (fields absent from it keep their defaults), for the round-trip",
        " * tests. Arrays come from the arena; strings and bytes point into static",
        " * text.",
        " */",
        '#include "kafka_fill.h"',
        "",
        "static const char fill_text[] = \"abcdefghijklmnopqrstuvwxyz0123456789-_.\";",
        "/* Long values now and then, so lengths take 2- and 3-byte varints. */",
        "static char fill_long[20000];",
        "",
        "static uint64_t fill_len(struct sp_rand *rng, uint64_t short_max, const char **base)",
        "{",
        "    uint64_t pick = sp_rand_below(rng, 64);",
        "    if (fill_long[0] == '\\0')",
        "        for (size_t i = 0; i < sizeof(fill_long); i++)",
        "            fill_long[i] = fill_text[i % (sizeof(fill_text) - 1)];",
        "    if (pick == 0) {",
        "        *base = fill_long;",
        "        return 16384 + sp_rand_below(rng, 3000);",
        "    }",
        "    if (pick < 5) {",
        "        *base = fill_long;",
        "        return 128 + sp_rand_below(rng, 400);",
        "    }",
        "    uint64_t len = sp_rand_below(rng, short_max);",
        "    *base = fill_text + sp_rand_below(rng, sizeof(fill_text) - 1 - len);",
        "    return len;",
        "}",
        "",
        "static struct sp_kstr fill_string(struct sp_rand *rng, bool nullable)",
        "{",
        "    if (nullable && sp_rand_below(rng, 4) == 0)",
        "        return SP_KSTR_NULL;",
        "    const char *base;",
        "    uint64_t len = fill_len(rng, 12, &base);",
        "    return (struct sp_kstr){base, (int32_t)len};",
        "}",
        "",
        "static struct sp_kbytes fill_bytes(struct sp_rand *rng, bool nullable)",
        "{",
        "    if (nullable && sp_rand_below(rng, 4) == 0)",
        "        return (struct sp_kbytes){NULL, -1};",
        "    const char *base;",
        "    uint64_t len = fill_len(rng, 20, &base);",
        "    return (struct sp_kbytes){(const uint8_t *)base, (int32_t)len};",
        "}",
        "",
        "static int32_t fill_count(struct sp_rand *rng, bool nullable)",
        "{",
        "    if (nullable && sp_rand_below(rng, 5) == 0)",
        "        return -1;",
        "    return (int32_t)sp_rand_below(rng, 4);",
        "}",
        "",
        "static void *fill_alloc(struct sp_karena *arena, int32_t count, size_t size)",
        "{",
        "    if (count <= 0)",
        "        return NULL;",
        "    void *p = sp_karena_alloc(arena, (size_t)count * size);",
        "    SP_ASSERT(p != NULL);",
        "    return p;",
        "}",
        "",
    ]
    protos, bodies = [], []

    def scalar_fill(elem, target):
        if elem == "bool":
            return f"{target} = sp_rand_below(rng, 2) == 1;"
        if elem == "uuid":
            return f"for (unsigned b = 0; b < 16; b++) {target}.bytes[b] = (uint8_t)sp_rand_next(rng);"
        if elem == "float64":
            return f"{target} = (double)(int64_t)sp_rand_next(rng) / 1024.0;"
        ctype = SCALARS[elem][0]
        return f"{target} = ({ctype})sp_rand_next(rng);"

    for m in messages:
        for st in m.structs:
            name = f"fill_{st.fn}"
            protos.append(f"static void {name}(struct {st.cname} *s, int16_t version, struct sp_rand *rng, struct sp_karena *arena);")
            b = [f"static void {name}(struct {st.cname} *s, int16_t version, struct sp_rand *rng, struct sp_karena *arena)", "{"]
            b.append(f"    {st.fn}_init(s);")
            b.append("    (void)rng;")
            b.append("    (void)arena;")
            b.append("    (void)version;")
            for f in st.fields:
                present = f.versions if f.tagged is None else f.tagged
                x = f"s->{f.cname}"
                nl = vcond(f.nullable) if f.nullable is not None else "false"
                b.append(f"    if ({vcond(present)}) {{")
                if f.tagged is not None:
                    b.append("        if (sp_rand_below(rng, 2) == 0)")
                    b.append("            goto skip_" + f.cname + ";")
                if f.is_array:
                    b.append(f"        {x}_count = fill_count(rng, {nl});")
                    b.append(f"        {x} = fill_alloc(arena, {x}_count, sizeof(*{x}));")
                    b.append(f"        for (int32_t i = 0; i < {x}_count; i++) {{")
                    if f.struct is not None:
                        b.append(f"            fill_{f.struct.fn}(&{x}[i], version, rng, arena);")
                    elif f.elem == "string":
                        b.append(f"            {x}[i] = fill_string(rng, false);")
                    else:
                        b.append("            " + scalar_fill(f.elem, f"{x}[i]"))
                    b.append("        }")
                elif f.struct is not None:
                    if f.nullable is not None:
                        b.append(f"        {x}_present = !({nl}) || sp_rand_below(rng, 3) != 0;")
                        b.append(f"        if ({x}_present)")
                        b.append(f"            fill_{f.struct.fn}(&{x}, version, rng, arena);")
                    else:
                        b.append(f"        fill_{f.struct.fn}(&{x}, version, rng, arena);")
                elif f.elem == "string":
                    b.append(f"        {x} = fill_string(rng, {nl});")
                elif f.elem in ("bytes", "records"):
                    b.append(f"        {x} = fill_bytes(rng, {nl});")
                else:
                    b.append("        " + scalar_fill(f.elem, x))
                if f.tagged is not None:
                    b.append("    skip_" + f.cname + ":;")
                b.append("    }")
            b.append("}")
            b.append("")
            bodies.extend(b)
    out.extend(protos)
    out.append("")
    out.extend(bodies)
    # Table by message name, type-erased.
    out.append("static void fill_any(const char *name, void *msg, int16_t version, struct sp_rand *rng, struct sp_karena *arena);")
    out.append("")
    out.append("void sp_kafka_fill(const struct sp_kafka_msg_ops *ops, void *msg, int16_t version, struct sp_rand *rng, struct sp_karena *arena)")
    out.append("{")
    out.append("    fill_any(ops->name, msg, version, rng, arena);")
    out.append("}")
    out.append("")
    out.append("static void fill_any(const char *name, void *msg, int16_t version, struct sp_rand *rng, struct sp_karena *arena)")
    out.append("{")
    for m in messages:
        out.append(f"    if (strcmp(name, {cstr(m.name)}) == 0) {{")
        out.append(f"        fill_{m.root.fn}(msg, version, rng, arena);")
        out.append("        return;")
        out.append("    }")
    out.append("    SP_ASSERT(!\"no fill function for this message\");")
    out.append("}")
    h = [
        "/* SPDX-License-Identifier: Apache-2.0 */",
        "/* Generated by scripts/kafka_gen.py: do not edit. */",
        "#ifndef SP_KAFKA_FILL_H",
        "#define SP_KAFKA_FILL_H",
        "",
        "#include <string.h>",
        "",
        '#include "sp_kafka_apis.h"',
        '#include "sp_rand.h"',
        "",
        "/* Fills `msg` (of `ops`) with random values that `version` can carry. */",
        "void sp_kafka_fill(const struct sp_kafka_msg_ops *ops, void *msg, int16_t version,",
        "                   struct sp_rand *rng, struct sp_karena *arena);",
        "",
        "#endif /* SP_KAFKA_FILL_H */",
    ]
    return "\n".join(h) + "\n", "\n".join(out) + "\n"


# ---- Driver ----

def generate(messages_dir):
    """Returns {relative path: text} for every generated file."""
    files = {}
    pairs, headers, all_msgs = [], [], []
    for api in APIS:
        req = Message(load_json(os.path.join(messages_dir, api + "Request.json")))
        resp = Message(load_json(os.path.join(messages_dir, api + "Response.json")))
        if req.api_key != resp.api_key:
            raise GenError(f"{api}: request and response keys differ")
        pairs.append((req, resp))
    pairs.sort(key=lambda p: p[0].api_key)
    for name in ("RequestHeader", "ResponseHeader"):
        headers.append(Message(load_json(os.path.join(messages_dir, name + ".json"))))
    data = [Message(load_json(os.path.join(messages_dir, name + ".json"))) for name in DATA]
    all_msgs = headers + data + [m for p in pairs for m in p]
    for m in all_msgs:
        g = Gen(m)
        g.header()
        files[f"net/kafka/gen/{m.snake}.h"] = "\n".join(g.out) + "\n"
        g = Gen(m)
        g.source()
        files[f"net/kafka/gen/{m.snake}.c"] = "\n".join(g.out) + "\n"
    h, c = api_table(pairs, headers, data)
    files["net/kafka/gen/sp_kafka_apis.h"] = h
    files["net/kafka/gen/sp_kafka_apis.c"] = c
    sources = sorted(p.split("/")[-1] for p in files if p.endswith(".c"))
    files["net/kafka/gen/meson.build"] = (
        "# SPDX-License-Identifier: Apache-2.0\n"
        "# Generated by scripts/kafka_gen.py: do not edit.\n"
        "kafka_gen_sources = files(\n" + "".join(f"  '{s}',\n" for s in sources) + ")\n")
    fh, fc = fill_code(all_msgs)
    files["tests/net/gen/kafka_fill.h"] = fh
    files["tests/net/gen/kafka_fill.c"] = fc
    return files


def clang_format(files):
    """Formats the generated C as the project's .clang-format says (the
    committed files are the formatted ones, so --check needs it too)."""
    tool = shutil.which("clang-format-14") or shutil.which("clang-format")
    if tool is None:
        raise GenError("clang-format (14) not found: run scripts/deps test")
    for rel, text in files.items():
        if not rel.endswith((".c", ".h")):
            continue
        out = subprocess.run([tool, "--style=file", f"--assume-filename={os.path.join(ROOT, rel)}"],
                             input=text, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise GenError(f"clang-format failed on {rel}: {out.stderr.strip()}")
        files[rel] = out.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", default=os.path.join(ROOT, "..", "shared", "kafka-protocol", "messages"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    try:
        files = generate(args.messages)
        clang_format(files)
    except (GenError, OSError, ValueError, KeyError) as e:
        print(f"kafka_gen: {e}", file=sys.stderr)
        return 2
    stale = []
    for gen_rel in sorted({os.path.dirname(rel) for rel in files}):
        gen_dir = os.path.join(ROOT, gen_rel)
        if os.path.isdir(gen_dir):
            for name in sorted(os.listdir(gen_dir)):
                rel = f"{gen_rel}/{name}"
                if rel not in files:
                    stale.append(rel)
    differ = []
    for rel, text in sorted(files.items()):
        path = os.path.join(ROOT, rel)
        old = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        if old == text:
            continue
        differ.append(rel)
        if args.check:
            diff = difflib.unified_diff((old or "").splitlines(), text.splitlines(), rel, rel, lineterm="")
            for i, line in enumerate(diff):
                if i > 20:
                    break
                print(line, file=sys.stderr)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    if args.check:
        if differ or stale:
            print(f"kafka_gen: {len(differ)} generated files differ, {len(stale)} stale: "
                  "run scripts/kafka_gen.py", file=sys.stderr)
            return 1
        print(f"kafka_gen: {len(files)} generated files up to date")
        return 0
    for rel in stale:
        os.remove(os.path.join(ROOT, rel))
    print(f"kafka_gen: wrote {len(differ)} of {len(files)} files, removed {len(stale)} stale")
    return 0


if __name__ == "__main__":
    sys.exit(main())
