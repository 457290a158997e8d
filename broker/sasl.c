/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SASL for the broker's connections (Kafka's SASL_PLAINTEXT and SASL_SSL
 * listener modes): the users file, the SaslHandshake (v0-1) and
 * SaslAuthenticate (v0-2) handlers, and the two mechanisms, PLAIN (RFC
 * 4616) and SCRAM-SHA-256 (RFC 5802, RFC 7677). One mechanism is enabled
 * per broker.
 *
 * Two framings carry the same tokens. From SaslHandshake v1 on, each token
 * travels in a SaslAuthenticate request and the server's answer, with an
 * error code (SASL_AUTHENTICATION_FAILED and a message, then the
 * connection closes). After SaslHandshake v0 (kafka-python 2.0 uses it),
 * the tokens are raw: a 4-byte size and the bytes, each way, with no Kafka
 * header; broker.c hands those to sasl_legacy_token() and a failure just
 * closes the connection, as Kafka does. librdkafka 2.0 takes the first
 * framing since the broker advertises SaslAuthenticate.
 *
 * Users are read once at start from `user:password` lines. For SCRAM each
 * password is salted (16 random bytes) and stretched with
 * PBKDF2-HMAC-SHA256, 4096 iterations, at load; only StoredKey and
 * ServerKey are kept. For PLAIN a SHA-256 of the password is kept and
 * compared in constant time. Secrets are compared with CRYPTO_memcmp. An
 * unknown user gets the same exchange as a known one (a salt derived from
 * the name) and fails only at the proof, so names cannot be probed.
 *
 * Limits: 100000 users, names of 255 bytes, passwords of 1024, tokens of
 * 2048. The per-connection state lives from SaslHandshake until the
 * exchange ends, on the connection's shard only; the users table is read
 * only once the shards run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "broker_int.h"
#include "sp_log.h"

enum {
    KERR_UNSUPPORTED_SASL_MECHANISM = 33,
    KERR_ILLEGAL_SASL_STATE = 34,
    KERR_SASL_AUTHENTICATION_FAILED = 58,
};

#define SASL_USERS_MAX 100000u
#define SASL_NAME_MAX 255u
#define SASL_PASSWORD_MAX 1024u
#define SASL_TOKEN_MAX 2048u
#define SCRAM_ITERATIONS 4096
#define SCRAM_SALT_BYTES 16
#define SCRAM_KEY_BYTES 32 /* SHA-256 */

struct sasl_user {
    char name[SASL_NAME_MAX + 1];
    uint8_t password_hash[SCRAM_KEY_BYTES]; /* PLAIN: SHA-256 of the password */
    uint8_t salt[SCRAM_SALT_BYTES];         /* SCRAM */
    uint8_t stored_key[SCRAM_KEY_BYTES];
    uint8_t server_key[SCRAM_KEY_BYTES];
};

struct sasl_users {
    enum sp_broker_sasl mechanism;
    uint32_t count;
    struct sasl_user *users;
    uint8_t secret[SCRAM_KEY_BYTES]; /* salts and keys of unknown users */
};

enum sasl_stage { SASL_STARTED, SASL_SCRAM_FIRST };

/* One exchange, from SaslHandshake to success or failure. */
struct sasl_conn {
    enum sasl_stage stage;
    const struct sasl_user *user; /* SCRAM: NULL for an unknown name */
    struct sasl_user unknown;     /* SCRAM: what an unknown name gets */
    char name[SASL_NAME_MAX + 1];
    char gs2[SASL_TOKEN_MAX + 1]; /* the client's GS2 header */
    char client_first_bare[SASL_TOKEN_MAX + 1];
    char server_first[SASL_TOKEN_MAX + 64];
    char nonce[SASL_TOKEN_MAX + 64]; /* client's and server's */
};

static const char *mechanism_name(enum sp_broker_sasl m)
{
    switch (m) {
    case SP_BROKER_SASL_PLAIN:
        return "PLAIN";
    case SP_BROKER_SASL_SCRAM_SHA_256:
        return "SCRAM-SHA-256";
    case SP_BROKER_SASL_NONE:
        break;
    }
    return NULL;
}

/* ---- Crypto helpers ---- */

