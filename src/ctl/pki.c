/*
 * pki.c - "sallyportctl pki init": generates a throwaway CA plus the edge
 * server and agent client certificates for the mTLS link, using libcrypto.
 */
#include "ctl/pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Start validity slightly in the past so peers with a lagging clock accept
 * freshly issued certificates. */
#define PKI_BACKDATE_SECS (-5L * 60L)

/* RFC 5280 ub-common-name; OpenSSL refuses longer CNs. */
#define PKI_MAX_CN 64

#define PKI_MAX_DNS_NAME 253
#define PKI_MAX_LABEL    63

enum pki_file {
    F_CA_CRT,
    F_CA_KEY,
    F_EDGE_CRT,
    F_EDGE_KEY,
    F_AGENT_CRT,
    F_AGENT_KEY,
    F_COUNT
};

static const struct {
    const char *name;
    mode_t mode;
} pki_files[F_COUNT] = {
    [F_CA_CRT] = { PKI_CA_CRT, 0644 },
    [F_CA_KEY] = { PKI_CA_KEY, 0600 },
    [F_EDGE_CRT] = { PKI_EDGE_CRT, 0644 },
    [F_EDGE_KEY] = { PKI_EDGE_KEY, 0600 },
    [F_AGENT_CRT] = { PKI_AGENT_CRT, 0644 },
    [F_AGENT_KEY] = { PKI_AGENT_KEY, 0600 },
};

enum cert_kind { KIND_CA, KIND_SERVER, KIND_CLIENT };

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A truncated error message is still useful, so the vsnprintf result is
 * deliberately not treated as a failure here. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The last queued error is the one closest to the failing call, which is
 * what an operator needs; the queue is cleared so stale entries cannot leak
 * into a later message. */
static void set_ossl_err(char *err, size_t errlen, const char *what)
{
    char buf[256];
    unsigned long e = ERR_peek_last_error();

    if (e == 0) {
        set_err(err, errlen, "%s failed (no OpenSSL error reported)", what);
    } else {
        ERR_error_string_n(e, buf, sizeof buf);
        set_err(err, errlen, "%s failed: %s", what, buf);
    }
    ERR_clear_error();
}

static int name_as_ip(const char *name, unsigned char addr[16], size_t *len)
{
    if (inet_pton(AF_INET, name, addr) == 1) {
        *len = 4;
        return 1;
    }
    if (inet_pton(AF_INET6, name, addr) == 1) {
        *len = 16;
        return 1;
    }
    return 0;
}

static int is_ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-';
}

/*
 * Catch typos such as "host:8443", "https://host" or a swallowed option
 * ("--edge-name --force") before they end up baked into a certificate that
 * no client will ever match.  A leading "*." wildcard is allowed because
 * that is the only form X509_check_host() honours.
 */
