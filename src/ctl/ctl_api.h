/*
 * ctl_api.h - sallyportctl's client for the agent's admin API:
 * "status", "sessions", "kill ID", "reload", "upgrade", "ban", "unban"
 * and "bans".
 */
#ifndef SALLYPORT_CTL_API_H
#define SALLYPORT_CTL_API_H

#define CTL_API_URL        "http://127.0.0.1:7080"
#define CTL_API_TOKEN_FILE "/etc/sallyport/admin.token"

/* Each takes the subcommand's argv (argv[0] is its name) and returns an
 * exit status: 0 ok, 1 failed (the agent said no or could not be
 * reached), 2 usage. */
int ctl_api_status(int argc, char **argv);
int ctl_api_sessions(int argc, char **argv);
int ctl_api_kill(int argc, char **argv);
int ctl_api_reload(int argc, char **argv);
int ctl_api_ban(int argc, char **argv);
int ctl_api_unban(int argc, char **argv);
int ctl_api_bans(int argc, char **argv);
int ctl_api_upgrade(int argc, char **argv);

#endif