static void hmac256(const uint8_t *key, size_t key_len, const void *msg, size_t len,
                    uint8_t out[SCRAM_KEY_BYTES])
{
    unsigned int out_len = SCRAM_KEY_BYTES;
    uint8_t *rc = HMAC(EVP_sha256(), key, (int)key_len, msg, len, out, &out_len);
    SP_ASSERT(rc != NULL);
    SP_ASSERT(out_len == SCRAM_KEY_BYTES);
}

/* StoredKey and ServerKey from the salted password (RFC 5802 section 3). */
static void scram_keys(const uint8_t salted[SCRAM_KEY_BYTES], struct sasl_user *u)
{
    uint8_t client_key[SCRAM_KEY_BYTES];
    hmac256(salted, SCRAM_KEY_BYTES, "Client Key", 10, client_key);
    SHA256(client_key, sizeof(client_key), u->stored_key);
    hmac256(salted, SCRAM_KEY_BYTES, "Server Key", 10, u->server_key);
    OPENSSL_cleanse(client_key, sizeof(client_key));
}

/* Base64 of `len` bytes into out (room: 4 * ((len + 2) / 3) + 1). */
static void b64_encode(const uint8_t *in, size_t len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    SP_ASSERT(n >= 0);
    out[n] = '\0';
}

/* Decodes base64 text of `len` chars into out (room bytes): the byte count,
 * or -EBADMSG. */
static int b64_decode(const char *in, size_t len, uint8_t *out, size_t room)
{
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > room)
        return -EBADMSG;
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -EBADMSG;
    if (in[len - 1] == '=')
        n--;
    if (in[len - 2] == '=')
        n--;
    return n;
}

/* ---- The users file ---- */

static int user_add(struct sasl_users *u, const char *name, size_t name_len, const char *pw,
                    size_t pw_len)
{
    SP_ASSERT(name_len > 0);
    SP_ASSERT(name_len <= SASL_NAME_MAX);
    struct sasl_user *e = &u->users[u->count];
    memset(e, 0, sizeof(*e));
    memcpy(e->name, name, name_len);
    SHA256((const uint8_t *)pw, pw_len, e->password_hash);
    if (u->mechanism == SP_BROKER_SASL_SCRAM_SHA_256) {
        uint8_t salted[SCRAM_KEY_BYTES];
        if (RAND_bytes(e->salt, sizeof(e->salt)) != 1 ||
            PKCS5_PBKDF2_HMAC(pw, (int)pw_len, e->salt, sizeof(e->salt), SCRAM_ITERATIONS,
                              EVP_sha256(), sizeof(salted), salted) != 1)
            return -EIO;
        scram_keys(salted, e);
        OPENSSL_cleanse(salted, sizeof(salted));
    }
    u->count++;
    return 0;
}

static const struct sasl_user *user_find(const struct sasl_users *u, const char *name)
{
    for (uint32_t i = 0; i < u->count; i++) {
        if (strcmp(u->users[i].name, name) == 0)
            return &u->users[i];
    }
    return NULL;
}

