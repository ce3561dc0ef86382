# sallyport build. `make` builds build/sallyport-edge, build/sallyport-agent
# and build/sallyportctl. Targets: all, test, unit, integration, demo, deps,
# clean, install (PREFIX=/usr/local, DESTDIR=). SAN=asan builds with AddressSanitizer+UBSan into build-asan/.

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
SAN     ?=
BUILD   ?= build$(if $(SAN),-$(SAN))

WARN    = -Wall -Wextra -Werror -Wshadow -Wconversion -Wformat=2 \
          -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wpointer-arith \
          -Wnull-dereference
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -Isrc -MMD -MP -fno-strict-aliasing
ifeq ($(SAN),asan)
CFLAGS  += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

LIBSSL  = -lssl -lcrypto
LIBINI  = -linih
LIBSD   = -lsystemd
LIBHTTP = -lmicrohttpd -ljansson
LIBCURL = -lcurl -ljansson

COMMON  = src/common/log.c src/common/ev.c src/common/buf.c src/common/frame.c \
          src/common/net.c src/common/tlsx.c src/common/fconn.c src/common/relay.c \
          src/common/stats.c
EDGE    = src/edge/edge_main.c src/edge/edge_ctl.c src/edge/edge_svc.c
AGENT   = src/agent/agent_main.c src/agent/agent_cfg.c src/agent/agent_edge.c \
          src/agent/agent_sess.c src/agent/dial.c src/agent/agent_metrics.c \
          src/agent/agent_admin.c src/agent/agent_route.c src/agent/agent_reload.c
CTL     = src/ctl/ctl_main.c src/ctl/pki.c src/ctl/ctl_api.c

obj = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(1))

PROGS   = $(BUILD)/sallyport-edge $(BUILD)/sallyport-agent $(BUILD)/sallyportctl
UNITS   = $(BUILD)/test_frame $(BUILD)/test_cfg $(BUILD)/test_pki \
          $(BUILD)/test_stats $(BUILD)/test_route

all: $(PROGS)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/tests/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The edge links only what runs in the DMZ: no dialer, no config loader.
$(BUILD)/sallyport-edge: $(call obj,$(COMMON) $(EDGE))
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBSSL) $(LIBSD)

$(BUILD)/sallyport-agent: $(call obj,$(COMMON) $(AGENT))
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBSSL) $(LIBINI) $(LIBSD) $(LIBHTTP)

$(BUILD)/sallyportctl: $(call obj,$(CTL))
	$(CC) $(LDFLAGS) -o $@ $^ -lcrypto $(LIBCURL)

$(BUILD)/test_frame: $(BUILD)/obj/tests/test_frame.o $(call obj,src/common/frame.c src/common/buf.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_cfg: $(BUILD)/obj/tests/test_cfg.o $(call obj,src/agent/agent_cfg.c src/agent/dial.c src/common/net.c src/common/ev.c src/common/log.c src/common/frame.c src/common/buf.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LIBINI) -lcrypto

$(BUILD)/test_pki: $(BUILD)/obj/tests/test_pki.o $(call obj,src/ctl/pki.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -lcrypto

$(BUILD)/test_stats: $(BUILD)/obj/tests/test_stats.o $(call obj,src/common/stats.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_route: $(BUILD)/obj/tests/test_route.o $(call obj,src/agent/agent_route.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

FUZZERS += stats
FUZZ_SRC_stats = src/common/stats.c
FUZZERS += route
FUZZ_SRC_route = src/agent/agent_route.c

deps:
	@sh scripts/deps.sh

unit: $(UNITS)
	@set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

integration: $(PROGS)
	SALLYPORT_BUILD=$(BUILD) /usr/bin/python3 -m pytest -v tests/integration

test: deps
	$(MAKE) all unit
	$(MAKE) integration

demo: deps
	$(MAKE) all
	@bash scripts/demo.sh

# Binaries, systemd units (ExecStart pointing at BINDIR), the sysusers.d
# entry for the agent's user, and the man pages.
install: $(PROGS)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(PROGS) $(DESTDIR)$(BINDIR)/
	for u in sallyport-edge sallyport-agent; do \
	    sed 's|@BINDIR@|$(BINDIR)|g' dist/systemd/$$u.service.in \
	        >$(DESTDIR)$(UNITDIR)/$$u.service.tmp && \
	    chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.service.tmp && \
	    mv $(DESTDIR)$(UNITDIR)/$$u.service.tmp $(DESTDIR)$(UNITDIR)/$$u.service \
	    || exit 1; \
	done
	install -m 0644 dist/sysusers.d/sallyport.conf $(DESTDIR)$(SYSUSERSDIR)/
	install -m 0644 man/sallyport-edge.8 man/sallyport-agent.8 man/sallyportctl.8 \
	    $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 man/sallyport-agent.conf.5 $(DESTDIR)$(MANDIR)/man5/

clean:
	rm -rf build build-asan

.PHONY: all deps unit integration test demo clean install
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
