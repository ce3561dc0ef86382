/*
 * test_pki.c - unit tests for pki_init(): the generated CA, edge and agent
 * certificates are checked with the OpenSSL API exactly as a TLS peer would
 * check them, plus file modes and the refuse/--force behaviour.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ctl/pki.h"

static const char *const all_files[] = {
    PKI_CA_CRT, PKI_CA_KEY, PKI_EDGE_CRT, PKI_EDGE_KEY, PKI_AGENT_CRT,
    PKI_AGENT_KEY,
};
#define NFILES (sizeof all_files / sizeof all_files[0])

struct fixture {
    char tmp[64];       /* mkdtemp directory */
    char pki[PATH_MAX]; /* tmp/pki: does not exist until pki_init */
};

static void join(char *out, size_t outlen, const char *dir, const char *name)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);

    assert_true(n > 0 && (size_t)n < outlen);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    int n;

    if (f == NULL)
        return -1;
    n = snprintf(f->tmp, sizeof f->tmp, "/tmp/test_pki.XXXXXX");
    if (n < 0 || (size_t)n >= sizeof f->tmp || mkdtemp(f->tmp) == NULL) {
        free(f);
        return -1;
    }
    n = snprintf(f->pki, sizeof f->pki, "%s/pki", f->tmp);
    if (n < 0 || (size_t)n >= sizeof f->pki) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static void remove_pki_files(const char *dir)
{
    char path[PATH_MAX];
    size_t i;

    for (i = 0; i < NFILES; i++) {
        if (snprintf(path, sizeof path, "%s/%s", dir, all_files[i]) <
            (int)sizeof path)
            (void)unlink(path);
    }
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    remove_pki_files(f->pki);
    remove_pki_files(f->tmp);
    (void)rmdir(f->pki);
    (void)rmdir(f->tmp);
    free(f);
    return 0;
}

static X509 *load_cert(const char *dir, const char *name)
{
    char path[PATH_MAX];
    FILE *fp;
    X509 *x;

    join(path, sizeof path, dir, name);
    fp = fopen(path, "r");
    assert_non_null(fp);
    x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *load_key(const char *dir, const char *name)
{
    char path[PATH_MAX];
    char line[64];
    FILE *fp;
    EVP_PKEY *k;

    join(path, sizeof path, dir, name);
    fp = fopen(path, "r");
    assert_non_null(fp);
    /* The edge daemon expects PKCS#8, not the legacy "EC PRIVATE KEY". */
    assert_non_null(fgets(line, sizeof line, fp));
    assert_string_equal(line, "-----BEGIN PRIVATE KEY-----\n");
    rewind(fp);
    k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(k);
    return k;
}

static size_t slurp(const char *dir, const char *name, char *buf, size_t len)
{
    char path[PATH_MAX];
    FILE *fp;
    size_t n;

    join(path, sizeof path, dir, name);
    fp = fopen(path, "r");
    assert_non_null(fp);
    n = fread(buf, 1, len, fp);
    assert_true(n > 0 && n < len);
    fclose(fp);
    return n;
}

static unsigned file_mode(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;

    join(path, sizeof path, dir, name);
    assert_int_equal(stat(path, &st), 0);
    return (unsigned)(st.st_mode & 07777);
}

static int file_exists(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;

    join(path, sizeof path, dir, name);
    return lstat(path, &st) == 0;
}

/* purpose 0 means "chain only", as in `openssl verify` without -purpose. */
static int verify(X509 *ca, X509 *leaf, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok;

    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    if (purpose != 0)
        assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
    ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

static void assert_cn(X509 *x, const char *want)
{
    char cn[256];

    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x),
                                          NID_commonName, cn,
                                          (int)sizeof cn) > 0);
    assert_string_equal(cn, want);
}

/* Entry i of the SAN must be type/value; the count must be exactly n. */
struct san { int type; const char *value; };

static void assert_sans(X509 *x, const struct san *want, size_t n)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
                                           NULL);
    ASN1_OCTET_STRING *ip;
    unsigned char addr[16];
    size_t alen;
    size_t i;

    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), n);
    for (i = 0; i < n; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, (int)i);

        assert_int_equal(g->type, want[i].type);
        if (want[i].type == GEN_DNS) {
            assert_int_equal(ASN1_STRING_length(g->d.dNSName),
                             strlen(want[i].value));
            assert_memory_equal(ASN1_STRING_get0_data(g->d.dNSName),
                                want[i].value, strlen(want[i].value));
        } else {
            ip = g->d.iPAddress;
            alen = strchr(want[i].value, ':') != NULL ? 16 : 4;
            assert_int_equal(inet_pton(alen == 16 ? AF_INET6 : AF_INET,
                                       want[i].value, addr), 1);
            assert_int_equal(ASN1_STRING_length(ip), alen);
            assert_memory_equal(ASN1_STRING_get0_data(ip), addr, alen);
        }
    }
    GENERAL_NAMES_free(gens);
}