int sasl_users_load(const char *path, enum sp_broker_sasl mechanism, struct sasl_users **out,
                    char *why, size_t why_size)
{
    SP_ASSERT(mechanism_name(mechanism) != NULL);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int err = errno;
        snprintf(why, why_size, "cannot open the users file '%s': %s", path, strerror(err));
        return -err;
    }
    struct sasl_users *u = calloc(1, sizeof(*u));
    size_t cap = 16;
    char *line = malloc(SASL_NAME_MAX + SASL_PASSWORD_MAX + 8);
    int rc = -ENOMEM;
    if (u == NULL || line == NULL || (u->users = calloc(cap, sizeof(*u->users))) == NULL) {
        snprintf(why, why_size, "out of memory");
        goto fail;
    }
    u->mechanism = mechanism;
    if (RAND_bytes(u->secret, sizeof(u->secret)) != 1) {
        rc = -EIO;
        snprintf(why, why_size, "no random bytes for SCRAM");
        goto fail;
    }
    unsigned lineno = 0;
    while (fgets(line, SASL_NAME_MAX + SASL_PASSWORD_MAX + 8, f) != NULL) {
        lineno++;
        size_t len = strlen(line);
        rc = -EBADMSG;
        if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
            snprintf(why, why_size, "%s:%u: line too long", path, lineno);
            goto fail;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        const char *colon = strchr(line, ':');
        size_t name_len = colon != NULL ? (size_t)(colon - line) : 0;
        if (colon == NULL || name_len == 0 || name_len > SASL_NAME_MAX ||
            len - name_len - 1 > SASL_PASSWORD_MAX) {
            snprintf(why, why_size,
                     "%s:%u: not user:password (a name of 1 to %u bytes, a password of at most "
                     "%u)",
                     path, lineno, SASL_NAME_MAX, SASL_PASSWORD_MAX);
            goto fail;
        }
        line[name_len] = '\0';
        if (user_find(u, line) != NULL) {
            snprintf(why, why_size, "%s:%u: user '%s' given twice", path, lineno, line);
            goto fail;
        }
        if (u->count == SASL_USERS_MAX) {
            snprintf(why, why_size, "%s: more than %u users", path, SASL_USERS_MAX);
            goto fail;
        }
        if (u->count == cap) {
            struct sasl_user *grown = realloc(u->users, cap * 2 * sizeof(*grown));
            rc = -ENOMEM;
            if (grown == NULL) {
                snprintf(why, why_size, "out of memory");
                goto fail;
            }
            u->users = grown;
            cap *= 2;
        }
        rc = user_add(u, line, name_len, colon + 1, len - name_len - 1);
        OPENSSL_cleanse(line, len);
        if (rc < 0) {
            snprintf(why, why_size, "cannot derive the SCRAM keys");
            goto fail;
        }
    }
    rc = -EBADMSG;
    if (ferror(f)) {
        rc = -EIO;
        snprintf(why, why_size, "cannot read '%s'", path);
        goto fail;
    }
    if (u->count == 0) {
        snprintf(why, why_size, "no users in '%s'", path);
        goto fail;
    }
    fclose(f);
    free(line);
    *out = u;
    return 0;
fail:
    fclose(f);
    free(line);
    sasl_users_free(u);
    return rc;
}

void sasl_users_free(struct sasl_users *u)
{
    if (u == NULL)
        return;
    if (u->users != NULL)
        OPENSSL_cleanse(u->users, u->count * sizeof(*u->users));
    free(u->users);
    OPENSSL_cleanse(u, sizeof(*u));
    free(u);
}

void sasl_conn_free(struct sasl_conn *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

/* ---- Mechanisms ---- */

/* PLAIN: authzid NUL authcid NUL passwd, authzid empty or authcid. */
static int plain_step(struct conn *c, const uint8_t *tok, size_t len, char *why, size_t why_size)
{
    const struct sasl_users *users = c->bs->b->users;
    const uint8_t *nul1 = memchr(tok, '\0', len);
    const uint8_t *nul2 =
        nul1 != NULL ? memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - tok)) : NULL;
    if (nul2 == NULL) {
        snprintf(why, why_size, "a PLAIN token without its two NUL separators");
        return -EBADMSG;
    }
    size_t authz_len = (size_t)(nul1 - tok), name_len = (size_t)(nul2 - nul1 - 1);
    const uint8_t *pw = nul2 + 1;
    size_t pw_len = len - (size_t)(pw - tok);
    if (name_len == 0 || name_len > SASL_NAME_MAX) {
        snprintf(why, why_size, "a PLAIN user name of %zu bytes", name_len);
        return -EPERM;
    }
    memcpy(c->sasl->name, nul1 + 1, name_len);
    c->sasl->name[name_len] = '\0';
    if (authz_len != 0 && (authz_len != name_len || memcmp(tok, nul1 + 1, name_len) != 0)) {
        snprintf(why, why_size, "user '%s' asked to act as another", c->sasl->name);
        return -EPERM;
    }
    const struct sasl_user *u = user_find(users, c->sasl->name);
    uint8_t hash[SCRAM_KEY_BYTES];
    SHA256(pw, pw_len, hash);
    /* The same work for an unknown name (against the secret). */
    bool ok = CRYPTO_memcmp(hash, u != NULL ? u->password_hash : users->secret, sizeof(hash)) == 0;
    if (u == NULL || !ok) {
        snprintf(why, why_size, "%s for '%s'", u == NULL ? "unknown user" : "wrong password",
                 c->sasl->name);
        return -EPERM;
    }
    return 1;
}

