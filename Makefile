# sallyport build. `make` builds build/sallyport-edge, build/sallyport-agent
# and build/sallyportctl. Targets: all, test, test-fresh, unit,
# integration, demo, deps, check-tools, check-edge, loc, fuzz, check-banned,
# clean, install (PREFIX=/usr/local, DESTDIR=), bench.
# SAN=asan builds with AddressSanitizer+UBSan into build-asan/.

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
# fail2ban reads /etc/fail2ban; a PREFIX elsewhere (a test's) keeps it there
F2BDIR  ?= $(if $(filter /usr /usr/local,$(PREFIX)),/etc/fail2ban,$(PREFIX)/etc/fail2ban)
SAN     ?=
BUILD   ?= build$(if $(SAN),-$(SAN))

WARN    = -Wall -Wextra -Werror -Wshadow -Wconversion -Wformat=2 \
          -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wpointer-arith \
          -Wnull-dereference
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -Isrc -MMD -MP -fno-strict-aliasing
# Each function in a section of its own, and the linker drops those no
# caller reaches: a daemon links only what it runs (make check-edge).
CFLAGS  += -ffunction-sections -fdata-sections
LDFLAGS += -Wl,--gc-sections
ifeq ($(SAN),asan)
CFLAGS  += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

LIBSSL  = -lssl -lcrypto
LIBINI  = -linih
LIBJSON = -ljansson
LIBSD   = -lsystemd
LIBHTTP = -lmicrohttpd -ljansson
LIBCURL = -lcurl -ljansson

COMMON  = src/common/log.c src/common/ev.c src/common/buf.c src/common/frame.c \
          src/common/end.c src/common/net.c src/common/tlsx.c src/common/fconn.c \
          src/common/pump.c src/common/psock.c src/common/plink.c src/common/mux.c src/common/mux_stream.c \
          src/common/linkkey.c src/common/cidr.c src/common/outpol.c \
          src/common/ban.c src/common/hosock.c
EDGE    = src/edge/edge_main.c src/edge/edge_ctl.c src/edge/edge_link.c \
          src/edge/edge_lis.c src/edge/edge_proxy.c src/edge/edge_adm.c \
          src/edge/edge_sess.c src/edge/edge_stats.c src/edge/edge_ftp.c \
          src/edge/edge_out.c src/edge/edge_dial.c src/edge/edge_limit.c src/edge/edge_sandbox.c \
          src/edge/edge_keyproc.c src/edge/edge_notify.c src/edge/edge_ban.c \
          src/edge/edge_handover.c \
          src/edge/proxy_parse.c
AGENT   = src/agent/agent_main.c src/agent/agent_cfg.c src/agent/ftp_cfg.c \
          src/agent/agent_edge.c src/agent/agent_link.c src/agent/agent_sess.c \
          src/agent/agent_backend.c src/agent/agent_health.c src/agent/dial.c src/agent/bg.c \
          src/agent/agent_ftp.c src/agent/ftp_filter.c src/agent/ftp_line.c src/agent/proxy_enc.c \
          src/agent/agent_out.c src/agent/socks.c src/agent/httpc.c \
          src/agent/agent_metrics.c src/agent/stats_parse.c \
          src/agent/agent_admin.c src/agent/agent_route.c \
          src/agent/agent_reload.c src/agent/agent_audit.c src/agent/agent_handover.c \
          src/agent/agent_ban.c src/agent/tsrc.c \
          src/agent/sess_check.c src/agent/ctl_check.c
CTL     = src/ctl/ctl_main.c src/ctl/pki.c src/ctl/ctl_api.c \
          src/common/ban.c src/common/cidr.c

obj = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(1))

PROGS   = $(BUILD)/sallyport-edge $(BUILD)/sallyport-agent $(BUILD)/sallyportctl
UNITS   = $(BUILD)/test_frame $(BUILD)/test_cfg $(BUILD)/test_pki \
          $(BUILD)/test_stats $(BUILD)/test_route \
          $(BUILD)/test_socks $(BUILD)/test_httpc $(BUILD)/test_outpol
UNITS  += $(BUILD)/test_proxy $(BUILD)/test_cidr $(BUILD)/test_ban
UNITS  += $(BUILD)/test_ftp
UNITS  += $(BUILD)/test_mux $(BUILD)/test_pump $(BUILD)/test_linkkey
UNITS  += $(BUILD)/test_dial
UNITS  += $(BUILD)/test_check
UNITS  += $(BUILD)/test_hosock $(BUILD)/test_lookup

