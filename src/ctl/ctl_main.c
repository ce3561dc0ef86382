/*
 * ctl_main.c - entry point of sallyportctl, the operator's command-line
 * tool: global options and subcommand dispatch.  Each subcommand lives in
 * its own module; this file only parses arguments and reports results.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl_api.h"
#include "ctl/pki.h"

#define CTL_NAME    "sallyportctl"
#define CTL_VERSION "0.1.0"

enum { CTL_EXIT_OK = 0, CTL_EXIT_FAIL = 1, CTL_EXIT_USAGE = 2 };

struct ctl_command {
    const char *name;
    int (*run)(int argc, char **argv);
};

static void usage(FILE *fp)
{
    fputs(
        "Usage: " CTL_NAME " [-h|--help] [-V|--version] COMMAND [ARGS]\n"
        "\n"
        "Commands:\n"
        "  pki init DIR [--edge-name NAME]... [--days N] [--force]\n"
        "      Create a throwaway CA and the edge server / agent client\n"
        "      certificates in DIR (created with mode 0700 if missing):\n"
        "      ca.crt ca.key edge.crt edge.key agent.crt agent.key.\n"
        "        --edge-name NAME  DNS name or IP address the agent uses to\n"
        "                          reach the edge; repeatable; the first is\n"
        "                          also the CN (default: localhost, 127.0.0.1)\n"
        "        --days N          validity of all certificates in days\n"
        "                          (default 825)\n"
        "        --force           overwrite existing files\n"
        "\n"
        "  status [OPTS]       edges, services and backends of a running agent\n"
        "  sessions [OPTS]     the sessions it is carrying now\n"
        "  kill [OPTS] ID      cut one session\n"
        "  reload [OPTS]       make the agent reload its configuration file\n"
        "  ban [OPTS] ADDR|CIDR [--for DURATION] [--reason TEXT] [--cut]\n"
        "                      refuse it at every edge, for DURATION (seconds,\n"
        "                      or a number with s, m, h or d) or until lifted;\n"
        "                      --cut also ends its running sessions\n"
        "  unban [OPTS] ADDR|CIDR  lift that ban\n"
        "  bans [OPTS]         the bans in force\n"
        "  upgrade [OPTS]      start the agent's program again: the new process\n"
        "                      takes over (handover_socket) and the old one\n"
        "                      finishes its sessions, then exits\n"
        "      These talk to the agent's admin API ([admin] in its config):\n"
        "        --url URL         default " CTL_API_URL " ($SALLYPORT_URL)\n"
        "        --token-file F    the bearer token, default\n"
        "                          " CTL_API_TOKEN_FILE " ($SALLYPORT_TOKEN_FILE)\n"
        "        --json            print the API's JSON instead of a table\n"
        "\n"
        "Options:\n"
        "  -h, --help     show this help and exit\n"
        "  -V, --version  show the version and exit\n",
        fp);
}

static void report_bad_option(int c, const char *arg)
{
    if (c == ':')
        fprintf(stderr, CTL_NAME ": pki init: option '%s' requires an "
                "argument\n", arg);
    else if (strncmp(arg, "--", 2) == 0 || optopt == 0)
        fprintf(stderr, CTL_NAME ": pki init: invalid option '%s'\n", arg);
    else
        fprintf(stderr, CTL_NAME ": pki init: invalid option '-%c'\n",
                optopt);
    usage(stderr);
}

static int parse_days(const char *s, int *out)
{
    char *end = NULL;
    long v;
    int rc = -1;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > PKI_MAX_DAYS)
        goto out;
    *out = (int)v;
    rc = 0;
out:
    return rc;
}

static void print_pki_summary(const char *dir, const char *const *names,
                              size_t nnames, int days)
{
    size_t i;

    printf("Wrote throwaway PKI to %s (valid %d days):\n", dir, days);
    printf("  %s/%-10s CA certificate\n", dir, PKI_CA_CRT);
    printf("  %s/%-10s CA private key (0600)\n", dir, PKI_CA_KEY);
    printf("  %s/%-10s edge server certificate, names:", dir, PKI_EDGE_CRT);
    if (nnames == 0) {
        printf(" localhost 127.0.0.1");
    } else {
        for (i = 0; i < nnames; i++)
            printf(" %s", names[i]);
    }
    printf("\n");
    printf("  %s/%-10s edge server private key (0600)\n", dir, PKI_EDGE_KEY);
    printf("  %s/%-10s agent client certificate (CN=%s)\n", dir,
           PKI_AGENT_CRT, PKI_AGENT_CN);
    printf("  %s/%-10s agent client private key (0600)\n", dir, PKI_AGENT_KEY);
    printf("\n"
           "Copy only %s, %s and %s to the edge host.\n"
           "%s and %s stay inside: never copy them to the edge host.\n",
           PKI_CA_CRT, PKI_EDGE_CRT, PKI_EDGE_KEY, PKI_CA_KEY, PKI_AGENT_KEY);
}

static int cmd_pki_init(int argc, char **argv)
{
    static const struct option opts[] = {
        { "edge-name", required_argument, NULL, 'n' },
        { "days", required_argument, NULL, 'd' },
        { "force", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *names[PKI_MAX_NAMES];
    size_t nnames = 0;
    int days = PKI_DEFAULT_DAYS;
    int force = 0;
    char err[1024];
    const char *dir;
    int c;

    /* 0 rather than 1: main() already ran getopt, and glibc needs a full
     * reset of its internal state.  getopt's own messages would be prefixed
     * with "init", so they are silenced and reported here instead. */
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (nnames >= PKI_MAX_NAMES) {
                fprintf(stderr, CTL_NAME ": pki init: at most %d --edge-name "
                        "values\n", PKI_MAX_NAMES);
                return CTL_EXIT_USAGE;
            }
            names[nnames++] = optarg;
            break;
        case 'd':
            if (parse_days(optarg, &days) != 0) {
                fprintf(stderr, CTL_NAME ": pki init: --days must be an "
                        "integer in 1..%d, got '%s'\n", PKI_MAX_DAYS, optarg);
                return CTL_EXIT_USAGE;
            }
            break;
        case 'f':
            force = 1;
            break;
        case 'h':
            usage(stdout);
            return CTL_EXIT_OK;
        default:
            report_bad_option(c, argv[optind - 1]);
            return CTL_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, CTL_NAME ": pki init: expected exactly one DIR "
                "argument\n");
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    dir = argv[optind];
    if (pki_init(dir, names, nnames, days, force, err, sizeof err) != 0) {
        fprintf(stderr, CTL_NAME ": pki init: %s\n", err);
        return CTL_EXIT_FAIL;
    }
    print_pki_summary(dir, names, nnames, days);
    return CTL_EXIT_OK;
}