static int dns_name_ok(const char *name)
{
    size_t len = strlen(name);
    size_t i = 0;
    size_t label = 0;

    if (len == 0 || len > PKI_MAX_DNS_NAME)
        return 0;
    if (name[0] == '*') {
        if (name[1] != '.')
            return 0;
        i = 2;
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c == '.') {
            if (label == 0 || name[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!is_ldh(c) || (label == 0 && c == '-'))
            return 0;
        if (++label > PKI_MAX_LABEL)
            return 0;
    }
    return label != 0 && name[len - 1] != '-';
}

static int validate_names(const char *const *names, size_t nnames,
                          char *err, size_t errlen)
{
    unsigned char addr[16];
    size_t alen;
    size_t i;
    int rc = -1;

    if (nnames > PKI_MAX_NAMES) {
        set_err(err, errlen, "too many edge names (%zu, max %d)", nnames,
                PKI_MAX_NAMES);
        goto out;
    }
    for (i = 0; i < nnames; i++) {
        if (names[i] == NULL) {
            set_err(err, errlen, "edge name %zu is missing", i + 1);
            goto out;
        }
        if (!name_as_ip(names[i], addr, &alen) && !dns_name_ok(names[i])) {
            set_err(err, errlen,
                    "invalid edge name '%s': expected a DNS name or an "
                    "IPv4/IPv6 address", names[i]);
            goto out;
        }
    }
    if (strlen(names[0]) > PKI_MAX_CN) {
        set_err(err, errlen,
                "first edge name '%s' is too long for the certificate CN "
                "(max %d characters); put a shorter name first",
                names[0], PKI_MAX_CN);
        goto out;
    }
    rc = 0;
out:
    return rc;
}

static int gen_key(EVP_PKEY **out_key, char *err, size_t errlen)
{
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    int rc = -1;

    pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (pctx == NULL) {
        set_ossl_err(err, errlen, "EVP_PKEY_CTX_new_from_name(EC)");
        goto out;
    }
    if (EVP_PKEY_keygen_init(pctx) <= 0) {
        set_ossl_err(err, errlen, "EVP_PKEY_keygen_init");
        goto out;
    }
    if (EVP_PKEY_CTX_set_group_name(pctx, "P-256") <= 0) {
        set_ossl_err(err, errlen, "EVP_PKEY_CTX_set_group_name(P-256)");
        goto out;
    }
    if (EVP_PKEY_generate(pctx, &pkey) <= 0) {
        set_ossl_err(err, errlen, "EVP_PKEY_generate");
        goto out;
    }
    *out_key = pkey;
    pkey = NULL;
    rc = 0;
out:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pctx);
    return rc;
}

static int set_random_serial(X509 *x, char *err, size_t errlen)
{
    unsigned char buf[16];
    BIGNUM *bn = NULL;
    size_t i;
    int rc = -1;

    if (RAND_bytes(buf, (int)sizeof buf) != 1) {
        set_ossl_err(err, errlen, "RAND_bytes(serial)");
        goto out;
    }
    /* RFC 5280 forbids a zero serial; patching the 2^-128 all-zero case
     * costs nothing.  BN_bin2bn() is unsigned, so the serial is positive. */
    for (i = 0; i < sizeof buf && buf[i] == 0; i++)
        ;
    if (i == sizeof buf)
        buf[sizeof buf - 1] = 1;
    bn = BN_bin2bn(buf, (int)sizeof buf, NULL);
    if (bn == NULL) {
        set_ossl_err(err, errlen, "BN_bin2bn(serial)");
        goto out;
    }
    if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        set_ossl_err(err, errlen, "BN_to_ASN1_INTEGER(serial)");
        goto out;
    }
    rc = 0;
out:
    BN_free(bn);
    return rc;
}

static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value,
                   char *err, size_t errlen)
{
    X509_EXTENSION *ext = NULL;
    const char *sn = OBJ_nid2sn(nid);
    char what[128];
    int rc = -1;

    if (sn == NULL)
        sn = "extension";
    /* Only used for the error message, so truncation is harmless. */
    (void)snprintf(what, sizeof what, "X509V3_EXT_conf_nid(%s=%s)", sn, value);
    ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    if (ext == NULL) {
        set_ossl_err(err, errlen, what);
        goto out;
    }
    if (X509_add_ext(x, ext, -1) != 1) {
        set_ossl_err(err, errlen, "X509_add_ext");
        goto out;
    }
    rc = 0;
out:
    X509_EXTENSION_free(ext);
    return rc;
}

/*
 * The SAN is assembled as GENERAL_NAMEs rather than through a config string
 * like "DNS:a,IP:b" so that no edge name can inject extra entries.
 */
