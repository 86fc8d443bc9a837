# Torrix: builds the shared library, torrix-cp, unit tests and fuzzers.
# The nginx module is built by build.sh (nginx's own configure + make).
#
#   make                 build/libtxshared.a, build/torrix-cp
#   make unit            build and run the cmocka tests (shared/tests,
#                        control-plane/tests)
#   make fuzz            libFuzzer harnesses (clang) in build-fuzz/
#   make SAN=1 BUILD=build-asan   the same under ASan+UBSan

BUILD    ?= build
CC       ?= cc
SAN      ?= 0

CFLAGS_BASE = -std=gnu99 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
              -Wno-sign-compare -fPIC -D_GNU_SOURCE -Ishared
ifeq ($(SAN),1)
CFLAGS_BASE += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined
LDFLAGS_SAN  = -fsanitize=address,undefined
endif
CFLAGS  += $(CFLAGS_BASE)
LDFLAGS += $(LDFLAGS_SAN)

CP_LIBS = -lmicrohttpd -llmdb -lcjson -lsodium -lcurl -lcrypto -lyaml -lpthread -lm

SHARED_SRCS = $(wildcard shared/tx_*.c)
SHARED_OBJS = $(patsubst shared/%.c,$(BUILD)/shared/%.o,$(SHARED_SRCS))
CP_SRCS     = $(wildcard control-plane/txcp_*.c)
CP_OBJS     = $(patsubst control-plane/%.c,$(BUILD)/cp/%.o,$(CP_SRCS))
UNIT_SRCS   = $(wildcard shared/tests/test_*.c)
UNIT_BINS   = $(patsubst shared/tests/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))
CP_UNIT_SRCS = $(wildcard control-plane/tests/test_*.c)
CP_UNIT_BINS = $(patsubst control-plane/tests/%.c,$(BUILD)/unit/%, \
                   $(CP_UNIT_SRCS))
FUZZ_SRCS   = $(wildcard shared/fuzz/fuzz_*.c)
FUZZ_BINS   = $(patsubst shared/fuzz/%.c,build-fuzz/%,$(FUZZ_SRCS))
# control-plane harnesses link the daemon's objects (all but its main)
FUZZ_CP_SRCS = $(wildcard control-plane/fuzz/fuzz_*.c)
FUZZ_CP_BINS = $(patsubst control-plane/fuzz/%.c,build-fuzz/%,$(FUZZ_CP_SRCS))
FUZZ_CP_OBJS = $(patsubst control-plane/%.c,build-fuzz/cp/%.o, \
                   $(filter-out control-plane/txcp_main.c,$(CP_SRCS)))

.PHONY: all unit fuzz clean format format-check

all: $(BUILD)/libtxshared.a $(BUILD)/torrix-cp

$(BUILD)/shared/%.o: shared/%.c $(wildcard shared/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libtxshared.a: $(SHARED_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/cp/%.o: control-plane/%.c $(wildcard control-plane/*.h) \
                 $(wildcard shared/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icontrol-plane -c $< -o $@

$(BUILD)/torrix-cp: $(CP_OBJS) $(BUILD)/libtxshared.a
	$(CC) $(LDFLAGS) -o $@ $(CP_OBJS) $(BUILD)/libtxshared.a $(CP_LIBS)

$(BUILD)/unit/%: shared/tests/%.c $(BUILD)/libtxshared.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libtxshared.a \
	    -lcmocka -lsodium

# a control-plane unit test links the one daemon file it tests
# (test_X.c: txcp_X.o)
$(CP_UNIT_BINS): $(BUILD)/unit/test_%: control-plane/tests/test_%.c \
                 $(BUILD)/cp/txcp_%.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icontrol-plane $(LDFLAGS) -o $@ $< \
	    $(BUILD)/cp/txcp_$*.o -lcmocka -llmdb

unit: $(UNIT_BINS) $(CP_UNIT_BINS)
	@set -e; for t in $(UNIT_BINS) $(CP_UNIT_BINS); do echo "== $$t"; $$t; \
	    done

build-fuzz/%: shared/fuzz/%.c $(SHARED_SRCS) $(wildcard shared/*.h)
	@mkdir -p build-fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
	    -Ishared -o $@ $< $(SHARED_SRCS) -lsodium

build-fuzz/cp/%.o: control-plane/%.c $(wildcard control-plane/*.h) \
                   $(wildcard shared/*.h)
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer-no-link,address,undefined -D_GNU_SOURCE \
	    -Ishared -Icontrol-plane -c $< -o $@

$(FUZZ_CP_BINS): build-fuzz/%: control-plane/fuzz/%.c $(FUZZ_CP_OBJS) \
                 $(SHARED_SRCS) $(wildcard shared/*.h)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
	    -Ishared -Icontrol-plane -o $@ $< $(FUZZ_CP_OBJS) $(SHARED_SRCS) \
	    $(CP_LIBS)

fuzz: $(FUZZ_BINS) $(FUZZ_CP_BINS)

format:
	clang-format -i shared/*.[ch] shared/tests/*.c shared/fuzz/*.c \
	    control-plane/*.[ch] control-plane/fuzz/*.c control-plane/tests/*.c \
	    control-plane/tools/*.c bench/*.c ngx_torrix_module/*.[ch]

format-check:
	clang-format --dry-run -Werror shared/*.[ch] shared/tests/*.c \
	    shared/fuzz/*.c control-plane/*.[ch] control-plane/fuzz/*.c \
	    control-plane/tests/*.c control-plane/tools/*.c bench/*.c \
	    ngx_torrix_module/*.[ch]

clean:
	rm -rf build build-asan build-fuzz