all: $(PROGS)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/tests/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -c -o $@ $<

# The edge links only what runs in the DMZ: no dialer, no config loader;
# its one connect() is in edge_dial.c, run by the dialler process alone.
$(BUILD)/sallyport-edge: $(call obj,$(COMMON) $(EDGE))
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBSSL) -lseccomp

$(BUILD)/sallyport-agent: $(call obj,$(COMMON) $(AGENT))
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBSSL) $(LIBINI) $(LIBSD) $(LIBHTTP) $(LIBJSON)

$(BUILD)/sallyportctl: $(call obj,$(CTL))
	$(CC) $(LDFLAGS) -o $@ $^ -lcrypto $(LIBCURL)

$(BUILD)/test_frame: $(BUILD)/obj/tests/test_frame.o $(call obj,src/common/frame.c src/common/buf.c src/common/end.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_cfg: $(BUILD)/obj/tests/test_cfg.o $(call obj,src/agent/agent_cfg.c src/agent/ftp_cfg.c src/agent/dial.c src/agent/bg.c src/common/net.c src/common/ev.c src/common/log.c src/common/frame.c src/common/buf.c src/common/end.c src/common/outpol.c src/common/cidr.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LIBINI) -lcrypto

$(BUILD)/test_pki: $(BUILD)/obj/tests/test_pki.o $(call obj,src/ctl/pki.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -lcrypto

# The edge's parser and the agent's encoder, each against the other.
$(BUILD)/test_proxy: $(BUILD)/obj/tests/test_proxy.o $(call obj,src/edge/proxy_parse.c src/agent/proxy_enc.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_cidr: $(BUILD)/obj/tests/test_cidr.o $(call obj,src/common/cidr.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

# The agent's parser, and the edge's formatter (its other counters stubbed
# in the test) whose output the parser must take.
$(BUILD)/test_stats: $(BUILD)/obj/tests/test_stats.o $(call obj,src/agent/stats_parse.c src/edge/edge_stats.c src/edge/edge_limit.c src/common/frame.c src/common/buf.c src/common/end.c src/common/ev.c src/common/log.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_ban: $(BUILD)/obj/tests/test_ban.o $(call obj,src/common/ban.c src/common/cidr.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_route: $(BUILD)/obj/tests/test_route.o $(call obj,src/agent/agent_route.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_socks: $(BUILD)/obj/tests/test_socks.o $(call obj,src/agent/socks.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_httpc: $(BUILD)/obj/tests/test_httpc.o $(call obj,src/agent/httpc.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_outpol: $(BUILD)/obj/tests/test_outpol.o $(call obj,src/common/outpol.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_mux: $(BUILD)/obj/tests/test_mux.o $(call obj,src/common/mux.c src/common/mux_stream.c src/common/pump.c src/common/psock.c src/common/buf.c src/common/end.c src/common/ev.c src/common/log.c src/common/tlsx.c src/common/net.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LIBSSL)

$(BUILD)/test_pump: $(BUILD)/obj/tests/test_pump.o $(call obj,src/common/pump.c src/common/psock.c src/common/plink.c src/common/buf.c src/common/end.c src/common/ev.c src/common/log.c src/common/net.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_linkkey: $(BUILD)/obj/tests/test_linkkey.o $(call obj,src/common/linkkey.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -lcrypto

# A real dialler process, in its sandbox, spoken to on its socket.
$(BUILD)/test_dial: $(BUILD)/obj/tests/test_dial.o $(call obj,src/edge/edge_dial.c src/edge/edge_sandbox.c src/common/cidr.c src/common/net.c src/common/outpol.c src/common/ev.c src/common/log.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -lseccomp
# The agent's checks of what an edge says: SESS_OPEN, control frames.
$(BUILD)/test_check: $(BUILD)/obj/tests/test_check.o $(call obj,src/agent/sess_check.c src/agent/ctl_check.c src/agent/stats_parse.c src/common/cidr.c src/common/frame.c src/common/buf.c src/common/end.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_lookup: $(BUILD)/obj/tests/test_lookup.o $(call obj,src/agent/dial.c src/agent/bg.c src/common/net.c src/common/ev.c src/common/log.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_hosock: $(BUILD)/obj/tests/test_hosock.o $(call obj,src/common/hosock.c src/common/net.c src/common/frame.c src/common/buf.c src/common/end.c src/common/ev.c src/common/log.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_ftp: $(BUILD)/obj/tests/test_ftp.o $(call obj,src/agent/ftp_line.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

# Fuzzing: every harness tests/fuzz/fuzz_NAME.c is listed in FUZZERS with
# the sources it links in FUZZ_SRC_NAME (and libraries in FUZZ_LIBS_NAME).
# `make fuzz` runs each for FUZZ_TIME seconds; new inputs are kept in
# build-fuzz/corpus/NAME, the committed seeds in tests/fuzz/corpus/NAME.
FUZZ_TIME ?= 60
FUZZ_CC   ?= clang
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
          -std=c11 -D_GNU_SOURCE $(WARN) -Isrc

FUZZERS += frame
FUZZ_SRC_frame = src/common/frame.c src/common/buf.c src/common/end.c
FUZZERS += cfg
FUZZ_SRC_cfg = src/agent/agent_cfg.c src/agent/ftp_cfg.c src/agent/dial.c src/agent/bg.c src/common/net.c \
          src/common/ev.c src/common/log.c src/common/frame.c src/common/buf.c \
          src/common/end.c src/common/outpol.c src/common/cidr.c
FUZZ_LIBS_cfg = $(LIBINI) -lcrypto
FUZZERS += stats
FUZZ_SRC_stats = src/agent/stats_parse.c
FUZZERS += route
FUZZ_SRC_route = src/agent/agent_route.c
FUZZERS += socks
FUZZ_SRC_socks = src/agent/socks.c
FUZZERS += httpc
FUZZ_SRC_httpc = src/agent/httpc.c
FUZZERS += outpol
FUZZ_SRC_outpol = src/common/outpol.c
FUZZERS += ftp
FUZZ_SRC_ftp = src/agent/ftp_line.c
FUZZERS += proxy
FUZZ_SRC_proxy = src/edge/proxy_parse.c src/agent/proxy_enc.c
FUZZERS += cidr
FUZZ_SRC_cidr = src/common/cidr.c
FUZZERS += dial
FUZZ_SRC_dial = src/edge/edge_dial.c src/edge/edge_sandbox.c src/common/cidr.c src/common/net.c \
          src/common/outpol.c src/common/ev.c src/common/log.c
FUZZ_LIBS_dial = -lseccomp
FUZZERS += ban
FUZZ_SRC_ban = src/common/ban.c src/common/cidr.c
FUZZERS += hosock
FUZZ_SRC_hosock = src/common/hosock.c src/common/net.c src/common/frame.c src/common/buf.c src/common/end.c \
          src/common/ev.c src/common/log.c
FUZZERS += mux
FUZZ_SRC_mux = src/common/mux.c src/common/mux_stream.c src/common/pump.c src/common/psock.c src/common/buf.c \
          src/common/end.c src/common/ev.c src/common/log.c src/common/tlsx.c \
          src/common/net.c
FUZZ_LIBS_mux = $(LIBSSL)
# The agent's side of what a hostile edge sends: SESS_OPEN checked against
# the configuration (and the backends dialled for it), control frames
# against what was asked, a plain link's chunks.
FUZZERS += sess
FUZZ_SRC_sess = src/agent/sess_check.c src/agent/agent_backend.c src/common/cidr.c \
          src/common/frame.c src/common/buf.c src/common/end.c src/common/ev.c \
          src/common/log.c
FUZZERS += ctl
FUZZ_SRC_ctl = src/agent/ctl_check.c src/agent/sess_check.c src/agent/stats_parse.c \
          src/common/cidr.c src/common/frame.c src/common/buf.c src/common/end.c
FUZZERS += plink
FUZZ_SRC_plink = src/common/plink.c src/common/psock.c src/common/pump.c src/common/buf.c \
          src/common/ev.c src/common/log.c \
          src/common/net.c src/common/end.c

.SECONDEXPANSION:
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $$(FUZZ_SRC_$$*)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC_$*) $(FUZZ_LIBS_$*)

fuzz: $(foreach f,$(FUZZERS),build-fuzz/fuzz_$(f))
	@set -e; for f in $(FUZZERS); do \
	  mkdir -p build-fuzz/corpus/$$f; \
	  printf '== fuzz %-12s %ss ... ' $$f $(FUZZ_TIME); \
	  if build-fuzz/fuzz_$$f -max_total_time=$(FUZZ_TIME) -timeout=10 \
	      -rss_limit_mb=2048 -artifact_prefix=build-fuzz/$$f- \
	      build-fuzz/corpus/$$f tests/fuzz/corpus/$$f \
	      >build-fuzz/$$f.log 2>&1; then \
	    grep -o 'Done [0-9]* runs' build-fuzz/$$f.log || echo done; \
	  else echo FINDING; tail -n 40 build-fuzz/$$f.log; exit 1; fi; \
	done

fuzz-smoke:
	$(MAKE) fuzz FUZZ_TIME=5

# The edge links only what runs in the DMZ (scripts/check-edge.sh).
check-edge: $(BUILD)/sallyport-edge
	@sh scripts/check-edge.sh $(BUILD)

# Lines of code where they matter: the edge's own, the largest files, the
# longest functions (scripts/loc.py).
loc:
	@/usr/bin/python3 scripts/loc.py .

# No unbounded string functions anywhere in the tree.
check-banned:
	@if grep -rnE '\b(strcpy|strcat|sprintf|vsprintf|gets|stpcpy|strncat)[[:space:]]*\(' src tests/unit tests/fuzz \
	    --include='*.c' --include='*.h'; then \
	  echo "check-banned: unbounded string functions found (above)"; exit 1; \
	else echo "check-banned: ok"; fi

deps:
	@sh scripts/deps.sh

# Everything the build and the tests run is on this machine, or the missing
# piece and its Debian package are named.
check-tools:
	@sh scripts/check-tools.sh

# The man pages lint clean and render, and document every option the
# programs' --help prints and every key the agent accepts, and nothing
# they do not (scripts/check-man.sh).
check-man: $(PROGS)
	@sh scripts/check-man.sh $(BUILD)

unit: $(UNITS)
	@set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

integration: $(PROGS) $(BUILD)/spbench
	SALLYPORT_BUILD=$(BUILD) /usr/bin/python3 -m pytest -v --durations=15 tests/integration

# The whole suite: strict build, banned-function check, what the edge
# links, unit tests, the integration tests, both again under ASan+UBSan,
# and a short run of every fuzzer.
test: deps
	$(MAKE) check-tools check-banned all check-man check-edge unit
	$(MAKE) integration
	$(MAKE) SAN=asan all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(MAKE) SAN=asan unit integration
	$(MAKE) fuzz-smoke

# The README's promise on a machine nobody prepared: `make test` in a clean
# Debian 12 root made with debootstrap, with nothing installed but what
# the README and scripts/deps.sh install (scripts/test-fresh.sh). As root.
test-fresh:
	@sh scripts/deps.sh test-fresh
	@bash scripts/test-fresh.sh

# The benchmark against direct, HAProxy, ssh -R and socat (bench/run,
# docs/benchmark.md). BENCH_QUICK=1 for a one-minute smoke run; results in
# bench/results/. spbench is its load generator and echo backend.
$(BUILD)/spbench: bench/spbench.c
	@mkdir -p $(BUILD)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

bench: deps
	$(MAKE) all $(BUILD)/spbench $(BUILD)/banbench
	$(BUILD)/banbench
	/usr/bin/python3 bench/run --build $(BUILD) $(BENCH_ARGS)

# What 100,000 bans cost the edge per accepted client (docs/benchmark.md).
$(BUILD)/banbench: bench/banbench.c src/common/ban.c src/common/cidr.c
	@mkdir -p $(BUILD)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^

demo: deps
	$(MAKE) all
	@bash scripts/demo.sh

# Binaries, systemd units (ExecStart pointing at BINDIR), the sysusers.d
# entry for the agent's user, the man pages, and the fail2ban action
# (F2BDIR/action.d/sallyport.conf).
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
	install -d $(DESTDIR)$(F2BDIR)/action.d
	install -m 0644 dist/fail2ban/action.d/sallyport.conf $(DESTDIR)$(F2BDIR)/action.d/

clean:
	rm -rf build build-asan build-fuzz

.PHONY: check-edge loc all deps check-tools check-man test-fresh unit integration test demo bench clean fuzz fuzz-smoke check-banned install
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