static int add_san(X509 *x, const char *const *names, size_t nnames,
                   char *err, size_t errlen)
{
    GENERAL_NAMES *gens = NULL;
    GENERAL_NAME *gen = NULL;
    ASN1_OCTET_STRING *ip = NULL;
    ASN1_IA5STRING *dns = NULL;
    unsigned char addr[16];
    size_t alen = 0;
    size_t i;
    int rc = -1;

    gens = sk_GENERAL_NAME_new_null();
    if (gens == NULL) {
        set_ossl_err(err, errlen, "sk_GENERAL_NAME_new_null");
        goto out;
    }
    for (i = 0; i < nnames; i++) {
        gen = GENERAL_NAME_new();
        if (gen == NULL) {
            set_ossl_err(err, errlen, "GENERAL_NAME_new");
            goto out;
        }
        if (name_as_ip(names[i], addr, &alen)) {
            ip = ASN1_OCTET_STRING_new();
            if (ip == NULL) {
                set_ossl_err(err, errlen, "ASN1_OCTET_STRING_new");
                goto out;
            }
            if (ASN1_OCTET_STRING_set(ip, addr, (int)alen) != 1) {
                set_ossl_err(err, errlen, "ASN1_OCTET_STRING_set");
                goto out;
            }
            GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
            ip = NULL;
        } else {
            dns = ASN1_IA5STRING_new();
            if (dns == NULL) {
                set_ossl_err(err, errlen, "ASN1_IA5STRING_new");
                goto out;
            }
            /* Length is bounded by dns_name_ok(). */
            if (ASN1_STRING_set(dns, names[i], (int)strlen(names[i])) != 1) {
                set_ossl_err(err, errlen, "ASN1_STRING_set");
                goto out;
            }
            GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
            dns = NULL;
        }
        if (sk_GENERAL_NAME_push(gens, gen) <= 0) {
            set_ossl_err(err, errlen, "sk_GENERAL_NAME_push");
            goto out;
        }
        gen = NULL;
    }
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
                          X509V3_ADD_DEFAULT) != 1) {
        set_ossl_err(err, errlen, "X509_add1_ext_i2d(subjectAltName)");
        goto out;
    }
    rc = 0;
out:
    ASN1_IA5STRING_free(dns);
    ASN1_OCTET_STRING_free(ip);
    GENERAL_NAME_free(gen);
    GENERAL_NAMES_free(gens);
    return rc;
}

struct cert_spec {
    enum cert_kind kind;
    const char *cn;
    const char *const *sans; /* KIND_SERVER only */
    size_t nsans;
    EVP_PKEY *key;
    X509 *issuer;            /* NULL: self-signed */
    EVP_PKEY *issuer_key;
    time_t now;
    int days;
};

static int add_kind_exts(X509 *x, X509V3_CTX *v3, const struct cert_spec *s,
                         char *err, size_t errlen)
{
    int rc = -1;

    switch (s->kind) {
    case KIND_CA:
        if (add_ext(x, v3, NID_basic_constraints, "critical,CA:TRUE,pathlen:0",
                    err, errlen) != 0 ||
            add_ext(x, v3, NID_key_usage, "critical,keyCertSign,cRLSign",
                    err, errlen) != 0 ||
            add_ext(x, v3, NID_subject_key_identifier, "hash",
                    err, errlen) != 0)
            goto out;
        break;
    case KIND_SERVER:
    case KIND_CLIENT:
        if (add_ext(x, v3, NID_basic_constraints, "CA:FALSE",
                    err, errlen) != 0 ||
            add_ext(x, v3, NID_key_usage, "critical,digitalSignature",
                    err, errlen) != 0 ||
            add_ext(x, v3, NID_ext_key_usage,
                    s->kind == KIND_SERVER ? "serverAuth" : "clientAuth",
                    err, errlen) != 0 ||
            add_ext(x, v3, NID_subject_key_identifier, "hash",
                    err, errlen) != 0 ||
            add_ext(x, v3, NID_authority_key_identifier, "keyid:always",
                    err, errlen) != 0)
            goto out;
        if (s->kind == KIND_SERVER &&
            add_san(x, s->sans, s->nsans, err, errlen) != 0)
            goto out;
        break;
    }
    rc = 0;
out:
    return rc;
}