static void assert_positive_serial(X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);

    assert_non_null(bn);
    assert_false(BN_is_negative(bn));
    assert_false(BN_is_zero(bn));
    assert_true(BN_num_bits(bn) <= 128);
    /* With 128 random bits this fails only if the RNG is broken. */
    assert_true(BN_num_bits(bn) > 64);
    BN_free(bn);
}

static void assert_validity(X509 *x, int days)
{
    int pday = 0;
    int psec = 0;

    /* now -> notAfter: just under `days` days. */
    assert_int_equal(ASN1_TIME_diff(&pday, &psec, NULL, X509_get0_notAfter(x)),
                     1);
    assert_true(pday == days || (pday == days - 1 && psec > 86000));
    /* notBefore -> now: about five minutes. */
    assert_int_equal(ASN1_TIME_diff(&pday, &psec, X509_get0_notBefore(x),
                                    NULL), 1);
    assert_int_equal(pday, 0);
    assert_true(psec >= 300 && psec < 360);
}

static void assert_eku(X509 *x, uint32_t want)
{
    assert_int_equal(X509_get_extended_key_usage(x), want);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_check_ca(x), 0);
}

static void test_default_names(void **state)
{
    struct fixture *f = *state;
    static const struct san want[] = {
        { GEN_DNS, "localhost" },
        { GEN_IPADD, "127.0.0.1" },
    };
    char err[512] = "";
    X509 *ca, *edge, *agent;
    EVP_PKEY *k;
    size_t i;

    assert_int_equal(pki_init(f->pki, NULL, 0, PKI_DEFAULT_DAYS, 0, err,
                              sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(file_mode(f->tmp, "pki"), 0700);
    for (i = 0; i < NFILES; i++) {
        unsigned want_mode = strstr(all_files[i], ".key") ? 0600u : 0644u;

        assert_int_equal(file_mode(f->pki, all_files[i]), want_mode);
    }

    ca = load_cert(f->pki, PKI_CA_CRT);
    edge = load_cert(f->pki, PKI_EDGE_CRT);
    agent = load_cert(f->pki, PKI_AGENT_CRT);

    assert_int_equal(X509_check_ca(ca), 1);
    assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_int_equal(X509_get_pathlen(ca), 0);
    assert_int_equal(X509_check_issued(ca, ca), X509_V_OK);

    assert_int_equal(verify(ca, edge, 0), 1);
    assert_int_equal(verify(ca, agent, 0), 1);
    assert_int_equal(verify(ca, edge, X509_PURPOSE_SSL_SERVER), 1);
    assert_int_equal(verify(ca, agent, X509_PURPOSE_SSL_CLIENT), 1);
    /* The EKUs must keep each certificate to its own role. */
    assert_int_equal(verify(ca, edge, X509_PURPOSE_SSL_CLIENT), 0);
    assert_int_equal(verify(ca, agent, X509_PURPOSE_SSL_SERVER), 0);

    assert_cn(edge, "localhost");
    assert_cn(agent, PKI_AGENT_CN);
    assert_sans(edge, want, 2);
    assert_int_equal(X509_check_host(edge, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(edge, "127.0.0.1", 0), 1);
    assert_null(X509_get_ext_d2i(agent, NID_subject_alt_name, NULL, NULL));

    assert_eku(edge, XKU_SSL_SERVER);
    assert_eku(agent, XKU_SSL_CLIENT);
    assert_non_null(X509_get0_authority_key_id(edge));
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(edge),
                                           X509_get0_subject_key_id(ca)), 0);
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(agent),
                                           X509_get0_subject_key_id(ca)), 0);
    assert_non_null(X509_get0_subject_key_id(edge));
    assert_non_null(X509_get0_subject_key_id(agent));

    assert_positive_serial(ca);
    assert_positive_serial(edge);
    assert_positive_serial(agent);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(edge),
                                          X509_get0_serialNumber(agent)), 0);
    assert_validity(ca, PKI_DEFAULT_DAYS);
    assert_validity(edge, PKI_DEFAULT_DAYS);
    assert_validity(agent, PKI_DEFAULT_DAYS);

    k = load_key(f->pki, PKI_CA_KEY);
    assert_int_equal(X509_check_private_key(ca, k), 1);
    assert_true(EVP_PKEY_is_a(k, "EC"));
    assert_int_equal(EVP_PKEY_get_bits(k), 256);
    EVP_PKEY_free(k);
    k = load_key(f->pki, PKI_EDGE_KEY);
    assert_int_equal(X509_check_private_key(edge, k), 1);
    EVP_PKEY_free(k);
    k = load_key(f->pki, PKI_AGENT_KEY);
    assert_int_equal(X509_check_private_key(agent, k), 1);
    EVP_PKEY_free(k);

    X509_free(agent);
    X509_free(edge);
    X509_free(ca);
}

