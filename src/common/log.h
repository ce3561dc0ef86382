/* log.h - one line per event on stderr. */
#ifndef SP_LOG_H
#define SP_LOG_H

enum { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_init(const char *progname, int verbosity);
/* In a child after fork(): its records name its own pid. */
void log_forked(void);
/* From log_hold until log_flush, this thread's info and debug records
 * are queued and then written together (the event loop holds them while
 * it dispatches a turn). log_flush also ends the hold. */
void log_hold(void);
void log_flush(void);
void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Log and exit(1): for broken invariants and start-up failures only. */
void log_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