static int make_cert(X509 **out_cert, const struct cert_spec *s,
                     char *err, size_t errlen)
{
    X509 *x = NULL;
    X509 *issuer;
    X509V3_CTX v3;
    time_t now = s->now;
    int rc = -1;

    x = X509_new();
    if (x == NULL) {
        set_ossl_err(err, errlen, "X509_new");
        goto out;
    }
    issuer = s->issuer != NULL ? s->issuer : x;
    if (X509_set_version(x, X509_VERSION_3) != 1) {
        set_ossl_err(err, errlen, "X509_set_version");
        goto out;
    }
    if (set_random_serial(x, err, errlen) != 0)
        goto out;
    if (X509_time_adj(X509_getm_notBefore(x), PKI_BACKDATE_SECS, &now) == NULL) {
        set_ossl_err(err, errlen, "X509_time_adj(notBefore)");
        goto out;
    }
    if (X509_time_adj_ex(X509_getm_notAfter(x), s->days, 0, &now) == NULL) {
        set_ossl_err(err, errlen, "X509_time_adj_ex(notAfter)");
        goto out;
    }
    if (X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
                                   MBSTRING_UTF8,
                                   (const unsigned char *)s->cn, -1, -1,
                                   0) != 1) {
        set_ossl_err(err, errlen, "X509_NAME_add_entry_by_txt(CN)");
        goto out;
    }
    if (X509_set_issuer_name(x, X509_get_subject_name(issuer)) != 1) {
        set_ossl_err(err, errlen, "X509_set_issuer_name");
        goto out;
    }
    if (X509_set_pubkey(x, s->key) != 1) {
        set_ossl_err(err, errlen, "X509_set_pubkey");
        goto out;
    }
    /* The issuer must already carry its SKI for keyid:always to work, which
     * is why the CA is fully built before any leaf. */
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    if (add_kind_exts(x, &v3, s, err, errlen) != 0)
        goto out;
    if (X509_sign(x, s->issuer_key, EVP_sha256()) <= 0) {
        set_ossl_err(err, errlen, "X509_sign");
        goto out;
    }
    *out_cert = x;
    x = NULL;
    rc = 0;
out:
    X509_free(x);
    return rc;
}

static int pem_cert(BIO **out_bio, X509 *x, char *err, size_t errlen)
{
    BIO *bio = NULL;
    int rc = -1;

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        set_ossl_err(err, errlen, "BIO_new");
        goto out;
    }
    if (PEM_write_bio_X509(bio, x) != 1) {
        set_ossl_err(err, errlen, "PEM_write_bio_X509");
        goto out;
    }
    *out_bio = bio;
    bio = NULL;
    rc = 0;
out:
    BIO_free(bio);
    return rc;
}

/* Secure-heap BIO so the PEM copy of the key is wiped when freed. */
static int pem_key(BIO **out_bio, EVP_PKEY *key, char *err, size_t errlen)
{
    BIO *bio = NULL;
    int rc = -1;

    bio = BIO_new(BIO_s_secmem());
    if (bio == NULL) {
        set_ossl_err(err, errlen, "BIO_new");
        goto out;
    }
    /* PEM_write_bio_PrivateKey emits unencrypted PKCS#8 ("PRIVATE KEY"). */
    if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        set_ossl_err(err, errlen, "PEM_write_bio_PrivateKey");
        goto out;
    }
    *out_bio = bio;
    bio = NULL;
    rc = 0;
out:
    BIO_free(bio);
    return rc;
}

/*
 * *opened is set as soon as the file is created or truncated so the caller
 * can remove it again if a later step fails.
 */