static int cmd_pki(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, CTL_NAME ": pki: missing subcommand\n");
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if (strcmp(argv[1], "init") == 0)
        return cmd_pki_init(argc - 1, argv + 1);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    fprintf(stderr, CTL_NAME ": pki: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return CTL_EXIT_USAGE;
}

static const struct ctl_command commands[] = {
    { "pki", cmd_pki },
    { "status", ctl_api_status },
    { "sessions", ctl_api_sessions },
    { "kill", ctl_api_kill },
    { "reload", ctl_api_reload },
    { "ban", ctl_api_ban },
    { "unban", ctl_api_unban },
    { "bans", ctl_api_bans },
    { "upgrade", ctl_api_upgrade },
};

static int dispatch(int argc, char **argv)
{
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    size_t i;
    int c;

    /* "+": stop at the command name so its own options are left for it. */
    while ((c = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return CTL_EXIT_OK;
        case 'V':
            printf(CTL_NAME " " CTL_VERSION "\n");
            return CTL_EXIT_OK;
        default:
            usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    for (i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[optind], commands[i].name) == 0)
            return commands[i].run(argc - optind, argv + optind);
    }
    fprintf(stderr, CTL_NAME ": unknown command '%s'\n", argv[optind]);
    usage(stderr);
    return CTL_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    int rc = dispatch(argc, argv);

    /* A summary lost to a full disk or closed pipe must not look like
     * success to a calling script. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, CTL_NAME ": error writing to stdout: %s\n",
                strerror(errno));
        if (rc == CTL_EXIT_OK)
            rc = CTL_EXIT_FAIL;
    }
    return rc;
}
