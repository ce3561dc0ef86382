/* edge_ban.h - bans pushed by agents (BAN, UNBAN, BAN_SYNC), checked on
 * every client before anything else happens to it.
 *
 * The edge keeps them in memory only. Each ban belongs to the agent (by
 * NAME) that pushed it, and stays when that agent's control connection
 * goes: an operator expects a ban to hold until it expires or is lifted.
 * When the agent connects again it pushes its whole list and BAN_SYNC;
 * its bans not pushed again since its HELLO are then dropped, so a ban
 * lifted (or forgotten by a restart without ban_file) meanwhile is lifted
 * here too. An address is refused while any agent bans it. */
#ifndef SP_EDGE_BAN_H
#define SP_EDGE_BAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/frame.h"

struct eagent;

/* BAN, UNBAN or BAN_SYNC from agent a. 0, or -1 with why (a malformed
 * BANS): the caller drops the agent. */
int	eban_frame(struct eagent *a, const struct msg *m, char *why,
	    size_t whylen);
/* 1 if client is banned: fd is then reset and closed, the refusal
 * counted and logged (rate-limited). 0: fd untouched. */
int	eban_refuse(int fd, const struct sockaddr *client, const char *what);
/* 1 if the 16-byte address is banned now. */
int	eban_match(const uint8_t a16[16]);
void	eban_tick(uint64_t now);
void	eban_stats(char *out, size_t outlen);
void	eban_shutdown(void);

#endif
