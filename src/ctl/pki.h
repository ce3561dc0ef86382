/*
 * pki.h - throwaway PKI generation for sallyportctl ("pki init").
 *
 * Produces a private CA plus one edge server and one agent client
 * certificate so that the edge <-> agent mTLS link can be brought up
 * without an external CA.
 */
#ifndef SALLYPORT_CTL_PKI_H
#define SALLYPORT_CTL_PKI_H

#include <stddef.h>

/* File names written inside the PKI directory. */
#define PKI_CA_CRT    "ca.crt"
#define PKI_CA_KEY    "ca.key"
#define PKI_EDGE_CRT  "edge.crt"
#define PKI_EDGE_KEY  "edge.key"
#define PKI_AGENT_CRT "agent.crt"
#define PKI_AGENT_KEY "agent.key"

#define PKI_AGENT_CN     "sallyport-agent"
#define PKI_DEFAULT_DAYS 825
#define PKI_MAX_DAYS     36500
#define PKI_MAX_NAMES    32

/*
 * Create dir (mode 0700) if missing and write the six PKI files into it.
 *
 * names/nnames: edge subjectAltName entries; each is an IP SAN if it parses
 * as an IPv4/IPv6 literal, otherwise a DNS SAN.  The first one is also the
 * edge CN.  nnames == 0 means "localhost" + "127.0.0.1".
 * days: validity of every certificate, 1..PKI_MAX_DAYS.
 * force: overwrite existing files instead of refusing.
 *
 * Returns 0 on success, -1 on failure with a message in err.  When refusing
 * because a file exists, nothing is written.
 */
int pki_init(const char *dir, const char *const *names, size_t nnames,
             int days, int force, char *err, size_t errlen);

#endif /* SALLYPORT_CTL_PKI_H */