/* Decodes a saslname (=2C is ',' and =3D is '='): false when malformed. */
static bool scram_name(const char *in, size_t len, char *out, size_t room)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '=') {
            if (len - i < 3)
                return false;
            if (memcmp(in + i, "=2C", 3) == 0)
                ch = ',';
            else if (memcmp(in + i, "=3D", 3) == 0)
                ch = '=';
            else
                return false;
            i += 2;
        }
        if (n + 1 >= room)
            return false;
        out[n++] = ch;
    }
    out[n] = '\0';
    return n > 0;
}

/* client-first-message: gs2-header client-first-bare. */
static int scram_first(struct conn *c, const char *msg, size_t len, uint8_t **out, size_t *out_len,
                       char *why, size_t why_size)
{
    struct sasl_conn *s = c->sasl;
    const struct sasl_users *users = c->bs->b->users;
    /* gs2-cbind-flag "," [ authzid ] "," */
    if (len < 3 || (msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',') {
        snprintf(why, why_size,
                 "a SCRAM first message without a GS2 header (or with channel "
                 "binding, which is not offered)");
        return -EBADMSG;
    }
    const char *comma = memchr(msg + 2, ',', len - 2);
    if (comma == NULL || (comma != msg + 2 && strncmp(msg + 2, "a=", 2) != 0)) {
        snprintf(why, why_size, "a malformed SCRAM GS2 header");
        return -EBADMSG;
    }
    size_t gs2_len = (size_t)(comma + 1 - msg);
    memcpy(s->gs2, msg, gs2_len);
    s->gs2[gs2_len] = '\0';
    const char *bare = comma + 1;
    size_t bare_len = len - gs2_len;
    memcpy(s->client_first_bare, bare, bare_len);
    s->client_first_bare[bare_len] = '\0';
    /* client-first-bare: n=saslname,r=nonce[,extensions] */
    const char *name = s->client_first_bare;
    char *name_end = strchr(name, ',');
    if (strncmp(name, "n=", 2) != 0 || name_end == NULL || strncmp(name_end, ",r=", 3) != 0) {
        snprintf(why, why_size, "a malformed SCRAM first message");
        return -EBADMSG;
    }
    if (!scram_name(name + 2, (size_t)(name_end - name - 2), s->name, sizeof(s->name))) {
        snprintf(why, why_size, "a malformed SCRAM user name");
        return -EBADMSG;
    }
    const char *cnonce = name_end + 3;
    size_t cnonce_len = strcspn(cnonce, ",");
    if (cnonce_len == 0) {
        snprintf(why, why_size, "a SCRAM first message without a nonce");
        return -EBADMSG;
    }
    for (const char *ext = strchr(cnonce, ','); ext != NULL; ext = strchr(ext + 1, ',')) {
        if (strncmp(ext, ",m=", 3) == 0 || strncmp(ext, ",tokenauth=", 11) == 0) {
            snprintf(why, why_size, "a SCRAM extension not offered (%.20s)", ext + 1);
            return -EPERM;
        }
    }
    for (size_t i = 0; i < cnonce_len; i++) {
        if (cnonce[i] < 0x21 || cnonce[i] > 0x7e) {
            snprintf(why, why_size, "a SCRAM nonce with unprintable bytes");
            return -EBADMSG;
        }
    }
    if (gs2_len > 3) {
        /* "n,a=authzid,": only the user itself (as Kafka). */
        char authz[SASL_NAME_MAX + 1];
        if (!scram_name(s->gs2 + 4, gs2_len - 5, authz, sizeof(authz)) ||
            strcmp(authz, s->name) != 0) {
            snprintf(why, why_size, "user '%s' asked to act as another", s->name);
            return -EPERM;
        }
    }
    s->user = user_find(users, s->name);
    if (s->user == NULL) {
        /* The exchange goes on, with a salt that stays the same for that
         * name and keys nobody has. */
        uint8_t mac[SCRAM_KEY_BYTES];
        hmac256(users->secret, sizeof(users->secret), s->name, strlen(s->name), mac);
        memcpy(s->unknown.salt, mac, SCRAM_SALT_BYTES);
        if (RAND_bytes(s->unknown.stored_key, SCRAM_KEY_BYTES) != 1 ||
            RAND_bytes(s->unknown.server_key, SCRAM_KEY_BYTES) != 1)
            return -EIO;
    }
    const struct sasl_user *u = s->user != NULL ? s->user : &s->unknown;
    uint8_t snonce_raw[18];
    char snonce[32], salt[32];
    if (RAND_bytes(snonce_raw, sizeof(snonce_raw)) != 1)
        return -EIO;
    b64_encode(snonce_raw, sizeof(snonce_raw), snonce);
    b64_encode(u->salt, sizeof(u->salt), salt);
    snprintf(s->nonce, sizeof(s->nonce), "%.*s%s", (int)cnonce_len, cnonce, snonce);
    int n = snprintf(s->server_first, sizeof(s->server_first), "r=%s,s=%s,i=%d", s->nonce, salt,
                     SCRAM_ITERATIONS);
    SP_ASSERT(n > 0 && (size_t)n < sizeof(s->server_first));
    *out = (uint8_t *)strdup(s->server_first);
    if (*out == NULL)
        return -ENOMEM;
    *out_len = (size_t)n;
    s->stage = SASL_SCRAM_FIRST;
    return 0;
}

/* client-final-message: c=gs2,r=nonce[,extensions],p=proof. */
static int scram_final(struct conn *c, const char *msg, size_t len, uint8_t **out, size_t *out_len,
                       char *why, size_t why_size)
{
    struct sasl_conn *s = c->sasl;
    const struct sasl_user *u = s->user != NULL ? s->user : &s->unknown;
    const char *p = NULL;
    for (const char *at = strstr(msg, ",p="); at != NULL; at = strstr(at + 1, ",p="))
        p = at; /* the last one: the proof ends the message */
    const char *r = strstr(msg, ",r=");
    if (strncmp(msg, "c=", 2) != 0 || p == NULL || r == NULL || r > p) {
        snprintf(why, why_size, "a malformed SCRAM final message");
        return -EBADMSG;
    }
    /* The channel binding attribute repeats the GS2 header. */
    uint8_t cbind[SASL_TOKEN_MAX];
    int cb_len = b64_decode(msg + 2, (size_t)(r - msg - 2), cbind, sizeof(cbind));
    size_t gs2_len = strlen(s->gs2);
    if (cb_len < 0 || (size_t)cb_len != gs2_len || memcmp(cbind, s->gs2, gs2_len) != 0) {
        snprintf(why, why_size, "SCRAM channel binding differs from the first message");
        return -EBADMSG;
    }
    /* The nonce must end with the server's (client's and server's parts):
     * librdkafka 2.0 sends its own nonce once more in front, which Kafka
     * accepts the same way (ScramSaslServer checks endsWith). */
    size_t nonce_len = strcspn(r + 3, ",");
    size_t want = strlen(s->nonce);
    if (nonce_len < want || memcmp(r + 3 + nonce_len - want, s->nonce, want) != 0) {
        snprintf(why, why_size, "SCRAM nonce differs from the server's");
        return -EPERM;
    }
    uint8_t proof[SCRAM_KEY_BYTES + 3];
    int proof_len = b64_decode(p + 3, len - (size_t)(p + 3 - msg), proof, sizeof(proof));
    if (proof_len != SCRAM_KEY_BYTES) {
        snprintf(why, why_size, "a malformed SCRAM proof");
        return -EBADMSG;
    }
    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    size_t without_proof = (size_t)(p - msg);
    size_t am_len = strlen(s->client_first_bare) + 1 + strlen(s->server_first) + 1 + without_proof;
    char *am = malloc(am_len + 1);
    if (am == NULL)
        return -ENOMEM;
    snprintf(am, am_len + 1, "%s,%s,%.*s", s->client_first_bare, s->server_first,
             (int)without_proof, msg);
    uint8_t client_sig[SCRAM_KEY_BYTES], client_key[SCRAM_KEY_BYTES], stored[SCRAM_KEY_BYTES];
    uint8_t server_sig[SCRAM_KEY_BYTES];
    hmac256(u->stored_key, SCRAM_KEY_BYTES, am, am_len, client_sig);
    for (int i = 0; i < SCRAM_KEY_BYTES; i++)
        client_key[i] = proof[i] ^ client_sig[i];
    SHA256(client_key, sizeof(client_key), stored);
    bool ok = CRYPTO_memcmp(stored, u->stored_key, SCRAM_KEY_BYTES) == 0;
    hmac256(u->server_key, SCRAM_KEY_BYTES, am, am_len, server_sig);
    free(am);
    OPENSSL_cleanse(client_key, sizeof(client_key));
    if (!ok || s->user == NULL) {
        snprintf(why, why_size, "%s for '%s'", s->user == NULL ? "unknown user" : "wrong password",
                 s->name);
        return -EPERM;
    }
    char v[64];
    b64_encode(server_sig, sizeof(server_sig), v);
    size_t n = strlen(v) + 2;
    *out = malloc(n + 1);
    if (*out == NULL)
        return -ENOMEM;
    snprintf((char *)*out, n + 1, "v=%s", v);
    *out_len = n;
    return 1;
}

/*
 * One step of the exchange on connection c with the client's token: 1 when
 * authenticated, 0 when more steps follow; *out (malloc'd, may be NULL) is
 * the server's token. -EPERM for wrong credentials, -EBADMSG for a
 * malformed token, -ENOMEM / -EIO (why says why).
 */
static int sasl_step(struct conn *c, const uint8_t *tok, size_t len, uint8_t **out, size_t *out_len,
                     char *why, size_t why_size)
{
    SP_ASSERT(c->sasl != NULL);
    SP_ASSERT(!c->authenticated);
    struct sasl_conn *s = c->sasl;
    *out = NULL;
    *out_len = 0;
    snprintf(why, why_size, "out of memory");
    if (len > SASL_TOKEN_MAX) {
        snprintf(why, why_size, "a SASL token of %zu bytes (at most %u)", len, SASL_TOKEN_MAX);
        return -EBADMSG;
    }
    enum sp_broker_sasl m = c->bs->b->users->mechanism;
    int rc;
    if (m == SP_BROKER_SASL_PLAIN) {
        rc = plain_step(c, tok, len, why, why_size);
    } else {
        /* SCRAM messages are text without NUL. */
        char text[SASL_TOKEN_MAX + 1];
        if (len == 0 || memchr(tok, '\0', len) != NULL) {
            snprintf(why, why_size, "a SCRAM message that is empty or holds a NUL");
            return -EBADMSG;
        }
        memcpy(text, tok, len);
        text[len] = '\0';
        if (s->stage == SASL_STARTED)
            rc = scram_first(c, text, len, out, out_len, why, why_size);
        else
            rc = scram_final(c, text, len, out, out_len, why, why_size);
    }
    if (rc == 1) {
        sp_info("broker: %s authenticated as '%s' with %s", c->peer, s->name, mechanism_name(m));
        c->authenticated = true;
        c->sasl_legacy = false;
        sasl_conn_free(c->sasl);
        c->sasl = NULL;
    }
    return rc;
}

int sasl_legacy_token(struct conn *c, const uint8_t *token, size_t len, uint8_t **out,
                      size_t *out_len, char *why, size_t why_size)
{
    SP_ASSERT(c->sasl_legacy);
    uint8_t *tok = NULL;
    size_t tok_len = 0;
    int rc = sasl_step(c, token, len, &tok, &tok_len, why, why_size);
    if (rc < 0)
        return rc;
    *out = malloc(4 + tok_len);
    if (*out == NULL) {
        free(tok);
        snprintf(why, why_size, "out of memory");
        return -ENOMEM;
    }
    (*out)[0] = (uint8_t)(tok_len >> 24);
    (*out)[1] = (uint8_t)(tok_len >> 16);
    (*out)[2] = (uint8_t)(tok_len >> 8);
    (*out)[3] = (uint8_t)tok_len;
    if (tok_len > 0)
        memcpy(*out + 4, tok, tok_len);
    free(tok);
    *out_len = 4 + tok_len;
    return 0;
}

/* ---- Handlers ---- */

static struct sp_kstr kstr(const char *s)
{
    return (struct sp_kstr){s, (int32_t)strlen(s)};
}

/* The answer goes out, then the connection closes. */
static void sasl_refuse(struct conn *c, const char *why)
{
    if (!c->close_when_sent)
        sp_warn("broker: closing %s: %s", c->peer, why);
    c->close_when_sent = true;
}

static void sasl_handshake(struct req *r)
{
    struct conn *c = r->conn;
    const struct sasl_users *users = c->bs->b->users;
    const struct sp_kafka_sasl_handshake_request *q = r->f.body;
    struct sp_kafka_sasl_handshake_response *resp = req_alloc(r, sizeof(*resp));
    struct sp_kstr *mechs = req_alloc(r, sizeof(*mechs));
    if (resp == NULL || mechs == NULL) {
        req_finish(r); /* closes */
        return;
    }
    sp_kafka_sasl_handshake_response_init(resp);
    resp->error_code = KERR_NONE;
    const char *name = users != NULL ? mechanism_name(users->mechanism) : NULL;
    if (name != NULL) {
        mechs[0] = kstr(name);
        resp->mechanisms = mechs;
        resp->mechanisms_count = 1;
    }
    if (name == NULL) {
        resp->error_code = KERR_UNSUPPORTED_SASL_MECHANISM;
        sasl_refuse(c, "SaslHandshake, but SASL is not enabled");
    } else if (c->authenticated || c->sasl != NULL) {
        resp->error_code = KERR_ILLEGAL_SASL_STATE;
        sasl_refuse(c, "a second SaslHandshake");
    } else if (q->mechanism.len != (int32_t)strlen(name) ||
               memcmp(q->mechanism.ptr, name, strlen(name)) != 0) {
        resp->error_code = KERR_UNSUPPORTED_SASL_MECHANISM;
        char why[128];
        snprintf(why, sizeof(why), "SASL mechanism '%.*s' asked, only %s is enabled",
                 q->mechanism.len > 0 ? (int)SP_MIN(q->mechanism.len, 40) : 0,
                 q->mechanism.len > 0 ? q->mechanism.ptr : "", name);
        sasl_refuse(c, why);
    } else {
        c->sasl = calloc(1, sizeof(*c->sasl));
        if (c->sasl == NULL) {
            req_finish(r); /* no answer: closes */
            return;
        }
        c->sasl->stage = SASL_STARTED;
        c->sasl_legacy = r->version == 0;
    }
    r->resp = resp;
    req_finish(r);
}

static void sasl_authenticate(struct req *r)
{
    struct conn *c = r->conn;
    const struct sp_kafka_sasl_authenticate_request *q = r->f.body;
    struct sp_kafka_sasl_authenticate_response *resp = req_alloc(r, sizeof(*resp));
    if (resp == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_sasl_authenticate_response_init(resp);
    if (c->sasl == NULL || c->sasl_legacy || c->authenticated) {
        resp->error_code = KERR_ILLEGAL_SASL_STATE;
        resp->error_message = kstr("SaslAuthenticate out of turn (SaslHandshake v1 first)");
        sasl_refuse(c, "SaslAuthenticate out of turn");
        r->resp = resp;
        req_finish(r);
        return;
    }
    uint8_t *tok = NULL;
    size_t tok_len = 0;
    char why[256];
    size_t len = q->auth_bytes.len > 0 ? (size_t)q->auth_bytes.len : 0;
    int rc = sasl_step(c, q->auth_bytes.ptr, len, &tok, &tok_len, why, sizeof(why));
    if (rc >= 0 && tok != NULL && !req_adopt(r, tok)) {
        free(tok);
        req_finish(r);
        return;
    }
    if (rc < 0) {
        resp->error_code = KERR_SASL_AUTHENTICATION_FAILED;
        resp->error_message =
            kstr(rc == -EPERM ? "Authentication failed: invalid username or password"
                              : "Authentication failed: malformed SASL message");
        char line[300];
        snprintf(line, sizeof(line), "SASL authentication failed: %s", why);
        sasl_refuse(c, line);
    } else {
        resp->auth_bytes = (struct sp_kbytes){tok, (int32_t)tok_len};
    }
    r->resp = resp;
    req_finish(r);
}

const struct api_entry sasl_apis[] = {
    {17, 0, 1, sasl_handshake},
    {36, 0, 2, sasl_authenticate},
    {0, 0, 0, NULL},
};
