# sallyport build. `make` builds build/sallyport-edge, build/sallyport-agent
# and build/sallyportctl. Targets: all, test, unit, integration, demo, deps,
# clean. SAN=asan builds with AddressSanitizer+UBSan into build-asan/.

CC      ?= cc
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

COMMON  = src/common/log.c src/common/ev.c src/common/buf.c src/common/frame.c \
          src/common/net.c src/common/tlsx.c src/common/fconn.c src/common/relay.c
EDGE    = src/edge/edge_main.c src/edge/edge_ctl.c src/edge/edge_svc.c
AGENT   = src/agent/agent_main.c src/agent/agent_cfg.c src/agent/agent_edge.c \
          src/agent/agent_sess.c src/agent/agent_health.c src/agent/dial.c
CTL     = src/ctl/ctl_main.c src/ctl/pki.c

obj = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(1))

PROGS   = $(BUILD)/sallyport-edge $(BUILD)/sallyport-agent $(BUILD)/sallyportctl
UNITS   = $(BUILD)/test_frame $(BUILD)/test_cfg $(BUILD)/test_pki

all: $(PROGS)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/tests/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The edge links only what runs in the DMZ: no dialer, no config loader.
$(BUILD)/sallyport-edge: $(call obj,$(COMMON) $(EDGE))
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBSSL)

$(BUILD)/sallyport-agent: $(call obj,$(COMMON) $(AGENT))
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBSSL) $(LIBINI)

$(BUILD)/sallyportctl: $(call obj,$(CTL))
	$(CC) $(LDFLAGS) -o $@ $^ -lcrypto

$(BUILD)/test_frame: $(BUILD)/obj/tests/test_frame.o $(call obj,src/common/frame.c src/common/buf.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/test_cfg: $(BUILD)/obj/tests/test_cfg.o $(call obj,src/agent/agent_cfg.c src/agent/dial.c src/common/net.c src/common/ev.c src/common/log.c src/common/frame.c src/common/buf.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LIBINI)

$(BUILD)/test_pki: $(BUILD)/obj/tests/test_pki.o $(call obj,src/ctl/pki.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -lcrypto

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

clean:
	rm -rf build build-asan

.PHONY: all deps unit integration test demo clean
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