static void test_custom_names(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = {
        "edge.example.com", "192.0.2.10", "2001:db8::1", "*.dmz.example",
    };
    static const struct san want[] = {
        { GEN_DNS, "edge.example.com" },
        { GEN_IPADD, "192.0.2.10" },
        { GEN_IPADD, "2001:db8::1" },
        { GEN_DNS, "*.dmz.example" },
    };
    char err[512] = "";
    X509 *ca, *edge;

    assert_int_equal(pki_init(f->pki, names, 4, 30, 0, err, sizeof err), 0);
    ca = load_cert(f->pki, PKI_CA_CRT);
    edge = load_cert(f->pki, PKI_EDGE_CRT);

    assert_int_equal(verify(ca, edge, X509_PURPOSE_SSL_SERVER), 1);
    assert_cn(edge, "edge.example.com");
    assert_sans(edge, want, 4);
    assert_int_equal(X509_check_host(edge, "edge.example.com", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(edge, "gw.dmz.example", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(edge, "192.0.2.10", 0), 1);
    assert_int_equal(X509_check_ip_asc(edge, "2001:db8:0::1", 0), 1);
    /* Custom names replace the defaults rather than adding to them. */
    assert_int_not_equal(X509_check_host(edge, "localhost", 0, 0, NULL), 1);
    assert_int_not_equal(X509_check_ip_asc(edge, "127.0.0.1", 0), 1);
    assert_validity(edge, 30);

    X509_free(edge);
    X509_free(ca);
}

static void test_refuse_then_force(void **state)
{
    struct fixture *f = *state;
    char err[512] = "";
    char before[8192], after[8192];
    size_t nb, na;
    char path[PATH_MAX];
    X509 *ca, *edge;

    assert_int_equal(pki_init(f->pki, NULL, 0, 10, 0, err, sizeof err), 0);
    nb = slurp(f->pki, PKI_CA_CRT, before, sizeof before);

    assert_int_equal(pki_init(f->pki, NULL, 0, 10, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, PKI_CA_CRT));
    assert_non_null(strstr(err, "--force"));
    na = slurp(f->pki, PKI_CA_CRT, after, sizeof after);
    assert_int_equal(na, nb);
    assert_memory_equal(before, after, nb);

    /* --force must also repair permissions a previous file had. */
    join(path, sizeof path, f->pki, PKI_EDGE_KEY);
    assert_int_equal(chmod(path, 0644), 0);
    err[0] = '\0';
    assert_int_equal(pki_init(f->pki, NULL, 0, 10, 1, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(file_mode(f->pki, PKI_EDGE_KEY), 0600);
    assert_int_equal(file_mode(f->pki, PKI_CA_KEY), 0600);
    na = slurp(f->pki, PKI_CA_CRT, after, sizeof after);
    assert_false(na == nb && memcmp(before, after, nb) == 0);

    ca = load_cert(f->pki, PKI_CA_CRT);
    edge = load_cert(f->pki, PKI_EDGE_CRT);
    assert_int_equal(verify(ca, edge, X509_PURPOSE_SSL_SERVER), 1);
    X509_free(edge);
    X509_free(ca);
}

static void test_refuse_writes_nothing(void **state)
{
    struct fixture *f = *state;
    char err[512] = "";
    char path[PATH_MAX];
    size_t i;
    int fd;

    /* Only the last file exists: the check must happen before any write. */
    join(path, sizeof path, f->tmp, PKI_AGENT_KEY);
    fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);

    assert_int_equal(pki_init(f->tmp, NULL, 0, 10, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, PKI_AGENT_KEY));
    for (i = 0; i < NFILES; i++)
        assert_int_equal(file_exists(f->tmp, all_files[i]),
                         strcmp(all_files[i], PKI_AGENT_KEY) == 0);
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {
        "edge.example.com:8443", "https://edge", "--force", "a..b", "",
        "-edge", "edge-.example", "fe80::1%eth0",
    };
    const char *one[1];
    char err[512];
    struct stat st;
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        one[0] = bad[i];
        err[0] = '\0';
        assert_int_equal(pki_init(f->pki, one, 1, 10, 0, err, sizeof err), -1);
        assert_non_null(strstr(err, "invalid edge name"));
    }
    assert_int_equal(pki_init(f->pki, NULL, 0, 0, 0, err, sizeof err), -1);
    assert_int_equal(pki_init(f->pki, NULL, 0, PKI_MAX_DAYS + 1, 0, err,
                              sizeof err), -1);
    assert_int_equal(pki_init("", NULL, 0, 10, 0, err, sizeof err), -1);
    /* Nothing may be created for rejected input. */
    assert_int_equal(stat(f->pki, &st), -1);
    assert_int_equal(errno, ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_default_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_then_force, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refuse_writes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
