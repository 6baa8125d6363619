# ringmx — plain GNU make. `make run` and `make test` do all set-up (see README.md).
CC      ?= cc
CFLAGS  ?= -O2 -g
# The flags every build keeps, whatever CFLAGS the caller gives (check-asan gives its own).
BASE_CFLAGS := -std=c11 -Wall -Wextra -Werror -Wshadow -D_GNU_SOURCE -pthread -I.
ALL_CFLAGS = $(CFLAGS) $(BASE_CFLAGS)
JEMALLOC ?= -ljemalloc
LDLIBS  += -luring -linih -lldns $(JEMALLOC) -lssl -lcrypto -lcrypt -lm -pthread
BUILD   ?= build
BIN     ?= bin

# Each top folder builds one static library; files named *main.c hold a program's main().
server_SRC := $(filter-out %main.c,$(wildcard server/*.c))
queue_SRC  := $(filter-out %main.c,$(wildcard queue/*.c))
dns_SRC    := $(filter-out %main.c,$(wildcard dns/*.c))
bench_SRC  := $(filter-out %main.c,$(wildcard bench/*.c))
LIBS := $(BUILD)/libserver.a $(BUILD)/libqueue.a $(BUILD)/libbench.a
ifneq ($(dns_SRC),)
LIBS += $(BUILD)/libdns.a
endif

PROGS := $(BIN)/ringmx $(BIN)/ringmx-spool $(BIN)/ringmxctl $(BIN)/ringmx-bench $(BIN)/ringmx-sink $(BIN)/ringmx-resolve
UNIT_SRC := $(wildcard tests/unit/*/test_*.c)

.PHONY: all run test check unit integration check-asan clean deps test-deps fmt
all: $(PROGS)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libserver.a: $(call obj,$(server_SRC))
$(BUILD)/libqueue.a:  $(call obj,$(queue_SRC))
$(BUILD)/libdns.a:    $(call obj,$(dns_SRC))
$(BUILD)/libbench.a:  $(call obj,$(bench_SRC))
$(BUILD)/%.a:
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The libraries use each other (server runs queue's delivery, queue logs through server's log
# and routes through dns), so they are linked as one group.
LINK_LIBS := -Wl,--start-group $(BUILD)/libbench.a $(BUILD)/libserver.a \
	     $(if $(dns_SRC),$(BUILD)/libdns.a) $(BUILD)/libqueue.a -Wl,--end-group
$(BIN)/ringmx:       $(BUILD)/server/main.o $(LIBS)
$(BIN)/ringmx-spool: $(BUILD)/queue/spool_main.o $(LIBS)
$(BIN)/ringmxctl:    $(BUILD)/queue/ctl_main.o $(LIBS)
$(BIN)/ringmx-bench: $(BUILD)/bench/bench_main.o $(LIBS)
$(BIN)/ringmx-sink:  $(BUILD)/bench/sink_main.o $(LIBS)
$(BIN)/ringmx-resolve: $(BUILD)/dns/resolve_main.o $(LIBS)
$(PROGS):
	@mkdir -p $(BIN)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LINK_LIBS) $(LDFLAGS) $(LDLIBS)

$(BUILD)/test-unit: $(call obj,$(UNIT_SRC)) $(LIBS)
	$(CC) $(ALL_CFLAGS) -o $@ $(call obj,$(UNIT_SRC)) $(LINK_LIBS) $(LDFLAGS) $(LDLIBS) -lcriterion

deps:
	@scripts/install-deps.sh
test-deps:
	@scripts/install-deps.sh --test

# Starts ringmx in the foreground on its embedded default config (127.0.0.1:2525).
run: deps
	@$(MAKE) --no-print-directory all
	$(BIN)/ringmx

unit: $(BUILD)/test-unit
	$(BUILD)/test-unit --jobs 2

integration: all
	/usr/bin/python3 -m pytest -q tests/integration

# The suite on the optimised build: unit tests (Criterion), then integration tests against the
# real binaries (pytest). The quick loop while developing.
check: test-deps
	@$(MAKE) --no-print-directory all $(BUILD)/test-unit
	$(BUILD)/test-unit --jobs 2
	/usr/bin/python3 -m pytest -q tests/integration

# Every test, as CI runs it (.ci/run): the suite on the optimised build, then the same suite
# under the sanitizers, then every fuzz harness for FUZZ_SMOKE_SECONDS on its seeds (a replay
# of the seeds and a short search; the long runs are `make fuzz`). Sequential, not parallel:
# the integration tests load both cores.
FUZZ_SMOKE_SECONDS ?= 10
test: test-deps
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory check-asan
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)
	@echo "make test: the suite passed on the optimised build and under ASan + UBSan," \
	    "and no fuzz harness failed"

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer, in their own build tree.
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
check-asan: test-deps
	@$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin \
	    CFLAGS="$(ASAN_FLAGS)" JEMALLOC= all build-asan/test-unit
	@# Criterion's workers print sanitizer reports without failing the test: search for them.
	ASAN_OPTIONS=detect_leaks=1 build-asan/test-unit --jobs 2 > build-asan/unit.log 2>&1; \
	    rc=$$?; cat build-asan/unit.log; \
	    if grep -qE "LeakSanitizer|AddressSanitizer|runtime error" build-asan/unit.log; then \
	        echo "check-asan: sanitizer reports in the unit tests (above)"; exit 1; fi; exit $$rc
	RINGMX_BIN=build-asan/bin ASAN_OPTIONS=detect_leaks=1 /usr/bin/python3 -m pytest -q tests/integration

