# chatd build. `make` builds bin/chatd and bin/chatctl; `make SAN=1 ...`
# builds everything with AddressSanitizer and UndefinedBehaviorSanitizer.
# Objects of the two modes live apart (build/rel, build/san) so switching
# never links a mix; bin/.mode records which mode the binaries are.

CC      ?= cc
CLANG   ?= clang
PKGS    := libevent hiredis libpq jansson libcrypto
MODE    := $(if $(SAN),san,rel)
BUILD   := build/$(MODE)
BIN     := bin

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wwrite-strings -Wpointer-arith \
           -Wformat=2 -Wvla -Wno-missing-field-initializers
BASE_CFLAGS := -std=c17 -D_GNU_SOURCE -g -I. $(WARN) \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -MMD -MP
ifeq ($(MODE),san)
OPT     := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
           -fno-sanitize-recover=undefined
else
OPT     := -O2
endif
CFLAGS  += $(BASE_CFLAGS) $(OPT)
LDFLAGS += $(if $(filter san,$(MODE)),-fsanitize=address$(comma)undefined)
comma   := ,
LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm

SHARED_SRC := $(wildcard shared/*.c)
WORKER_SRC := $(wildcard worker/*.c)
MASTER_SRC := $(wildcard master/*.c)
ADMIN_SRC  := $(wildcard admin/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
TESTPROG_SRC := $(wildcard tests/progs/*.c)
BENCH_SRC  := $(wildcard bench/*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))
SHARED_OBJ := $(call obj,$(SHARED_SRC))
WORKER_OBJ := $(call obj,$(WORKER_SRC))
MASTER_OBJ := $(call obj,$(MASTER_SRC))
ADMIN_OBJ  := $(call obj,$(ADMIN_SRC))
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BIN)/tests/%,$(UNIT_SRC))

# Rewrite the mode stamp only when the mode changes, so binaries relink
# exactly when switching between SAN and normal builds.
$(shell mkdir -p $(BIN) && (echo $(MODE) | cmp -s - $(BIN)/.mode || echo $(MODE) > $(BIN)/.mode))

.PHONY: all clean distclean run test unit stop deps fuzz fuzz-short bench \
        bench-compare soak help
.DEFAULT_GOAL := all

all: $(BIN)/chatd $(BIN)/chatctl

$(BIN)/chatd: $(MASTER_OBJ) $(WORKER_OBJ) $(SHARED_OBJ) $(BIN)/.mode
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(MASTER_OBJ) $(WORKER_OBJ) $(SHARED_OBJ) $(LIBS)

$(BIN)/chatctl: $(ADMIN_OBJ) $(SHARED_OBJ) $(BIN)/.mode
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(ADMIN_OBJ) $(SHARED_OBJ) $(LIBS)

Q := $(if $(V),,@)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# Unit tests link the worker and shared objects (neither has a main).
# A test may list extra link flags (for example -Wl,--wrap=...) in
# tests/unit/<name>.ldflags.
$(BIN)/tests/%: $(BUILD)/tests/unit/%.o $(WORKER_OBJ) $(SHARED_OBJ) $(BIN)/.mode
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(WORKER_OBJ) $(SHARED_OBJ) \
	    $(shell cat tests/unit/$*.ldflags 2>/dev/null) $(LIBS) -lcmocka

# The load generator reuses the frame codec's client-side encoder.
BENCH_OBJ  := $(call obj,$(BENCH_SRC)) $(BUILD)/worker/ws_frame.o
$(BIN)/chat-bench: $(BENCH_OBJ) $(SHARED_OBJ) $(BIN)/.mode
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(BENCH_OBJ) $(SHARED_OBJ) $(LIBS)

# The floor under chatd's CPU per upgrade (docs/performance.md).
FLOOR_OBJ  := $(BUILD)/bench/floor/ws_floor.o $(BUILD)/worker/ws_handshake.o
$(BIN)/ws-floor: $(FLOOR_OBJ) $(BIN)/.mode
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(FLOOR_OBJ) $(LIBS)

$(BIN)/tests/progs/%: $(BUILD)/tests/progs/%.o $(SHARED_OBJ) $(BIN)/.mode
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(SHARED_OBJ) $(LIBS) -lwebsockets

unit: $(UNIT_BINS)
testprogs: $(patsubst tests/progs/%.c,$(BIN)/tests/progs/%,$(TESTPROG_SRC))

deps:
	@scripts/deps.sh

run: deps all
	@scripts/run.sh

test: deps
	@$(MAKE) --no-print-directory all unit testprogs $(BIN)/chat-bench $(BIN)/ws-floor
	@scripts/test.sh

stop:
	@scripts/stop.sh

# Fuzzers: `make fuzz` runs each target for FUZZ_SECONDS (default 600);
# `make test` runs them briefly through scripts/test.sh.
FUZZ_SECONDS ?= 600
fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

bench: deps all
	@$(MAKE) --no-print-directory -C . bin/chat-bench bin/ws-floor
	@scripts/bench.sh

# chatd against a Socket.IO 4 + Redis adapter peer on the same CPU budget
# (docs/performance.md, "Against Socket.IO"); needs node and npm.
bench-compare: deps all
	@$(MAKE) --no-print-directory -C . bin/chat-bench
	@scripts/bench-compare.sh

clean:
	rm -rf build bin

help:
	@echo "make          build bin/chatd and bin/chatctl"
	@echo "make run      install what is missing, start services, run chatd"
	@echo "make test     install what is missing, start services, run every test"
	@echo "make stop     stop the private Redis and PostgreSQL"
	@echo "make SAN=1 X  the same with AddressSanitizer and UBSan"
	@echo "make fuzz     run each fuzzer for FUZZ_SECONDS (default 600)"
	@echo "make clean    remove build outputs"

-include $(shell find build -name '*.d' 2>/dev/null)
