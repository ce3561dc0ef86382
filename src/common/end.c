/* end.c - names of the ways a session ends (end.h). */
#include "common/end.h"

static const char *const names[SE_COUNT] = {
	[SE_NONE] = "none",
	[SE_CLIENT_CLOSED] = "client-closed",
	[SE_SERVER_CLOSED] = "server-closed",
	[SE_REFUSED] = "refused",
	[SE_DENIED] = "denied",
	[SE_LIMIT] = "limit",
	[SE_TIMEOUT] = "timeout",
	[SE_ERROR] = "error",
	[SE_KILLED] = "killed",
	[SE_STOPPING] = "stopping",
};

const char *
end_name(enum sess_end e)
{
	return (unsigned)e < SE_COUNT ? names[e] : "?";
}

int
end_from_wire(uint8_t v, enum sess_end *e)
{
	if (v == SE_NONE || v >= SE_COUNT)
		return -1;
	*e = (enum sess_end)v;
	return 0;
}