# libFuzzer harnesses for the pure parsers (tests/fuzz/README.md), built with clang apart from
# the gcc tree: each harness is compiled with only the sources it tests. `make fuzz` runs each
# for FUZZ_SECONDS on its seeds; what it finds goes to build-fuzz/corpus-NAME (the committed
# seeds stay as they are), and a crash fails the target and is left as build-fuzz/crash-NAME-*.
FUZZ_CC      ?= clang
FUZZ_DIR     ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all \
		-std=c11 -Wall -Wextra -Werror -Wshadow -D_GNU_SOURCE -I.
FUZZ_NAMES   := smtp_parse smtp_data spool_record smtp_reply dns_answer body_encode proxy sasl \
		session
fuzz_smtp_parse_SRC   := server/smtp_parse.c
fuzz_smtp_data_SRC    := server/smtp_data.c
fuzz_spool_record_SRC := queue/spool_record.c queue/crc32c.c
fuzz_smtp_reply_SRC   := queue/smtp_reply.c
fuzz_dns_answer_SRC   := dns/dns_packet.c
fuzz_dns_answer_LIBS  := -lldns
fuzz_body_encode_SRC  := queue/body_encode.c
fuzz_proxy_SRC        := server/proxy.c
fuzz_sasl_SRC         := server/sasl.c
# The whole session through conn.c; the harness stands in for the shard, io_uring, TLS, the
# password check, the config and the log, and sees every event through the wrap.
fuzz_session_SRC      := server/smtp_session.c server/conn.c server/smtp_parse.c \
			 server/smtp_data.c server/sasl.c server/proxy.c server/timer.c \
			 server/conn_limits.c server/listen.c queue/spool_record.c queue/crc32c.c \
			 queue/rec_buf.c
fuzz_session_LDFLAGS  := -Wl,--wrap=smtp_session_event
FUZZ_BINS := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_NAMES))
fuzz_objs = $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(fuzz_$(1)_SRC))
.SECONDARY: $(foreach n,$(FUZZ_NAMES),$(call fuzz_objs,$(n)))

.PHONY: fuzz fuzz-build fuzz-deps
fuzz-deps:
	@scripts/install-deps.sh --fuzz

# The code under test is instrumented for coverage (fuzzer-no-link); the harness brings main.
$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c $< -o $@

.SECONDEXPANSION:
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $$(call fuzz_objs,$$*)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined $(fuzz_$*_LDFLAGS) -o $@ $< \
	    $(call fuzz_objs,$*) $(fuzz_$*_LIBS)

fuzz-build: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

fuzz: fuzz-build
	@for n in $(FUZZ_NAMES); do \
	    mkdir -p $(FUZZ_DIR)/corpus-$$n; \
	    echo "fuzz: fuzz_$$n for $(FUZZ_SECONDS) s"; \
	    $(FUZZ_DIR)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -dict=tests/fuzz/smtp.dict \
	        -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crash-$$n- \
	        $(FUZZ_DIR)/corpus-$$n tests/fuzz/corpus/$$n 2> $(FUZZ_DIR)/fuzz_$$n.log; \
	    rc=$$?; grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' $(FUZZ_DIR)/fuzz_$$n.log; \
	    if [ $$rc -ne 0 ]; then tail -n 60 $(FUZZ_DIR)/fuzz_$$n.log; \
	        echo "fuzz: fuzz_$$n failed (rc $$rc); log $(FUZZ_DIR)/fuzz_$$n.log"; exit 1; fi; \
	done; echo "fuzz: no crash in $(words $(FUZZ_NAMES)) harnesses"

clean:
	rm -rf $(BUILD) build-asan $(BIN) $(FUZZ_DIR)

fmt:
	clang-format -i $$(git ls-files '*.c' '*.h')

-include $(shell find $(BUILD) $(FUZZ_DIR)/obj -name '*.d' 2>/dev/null)
