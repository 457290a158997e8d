/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS for the broker's connections (Kafka's SSL and SASL_SSL listener
 * modes), with OpenSSL 3 over memory BIOs. This file does no I/O: the
 * connection's own io_uring receives put ciphertext into the buffer
 * tls_recv_buf() names, tls_received() hands it to the read BIO, and
 * tls_read() turns it into the plaintext that the frame parser reads; going
 * out, tls_write() encrypts a response into the write BIO and
 * tls_send_buf() names the ciphertext the connection's io_uring send then
 * carries. The handshake runs inside tls_read() (the server side of
 * SSL_accept, driven by what arrives), its records leave through the same
 * tls_send_buf().
 *
 * Limits: ciphertext is received and sent through one 33 KiB buffer each
 * per connection; tls_write() encrypts at most 32 KiB of plaintext (two
 * records) at a time and the connection sends that before writing more, so
 * the write BIO holds about one chunk and it goes out in one send. TLS 1.2 and 1.3 only,
 * renegotiation off, no session tickets (nothing to resume on one node).
 *
 * Thread use: the context is built once before the shards run and is then
 * only read (SSL_new is thread-safe); a connection's state is used only by
 * the shard that owns the connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "broker_int.h"

/* Plaintext encrypted per tls_write(): two full records. */
#define TLS_WRITE_CHUNK (2u * 16384u)
/* Either way one buffer of ciphertext: a write chunk and its record
 * overhead (at most a few hundred bytes per record for any cipher). */
#define TLS_BUF_BYTES (TLS_WRITE_CHUNK + 1024u)
_Static_assert(TLS_BUF_BYTES >= 16384u + 512u, "a whole record fits in a receive");

struct tls_ctx {
    SSL_CTX *ssl;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio;  /* owned by ssl */
    uint8_t *cin;      /* ciphertext received [TLS_BUF_BYTES] */
    uint8_t *cout;     /* ciphertext going out [TLS_BUF_BYTES] */
    size_t cout_len;   /* bytes in cout */
    size_t cout_sent;  /* of which sent */
    bool handshake_ok; /* the handshake completed */
};

/* The oldest OpenSSL error as text into why (and the queue cleared, so
 * the next connection on this thread starts with it empty). */
static void tls_why(char *why, size_t why_size, const char *what)
{
    unsigned long e = ERR_get_error();
    char text[200] = "no detail";
    if (e != 0)
        ERR_error_string_n(e, text, sizeof(text));
    snprintf(why, why_size, "%s: %s", what, text);
    ERR_clear_error();
}

int tls_ctx_create(const char *cert_file, const char *key_file, struct tls_ctx **out, char *why,
                   size_t why_size)
{
    SP_ASSERT(cert_file != NULL);
    SP_ASSERT(key_file != NULL);
    struct tls_ctx *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->ssl = SSL_CTX_new(TLS_server_method());
    if (t->ssl == NULL) {
        tls_why(why, why_size, "cannot create a TLS context");
        free(t);
        return -ENOMEM;
    }
    (void)SSL_CTX_set_min_proto_version(t->ssl, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    (void)SSL_CTX_set_num_tickets(t->ssl, 0);
    SSL_CTX_set_session_cache_mode(t->ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
    char what[512];
    if (SSL_CTX_use_certificate_chain_file(t->ssl, cert_file) != 1) {
        snprintf(what, sizeof(what), "cannot load the certificate '%s'", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ssl, key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof(what), "cannot load the private key '%s'", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(t->ssl) != 1) {
        snprintf(what, sizeof(what), "the key '%s' does not match the certificate '%s'", key_file,
                 cert_file);
        goto fail;
    }
    *out = t;
    return 0;
fail:
    tls_why(why, why_size, what);
    SSL_CTX_free(t->ssl);
    free(t);
    return -EINVAL;
}

void tls_ctx_free(struct tls_ctx *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ssl);
    free(t);
}

int tls_conn_new(struct tls_ctx *ctx, struct tls_conn **out)
{
    SP_ASSERT(ctx != NULL);
    struct tls_conn *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->cin = malloc(TLS_BUF_BYTES);
    t->cout = malloc(TLS_BUF_BYTES);
    t->ssl = SSL_new(ctx->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->cin == NULL || t->cout == NULL || t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t->cin);
        free(t->cout);
        free(t);
        ERR_clear_error();
        return -ENOMEM;
    }
    /* An empty read BIO means "wait for more", not end of stream. */
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    *out = t;
    return 0;
}

void tls_conn_free(struct tls_conn *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* and its BIOs */
    free(t->cin);
    free(t->cout);
    free(t);
}

void tls_recv_buf(struct tls_conn *t, uint8_t **buf, uint32_t *room)
{
    *buf = t->cin;
    *room = TLS_BUF_BYTES;
}

int tls_received(struct tls_conn *t, size_t len)
{
    SP_ASSERT(len <= TLS_BUF_BYTES);
    SP_ASSERT(len > 0);
    size_t written = 0;
    if (BIO_write_ex(t->rbio, t->cin, len, &written) != 1 || written != len) {
        ERR_clear_error();
        return -ENOMEM;
    }
    return 0;
}

ssize_t tls_read(struct tls_conn *t, uint8_t *buf, size_t room, char *why, size_t why_size)
{
    SP_ASSERT(room > 0);
    size_t got = 0;
    if (SSL_read_ex(t->ssl, buf, room, &got) == 1) {
        SP_ASSERT(got > 0);
        SP_ASSERT(got <= room);
        t->handshake_ok = true;
        return (ssize_t)got;
    }
    int e = SSL_get_error(t->ssl, 0);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (!t->handshake_ok && SSL_is_init_finished(t->ssl))
            t->handshake_ok = true;
        return -EAGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return -ECONNRESET; /* close_notify: the client is done */
    }
    tls_why(why, why_size, t->handshake_ok ? "TLS" : "TLS handshake");
    return -EPROTO;
}

int tls_write(struct tls_conn *t, const uint8_t *data, size_t len, size_t *written, char *why,
              size_t why_size)
{
    SP_ASSERT(len > 0);
    *written = 0;
    size_t chunk = SP_MIN(len, (size_t)TLS_WRITE_CHUNK);
    if (SSL_write_ex(t->ssl, data, chunk, written) != 1) {
        tls_why(why, why_size, "TLS write");
        return -EPROTO;
    }
    SP_ASSERT(*written <= chunk);
    return 0;
}

bool tls_send_buf(struct tls_conn *t, const uint8_t **buf, uint32_t *len)
{
    SP_ASSERT(t->cout_sent <= t->cout_len);
    if (t->cout_sent == t->cout_len) {
        t->cout_len = t->cout_sent = 0;
        if (BIO_ctrl_pending(t->wbio) == 0)
            return false;
        size_t got = 0;
        if (BIO_read_ex(t->wbio, t->cout, TLS_BUF_BYTES, &got) != 1 || got == 0) {
            ERR_clear_error();
            return false;
        }
        t->cout_len = got;
    }
    *buf = t->cout + t->cout_sent;
    *len = (uint32_t)(t->cout_len - t->cout_sent);
    return true;
}

void tls_sent(struct tls_conn *t, size_t len)
{
    SP_ASSERT(t->cout_sent + len <= t->cout_len);
    t->cout_sent += len;
}

bool tls_established(const struct tls_conn *t)
{
    return t->handshake_ok;
}