static int write_file(const char *path, BIO *bio, mode_t mode, int force,
                      int *opened, char *err, size_t errlen)
{
    char *data = NULL;
    long blen;
    size_t len;
    ssize_t n;
    int fd = -1;
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW;
    int rc = -1;

    flags |= force ? O_TRUNC : O_EXCL;
    blen = BIO_get_mem_data(bio, &data);
    if (blen <= 0 || data == NULL) {
        set_err(err, errlen, "internal error: no PEM data for %s", path);
        goto out;
    }
    len = (size_t)blen;
    fd = open(path, flags, mode);
    if (fd < 0) {
        set_err(err, errlen, "cannot create %s: %s", path, strerror(errno));
        goto out;
    }
    *opened = 1;
    /* open()'s mode is ignored for a file that already exists (--force) and
     * is narrowed by the umask, so pin the permissions explicitly. */
    if (fchmod(fd, mode) != 0) {
        set_err(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
        goto out;
    }
    while (len > 0) {
        n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            set_err(err, errlen, "cannot write %s: %s", path, strerror(errno));
            goto out;
        }
        data += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        set_err(err, errlen, "cannot fsync %s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0 && close(fd) != 0 && rc == 0) {
        set_err(err, errlen, "cannot close %s: %s", path, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* Make the new directory entries durable, not just the file contents. */
static int sync_dir(const char *dir, char *err, size_t errlen)
{
    int fd;
    int rc = -1;

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "cannot open %s: %s", dir, strerror(errno));
        goto out;
    }
    if (fsync(fd) != 0) {
        set_err(err, errlen, "cannot fsync %s: %s", dir, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        (void)close(fd);
    return rc;
}

/*
 * Every target is checked before anything is generated or written, so a
 * refusal leaves the directory untouched.  With force, only regular files
 * may be replaced: O_NOFOLLOW rejects symlinks, and this stops us from
 * blocking on a FIFO.
 */
static int check_targets(char paths[F_COUNT][PATH_MAX], int force,
                         char *err, size_t errlen)
{
    struct stat st;
    size_t i;
    int rc = -1;

    for (i = 0; i < F_COUNT; i++) {
        if (lstat(paths[i], &st) == 0) {
            if (!force) {
                set_err(err, errlen,
                        "refusing to overwrite existing %s (use --force); "
                        "nothing was written", paths[i]);
                goto out;
            }
            if (!S_ISREG(st.st_mode)) {
                set_err(err, errlen,
                        "%s exists and is not a regular file; not replacing "
                        "it", paths[i]);
                goto out;
            }
        } else if (errno != ENOENT) {
            set_err(err, errlen, "cannot stat %s: %s", paths[i],
                    strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    return rc;
}

static int make_ca_cn(char *cn, size_t cnlen, char *err, size_t errlen)
{
    static const char hexdig[] = "0123456789abcdef";
    unsigned char rnd[8];
    char hex[2 * sizeof rnd + 1];
    size_t i;
    int n;
    int rc = -1;

    /* A random suffix keeps CAs from separate "pki init" runs apart in
     * trust stores and log output. */
    if (RAND_bytes(rnd, (int)sizeof rnd) != 1) {
        set_ossl_err(err, errlen, "RAND_bytes(CA name)");
        goto out;
    }
    for (i = 0; i < sizeof rnd; i++) {
        hex[2 * i] = hexdig[rnd[i] >> 4];
        hex[2 * i + 1] = hexdig[rnd[i] & 0x0f];
    }
    hex[sizeof hex - 1] = '\0';
    n = snprintf(cn, cnlen, "sallyport throwaway CA %s", hex);
    if (n < 0 || (size_t)n >= cnlen) {
        set_err(err, errlen, "internal error: CA name too long");
        goto out;
    }
    rc = 0;
out:
    return rc;
}

int pki_init(const char *dir, const char *const *names, size_t nnames,
             int days, int force, char *err, size_t errlen)
{
    static const char *const default_names[] = { "localhost", "127.0.0.1" };
    char paths[F_COUNT][PATH_MAX];
    BIO *pem[F_COUNT] = { NULL };
    int opened[F_COUNT] = { 0 };
    EVP_PKEY *ca_key = NULL;
    EVP_PKEY *edge_key = NULL;
    EVP_PKEY *agent_key = NULL;
    X509 *ca = NULL;
    X509 *edge = NULL;
    X509 *agent = NULL;
    struct cert_spec spec;
    char ca_cn[PKI_MAX_CN + 1];
    struct stat st;
    time_t now;
    int dir_exists = 0;
    int created_dir = 0;
    size_t i;
    int n;
    int rc = -1;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (dir == NULL || dir[0] == '\0') {
        set_err(err, errlen, "no PKI directory given");
        goto out;
    }
    if (days < 1 || days > PKI_MAX_DAYS) {
        set_err(err, errlen, "validity must be 1..%d days, got %d",
                PKI_MAX_DAYS, days);
        goto out;
    }
    if (nnames == 0) {
        names = default_names;
        nnames = sizeof default_names / sizeof default_names[0];
    }
    if (names == NULL) {
        set_err(err, errlen, "edge name list is NULL");
        goto out;
    }
    if (validate_names(names, nnames, err, errlen) != 0)
        goto out;

    for (i = 0; i < F_COUNT; i++) {
        n = snprintf(paths[i], sizeof paths[i], "%s/%s", dir,
                     pki_files[i].name);
        if (n < 0 || (size_t)n >= sizeof paths[i]) {
            set_err(err, errlen, "path too long: %s/%s", dir,
                    pki_files[i].name);
            goto out;
        }
    }
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            set_err(err, errlen, "%s exists and is not a directory", dir);
            goto out;
        }
        dir_exists = 1;
        if (check_targets(paths, force, err, errlen) != 0)
            goto out;
    } else if (errno != ENOENT) {
        set_err(err, errlen, "cannot stat %s: %s", dir, strerror(errno));
        goto out;
    }

    /* Everything is generated in memory first so that a crypto failure
     * cannot leave a half-written PKI behind. */
    now = time(NULL);
    if (now == (time_t)-1) {
        set_err(err, errlen, "time(): %s", strerror(errno));
        goto out;
    }
    if (make_ca_cn(ca_cn, sizeof ca_cn, err, errlen) != 0)
        goto out;
    if (gen_key(&ca_key, err, errlen) != 0 ||
        gen_key(&edge_key, err, errlen) != 0 ||
        gen_key(&agent_key, err, errlen) != 0)
        goto out;

    memset(&spec, 0, sizeof spec);
    spec.now = now;
    spec.days = days;
    spec.issuer_key = ca_key;

    spec.kind = KIND_CA;
    spec.cn = ca_cn;
    spec.key = ca_key;
    spec.issuer = NULL;
    if (make_cert(&ca, &spec, err, errlen) != 0)
        goto out;

    spec.kind = KIND_SERVER;
    spec.cn = names[0];
    spec.sans = names;
    spec.nsans = nnames;
    spec.key = edge_key;
    spec.issuer = ca;
    if (make_cert(&edge, &spec, err, errlen) != 0)
        goto out;

    spec.kind = KIND_CLIENT;
    spec.cn = PKI_AGENT_CN;
    spec.sans = NULL;
    spec.nsans = 0;
    spec.key = agent_key;
    if (make_cert(&agent, &spec, err, errlen) != 0)
        goto out;

    if (pem_cert(&pem[F_CA_CRT], ca, err, errlen) != 0 ||
        pem_key(&pem[F_CA_KEY], ca_key, err, errlen) != 0 ||
        pem_cert(&pem[F_EDGE_CRT], edge, err, errlen) != 0 ||
        pem_key(&pem[F_EDGE_KEY], edge_key, err, errlen) != 0 ||
        pem_cert(&pem[F_AGENT_CRT], agent, err, errlen) != 0 ||
        pem_key(&pem[F_AGENT_KEY], agent_key, err, errlen) != 0)
        goto out;

    if (!dir_exists) {
        if (mkdir(dir, 0700) != 0) {
            set_err(err, errlen, "cannot create directory %s: %s", dir,
                    strerror(errno));
            goto out;
        }
        created_dir = 1;
    }
    for (i = 0; i < F_COUNT; i++) {
        if (write_file(paths[i], pem[i], pki_files[i].mode, force,
                       &opened[i], err, errlen) != 0)
            goto out;
    }
    if (sync_dir(dir, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0) {
        /* A partial set (e.g. a new CA next to old leaves) is worse than
         * none, so remove whatever this call created or truncated. */
        for (i = 0; i < F_COUNT; i++) {
            if (opened[i])
                (void)unlink(paths[i]);
        }
        if (created_dir)
            (void)rmdir(dir);
    }
    for (i = 0; i < F_COUNT; i++)
        BIO_free(pem[i]);
    X509_free(agent);
    X509_free(edge);
    X509_free(ca);
    EVP_PKEY_free(agent_key);
    EVP_PKEY_free(edge_key);
    EVP_PKEY_free(ca_key);
    return rc;
}
